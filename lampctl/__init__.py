"""lampctl: download, build and rank the LaMP personalization benchmark, build its model
inputs, train one adapter per user, generate and score predictions, from Python as from the
command line.

    import lampctl

    dev = lampctl.load("LaMP-4", split="user", set="dev")
    lampctl.rank("LaMP-4", "user", ["dev"], ranker="bm25")
    ranked = dev.ranked_questions(top_k=4)
    scores = lampctl.evaluate("LaMP-4", "predictions.json", dev.golds())

The names below are imported on first use (as huggingface_hub does), so ``import lampctl``
loads neither torch nor transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lampctl._lazy import lazy_names

__version__ = "0.1.0"

_WHERE = {
    "LampSet": "lampctl.api",
    "PromptsRun": "lampctl.api",
    "evaluate": "lampctl.api",
    "gather": "lampctl.api",
    "rank_all": "lampctl.api",
    "score_files": "lampctl.api",
    "stats": "lampctl.api",
    "status": "lampctl.api",
    "load": "lampctl.api",
    "prompts": "lampctl.api",
    "rank": "lampctl.api",
    "registry": "lampctl.api",
    "EncoderConfig": "lampctl.retrieval.encoder",
    "LampctlError": "lampctl.errors",
    "InputError": "lampctl.errors",
    "OptionError": "lampctl.errors",
    "settings": "lampctl.settings",
    "peft_data": "lampctl.peftdata.files",
    "read_users": "lampctl.peftdata.rows",
    "generate": "lampctl.api.modelling",
    "peft_predict": "lampctl.api.modelling",
    "peft_train": "lampctl.api.modelling",
}

__all__ = [
    "EncoderConfig",
    "InputError",
    "LampSet",
    "LampctlError",
    "OptionError",
    "PromptsRun",
    "__version__",
    "evaluate",
    "gather",
    "generate",
    "load",
    "peft_data",
    "peft_predict",
    "peft_train",
    "prompts",
    "rank",
    "rank_all",
    "read_users",
    "registry",
    "score_files",
    "settings",
    "stats",
    "status",
]

if TYPE_CHECKING:
    from lampctl import settings
    from lampctl.api import (
        LampSet,
        PromptsRun,
        evaluate,
        gather,
        load,
        prompts,
        rank,
        rank_all,
        registry,
        score_files,
        stats,
        status,
    )
    from lampctl.api.modelling import generate, peft_predict, peft_train
    from lampctl.errors import InputError, LampctlError, OptionError
    from lampctl.peftdata.files import peft_data
    from lampctl.peftdata.rows import read_users
    from lampctl.retrieval.encoder import EncoderConfig


__getattr__ = lazy_names(__name__, _WHERE)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
