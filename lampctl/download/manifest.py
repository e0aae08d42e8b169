"""``MANIFEST.json`` (what was downloaded, from where, its sha256) and the data dir's lock."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from lampctl import __version__
from lampctl.errors import DownloadError, InputError, LampctlError
from lampctl.io.data import read_json, write_json

MANIFEST_NAME = "MANIFEST.json"
LOCK_NAME = ".lampctl-download.lock"
MANIFEST_DEPTH = 4  # a downloaded file sits at most this many folders below its manifest


# --------------------------------------------------------------------------- manifest


class Manifest:
    """``data_raw/MANIFEST.json``: what was downloaded, from where, and its sha256."""

    def __init__(self, path: Path, files: dict[str, dict[str, Any]]) -> None:
        self.path = path
        self.files = files
        self._lock = threading.Lock()

    @classmethod
    def load(cls, data_dir: Path) -> Manifest:
        path = data_dir / MANIFEST_NAME
        if not path.exists():
            return cls(path, {})
        data = read_json(path, "download manifest")
        if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
            raise InputError(f"{path}: not a lampctl download manifest")
        for name, entry in data["files"].items():  # every reader may trust the shape
            if not isinstance(entry, dict) or not all(
                isinstance(entry.get(key), kind)
                for key, kind in (("sha256", str), ("size", int))
                if key in entry
            ):
                raise InputError(
                    f"{path}: not a lampctl download manifest (its entry for {name!r} is "
                    "malformed); remove it and run 'lampctl download --verify'"
                )
        return cls(path, data["files"])

    def get(self, rel: str) -> dict[str, Any] | None:
        return self.files.get(rel)

    def record(self, rel: str, entry: dict[str, Any]) -> None:
        with self._lock:
            self.files[rel] = entry
            write_json(
                self.path,
                {"lampctl": __version__, "files": dict(sorted(self.files.items()))},
                indent=1,
            )


def downloaded_sha256(path: Path, stat: os.stat_result) -> str | None:
    """The sha256 that ``lampctl download`` recorded for ``path``, while the file is still the
    one it wrote: the nearest ``MANIFEST.json`` in the folders above it (at most
    ``MANIFEST_DEPTH``) has an entry for it with the same size and mtime. Where there is none,
    the entry predates recorded mtimes, or the manifest cannot be read: None (hash the file)."""
    where = Path(os.path.abspath(path))
    for folder in list(where.parents)[:MANIFEST_DEPTH]:
        if not (folder / MANIFEST_NAME).is_file():
            continue
        try:
            entry = Manifest.load(folder).get(where.relative_to(folder).as_posix())
        except LampctlError:
            return None
        if (
            isinstance(entry, dict)
            and entry.get("size") == stat.st_size
            and entry.get("mtime_ns") == stat.st_mtime_ns
            and isinstance(entry.get("sha256"), str)
        ):
            return str(entry["sha256"])
        return None
    return None


def acquire_lock(data_dir: Path) -> Any:
    """A lock on the data dir, so two downloads never write the same files."""
    from filelock import FileLock, Timeout

    data_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(data_dir / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise DownloadError(
            f"{data_dir}: another lampctl download is running on this folder "
            f"(lock {data_dir / LOCK_NAME}); wait for it to finish"
        ) from None
    return lock
