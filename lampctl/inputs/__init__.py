"""The paper's retrieval-augmented model inputs (LaMP ``prompts.py``), string for string.

The rooms: ``budget`` holds the reference's arithmetic (one question's source under the token
budget, the counting tokenizer); ``reading`` the ranked questions a file gives; ``builder`` a
chunk of questions' sources, stats and rows; ``workers`` the in-process and forked builds of one
file; ``files`` one set's file and its record; ``naming`` the file names. Names are imported on
first use, so ``lampctl.inputs.naming`` (what ``status`` needs) loads nothing else.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "PromptQuestion": "reading",
    "read_prompt_questions": "reading",
    "PromptStats": "builder",
    "build_prompts": "builder",
    "render_rows": "builder",
    "PromptResult": "files",
    "prompts_file": "files",
    "output_name": "naming",
    "prompts_prefix": "naming",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'lampctl.inputs' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lampctl.inputs.{_WHERE[name]}"), name)
