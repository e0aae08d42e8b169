"""On-disk embedding cache (SQLite), so later runs with other options reuse vectors.

Keys are sha256 of the exact text inside a namespace that fixes checkpoint, revision, maximum
length and precision; a vector is only ever reused for the same model and settings.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from lampctl.errors import LampctlError


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    def __init__(self, folder: Path, namespace: str) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # Used from the encoder's look-up thread and its main thread, one at a time.
            self._db = sqlite3.connect(
                folder / f"embeddings-{namespace}.sqlite", timeout=60, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)"
            )
        except (OSError, sqlite3.Error) as exc:
            raise LampctlError(f"{folder}: cannot open the embedding cache: {exc}") from None
        self._lock = threading.Lock()

    def get_many(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        with self._lock:
            return self._get_many(texts)

    def _get_many(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        by_key = {_key(t): t for t in texts}
        keys = list(by_key)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, vector FROM vectors WHERE key IN ({marks})", chunk
            )
            for key, blob in rows:
                found[by_key[key]] = np.frombuffer(blob, dtype=np.float32).copy()
        return found

    def put_many(self, vectors: Mapping[str, np.ndarray]) -> None:
        rows = [(_key(t), np.asarray(v, dtype=np.float32).tobytes()) for t, v in vectors.items()]
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)
