"""The base model and its tokenizer, loaded once per process, and the batches fed to them.

A model is seq2seq (T5 family: ``config.is_encoder_decoder``) or causal (Llama, Qwen,
Mistral...). Training rows are encoded and padded by ``lampctl.model.packing``; generation
pads causal prompts on the left and keeps only the new tokens.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lampctl.errors import ModelLoadError, OptionError
from lampctl.model.options import DecodeOptions
from lampctl.settings import PRECISIONS

IGNORE = -100  # label of a token left out of the loss (the loss functions' ignore_index)


def model_identity(name: str, revision: str | None) -> str:
    """What a record keeps of the base model: a local folder by its resolved path, a hub id
    with its revision."""
    local = Path(name).expanduser()
    if local.is_dir():
        return str(local.resolve())
    return f"{name}@{revision}" if revision else name


@dataclass
class BaseModel:
    name: str
    identity: str
    kind: str  # seq2seq | causal
    model: Any
    tokenizer: Any
    device: str
    precision: str

    @property
    def eos_id(self) -> int | None:
        eos = self.tokenizer.eos_token_id
        if eos is None:
            eos = getattr(self.model.config, "eos_token_id", None)
            eos = eos[0] if isinstance(eos, list) else eos
        return eos


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """No progress bars or advice from transformers and peft while lampctl reports progress
    itself (saving an adapter draws a bar; a deprecation notice is not the user's to act on)."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", module="peft")
            warnings.filterwarnings("ignore", module="transformers")
            yield
    finally:
        hf_logging.set_verbosity(previous)
        hf_logging.enable_progress_bar()


def load_base_model(
    name: str, revision: str | None = None, device: str = "auto", precision: str = "fp32"
) -> BaseModel:
    """The model ``name`` (a folder or a hub id, found as the encoder's checkpoint is), on
    ``device`` in ``precision``, frozen; one ``ModelLoadError`` line when it cannot be."""
    if precision not in PRECISIONS:
        raise OptionError("precision", f"unknown precision {precision!r} (fp32, bf16 or fp16)")
    from lampctl.retrieval.encoder import locate_checkpoint, resolve_device

    device = resolve_device(device)
    source = locate_checkpoint(name, revision, kind="model")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    try:
        with quiet_libraries():
            config = AutoConfig.from_pretrained(source, local_files_only=True)
            kind = "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"
            loader = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            model, info = loader.from_pretrained(
                source, local_files_only=True, dtype=dtype, output_loading_info=True
            )
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelLoadError(
            f"cannot load model {name!r} from {source}: {type(exc).__name__}: {first}"
        ) from None
    refuse_new_weights(name, source, type(model).__name__, info)
    if tokenizer.pad_token_id is None:  # Llama-style tokenizers have none: pad with EOS
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return BaseModel(
        name, model_identity(name, revision), kind, model, tokenizer, device, precision
    )


def refuse_new_weights(name: str, source: str, loaded_as: str, info: dict[str, Any]) -> None:
    """A ``ModelLoadError`` naming the weights when loading left any of them newly
    initialized (random): a BERT encoder loaded as ``BertLMHeadModel`` gets a random LM head
    and generates garbage, and transformers' only word on it is a log line."""
    missing = sorted(info.get("missing_keys") or [])
    mismatched = sorted(str(entry[0]) for entry in info.get("mismatched_keys") or [])
    new = missing + mismatched
    if new:
        shown = ", ".join(new[:3]) + (f" and {len(new) - 3} more" if len(new) > 3 else "")
        raise ModelLoadError(
            f"model {name!r} ({source}) is not a generation model for lampctl: loaded as "
            f"{loaded_as}, {len(new)} weight(s) would be newly initialized ({shown}); pass a "
            "seq2seq or causal language model"
        )


def model_fingerprint(name: str, revision: str | None = None) -> str:
    """The files of the model ``name`` by path, size and mtime, hashed: what a resumed
    prediction checks (a folder whose weights were replaced gives another fingerprint)."""
    import hashlib

    from lampctl.retrieval.encoder import locate_checkpoint

    folder = Path(locate_checkpoint(name, revision, kind="model"))
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            info = path.stat()
            entries.append(f"{path.relative_to(folder)}\t{info.st_size}\t{info.st_mtime_ns}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()


def source_lengths(base: BaseModel, sources: Sequence[str], max_length: int) -> list[int]:
    """Tokens of each source (truncated), to sort a generation's batches by length."""
    encoded = base.tokenizer(list(sources), max_length=max_length, truncation=True)["input_ids"]
    return [len(ids) for ids in encoded]


def generate_texts(base: BaseModel, sources: Sequence[str], options: DecodeOptions) -> list[str]:
    """Decoded outputs of one batch."""
    import torch

    tokenizer = base.tokenizer
    tokenizer.padding_side = "left" if base.kind == "causal" else "right"
    inputs = tokenizer(
        list(sources), max_length=options.max_length, truncation=True, padding=True,
        return_tensors="pt", return_token_type_ids=False,
    ).to(base.device)  # fmt: skip
    with torch.inference_mode(), quiet_libraries():
        out = base.model.generate(
            **inputs,
            num_beams=options.num_beams,
            max_new_tokens=options.max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    if base.kind == "causal":
        out = out[:, inputs["input_ids"].shape[1] :]
    return [text.strip() for text in tokenizer.batch_decode(out, skip_special_tokens=True)]
