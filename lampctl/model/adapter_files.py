"""One user's adapter folder: what ``peft train`` writes and ``peft predict`` reads.

``adapters/{user}/`` holds the two files peft's ``save_pretrained`` writes that loading needs
(``adapter_config.json``, ``adapter_model.safetensors``) and lampctl's record
(``lampctl_adapter.json``: the user's rows hashed, the base model, the options, each file's
sha256), which lets a rerun skip a user that is up to date. A folder appears whole or not at
all: written beside it, synced, then renamed into place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lampctl import __version__
from lampctl.errors import OutputError
from lampctl.io.data import sha256_file

if TYPE_CHECKING:
    from lampctl.model.options import TrainOptions
    from lampctl.model.training import UserRows

RECORD = "lampctl_adapter.json"
# How the adapter was trained: a record without it (or with another) is retrained. Each user
# draws from its own generators (lampctl.model.packing), so packing does not change it.
TRAINING = "per-user streams"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def adapter_record(base: str, kind: str, options: TrainOptions, user: UserRows) -> dict[str, Any]:
    return {
        "user_id": user.user,
        "rows": len(user.pairs),
        "rows_sha256": user.sha256,
        "base_model": base,
        "kind": kind,
        "options": options.as_record(),
        "training": TRAINING,
    }


def read_adapter_record(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def adapter_state(folder: Path, wanted: Callable[[str], dict[str, Any]]) -> str:
    """ "up to date", "new" or "stale: why" for one user's adapter folder; ``wanted`` gives
    the record wanted, given the model kind the folder's record names (before the model is
    loaded, that is the only word on its kind)."""
    if not folder.is_dir():
        return "new"
    record = read_adapter_record(folder)
    if record is None or not isinstance(record.get("kind"), str):
        return "stale: no record"
    for key, value in wanted(record["kind"]).items():
        if record.get(key) != value:
            return f"stale: other {key.replace('_', ' ')}"
    written = record.get("files") or {}
    for name in ADAPTER_FILES:
        path = folder / name
        if not path.is_file() or sha256_file(path) != written.get(name):
            return f"stale: {name} changed"
    return "up to date"


def save_adapter(
    folder: Path, record: dict[str, Any], weights: dict[str, Any], config: dict[str, Any]
) -> None:
    """An adapter (``weights``: tensors named as peft names them; ``config``: its
    ``adapter_config.json``) and its record into ``folder``, whole or not at all: written to
    a temp folder beside it, synced, then renamed into place (an older folder is moved aside
    first and removed after)."""
    from lampctl.io.data import owner_tag, process_umask

    parent = folder.parent
    tag = f"{owner_tag()}adapter"  # HOST-PID-adapter: what remove_dead_temp_folders reads
    temp = parent / f".{folder.name}.{tag}.tmp"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if temp.exists():
            shutil.rmtree(temp)
        _write_adapter(temp, weights, config)
        files = {name: sha256_file(temp / name) for name in ADAPTER_FILES}
        (temp / RECORD).write_text(
            json.dumps({"lampctl": __version__, **record, "files": files}, indent=1) + "\n",
            encoding="utf-8",
        )
        for path in temp.iterdir():
            path.chmod(0o666 & ~process_umask())
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        old = parent / f".{folder.name}.{tag}.old"
        if folder.exists() or folder.is_symlink():
            os.replace(folder, old)
        os.replace(temp, folder)
        _remove(old)  # a folder, or a file that stood where the adapter goes
        descriptor = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except Exception as exc:  # OSError; safetensors' own error on a full disk
        _remove(temp)
        why = getattr(exc, "strerror", None) or " ".join(str(exc).split()) or type(exc).__name__
        raise OutputError(f"{folder}: cannot write the adapter: {why}") from None


def _remove(path: Path) -> None:
    """A folder or file, gone (leftovers of a save); silent when already gone."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def _write_adapter(folder: Path, weights: dict[str, Any], config: dict[str, Any]) -> None:
    """The two files of a peft adapter that loading needs: the weights (safetensors, named as
    peft names them) and the config; without the model card peft also writes."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file(
        {name: tensor.detach().contiguous() for name, tensor in weights.items()},
        str(folder / ADAPTER_FILES[1]),
        metadata={"format": "pt"},
    )
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    (folder / ADAPTER_FILES[0]).write_text(text, encoding="utf-8")


def remove_dead_temp_folders(parent: Path) -> None:
    """Temp adapter folders (``.USER.HOST-PID-adapter.tmp`` or ``.old``) of killed runs on this
    host, judged as the atomic writer judges its temp files."""
    from lampctl.io.data import left_by_dead_writer

    if not parent.is_dir():
        return
    for path in parent.iterdir():
        name = path.name
        if name.startswith(".") and name.endswith((".tmp", ".old")) and path.is_dir():
            tag = name[1:-4].rpartition(".")[2]  # a host name has no dot in the tag
            if left_by_dead_writer(tag):
                shutil.rmtree(path, ignore_errors=True)
