"""How model-input files are named (``status`` finds them by these names without loading the
prompt engine).
"""

from __future__ import annotations

import re


def output_name(set_name: str, k: int, max_length: int, tokenizer: str | None) -> str:
    """``dev_prompts_k4_len512_bert-base-uncased-1a2b3c4d.jsonl``: different choices never
    overwrite each other (the hash tells two tokenizers with one folder name apart)."""
    if tokenizer is None:
        return f"{prompts_prefix(set_name)}noprofile.jsonl"
    import hashlib

    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", tokenizer.rstrip("/").split("/")[-1]) or "tokenizer"
    digest = hashlib.sha256(tokenizer.encode()).hexdigest()[:8]
    return f"{prompts_prefix(set_name)}k{k}_len{max_length}_{slug}-{digest}.jsonl"


def prompts_prefix(set_name: str) -> str:
    """How every model-input file of a set is named first (``status`` finds them by it)."""
    return f"{set_name}_prompts_"
