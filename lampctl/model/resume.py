"""What an interrupted prediction leaves, and what a rerun may keep of it.

Finished answers are appended (synced) to a hidden ``.NAME.partial.jsonl`` beside the output.
Its first line names what every answer shares (the base model and a fingerprint of its files,
the decoding options, the precision, the task); each answer carries a key, the sha256 of its
source and of its user's adapter files (none: the base model). A rerun keeps only the
answers whose first line and key are those of now; the others (an edited question, a
retrained or replaced adapter, other decoding) are answered again and counted (``stale``).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def answer_key(source: str, adapter: str | None) -> str:
    """What one answer depends on beyond the run's shared settings: its source and its
    user's adapter (the sha256 of its files; None: the base model)."""
    return hashlib.sha256(json.dumps([source, adapter], ensure_ascii=False).encode()).hexdigest()


class Partial:
    """Finished rows of an interrupted run, kept beside the output: one JSON line per row
    (id, output, key), after a first line naming what all of them share. ``load`` keeps the
    rows whose key is the one wanted now and counts the others (``stale``)."""

    FORMAT = 2

    def __init__(self, output: Path, header: dict[str, Any]) -> None:
        self.path = partial_path(output)
        self.header = {"format": self.FORMAT, **header}
        self.done: dict[str, tuple[str, str]] = {}  # id -> (output, key)
        self.stale = 0
        self._handle: Any = None

    def load(self, wanted: dict[str, str]) -> dict[str, str]:
        """``wanted``: id -> key of every row of this run; the answers kept, by id."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return {}
        rows: list[dict[str, Any]] = []
        for line in lines[1:]:
            try:
                row = json.loads(line)
                rows.append({"id": str(row["id"]), "output": str(row["output"]),
                             "key": row.get("key")})  # fmt: skip
            except (ValueError, KeyError, TypeError):
                break  # a torn last line: the rows before it stand
        try:
            same_run = bool(lines) and json.loads(lines[0]) == self.header
        except ValueError:
            same_run = False
        for row in rows:
            if same_run and wanted.get(row["id"]) == row["key"]:
                self.done[row["id"]] = (row["output"], row["key"])
            elif row["id"] in wanted:
                self.stale += 1
        return {qid: output for qid, (output, _) in self.done.items()}

    def add(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """(id, output, key) rows, appended and synced."""
        if self._handle is None:  # written afresh with what was kept: a torn line never stays
            self._handle = self.path.open("w", encoding="utf-8")
            self._handle.write(json.dumps(self.header) + "\n")
            for qid, (text, key) in self.done.items():
                self._write(qid, text, key)
        for qid, text, key in rows:
            self._write(qid, text, key)
            self.done[qid] = (text, key)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def _write(self, qid: str, text: str, key: str) -> None:
        line = json.dumps({"id": qid, "output": text, "key": key}, ensure_ascii=False)
        self._handle.write(line + "\n")

    def output(self, qid: str) -> str:
        return self.done[qid][0]

    def close(self, remove: bool) -> None:
        if self._handle is not None:
            self._handle.close()
        if remove:
            self.path.unlink(missing_ok=True)


def partial_path(output: Path) -> Path:
    """Where an interrupted run keeps its finished answers: hidden, beside the output."""
    return output.with_name(f".{output.name}.partial.jsonl")
