"""How model-input files are named (``status`` finds them by these names without loading the
prompt engine).
"""

from __future__ import annotations

import re


def output_name(
    set_name: str, k: int, max_length: int, tokenizer: str | None, style: str = "budget"
) -> str:
    """``dev_prompts_k4_len512_bert-base-uncased-1a2b3c4d.jsonl``: different choices never
    overwrite each other (the hash tells two tokenizers with one folder name apart). LongLaMP's
    ranked prompts have no token budget: ``dev_prompts_k4_ranked_...jsonl``."""
    if tokenizer is None:
        return f"{prompts_prefix(set_name)}noprofile.jsonl"
    import hashlib

    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", tokenizer.rstrip("/").split("/")[-1]) or "tokenizer"
    digest = hashlib.sha256(tokenizer.encode()).hexdigest()[:8]
    size = "ranked" if style == "ranked" else f"len{max_length}"
    return f"{prompts_prefix(set_name)}k{k}_{size}_{slug}-{digest}.jsonl"


def prompts_prefix(set_name: str) -> str:
    """How every model-input file of a set is named first (``status`` finds them by it)."""
    return f"{set_name}_prompts_"
