"""Merging questions, ranked profiles and gold outputs into one file per set, in linear time."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lampctl.catalog.tasks import TaskSpec
from lampctl.errors import InputError
from lampctl.io.data import (
    Question,
    atomic_writer,
    gc_paused,
    load_outputs,
    load_questions,
    read_json,
)
from lampctl.ledger import (
    DerivedOutput,
    check_ranking_matches,
    read_record,
    record_path,
    source_fingerprints,
    sources_of,
)

MERGE_FORMATS = ("json", "jsonl")


@dataclass(frozen=True)
class MergeResult:
    output: str
    questions: int
    with_outputs: bool
    ranked: bool
    top_k: int | None
    status: str  # merged | up to date
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


def ranking_top_k(ranking_path: Path) -> int | None:
    """The ``--top-k`` a ranking was cut to, from its record (None: it ranks whole profiles,
    as the reference's rankings and lampctl's default do)."""
    record = read_record(record_path(ranking_path)) or {}
    top_k = (record.get("parameters") or {}).get("top_k")
    return top_k if isinstance(top_k, int) else None


def merged_path(default: Path, top_k: int | None, fmt: str, ranked: bool) -> Path:
    """``dev_questions_merged.json``, ``..._top4.json``, ``..._unranked.jsonl``: different
    choices never overwrite each other."""
    stem = default.stem + ("" if ranked else "_unranked") + (f"_top{top_k}" if top_k else "")
    return default.with_name(stem + (".jsonl" if fmt == "jsonl" else ".json"))


def merge_parameters(top_k: int | None, fmt: str, ranked: bool) -> dict[str, Any]:
    return {"top_k": top_k, "format": fmt, "ranked": ranked}


def checked_order(
    question: Question, ranked: list[Any], ranking_name: str, complete: bool
) -> list[str]:
    """The ranked ids of ``question``, checked against its profile: no repeats, no unknown ids
    and, for a ranking of whole profiles, no left-out items."""
    profile_ids = question.item_ids
    known = set(profile_ids)
    seen: set[str] = set()
    order = []
    for pid in ranked:
        pid = str(pid)
        if pid not in known:
            raise InputError(
                f"{ranking_name}: question {question.id!r} ranks profile id {pid!r}, "
                "which its profile does not have"
            )
        if pid in seen:
            raise InputError(f"{ranking_name}: question {question.id!r} ranks {pid!r} twice")
        seen.add(pid)
        order.append(pid)
    if complete and len(order) != len(profile_ids):
        left = [pid for pid in profile_ids if pid not in seen]
        raise InputError(
            f"{ranking_name}: question {question.id!r} leaves out {len(left)} of "
            f"{len(profile_ids)} profile items (first: {left[0]!r}) and its record says it "
            "ranks whole profiles; rank again"
        )
    return order


def merge_questions(
    questions: list[Question],
    ranking: dict[str, list[str]] | None,
    golds: dict[str, Any] | None,
    ranking_name: str,
    outputs_name: str,
    top_k: int | None = None,
    complete: bool = True,
) -> list[dict[str, Any]]:
    """Each question with its profile in ranked order (first ``top_k``) and its gold output.
    Without a ranking the profile keeps its order."""
    merged = []
    for question in questions:
        if ranking is None:
            profile = question.profile[:top_k]
        else:
            ranked = ranking.get(question.id)
            if ranked is None:
                raise InputError(f"{ranking_name}: no ranking for question {question.id!r}")
            by_id = {str(item["id"]): item for item in question.profile}
            order = checked_order(question, ranked, ranking_name, complete)
            profile = [by_id[pid] for pid in order[:top_k]]
        record = {**question.raw, "profile": profile}
        if golds is not None:
            if question.id not in golds:
                raise InputError(f"{outputs_name}: no gold output for question {question.id!r}")
            record["output"] = golds[question.id]
        merged.append(record)
    return merged


def merge_set(
    questions_path: Path,
    ranking_path: Path | None,
    outputs_path: Path | None,
    output_path: Path,
    top_k: int | None = None,
    fmt: str = "json",
    force: bool = False,
    allow_stale: bool = False,
    task: TaskSpec | None = None,
) -> MergeResult:
    """Merge one set; skipped when ``output_path``'s record matches its inputs (``force``
    redoes it). The record beside it names the inputs' sha256 as they were read, so ``status``
    sees a merged file go stale when its ranking changes. A ranking whose record says it was
    made from another version of the questions is refused unless ``allow_stale``."""
    started = time.perf_counter()
    if fmt not in MERGE_FORMATS:
        raise InputError(f"unknown merge format {fmt!r} (use json or jsonl)")
    ranked = ranking_path is not None
    sources = sources_of(questions=questions_path, ranking=ranking_path, outputs=outputs_path)
    derived = DerivedOutput(output_path, sources, merge_parameters(top_k, fmt, ranked))
    record = derived.up_to_date(force)
    if record is not None:
        return MergeResult(
            str(output_path),
            int(record.get("questions") or 0),
            outputs_path is not None,
            ranked,
            top_k,
            "up to date",
            round(time.perf_counter() - started, 3),
        )
    with derived.held_still(), gc_paused():
        fingerprints = source_fingerprints(output_path, sources)
        if ranking_path is not None and not allow_stale:
            check_ranking_matches(
                ranking_path, questions_path, fingerprints["questions"]["input_sha256"]
            )
        questions = load_questions(questions_path)
        ranking = load_ranking(ranking_path) if ranking_path is not None else None
        complete = ranking_path is not None and ranking_top_k(ranking_path) is None
        golds = load_outputs(outputs_path, task) if outputs_path is not None else None
        merged = merge_questions(
            questions, ranking, golds, str(ranking_path), str(outputs_path), top_k, complete
        )
    # Written question by question: the same bytes as one json.dumps of the whole list (its
    # ", " separator), without a second copy of an 800 MB file in memory.
    with atomic_writer(output_path) as handle:
        if fmt == "json":
            handle.write("[")
            for index, question in enumerate(merged):
                handle.write((", " if index else "") + json.dumps(question, ensure_ascii=False))
            handle.write("]")
        else:
            for question in merged:
                handle.write(json.dumps(question, ensure_ascii=False) + "\n")
    derived.write_record({"questions": len(merged)}, fingerprints=fingerprints)
    return MergeResult(
        str(output_path),
        len(merged),
        golds is not None,
        ranked,
        top_k,
        "merged",
        round(time.perf_counter() - started, 3),
    )
