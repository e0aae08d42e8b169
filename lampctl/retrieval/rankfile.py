"""Ranking question files: build queries and texts from the registry, score, order, write."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from lampctl.catalog.tasks import Registry, TaskSpec
from lampctl.errors import ConfigError, InputError
from lampctl.io.data import (
    Question,
    atomic_writer,
    decode_questions,
    gc_paused,
    load_questions,
    raw_question_spans,
    raw_questions,
    read_spans,
)
from lampctl.io.outputs import check_outputs
from lampctl.ledger import (
    held_still,
    input_fingerprint,
    outputs_with_record,
    read_record,
    record_path,
    write_record,
)
from lampctl.reporting import Reporter, SilentReporter
from lampctl.retrieval.queries import build_query, item_texts, parse_date
from lampctl.retrieval.rankers.base import PreparedQuestion, Ranker, order_by_scores, worker_ranker
from lampctl.retrieval.shards import Shard
from lampctl.retrieval.shards import select as select_shard

FORMATS = ("json", "trec")


def prepare(
    task: TaskSpec,
    questions: Sequence[Question],
    ranker: Ranker,
    use_date: bool,
    source: str,
) -> list[PreparedQuestion]:
    """Queries and ranked texts (or dates) for every question, by the task's registry entry."""
    prepared = []
    for question in questions:
        try:
            query = build_query(task, question.input, question.id) if ranker.needs_text else ""
            texts = (
                item_texts(task, question.profile, question.id, use_date)
                if ranker.needs_text
                else []
            )
            if not ranker.needs_dates:
                dates = []
            elif task.recency == "order":  # profile order, newest last: later is newer
                dates = [(position,) for position in range(len(question.profile))]
            else:
                dates = [parse_date(item, question.id) for item in question.profile]
        except InputError as exc:
            if task.needs_build and looks_unbuilt(question):
                raise InputError(
                    f"{source}: question {question.id!r} holds ids, not text: run "
                    f"'lampctl {task.needs_build} build' first"
                ) from None
            raise InputError(f"{source}: {exc}") from None
        prepared.append(
            PreparedQuestion(question.id, query, question.item_ids, texts=texts, dates=dates)
        )
    return prepared


def looks_unbuilt(question: Question) -> bool:
    """LaMP-6 as released: the input is an email file name, not a prompt."""
    text = question.input.strip()
    return text.endswith(".txt") and " " not in text


@dataclass(frozen=True)
class RankedQuestion:
    id: str
    item_ids: list[str]
    scores: list[float]


def rank_prepared(
    questions: Sequence[PreparedQuestion],
    ranker: Ranker,
    reporter: Reporter,
    count_texts: bool = False,
) -> list[RankedQuestion]:
    """Each question ranked; progress counts questions, or with ``count_texts`` the texts
    encoded (a query and each profile item), which is the dense rankers' real work."""
    ranked = []
    progress = None if count_texts else reporter.advance
    for question, scores in zip(questions, ranker.score(questions, progress), strict=True):
        if count_texts:
            reporter.advance(1 + len(question.item_ids))
        scores = np.asarray(scores, dtype=np.float64)
        order = order_by_scores(scores)
        ranked.append(
            RankedQuestion(
                question.id,
                [question.item_ids[i] for i in order],
                scores[order].tolist(),
            )
        )
    return ranked


def render(ranked: Sequence[RankedQuestion], fmt: str, ranker: str, top_k: int | None) -> str:
    """``{question id: [profile ids, best first]}`` as JSON, or TREC run lines."""
    if fmt == "json":
        return json.dumps({q.id: q.item_ids[:top_k] for q in ranked})
    if fmt == "trec":
        lines = []
        for q in ranked:
            for rank, (pid, score) in enumerate(zip(q.item_ids[:top_k], q.scores, strict=False)):
                lines.append(f"{q.id} Q0 {pid} {rank + 1} {score!r} lampctl-{ranker}")
        return "\n".join(lines) + ("\n" if lines else "")
    raise ConfigError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


@dataclass(frozen=True)
class RankResult:
    task: str
    input: str
    output: str
    ranker: str
    format: str
    questions: int
    profile_items: int
    seconds: float
    parameters: dict[str, object] = field(default_factory=dict)
    state: str = "ranked"  # or "up to date": skipped, its record says what made it

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def rank_file(
    task: TaskSpec,
    input_path: Path,
    output_path: Path,
    ranker: Ranker,
    *,
    use_date: bool = False,
    top_k: int | None = None,
    fmt: str = "json",
    reporter: Reporter | None = None,
    shard: Shard | None = None,
    count_texts: bool = False,
) -> RankResult:
    """Rank one questions file (or one shard of it) and write the ranking atomically.
    ``count_texts``: a dense ranker's progress counts texts, not questions."""
    reporter = reporter or SilentReporter()
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if top_k is not None and top_k < 1:
        raise ConfigError(f"top_k (--top-k) must be at least 1, got {top_k}")
    started = time.perf_counter()
    label = f"{task.name} {input_path.name}"
    with gc_paused():
        ranked: list[RankedQuestion] | None = None
        if shard is None and ranker.jobs > 1:
            ranked = rank_in_workers(task, input_path, ranker, use_date, reporter, label)
        if ranked is None:
            ranked = []
            count_texts = count_texts and ranker.progress_unit == "texts"
            chunks = question_chunks(input_path, shard, reporter, label, count_texts)
            for chunk in chunks:
                prepared = prepare(task, chunk, ranker, use_date, str(input_path))
                ranked.extend(rank_prepared(prepared, ranker, reporter, count_texts))
    text = render(ranked, fmt, ranker.name, top_k)
    try:
        with atomic_writer(output_path) as handle:
            handle.write(text)
    except OSError as exc:
        raise InputError(f"{output_path}: cannot write ranking: {exc.strerror}") from None
    return RankResult(
        task=task.name,
        input=str(input_path),
        output=str(output_path),
        ranker=ranker.name,
        format=fmt,
        questions=len(ranked),
        profile_items=sum(len(q.item_ids) for q in ranked),
        seconds=round(time.perf_counter() - started, 3),
        parameters={**ranker.describe(), "use_date": use_date, "top_k": top_k},
    )


IN_PROCESS_CHUNK = 512  # questions decoded and ranked at a time
WORKER_CHUNK = 32  # questions per task sent to a worker process
WORKER_MIN_BYTES = 2_000_000  # smaller files are ranked faster than workers start


def question_chunks(
    path: Path, shard: Shard | None, reporter: Reporter, label: str, count_texts: bool = False
) -> Iterator[list[Question]]:
    """The file's questions (or one shard's), validated, a chunk at a time: only one chunk is
    ever held as Python objects, beside the file's bytes. ``count_texts``: progress counts
    texts (each question's query and profile items), counted first in one light pass."""
    raws = raw_questions(path) if shard is None else None
    if raws is not None:
        texts = _count_texts(raws) if count_texts else None
        if texts is None:
            reporter.start(label, len(raws))
        else:
            reporter.start(label, texts, unit="texts")
        seen: set[str] = set()
        for start in range(0, len(raws), IN_PROCESS_CHUNK):
            yield decode_questions(raws[start : start + IN_PROCESS_CHUNK], str(path), start, seen)
        return
    questions = load_questions(path)
    if shard is not None:
        questions = select_shard(questions, shard)
    if count_texts:
        reporter.start(label, sum(1 + len(q.profile) for q in questions), unit="texts")
    else:
        reporter.start(label, len(questions))
    for start in range(0, len(questions), IN_PROCESS_CHUNK):
        yield questions[start : start + IN_PROCESS_CHUNK]


class _ProfileOnly(msgspec.Struct):
    profile: list[msgspec.Raw] = []


def _count_texts(raws: Sequence[msgspec.Raw]) -> int | None:
    """How many texts the questions hold (a query and each profile item), decoding only the
    profile lists' bounds; None when a question is malformed (its chunk's decoding then says
    what is wrong, and progress counts questions)."""
    decoder = msgspec.json.Decoder(_ProfileOnly)
    try:
        return sum(1 + len(decoder.decode(raw).profile) for raw in raws)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
        return None


def rank_in_workers(
    task: TaskSpec,
    path: Path,
    ranker: Ranker,
    use_date: bool,
    reporter: Reporter,
    label: str,
) -> list[RankedQuestion] | None:
    """Decode, check, prepare and rank chunks of the file in the ranker's worker processes.

    The workers are started before the file is read, so they do not inherit its bytes. The
    parent finds where each question lies in the file (one msgspec pass), lets the bytes go,
    and sends each worker the places of a few questions at a time, which it reads, parses,
    checks and ranks; the parent keeps only the (small) rankings. None when the file
    is too small to be worth it or is not a plain JSON list (the caller then reads it itself).
    """
    if path.stat().st_size < WORKER_MIN_BYTES:
        return None
    pool = ranker.worker_pool()
    spans = raw_question_spans(path) if pool is not None else None
    if pool is None or spans is None or len(spans) < 2 * WORKER_CHUNK:
        return None
    reporter.start(label, len(spans))
    window = 2 * ranker.jobs
    pending: deque[Any] = deque()
    ranked: list[RankedQuestion] = []
    seen: set[str] = set()
    starts = iter(range(0, len(spans), WORKER_CHUNK))

    def submit() -> None:
        start = next(starts, None)
        if start is not None:
            job = (task, use_date, str(path), start, spans[start : start + WORKER_CHUNK])
            pending.append(pool.apply_async(_rank_raw_chunk, (job,)))

    try:
        for _ in range(window):
            submit()
        while pending:
            done = pending.popleft().get()
            submit()
            for question in done:
                if question.id in seen:
                    raise InputError(f"{path}: duplicate question id {question.id!r}")
                seen.add(question.id)
            ranked.extend(done)
            reporter.advance(len(done))
    except BaseException as exc:
        if not isinstance(exc, KeyboardInterrupt):
            # Let the chunks in flight finish first: a worker stopped while it sends its result
            # holds the result queue's lock, and the pool's terminate() then waits for it
            # forever (seen once in the test suite, under load).
            for result in pending:
                result.wait()
        ranker.close()  # drop the chunks still queued; the next file starts a fresh pool
        raise
    return ranked


def _rank_raw_chunk(
    job: tuple[TaskSpec, bool, str, int, list[tuple[int, int]]],
) -> list[RankedQuestion]:
    task, use_date, name, offset, spans = job
    ranker = worker_ranker()
    questions = decode_questions(read_spans(Path(name), spans), name, offset)
    prepared = prepare(task, questions, ranker, use_date, name)
    return rank_prepared(prepared, ranker, SilentReporter())


def rank_with_record(
    task: TaskSpec,
    input_path: Path,
    output_path: Path,
    ranker: Ranker,
    parameters: dict[str, object],
    *,
    use_date: bool = False,
    top_k: int | None = None,
    fmt: str = "json",
    reporter: Reporter | None = None,
    shard: Shard | None = None,
    count_texts: bool = False,
) -> RankResult:
    """``rank_file``, then the record beside the ranking that says what made it."""
    check_outputs(outputs_with_record(output_path), {"questions": input_path})
    previous = read_record(record_path(output_path))
    # Hash the input on a thread while it is ranked (hashlib lets go of the GIL).
    with held_still({"questions": input_path}), ThreadPoolExecutor(max_workers=1) as pool:
        fingerprint = pool.submit(input_fingerprint, input_path, previous)
        result = rank_file(
            task,
            input_path,
            output_path,
            ranker,
            use_date=use_date,
            top_k=top_k,
            fmt=fmt,
            reporter=reporter,
            shard=shard,
            count_texts=count_texts,
        )
        known = fingerprint.result()
    write_record(
        output_path,
        input_path,
        dict(parameters),
        (result.questions, result.profile_items),
        previous,
        {"shard": shard.label} if shard else None,
        fingerprint=known,
    )
    return result


def default_output(input_path: Path, fmt: str) -> Path:
    """``train_questions.json`` -> ``train_questions_rank.json`` (or ``.trec``)."""
    suffix = ".trec" if fmt == "trec" else ".json"
    return input_path.with_name(f"{input_path.stem}_rank{suffix}")


def planned_sets(
    registry: Registry, data_dir: Path, task: TaskSpec, split: str, sets: Sequence[str]
) -> list[str]:
    """The requested sets, or every set whose questions file is present."""
    if sets:
        return [registry.check_set(s) for s in sets]
    present = [
        s for s in registry.sets if registry.path("questions", data_dir, task, split, s).exists()
    ]
    if not present:
        folder = registry.task_dir(data_dir, task, split)
        unbuilt = task.needs_build and any(
            registry.path("id_questions", data_dir, task, split, s).exists() for s in registry.sets
        )
        hint = f"; it holds id files: run 'lampctl {task.needs_build} build'" if unbuilt else ""
        raise InputError(f"{folder}: no questions files for {task.name} ({split} split){hint}")
    return present
