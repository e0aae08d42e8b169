"""What ``lampctl config`` and ``lampctl env`` report: every setting with where its value came
from, and the machine lampctl runs on (versions, devices, whether the encoder can be had)."""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lampctl import __version__, settings


@dataclass(frozen=True)
class Setting:
    """One setting: its key in ``lampctl.yaml``, its variable, its value now and its source
    (``environment``, the settings file's path, or ``default``)."""

    key: str
    variable: str
    value: str | None
    source: str


def current_settings() -> list[Setting]:
    """Every setting the settings file can hold, as every command reads it now (a setting
    nobody set shows its default)."""
    from lampctl.catalog.bundled import cached_registry as registry

    defaults = {
        "data_dir": str(settings.DEFAULT_DATA_DIR),
        "checkpoint": registry().encoder.checkpoint,
        "device": "auto",
        "precision": "fp32",
        "cache_dir": str(settings.cache_root()),
    }
    rows = []
    for key, variable in settings.FILE_KEYS.items():
        value = settings.get(variable)
        rows.append(Setting(key, variable, value or defaults.get(key), settings.source(variable)))
    return rows


def set_setting(key: str, value: str | None, path: Path | str | None = None) -> Path:
    """``lampctl config set KEY VALUE`` (``unset``: value None): the settings file written."""
    return settings.write_setting(key, value, Path(path) if path is not None else None)


def _version_of(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(check_encoder: bool = True) -> dict[str, Any]:
    """Versions, settings, devices and whether the encoder checkpoint in force can be had
    here (a local folder, or the Hugging Face cache; the hub is not asked)."""
    from lampctl.catalog.bundled import cached_registry as registry
    from lampctl.retrieval.encoder import encoder_config

    report: dict[str, Any] = {
        "lampctl": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {
            name: _version_of(name)
            for name in ("torch", "transformers", "huggingface_hub", "peft", "typer", "msgspec")
        },
        "settings_file": str(settings.settings_file() or "") or None,
        "settings": [s.__dict__ for s in current_settings()],
        "hub_offline": settings.hub_offline(),
    }
    report["devices"] = _devices() if report["packages"]["torch"] else ["cpu (torch missing)"]
    if check_encoder:
        encoder = encoder_config(registry())
        report["encoder"] = {"checkpoint": encoder.checkpoint, **_reachable(encoder.checkpoint)}
    return report


def _devices() -> list[str]:
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += [
            f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())
        ]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def _reachable(checkpoint: str) -> dict[str, Any]:
    """Whether ``checkpoint`` loads here without the network: a folder, or in the cache."""
    local = Path(checkpoint).expanduser()
    if local.is_dir():
        ok = (local / "config.json").is_file()
        return {"where": "folder", "available": ok, **({} if ok else {"why": "no config.json"})}
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(checkpoint, local_files_only=True)
    except Exception as exc:  # not cached: the hub library raises several kinds here
        return {"where": "hub", "available": False, "why": type(exc).__name__}
    return {"where": "hub cache", "available": True, "folder": folder}
