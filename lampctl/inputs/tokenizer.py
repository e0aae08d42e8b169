"""The model's tokenizer as ``prompts`` asks it: the Rust backend for the bulk of the work, and
the transformers tokenizer only where the backend alone is not known to answer the same.

Loading a tokenizer with transformers' ``AutoTokenizer`` imports transformers and, through the
model configuration code, torch: seconds, more than tokenizing a LaMP set takes. So the first
time a tokenizer is used (per tokenizer files and library versions) it is loaded with
``AutoTokenizer`` and inspected, and the verdict is kept in lampctl's cache folder:

- ``generic``: its class adds nothing to the generic ``PreTrainedTokenizerFast`` for the calls
  made here (same methods, same settings, same backend), so later loads may use that class;
- ``backend``: moreover every call made here is answered by the backend alone: encoding is the
  backend's ``encode_batch``, decoding its ``decode_batch`` with no clean-up after it, and the
  truncation side is right. This is checked once more on a probe, with the backend as saved.
  The backend, as transformers set it up (added and special tokens included), is kept beside
  the verdict, and later runs load only it, with ``tokenizers``.

The calls the backend cannot answer alone (a truncation to fewer tokens than the special
tokens, which tokenizers refuses) load the transformers tokenizer on first use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lampctl import settings
from lampctl.errors import ModelLoadError

# What the generic class must share with the tokenizer's own for our calls to behave alike.
_SAME_METHODS = (
    "__call__",
    "_encode_plus",
    "_batch_encode_plus",
    "encode",
    "decode",
    "batch_decode",
    "_decode",
    "convert_tokens_to_string",
    "num_special_tokens_to_add",
    "build_inputs_with_special_tokens",
    "set_truncation_and_padding",
    "clean_up_tokenization",
)
_SAME_ATTRIBUTES = (
    "clean_up_tokenization_spaces",
    "truncation_side",
    "padding_side",
    "all_special_ids",
    "all_special_tokens",
    "is_fast",
    "split_special_tokens",
)
# Texts the backend's answers are compared on: punctuation, contractions, accents, CJK,
# whitespace runs, digits, brackets, markup.
_PROBE = (
    "Hello , world . It 's n't 're ' quoted ' ?! café naïve über 東京 кот",
    'a   b\tc\nd 1,000.5 $x (y) [z] <t> -- ... "q" e-mail@x.org',
    "",
)


class ModelTokenizer:
    """A loaded tokenizer: its backend (``tokenizers.Tokenizer``; None when it is not a fast
    tokenizer) and what is known of how transformers' calls relate to it.

    - ``special``: the special tokens a single sequence gets, ``num_special_tokens_to_add()``;
    - ``right_truncation``: truncation keeps a text's first tokens;
    - ``backend_decodes``: ``decode_batch(ids, skip_special_tokens=True)`` is ``batch_decode``'s
      answer;
    - ``verified``: the backend's ``encode_batch`` is known to give the transformers call's ids
      (a cached verdict); otherwise the caller compares them on its first batch;
    - ``full``: the transformers tokenizer, loaded on first use when not loaded already.
    """

    def __init__(
        self,
        folder: str,
        backend: Any | None,
        *,
        special: int,
        right_truncation: bool,
        backend_decodes: bool,
        verified: bool,
        full: Any | None = None,
        load_full: Callable[[], Any] | None = None,
    ) -> None:
        self.folder = folder
        self.backend = backend
        self.special = special
        self.right_truncation = right_truncation
        self.backend_decodes = backend_decodes
        self.verified = verified
        self._full = full
        self._load_full = load_full

    @property
    def full(self) -> Any:
        if self._full is None:
            if self._load_full is None:
                raise RuntimeError(f"tokenizer {self.folder} has no transformers loader")
            self._full = self._load_full()
        return self._full

    @property
    def transformers_loaded(self) -> bool:
        return self._full is not None

    @classmethod
    def from_transformers(cls, tokenizer: Any, folder: str = "") -> ModelTokenizer:
        """Wrap a tokenizer transformers loaded; its backend's answers are checked as used."""
        fast = bool(getattr(tokenizer, "is_fast", False))
        return cls(
            folder,
            tokenizer.backend_tokenizer if fast else None,
            special=int(tokenizer.num_special_tokens_to_add(pair=False)),
            right_truncation=getattr(tokenizer, "truncation_side", "right") == "right",
            backend_decodes=fast and _decodes_like_backend(tokenizer, tokenizer.backend_tokenizer),
            verified=False,
            full=tokenizer,
        )


def open_tokenizer(name: str, revision: str | None = None) -> ModelTokenizer:
    """A Hugging Face tokenizer by hub id or folder, resolved once and offline-aware (the same
    lookup and messages as ``--checkpoint``)."""
    from lampctl.retrieval.encoder import locate_checkpoint

    folder = locate_checkpoint(name, revision, kind="tokenizer")
    saved = open_saved_tokenizer(folder)
    if saved is not None:
        return saved
    verdict_file = verdict_path(Path(folder))
    verdict = _read_verdict(verdict_file)
    tokenizer = _load_transformers(folder, generic=verdict.get("generic") is True)
    # No verdict yet, or one whose saved backend is gone or damaged: (re)record it. The files
    # and versions it is named by are unchanged, so a generic verdict still holds.
    if verdict_file is not None and (not verdict or verdict.get("backend") is True):
        _record_verdict(verdict_file, tokenizer, folder)
    return ModelTokenizer.from_transformers(tokenizer, folder)


def open_saved_tokenizer(folder: str) -> ModelTokenizer | None:
    """The tokenizer in ``folder`` (as ``locate_checkpoint`` found it) as its saved backend
    alone, when an earlier load's verdict allows (a few milliseconds); None otherwise."""
    verdict_file = verdict_path(Path(folder))
    verdict = _read_verdict(verdict_file)
    backend = _saved_backend(verdict_file, verdict) if verdict.get("backend") is True else None
    if backend is None:
        return None
    return ModelTokenizer(
        folder,
        backend,
        special=int(verdict["special"]),
        right_truncation=True,
        backend_decodes=True,
        verified=True,
        load_full=lambda: _load_transformers(folder, generic=True),
    )


def _load_transformers(folder: str, generic: bool) -> Any:
    from transformers.utils import logging as hf_logging

    # Errors only, for the rest of the process: every long text would warn that it exceeds
    # the model's length, and truncation is the point here.
    hf_logging.set_verbosity_error()
    try:
        if generic:
            from transformers import PreTrainedTokenizerFast

            return PreTrainedTokenizerFast.from_pretrained(folder)
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load tokenizer from {folder}: {exc}") from None


# --------------------------------------------------------------------------- the verdict


def verdict_path(folder: Path) -> Path | None:
    """Where the verdict on the tokenizer in ``folder`` is kept: named by the tokenizer's files
    and the versions of transformers and tokenizers, so a change to any makes a new one."""
    from importlib.metadata import PackageNotFoundError, version

    if not (folder / "tokenizer.json").is_file():
        return None
    try:
        stamp = f"{version('transformers')} {version('tokenizers')}"
    except PackageNotFoundError:
        return None
    digest = hashlib.sha256(stamp.encode())
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
    ):
        if (folder / name).is_file():
            digest.update(name.encode() + (folder / name).read_bytes())
    return settings.cache_root() / "tokenizers" / f"{digest.hexdigest()[:32]}.json"


def _checksum(verdict: dict[str, Any]) -> str:
    """The sha256 of every field of a verdict but the checksum itself."""
    fields = {k: v for k, v in verdict.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _read_verdict(path: Path | None) -> dict[str, Any]:
    """The cached verdict, or {} when there is none or it is not whole: every field is covered
    by its checksum, so an entry edited in place (``special: 2`` -> ``0``) is not trusted."""
    if path is None or not path.is_file():
        return {}
    try:
        verdict = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(verdict, dict) or verdict.get("checksum") != _checksum(verdict):
        return {}
    return verdict


def _backend_path(verdict_file: Path) -> Path:
    return verdict_file.with_name(verdict_file.stem + ".backend.json")


def _saved_backend(verdict_file: Path | None, verdict: dict[str, Any]) -> Any | None:
    """The backend kept with the verdict, if it is there, whole, and set as recorded."""
    if verdict_file is None or not isinstance(verdict.get("special"), int):
        return None
    path = _backend_path(verdict_file)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if hashlib.sha256(text.encode()).hexdigest() != verdict.get("backend_sha256"):
        return None
    from tokenizers import Tokenizer

    try:
        backend = Tokenizer.from_str(text)
    except Exception:  # a damaged cache file is not the user's problem: load as transformers does
        return None
    backend.encode_special_tokens = bool(verdict.get("split_special_tokens", False))
    return backend


def _record_verdict(path: Path, tokenizer: Any, folder: str) -> None:
    from transformers import PreTrainedTokenizerFast

    try:
        generic = PreTrainedTokenizerFast.from_pretrained(folder)
    except (OSError, ValueError):
        same = False
    else:
        same = (
            tokenizer.backend_tokenizer.to_str() == generic.backend_tokenizer.to_str()
            and all(
                getattr(type(tokenizer), m, None) is getattr(type(generic), m, None)
                for m in _SAME_METHODS
            )
            and all(
                getattr(tokenizer, a, None) == getattr(generic, a, None) for a in _SAME_ATTRIBUTES
            )
        )
    verdict: dict[str, Any] = {"generic": same, "class": type(tokenizer).__name__}
    backend_text = None
    if same and tokenizer.truncation_side == "right":
        backend_text = _backend_alone(tokenizer)
    if backend_text is not None:
        verdict.update(
            backend=True,
            special=int(tokenizer.num_special_tokens_to_add(pair=False)),
            split_special_tokens=bool(tokenizer.split_special_tokens),
            backend_sha256=hashlib.sha256(backend_text.encode()).hexdigest(),
        )
    else:
        verdict["backend"] = False
    from lampctl.errors import LampctlError
    from lampctl.io.data import atomic_writer, write_json
    from lampctl.reporting import notice_once

    verdict["checksum"] = _checksum(verdict)
    try:
        if backend_text is not None:
            with atomic_writer(_backend_path(path)) as handle:
                handle.write(backend_text)
        write_json(path, verdict)
    except (OSError, LampctlError) as exc:  # no cache to write: go on without it
        why = str(exc).split(": cannot write: ")[-1]
        notice_once(
            "cache",
            f"the lampctl cache {path.parent.parent} cannot be written ({why}); going on "
            "without it (set LAMPCTL_CACHE_DIR to a writable folder to keep it)",
        )


def _backend_alone(tokenizer: Any) -> str | None:
    """The backend, saved, when it alone answers the calls made here as the (generic fast)
    tokenizer does: encoding without special tokens, counting them, and decoding without them
    and with no clean-up. Checked on a probe with the backend as it will be loaded."""
    from tokenizers import Tokenizer

    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    backend.no_padding()
    text = backend.to_str()
    reloaded = Tokenizer.from_str(text)
    reloaded.encode_special_tokens = bool(tokenizer.split_special_tokens)
    probe = [*_PROBE, " ".join(tokenizer.all_special_tokens) + " end"]
    expected = [list(x) for x in tokenizer(probe, add_special_tokens=False)["input_ids"]]
    got = [e.ids for e in reloaded.encode_batch(probe, add_special_tokens=False)]
    if got != expected:
        return None
    if tokenizer.num_special_tokens_to_add(pair=False) != reloaded.num_special_tokens_to_add(False):
        return None
    if not _decodes_like_backend(tokenizer, reloaded):
        return None
    return text


def _decodes_like_backend(tokenizer: Any, backend: Any) -> bool:
    """Whether ``batch_decode(ids, skip_special_tokens=True)`` is ``backend.decode_batch``: the
    generic fast tokenizer's ``_decode`` (the backend's decode, then a clean-up only if it is
    on), the clean-up off, and the same answers on a probe of texts and special tokens."""
    if getattr(tokenizer, "clean_up_tokenization_spaces", True):
        return False
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError:  # pragma: no cover - transformers is a dependency
        return False
    if type(tokenizer)._decode is not PreTrainedTokenizerFast._decode:
        return False
    probe = [*_PROBE, " ".join(tokenizer.all_special_tokens) + " end"]
    ids = [list(x) for x in tokenizer(probe)["input_ids"]]
    ids += [x[1:-1] for x in ids] + [list(tokenizer.all_special_ids)]
    expected = tokenizer.batch_decode(ids, skip_special_tokens=True)
    return list(backend.decode_batch(ids, skip_special_tokens=True)) == list(expected)
