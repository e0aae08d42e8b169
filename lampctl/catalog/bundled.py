"""The bundled YAML files (``configs/``, installed as ``lampctl.configs``) and the task registry
loaded from them, with a user's ``--config`` over it: the one place that joins the typed
registry (``tasks``) and its parser (``taskfile``)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from lampctl import settings
from lampctl.catalog.taskfile import merge_yaml, parse_registry
from lampctl.catalog.tasks import Registry
from lampctl.errors import ConfigError
from lampctl.io.yamlfile import read_yaml


def bundled_text(name: str) -> str:
    """A YAML file shipped in ``lampctl.configs`` (the repository's ``configs/``)."""
    try:
        folder = resources.files("lampctl.configs")
    except ModuleNotFoundError:  # running from a source checkout that was not installed
        folder = Path(__file__).resolve().parents[2] / "configs"  # type: ignore[assignment]
    try:
        return folder.joinpath(name).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"bundled config {name} is missing from the installation: {exc}"
        ) from None


def load_registry(user_config: Path | None = None) -> Registry:
    """The bundled registry, with ``user_config`` (or ``$LAMPCTL_CONFIG``) layered over it."""
    data = read_yaml(bundled_text("tasks.yaml"), "bundled tasks.yaml")
    user_config = settings.config_path(user_config)
    origin = "bundled tasks.yaml"
    if user_config is not None:
        try:
            raw = user_config.read_bytes()
        except IsADirectoryError:
            raise ConfigError(f"{user_config}: is a folder, expected a YAML config file") from None
        except OSError as exc:
            raise ConfigError(f"{user_config}: cannot read config: {exc.strerror}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{user_config}: not a UTF-8 text file (byte 0x{raw[exc.start]:02x} at offset "
                f"{exc.start}); expected a YAML config"
            ) from None
        origin = str(user_config)
        data = merge_yaml(data, read_yaml(text, origin))
    return parse_registry(data, origin)


_REGISTRIES: dict[tuple[Any, ...], Registry] = {}


def cached_registry(config: Path | str | None = None) -> Registry:
    """The task registry: the bundled ``configs/tasks.yaml``, with ``config`` (or
    LAMPCTL_CONFIG) layered over it. Read once per process for the same config file as it is
    (the command and the API share it); a config that changes on disk is read again."""
    path = settings.config_path(Path(config) if config is not None else None)
    key: tuple[Any, ...] = (None,)
    if path is not None:
        try:
            info = path.stat()
            key = (str(path.resolve()), info.st_mtime_ns, info.st_size)
        except OSError:  # let the loader name the problem
            return load_registry(path)
    if key not in _REGISTRIES:
        _REGISTRIES[key] = load_registry(path)
    return _REGISTRIES[key]
