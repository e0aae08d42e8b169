"""Mean-pooling text encoder (Contriever and other BERT-family checkpoints).

torch and transformers are imported only when an encoder is built, so BM25 and recency runs
never load them. A model is loaded once per process and reused for every file and question.

Speed comes from work not done, not from changed maths:
- each distinct text is encoded once (an in-memory cache, optionally an on-disk one too);
- texts are tokenized once, sorted by length and batched by a token budget, so batches carry
  little padding;
- the model runs under ``torch.inference_mode``.
Pooling is the reference's: mean over the attention mask, in fp32.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lampctl import settings
from lampctl.errors import ModelLoadError
from lampctl.settings import PRECISIONS

if TYPE_CHECKING:
    from lampctl.catalog.tasks import Registry

LogFn = Callable[[str], None]


@dataclass(frozen=True)
class EncoderConfig:
    checkpoint: str = "facebook/contriever"
    revision: str | None = None
    device: str = "auto"
    precision: str = "fp32"
    batch_size: int = 32
    max_tokens_per_batch: int = 16384
    cache_dir: Path | None = None
    memory_cache_items: int = 1_000_000
    # Where the checkpoint's files are, once ``locate_checkpoint`` found them (a local folder);
    # ``checkpoint`` stays the name that identifies the model in records and caches.
    location: str | None = None


HUB_ENDPOINT_DEFAULT = "https://huggingface.co"


def encoder_config(
    registry: Registry,
    checkpoint: str | None = None,
    revision: str | None = None,
    device: str | None = None,
    precision: str | None = None,
    batch_size: int | None = None,
    max_tokens: int | None = None,
    cache_dir: Path | None = None,
) -> EncoderConfig:
    """The encoder's settings: each from its option, else its LAMPCTL_* variable (or the
    settings file), else the --config file's ``encoder:`` section, else the bundled registry."""
    from lampctl.errors import ConfigError

    defaults = registry.encoder

    def pick(name: str, given: str | None, default: str | None) -> str | None:
        if given is not None:
            return given
        return settings.get(settings.ENCODER_VARIABLES[name]) or default

    chosen_precision = pick("precision", precision, defaults.precision) or "fp32"
    if chosen_precision not in PRECISIONS:
        raise ConfigError(
            f"unknown precision {chosen_precision!r} (use {', '.join(PRECISIONS)}; "
            f"from --precision or {settings.ENCODER_VARIABLES['precision']})"
        )
    return EncoderConfig(
        checkpoint=pick("checkpoint", checkpoint, defaults.checkpoint) or defaults.checkpoint,
        revision=pick("revision", revision, defaults.revision),
        device=pick("device", device, defaults.device) or "auto",
        precision=chosen_precision,
        batch_size=batch_size or defaults.batch_size,
        max_tokens_per_batch=max_tokens or defaults.max_tokens_per_batch,
        cache_dir=cache_dir,
    )


def _offline_fix(kind: str, name: str, offline: bool) -> str:
    """How to get ``name`` onto a node without network, in the words of today's tools (the
    ``hf`` command of huggingface_hub 1.x; ``huggingface-cli`` is gone)."""
    # Both spellings: the Python argument and the command-line option (one message serves
    # lampctl.rank() and lampctl rank alike).
    option = (
        "tokenizer=PATH (the CLI's --tokenizer PATH, or LAMPCTL_TOKENIZER)"
        if kind == "tokenizer"
        else "checkpoint=PATH (the CLI's --checkpoint PATH, or LAMPCTL_CHECKPOINT)"
    )
    then = "" if offline else " and set HF_HUB_OFFLINE=1 there"
    return (
        f"on a node without network pass a local copy with {option}, or download it once "
        f"where there is network (for example 'hf download {name}' on a login node, into the "
        f"same HF_HOME){then}"
    )


def _looks_local(checkpoint: str) -> bool:
    return checkpoint.startswith((".", "/", "~")) or checkpoint.count("/") > 1 or "\\" in checkpoint


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "spiece.model")


def locate_checkpoint(
    checkpoint: str,
    revision: str | None = None,
    timeout: float = 5.0,
    kind: str = "checkpoint",
) -> str:
    """A local folder holding ``checkpoint``'s files, found once, before any work starts.
    ``kind`` "tokenizer" accepts a folder that holds only a tokenizer.

    A folder is checked to hold a model; a hub id is looked up in the Hugging Face cache, and
    fetched only when the hub answers within ``timeout`` seconds. Each failure is one
    ``ModelLoadError`` that says how to fix it, instead of every job retrying the hub.
    """
    local = Path(checkpoint).expanduser()
    markers = TOKENIZER_FILES if kind == "tokenizer" else ("config.json",)
    if local.is_dir():
        if not any((local / name).is_file() for name in markers):
            what = "tokenizer" if kind == "tokenizer" else "model"
            raise ModelLoadError(
                f"{kind} folder {checkpoint} exists but holds no {what} (no "
                f"{' or '.join(markers)}); pass the folder that save_pretrained wrote"
            )
        return str(local)
    if local.exists():
        raise ModelLoadError(f"{kind} {checkpoint} is a file; pass the {kind}'s folder")
    if _looks_local(checkpoint):
        raise ModelLoadError(f"{kind} folder {checkpoint} does not exist")
    from huggingface_hub import snapshot_download

    try:
        return str(snapshot_download(checkpoint, revision=revision, local_files_only=True))
    except Exception:  # not cached (the hub library raises several kinds here)
        pass
    offline = settings.hub_offline()
    fix = _offline_fix(kind, checkpoint, offline)
    if offline:
        raise ModelLoadError(
            f"cannot load {kind} {checkpoint!r}: it is not in the Hugging Face cache and "
            f"the hub is off (HF_HUB_OFFLINE); {fix}"
        )
    endpoint = os.environ.get("HF_ENDPOINT", HUB_ENDPOINT_DEFAULT).rstrip("/")
    import httpx

    try:
        httpx.head(endpoint, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError as exc:
        reason = "timed out" if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
        raise ModelLoadError(
            f"cannot load {kind} {checkpoint!r}: it is not in the Hugging Face cache and the "
            f"hub ({endpoint}) cannot be reached ({reason}); {fix}"
        ) from None
    try:
        return str(
            snapshot_download(
                checkpoint,
                revision=revision,
                allow_patterns=["*.json", "*.txt", "*.model", "*.safetensors", "*.bin"],
                ignore_patterns=["*onnx*", "*openvino*", "*.msgpack", "*.h5", "*.ot"],
            )
        )
    except Exception as exc:  # no such repo, revision, or access
        raise ModelLoadError(
            f"cannot load {kind} {checkpoint!r} (revision {revision or 'main'}) from "
            f"{endpoint}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from None


def resolve_device(spec: str) -> str:
    """``auto`` picks cuda, then mps, then cpu; explicit devices are checked to exist."""
    import torch

    spec = spec.strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    if spec == "cpu":
        return "cpu"
    if spec == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ModelLoadError("device 'mps' is not available on this machine")
        return "mps"
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ModelLoadError(f"device {spec!r} requested but CUDA is not available")
        index = spec.partition(":")[2]
        if index:
            if not index.isdigit():
                raise ModelLoadError(f"bad device {spec!r} (use cuda or cuda:N)")
            if int(index) >= torch.cuda.device_count():
                raise ModelLoadError(
                    f"device {spec!r} does not exist ({torch.cuda.device_count()} CUDA devices)"
                )
        return spec
    raise ModelLoadError(f"unknown device {spec!r} (use auto, cpu, cuda, cuda:N or mps)")


def resolve_devices(spec: str) -> list[str]:
    """``auto``: every CUDA device, else one device chosen as by ``resolve_device``;
    otherwise a comma-separated list such as ``cuda:0,cuda:1`` (``cpu,cpu`` is allowed)."""
    spec = spec.strip().lower()
    if spec == "auto":
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [f"cuda:{i}" for i in range(count)] if count > 1 else [resolve_device("auto")]
    devices = [part.strip() for part in spec.split(",") if part.strip()]
    if not devices:
        raise ModelLoadError(f"no devices in {spec!r}")
    return [resolve_device(d) for d in devices]


_LOADED: dict[tuple[str, str | None, str, str], tuple[Any, Any]] = {}


def _load(
    checkpoint: str, revision: str | None, device: str, precision: str, location: str | None
) -> tuple[Any, Any]:
    key = (checkpoint, revision, device, precision)
    if key in _LOADED:
        return _LOADED[key]
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    source = location or locate_checkpoint(checkpoint, revision)
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        model = AutoModel.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot load checkpoint {checkpoint!r} from {source}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    finally:
        hf_logging.set_verbosity(previous)
        hf_logging.enable_progress_bar()
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(f"checkpoint {checkpoint!r} has no fast tokenizer")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    model = model.to(device=device, dtype=dtype).eval()
    _LOADED[key] = (tokenizer, model)
    return tokenizer, model


def max_length_of(tokenizer: Any, model: Any) -> int:
    """The smaller of the tokenizer's maximum and the model's position limit."""
    limits = [int(tokenizer.model_max_length)]
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions:
        limits.append(int(positions))
    return min(limits)


@dataclass
class PendingBatch:
    texts: list[str]
    missing: list[str]
    token_ids: list[list[int]]
    found: dict[str, np.ndarray]


@dataclass
class EncoderStats:
    requested: int = 0
    encoded: int = 0
    disk_hits: int = 0
    tokens: int = 0
    padded_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Encoder:
    """Texts to mean-pooled fp32 vectors, each distinct text encoded at most once."""

    def __init__(self, config: EncoderConfig, log: LogFn | None = None) -> None:
        if config.precision not in PRECISIONS:
            raise ModelLoadError(
                f"unknown precision {config.precision!r} (use {', '.join(PRECISIONS)})"
            )
        self.config = config
        self.device = resolve_device(config.device)
        if log:
            log(f"encoder {config.checkpoint} on {self.device} ({config.precision})")
        self.tokenizer, self.model = _load(
            config.checkpoint, config.revision, self.device, config.precision, config.location
        )
        self.max_length = max_length_of(self.tokenizer, self.model)
        self.stats = EncoderStats()
        self._memory: dict[str, np.ndarray] = {}
        identity = "\0".join(
            [config.checkpoint, config.revision or "", str(self.max_length), config.precision]
        )
        self.cache_namespace = hashlib.sha256(identity.encode()).hexdigest()[:16]
        self._disk = None
        if config.cache_dir is not None:
            from lampctl.retrieval.embcache import EmbeddingCache

            self._disk = EmbeddingCache(config.cache_dir, self.cache_namespace)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts`` (one row each, fp32), from cache where possible."""
        return self.finish(self.prepare(texts))

    def prepare(self, texts: Sequence[str]) -> PendingBatch:
        """Cache look-ups and tokenization: the part that can run on a thread while the model
        encodes the previous chunk."""
        distinct = list(dict.fromkeys(texts))
        found = {t: self._memory[t] for t in distinct if t in self._memory}
        missing = [t for t in distinct if t not in found]
        if missing and self._disk is not None:
            from_disk = self._disk.get_many(missing)
            self.stats.disk_hits += len(from_disk)
            found.update(from_disk)
            missing = [t for t in missing if t not in from_disk]
        return PendingBatch(list(texts), missing, self._tokenize(missing) if missing else [], found)

    def finish(self, pending: PendingBatch) -> np.ndarray:
        """Encode what ``prepare`` left, remember it, and return one row per requested text."""
        found = pending.found
        todo = [i for i, t in enumerate(pending.missing) if t not in self._memory]
        found.update({t: self._memory[t] for t in pending.missing if t in self._memory})
        if todo:
            texts = [pending.missing[i] for i in todo]
            vectors = self._run_model([pending.token_ids[i] for i in todo])
            fresh = dict(zip(texts, vectors, strict=True))
            if self._disk is not None:
                self._disk.put_many(fresh)
            self._remember(fresh)
            found.update(fresh)
            self.stats.encoded += len(texts)
        self.stats.requested += len(pending.texts)
        if not pending.texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([found[t] for t in pending.texts])

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def _remember(self, vectors: dict[str, np.ndarray]) -> None:
        limit = self.config.memory_cache_items
        overflow = len(self._memory) + len(vectors) - limit
        if overflow > 0:  # drop the oldest entries (dicts keep insertion order)
            for key in list(self._memory)[:overflow]:
                del self._memory[key]
        self._memory.update(vectors)

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices longest first, in batches of one padded width, within the token budget.

        Every text is padded to its own width bucket (``_padded``), never to a longer
        neighbour's: on CPU a vector then depends only on its text, not on what it was batched
        with, so caching, resuming and splitting work across devices cannot change a ranking.
        """
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        batches: list[list[int]] = []
        current: list[int] = []
        for index in order:
            width = self._padded(lengths[index])
            same_width = bool(current) and self._padded(lengths[current[0]]) == width
            fits = (len(current) + 1) * width <= self.config.max_tokens_per_batch
            if current and (not same_width or len(current) >= self.config.batch_size or not fits):
                batches.append(current)
                current = []
            current.append(index)
        if current:
            batches.append(current)
        return batches

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        encoded = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return list(encoded["input_ids"])

    def _run_model(self, token_ids: list[list[int]]) -> list[np.ndarray]:
        import torch

        lengths = [len(ids) for ids in token_ids]
        pad_id = self.tokenizer.pad_token_id or 0
        out: list[np.ndarray] = [np.empty(0, dtype=np.float32)] * len(token_ids)

        def collate(batch: list[int]) -> tuple[Any, Any]:
            width = self._padded(max(lengths[i] for i in batch))
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, index in enumerate(batch):
                ids[row, : lengths[index]] = torch.tensor(token_ids[index])
                mask[row, : lengths[index]] = 1
            if self.device != "cpu":
                ids, mask = ids.pin_memory(), mask.pin_memory()
            return ids, mask

        batches = self._batches(lengths)
        # Tensors for later batches are built on a thread while the model runs on this one.
        with ThreadPoolExecutor(max_workers=1) as pool, torch.inference_mode():
            for batch, (ids, mask) in zip(batches, pool.map(collate, batches), strict=True):
                ids = ids.to(self.device, non_blocking=True)
                mask = mask.to(self.device, non_blocking=True)
                hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
                vectors = mean_pool(hidden.float(), mask).cpu().numpy()
                for row, index in enumerate(batch):
                    out[index] = vectors[row]
                self.stats.tokens += sum(lengths[i] for i in batch)
                self.stats.padded_tokens += ids.numel()
        return out

    def _padded(self, width: int) -> int:
        """Pad to a multiple of 8 (tensor-core friendly; fewer distinct shapes)."""
        return min(-(-width // 8) * 8, self.max_length)


def mean_pool(hidden: Any, mask: Any) -> Any:
    """Mean of the token vectors over the attention mask (the LaMP reference's pooling)."""
    hidden = hidden.masked_fill(~mask[..., None].bool(), 0.0)
    return hidden.sum(dim=1) / mask.sum(dim=1)[..., None]
