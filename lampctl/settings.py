"""Every setting lampctl reads, from the environment or a project's settings file, in one
place, read at call time.

Precedence, for each setting that also has an option: the command's option, then the
environment variable, then the project's settings file (``lampctl.yaml``: ``lampctl config set
checkpoint ./minilm`` writes it), then the ``--config`` file (``LAMPCTL_CONFIG``), then the
bundled registry in ``configs/``.

The settings file is the nearest ``lampctl.yaml`` in the working folder or a folder above it
(as git finds its repository), or the file ``LAMPCTL_SETTINGS`` names (``none``: no file). It
maps short keys (``checkpoint``, ``data_dir``...) to values; a relative path in it is relative
to the file's folder, so one file holds for every command run anywhere below it.

Values are read when a command needs them, never at import, so tests
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
    pass

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
    "LAMPCTL_SETTINGS": "the settings file instead of the nearest lampctl.yaml (none: no file)",
    "LAMPCTL_TEST_DEVICE": "tests only: where the encoder tests run (default cpu)",
}

_TRUE = {"1", "ON", "YES", "TRUE"}


def is_true(value: str | None) -> bool:
    """huggingface_hub's notion of a true environment value."""
    return value is not None and value.strip().upper() in _TRUE


def get(name: str) -> str | None:
    """A known setting's value now: its environment variable, else the settings file's
    value; None when neither gives one."""
    if name not in VARIABLES:
        raise KeyError(f"{name} is not a lampctl setting")
    given = os.environ.get(name) or None
    if given is None and name in FILE_KEYS.values():
        return file_values().get(name)
    return given


def source(name: str) -> str:
    """Where ``get(name)`` takes its value from: ``environment``, the settings file's path,
    or ``default``."""
    if os.environ.get(name):
        return "environment"
    found = settings_file()
    if found is not None and name in file_values():
        return str(found)
    return "default"


# --------------------------------------------------------------------------- settings file

SETTINGS_FILE = "lampctl.yaml"
# key in lampctl.yaml -> the variable it stands for (the environment still wins).
FILE_KEYS: dict[str, str] = {
    "data_dir": "LAMPCTL_DATA_DIR",
    "config": "LAMPCTL_CONFIG",
    "base_url": "LAMPCTL_BASE_URL",
    "avocado_dir": "LAMPCTL_AVOCADO_DIR",
    "checkpoint": "LAMPCTL_CHECKPOINT",
    "revision": "LAMPCTL_REVISION",
    "device": "LAMPCTL_DEVICE",
    "precision": "LAMPCTL_PRECISION",
    "tokenizer": "LAMPCTL_TOKENIZER",
    "cache_dir": "LAMPCTL_CACHE_DIR",
}
_PATH_KEYS = {"data_dir", "config", "avocado_dir", "cache_dir"}  # always folders or files
_MODEL_KEYS = {"checkpoint", "tokenizer"}  # a hub id, or a folder


def settings_file() -> Path | None:
    """The settings file in force: LAMPCTL_SETTINGS's, else the nearest ``lampctl.yaml`` in
    the working folder or above it; None when there is none."""
    named = os.environ.get("LAMPCTL_SETTINGS")
    if named:
        return None if named.strip().lower() == "none" else Path(named).expanduser()
    here = Path.cwd()
    for folder in (here, *here.parents):
        candidate = folder / SETTINGS_FILE
        if candidate.is_file():
            return candidate
    return None


_FILE_CACHE: dict[tuple[str, int, int], dict[str, str]] = {}


def file_values() -> dict[str, str]:
    """The settings file's values by variable name (``{"LAMPCTL_CHECKPOINT": ...}``), paths
    made absolute against the file's folder. Read again when the file changes."""
    path = settings_file()
    if path is None:
        return {}
    try:
        info = path.stat()
    except FileNotFoundError:
        if os.environ.get("LAMPCTL_SETTINGS"):
            from lampctl.errors import ConfigError

            raise ConfigError(f"{path}: no such settings file (from LAMPCTL_SETTINGS)") from None
        return {}
    key = (str(path.resolve()), info.st_mtime_ns, info.st_size)
    if key not in _FILE_CACHE:
        _FILE_CACHE.clear()
        _FILE_CACHE[key] = {
            FILE_KEYS[name]: value for name, value in read_settings_file(path).items()
        }
    return _FILE_CACHE[key]


def read_settings_file(path: Path) -> dict[str, str]:
    """``{key: value}`` of a settings file, checked: known keys, scalar values; relative
    paths resolved against the file's folder."""
    from lampctl.errors import ConfigError
    from lampctl.io.yamlfile import read_yaml

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    data = read_yaml(text, str(path)) if text.strip() else {}
    values: dict[str, str] = {}
    for name, value in data.items():
        if name not in FILE_KEYS:
            raise ConfigError(
                f"{path}: unknown setting {name!r} (known: {', '.join(sorted(FILE_KEYS))})"
            )
        if value is None:
            continue
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{path}: {name} must be one value, not a {type(value).__name__}")
        values[name] = _resolved(name, str(value), path.parent)
    return values


def _resolved(name: str, value: str, folder: Path) -> str:
    """A path in the settings file, relative to the file's folder; a hub id as it is."""
    looks_like_path = value.startswith((".", "/", "~")) or (folder / value).exists()
    if name in _PATH_KEYS or (name in _MODEL_KEYS and looks_like_path):
        return str((folder / Path(value).expanduser()).resolve())
    return value


def write_setting(name: str, value: str | None, path: Path | None = None) -> Path:
    """Set (or, with None, remove) one key of the settings file in force (else a new
    ``lampctl.yaml`` in the working folder), written whole or not at all. Gives its path."""
    import yaml

    from lampctl.errors import OptionError
    from lampctl.io.data import atomic_writer

    if name not in FILE_KEYS:
        raise OptionError(
            "key", f"unknown setting {name!r} (known: {', '.join(sorted(FILE_KEYS))})"
        )
    target = path or settings_file() or Path(SETTINGS_FILE)
    current: dict[str, object] = {}
    if target.exists():
        read_settings_file(target)  # a broken file is an error before it is replaced
        from lampctl.io.yamlfile import read_yaml

        current = read_yaml(target.read_text(encoding="utf-8"), str(target)) or {}
    if value is None:
        current.pop(name, None)
    elif name in _PATH_KEYS or (name in _MODEL_KEYS and Path(value).expanduser().exists()):
        # Given from here; kept relative to the file's folder, where it is read from.
        absolute = Path(value).expanduser().resolve()
        current[name] = os.path.relpath(absolute, target.parent.resolve())
    else:
        current[name] = value
    with atomic_writer(target) as handle:
        handle.write(yaml.safe_dump(current, sort_keys=True, default_flow_style=False))
    return target


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


PRECISIONS = ("fp32", "fp16", "bf16")  # what --precision and LAMPCTL_PRECISION accept

ENCODER_VARIABLES = {
    "checkpoint": "LAMPCTL_CHECKPOINT",
    "revision": "LAMPCTL_REVISION",
    "device": "LAMPCTL_DEVICE",
    "precision": "LAMPCTL_PRECISION",
}
