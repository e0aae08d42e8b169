"""Sharded ranking for clusters (SLURM job arrays) and gathering shards into one file.

Shard ``i`` of ``n`` ranks a deterministic subset of a file's questions: questions are taken
largest profile first (ties broken by a stable hash of the question id) and each goes to the
shard with the least profile items so far, so shards carry about equal work. Every shard
computes the same assignment from the same input file. ``gather`` checks that all ``n`` shard
files are present and were made from the same input with the same parameters, then writes the
final ranking in the input's question order: byte-identical to an unsharded run.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lampctl.errors import ConfigError, ShardError
from lampctl.io.data import Question, atomic_writer, read_json
from lampctl.ledger import (
    input_fingerprint,
    output_changed,
    read_record,
    record_path,
    write_record,
)

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    index: int  # from 0
    count: int

    @property
    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def path(self, final: Path) -> Path:
        """``dev_questions_rank.json`` -> ``dev_questions_rank.shard-2-of-7.json``."""
        stem = final.name.removesuffix(".json")
        return final.with_name(f"{stem}.shard-{self.index}-of-{self.count}.json")


def parse_shard(spec: str | None, env: Mapping[str, str] | None = None) -> Shard | None:
    """``i/n`` (i from 0); without one, SLURM's array variables, if set, supply it."""
    env = os.environ if env is None else env
    if spec is not None:
        match = _SPEC.fullmatch(spec)
        if not match:
            raise ConfigError(f"bad shard {spec!r}: use i/n, with i counted from 0 (e.g. 0/4)")
        index, count = int(match.group(1)), int(match.group(2))
    elif env.get("SLURM_ARRAY_TASK_ID") and env.get("SLURM_ARRAY_TASK_COUNT"):
        try:
            task_id = int(env["SLURM_ARRAY_TASK_ID"])
            count = int(env["SLURM_ARRAY_TASK_COUNT"])
            first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        except ValueError:
            raise ConfigError("SLURM_ARRAY_TASK_* variables are not integers") from None
        index = task_id - first  # arrays may start at 1 (--array=1-8)
    else:
        return None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"bad shard {index}/{count}: need 0 <= i < n")
    return Shard(index, count)


def _stable_hash(question_id: str) -> int:
    return int.from_bytes(hashlib.sha256(question_id.encode()).digest()[:8], "big")


def assign_shards(questions: Sequence[Question], count: int) -> list[int]:
    """The shard of each question: largest profiles first onto the least-loaded shard."""
    order = sorted(
        range(len(questions)),
        key=lambda i: (-len(questions[i].profile), _stable_hash(questions[i].id)),
    )
    loads = [(0, shard) for shard in range(count)]  # (profile items, shard) min-heap
    heapq.heapify(loads)
    assignment = [0] * len(questions)
    for i in order:
        load, shard = heapq.heappop(loads)
        assignment[i] = shard
        heapq.heappush(loads, (load + len(questions[i].profile) + 1, shard))
    return assignment


def select(questions: Sequence[Question], shard: Shard) -> list[Question]:
    assignment = assign_shards(questions, shard.count)
    return [q for q, s in zip(questions, assignment, strict=True) if s == shard.index]


# --------------------------------------------------------------------------- gather

_SHARD_NAME = re.compile(r"\.shard-(\d+)-of-(\d+)\.json$")


def find_shards(final: Path) -> dict[int, list[Path]]:
    """Shard files of a ranking, by shard count."""
    stem = final.name.removesuffix(".json")
    found: dict[int, list[Path]] = {}
    if not final.parent.is_dir():
        return found
    for path in sorted(final.parent.glob(f"{stem}.shard-*-of-*.json")):
        match = _SHARD_NAME.search(path.name)
        if match and path.name == f"{stem}{match.group(0)}":
            found.setdefault(int(match.group(2)), []).append(path)
    return found


def _absent(count: int, paths: Sequence[Path]) -> list[int]:
    have = {int(_SHARD_NAME.search(p.name).group(1)) for p in paths}  # type: ignore[union-attr]
    return sorted(set(range(count)) - have)


def missing_shards(final: Path) -> dict[int, list[int]]:
    """For each shard count seen, the shard numbers that are absent."""
    found = ((count, _absent(count, paths)) for count, paths in find_shards(final).items())
    return {count: absent for count, absent in found if absent}


@dataclass(frozen=True)
class GatherResult:
    output: str
    shards: int
    questions: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def complete_shards(final: Path) -> tuple[int, list[Path]]:
    """(n, the shard files in order) of ``final``'s one complete run of n shards; a
    ``ShardError`` when there are none, when runs of different counts are mixed, or when a
    shard is missing."""
    by_count = find_shards(final)
    if not by_count:
        raise ShardError(f"{final}: no shard files to gather")
    if len(by_count) > 1:
        counts = ", ".join(str(c) for c in sorted(by_count))
        raise ShardError(f"{final}: shards of different runs (of {counts}) are mixed; remove one")
    count, paths = next(iter(by_count.items()))
    absent = _absent(count, paths)
    if absent:
        names = ", ".join(Shard(i, count).path(final).name for i in absent[:5])
        raise ShardError(f"{final}: {len(absent)} of {count} shards missing ({names})")
    return count, [Shard(i, count).path(final) for i in range(count)]


def final_of(path: Path) -> Path:
    """The final file a shard file belongs to (``X.shard-2-of-7.json`` -> ``X.json``); any
    other path as it is."""
    match = _SHARD_NAME.search(path.name)
    return path.with_name(path.name[: match.start()] + ".json") if match else path


def gather(
    final: Path, questions_path: Path, questions: Sequence[Question], clean: bool = False
) -> GatherResult:
    """Merge all shards of ``final`` into it, atomically, in the input's question order, and
    write its record as an unsharded run would. ``clean``: then remove the shard files and
    their records."""
    question_ids = [q.id for q in questions]
    count, paths = complete_shards(final)
    records = []
    for path in paths:
        record = read_record(record_path(path))
        if record is None:
            raise ShardError(f"{path}: no record beside it (was it written completely?)")
        if output_changed(path, record):
            raise ShardError(
                f"{path}: changed since it was written (its record's sha256 differs); rank "
                "that shard again"
            )
        records.append((path, record))
    first_path, first = records[0]
    for path, record in records[1:]:
        for key in ("parameters", "input_sha256"):
            if record.get(key) != first.get(key):
                raise ShardError(
                    f"{path}: made with other {key.replace('_', ' ')} than {first_path.name}"
                )
    current = input_fingerprint(questions_path, first)["input_sha256"]
    if current != first.get("input_sha256"):
        raise ShardError(f"{first_path}: made from another version of {questions_path}")
    merged: dict[str, Any] = {}
    for path, _ in records:
        data = read_json(path, "shard ranking")
        if not isinstance(data, dict):
            raise ShardError(f"{path}: not a ranking")
        overlap = merged.keys() & data.keys()
        if overlap:
            raise ShardError(f"{path}: question {sorted(overlap)[0]!r} is in two shards")
        merged.update(data)
    if merged.keys() != set(question_ids):
        lost = sorted(set(question_ids) - merged.keys())
        extra = sorted(merged.keys() - set(question_ids))
        what = f"misses question {lost[0]!r}" if lost else f"has unknown question {extra[0]!r}"
        raise ShardError(f"{final}: the shards do not match {questions_path}: {what}")
    text = json.dumps({qid: merged[qid] for qid in question_ids})
    previous = read_record(record_path(final))
    with atomic_writer(final) as handle:
        handle.write(text)
    items = sum(len(q.profile) for q in questions)
    write_record(final, questions_path, first["parameters"], (len(questions), items), previous)
    if clean:
        for path, _ in records:
            path.unlink(missing_ok=True)
            record_path(path).unlink(missing_ok=True)
    return GatherResult(str(final), count, len(question_ids))
