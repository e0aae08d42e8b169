"""The public Python API: what the commands do, for notebooks and training scripts.

Every command of the CLI is a thin caller of a function here (parse options, call, render the
result), so a script that calls ``lampctl.rank(...)`` gets the same files, records and errors as
``lampctl rank``. Errors are ``lampctl.errors.LampctlError`` subclasses; an ``OptionError``
names the argument (the CLI shows it as a usage error, exit 2).

    import lampctl

    dev = lampctl.load("LaMP-4", split="user", set="dev", data_dir="data_raw")
    questions = dev.questions()          # [Question(id, input, profile, user_id, raw), ...]
    golds = dev.golds()                  # {question id: gold output}
    scores = lampctl.evaluate("LaMP-4", predictions, golds)   # {"rouge-1": ..., "rouge-L": ...}
"""

from lampctl.api.downloading import DownloadRun, download
from lampctl.api.evaluation import evaluate, score_files
from lampctl.api.inventory import StatusReport, stats, status
from lampctl.api.merging import MergeRun, gather, merge
from lampctl.api.modelling import generate, peft_predict, peft_train
from lampctl.api.prompting import PromptJob, PromptsRun, prompt_jobs, prompts
from lampctl.api.ranking import RankAllRun, rank, rank_all, rank_targets
from lampctl.api.sets import LampSet, load
from lampctl.catalog.bundled import cached_registry as registry
from lampctl.io.data import as_path

__all__ = [
    "DownloadRun",
    "LampSet",
    "MergeRun",
    "PromptJob",
    "PromptsRun",
    "RankAllRun",
    "StatusReport",
    "as_path",
    "download",
    "evaluate",
    "gather",
    "generate",
    "load",
    "merge",
    "peft_predict",
    "peft_train",
    "prompt_jobs",
    "prompts",
    "rank",
    "rank_all",
    "rank_targets",
    "registry",
    "score_files",
    "stats",
    "status",
]
