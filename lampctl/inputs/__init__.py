"""The paper's retrieval-augmented model inputs (LaMP ``prompts.py``), string for string.

The rooms: ``budget`` holds the reference's arithmetic (one question's source under the token
budget, the counting tokenizer); ``reading`` the ranked questions a file gives; ``builder`` a
chunk of questions' sources, stats and rows; ``workers`` the in-process and forked builds of one
file; ``files`` one set's file and its record; ``naming`` the file names. Names are imported on
first use, so ``lampctl.inputs.naming`` (what ``status`` needs) loads nothing else.
"""

from __future__ import annotations

from lampctl._lazy import lazy_names

_WHERE = {
    "PromptQuestion": ".reading",
    "read_prompt_questions": ".reading",
    "PromptStats": ".builder",
    "build_prompts": ".builder",
    "render_rows": ".builder",
    "PromptResult": ".files",
    "prompts_file": ".files",
    "output_name": ".naming",
    "prompts_prefix": ".naming",
}

__all__ = sorted(_WHERE)


__getattr__ = lazy_names(__name__, _WHERE)
