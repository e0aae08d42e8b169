"""Merging questions, ranked profiles and gold outputs into one file per set, in linear time."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lampctl.data import (
    Question,
    atomic_writer,
    gc_paused,
    load_outputs,
    load_questions,
    read_json,
)
from lampctl.errors import InputError

MERGE_FORMATS = ("json", "jsonl")


@dataclass(frozen=True)
class MergeResult:
    output: str
    questions: int
    with_outputs: bool
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def load_ranking(path: Path) -> dict[str, list[str]]:
    data = read_json(path, "ranking file")
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected {{question id: [profile ids]}}")
    for qid, ids in data.items():
        if not isinstance(ids, list):
            raise InputError(f"{path}: question {qid!r} has no list of profile ids")
    return data


def merge_questions(
    questions: list[Question],
    ranking: dict[str, list[str]],
    golds: dict[str, Any] | None,
    ranking_name: str,
    outputs_name: str,
    top_k: int | None = None,
) -> list[dict[str, Any]]:
    """Each question with its profile in ranked order (first ``top_k``) and its gold output."""
    merged = []
    for question in questions:
        ranked = ranking.get(question.id)
        if ranked is None:
            raise InputError(f"{ranking_name}: no ranking for question {question.id!r}")
        by_id: dict[str, dict[str, Any]] = {}
        for item in question.profile:
            by_id.setdefault(str(item["id"]), item)
        profile = []
        for pid in ranked[:top_k]:
            item = by_id.get(str(pid))
            if item is None:
                raise InputError(
                    f"{ranking_name}: question {question.id!r} ranks profile id {pid!r}, "
                    "which its profile does not have"
                )
            profile.append(item)
        record = {**question.raw, "profile": profile}
        if golds is not None:
            if question.id not in golds:
                raise InputError(f"{outputs_name}: no gold output for question {question.id!r}")
            record["output"] = golds[question.id]
        merged.append(record)
    return merged


def merge_set(
    questions_path: Path,
    ranking_path: Path,
    outputs_path: Path | None,
    output_path: Path,
    top_k: int | None = None,
    fmt: str = "json",
) -> MergeResult:
    started = time.perf_counter()
    if fmt not in MERGE_FORMATS:
        raise InputError(f"unknown merge format {fmt!r} (use json or jsonl)")
    with gc_paused():
        questions = load_questions(questions_path)
        ranking = load_ranking(ranking_path)
        golds = load_outputs(outputs_path) if outputs_path is not None else None
        merged = merge_questions(
            questions, ranking, golds, str(ranking_path), str(outputs_path), top_k
        )
    if fmt == "json":
        text = json.dumps(merged, ensure_ascii=False)
    else:
        text = "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in merged)
    with atomic_writer(output_path) as handle:
        handle.write(text)
    return MergeResult(
        str(output_path), len(merged), golds is not None, round(time.perf_counter() - started, 3)
    )
