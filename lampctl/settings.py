"""Every setting lampctl reads from the environment, in one place, read at call time.

Precedence, for each setting that also has an option: the command's option, then the
environment variable, then the ``--config`` file (``LAMPCTL_CONFIG``), then the bundled
registry in ``configs/``. Values are read when a command needs them, never at import, so tests
(and notebooks) can change them; the test suite clears every variable named in ``VARIABLES``
before each test.

The Hugging Face offline switches follow huggingface_hub's own reading (``constants.py``):
``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE`` set to 1, ON, YES or TRUE (any case) means
offline; anything else, ``0`` and ``off`` included, does not.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lampctl.encoder import EncoderConfig
    from lampctl.tasks import Registry

DEFAULT_DATA_DIR = Path("data_raw")
AVOCADO_ENV = "LAMPCTL_AVOCADO_DIR"
BASE_URL_ENV = "LAMPCTL_BASE_URL"  # a mirror of the LaMP server for `download`
DEFAULT_MAX_EMAIL_BYTES = 64 << 20  # avocado build: one email larger than this is refused

# name -> what it sets (and its default), as the README's table shows them.
VARIABLES: dict[str, str] = {
    "LAMPCTL_DATA_DIR": "the data dir (--data-dir; default data_raw)",
    "LAMPCTL_CONFIG": "a YAML file layered over the bundled registry (--config)",
    "LAMPCTL_BASE_URL": "the download server or mirror (download --base-url)",
    "LAMPCTL_AVOCADO_DIR": "the licensed Avocado corpus (avocado build --avocado-dir)",
    "LAMPCTL_CHECKPOINT": "the encoder checkpoint (--checkpoint; default facebook/contriever)",
    "LAMPCTL_REVISION": "the encoder's hub revision (--revision)",
    "LAMPCTL_DEVICE": "the encoder's device (--device; default auto)",
    "LAMPCTL_PRECISION": "the encoder's precision (--precision; default fp32)",
    "LAMPCTL_TOKENIZER": "the model's tokenizer for prompts (--tokenizer)",
    "LAMPCTL_CACHE_DIR": "embedding and tokenizer caches (default ~/.cache/lampctl)",
    "LAMPCTL_PROGRESS_SECONDS": "seconds between plain progress lines off a terminal (30)",
    "LAMPCTL_DEBUG": "1: show tracebacks instead of one-line errors",
    "LAMPCTL_TEST_DEVICE": "tests only: where the encoder tests run (default cpu)",
}

_TRUE = {"1", "ON", "YES", "TRUE"}


def is_true(value: str | None) -> bool:
    """huggingface_hub's notion of a true environment value."""
    return value is not None and value.strip().upper() in _TRUE


def get(name: str) -> str | None:
    """A known variable's value now, None when unset or empty."""
    if name not in VARIABLES:
        raise KeyError(f"{name} is not a lampctl setting")
    return os.environ.get(name) or None


def hub_offline() -> bool:
    """Whether the Hugging Face hub is switched off, as huggingface_hub reads it."""
    return is_true(os.environ.get("HF_HUB_OFFLINE")) or is_true(
        os.environ.get("TRANSFORMERS_OFFLINE")
    )


def debug() -> bool:
    return get("LAMPCTL_DEBUG") not in (None, "0")


def cache_root() -> Path:
    """Where lampctl keeps its caches: LAMPCTL_CACHE_DIR, else $XDG_CACHE_HOME/lampctl."""
    given = get("LAMPCTL_CACHE_DIR")
    if given:
        return Path(given).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "lampctl"


def progress_seconds() -> float:
    """Seconds between plain progress lines when stderr is not a terminal (a SLURM log)."""
    from lampctl.errors import ConfigError

    value = get("LAMPCTL_PROGRESS_SECONDS")
    if value is None:
        return 30.0
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also NaN
        raise ConfigError(f"LAMPCTL_PROGRESS_SECONDS={value!r}: expected seconds, 0 or more")
    return seconds


def data_dir(given: Path | str | None = None) -> Path:
    """The data dir: the one given, else LAMPCTL_DATA_DIR, else ``data_raw``."""
    if given is not None:
        return Path(given)
    return Path(get("LAMPCTL_DATA_DIR") or DEFAULT_DATA_DIR)


def config_path(given: Path | None = None) -> Path | None:
    """The user's YAML layered over the bundled registry: given, else LAMPCTL_CONFIG."""
    if given is not None:
        return given
    value = get("LAMPCTL_CONFIG")
    return Path(value) if value else None


ENCODER_VARIABLES = {
    "checkpoint": "LAMPCTL_CHECKPOINT",
    "revision": "LAMPCTL_REVISION",
    "device": "LAMPCTL_DEVICE",
    "precision": "LAMPCTL_PRECISION",
}


def encoder_settings(
    registry: Registry,
    checkpoint: str | None = None,
    revision: str | None = None,
    device: str | None = None,
    precision: str | None = None,
    batch_size: int | None = None,
    max_tokens: int | None = None,
    cache_dir: Path | None = None,
) -> EncoderConfig:
    """The encoder settings: each from its option, else its LAMPCTL_* variable, else the
    --config file's ``encoder:`` section, else the bundled registry."""
    from lampctl.encoder import EncoderConfig
    from lampctl.errors import ConfigError
    from lampctl.tasks import PRECISIONS

    defaults = registry.encoder

    def pick(name: str, given: str | None, default: str | None) -> str | None:
        if given is not None:
            return given
        return get(ENCODER_VARIABLES[name]) or default

    chosen_precision = pick("precision", precision, defaults.precision) or "fp32"
    if chosen_precision not in PRECISIONS:
        raise ConfigError(
            f"unknown precision {chosen_precision!r} (use {', '.join(PRECISIONS)}; "
            f"from --precision or {ENCODER_VARIABLES['precision']})"
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
