"""``rank-all``: plan every (task, split, set), skip what is up to date, rank the rest.

Each ranking file gets a sidecar record (``{set}_questions_rank.meta.json``) holding the input's
sha256, the ranker and the parameters that decide the ranking, and the lampctl version. A job
whose output and record match is skipped; an interrupted run leaves only whole files behind
(ranking first, record second), so a re-run finishes the rest.

Encoder jobs run in one worker per device; each worker loads the model once for the whole run
and takes whole (task, split) groups, so a split's train/dev/test share one embedding cache.
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from lampctl.catalog.tasks import Registry, TaskSpec
from lampctl.errors import LampctlError
from lampctl.io.data import read_json, remove_dead_temp_files
from lampctl.ledger import freshness, ranking_parameters
from lampctl.parallel import worker_setup
from lampctl.retrieval.encoder import EncoderConfig
from lampctl.retrieval.rankers import CPU_RANKERS, make_ranker
from lampctl.retrieval.rankers.base import Ranker
from lampctl.retrieval.rankfile import rank_with_record
from lampctl.retrieval.shards import Shard


@dataclass(frozen=True)
class RankJob:
    task: TaskSpec
    split: str
    set: str
    ranker: str
    input: Path
    output: Path
    shard: Shard | None = None

    @property
    def key(self) -> str:
        return f"{self.task.name} {self.split} {self.set}"


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class JobPlan:
    job: RankJob
    state: str  # new | stale: ... | up to date | needs avocado build
    parameters: dict[str, Any]
    questions: int | None = None
    profile_items: int | None = None

    @property
    def texts(self) -> int | None:
        """What an encoder job encodes: each question's query and profile items."""
        if self.questions is None or self.profile_items is None:
            return None
        return self.questions + self.profile_items

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.job.task.name,
            "split": self.job.split,
            "set": self.job.set,
            "ranker": self.job.ranker,
            "questions": self.questions,
            "profile_items": self.profile_items,
            "texts": self.texts,
            "output": str(self.job.output),
            "state": self.state,
            "up_to_date": self.state == "up to date",
        }


def plan_rank_all(
    registry: Registry,
    data_dir: Path,
    tasks: Sequence[str] = (),
    splits: Sequence[str] = (),
    sets: Sequence[str] = (),
    ranker: str | None = None,
    encoder: EncoderConfig | None = None,
    use_date: bool = False,
    count: bool = False,
    shard: Shard | None = None,
) -> list[JobPlan]:
    """Every (task, split, set) whose questions file is present, with its default ranker."""
    encoder = encoder or EncoderConfig()
    plans = []
    for task, split, set_name in registry.combinations(tasks, splits, sets, data_dir):
        name = ranker or task.default_ranker[split]
        questions = registry.path("questions", data_dir, task, split, set_name)
        output = registry.path("ranking", data_dir, task, split, set_name)
        if shard is not None:
            output = shard.path(output)
        job = RankJob(task, split, set_name, name, questions, output, shard)
        params = ranking_parameters(name, encoder, use_date)
        if not questions.exists():
            ids = registry.path("id_questions", data_dir, task, split, set_name)
            if task.needs_build and ids.exists():
                job = replace(job, input=ids)
                plans.append(JobPlan(job, f"needs {task.needs_build} build", params))
            continue
        extra = {"shard": shard.label} if shard else None
        state, record = freshness(output, questions, params, extra)
        counts: tuple[int | None, int | None] = (None, None)
        if record and state == "up to date":
            counts = (record.get("questions"), record.get("profile_items"))
        elif count:
            counts = _count(questions)
        plans.append(JobPlan(job, state, params, *counts))
    return plans


def _count(path: Path) -> tuple[int | None, int | None]:
    try:
        data = read_json(path, "questions file")
    except LampctlError:
        return None, None
    if not isinstance(data, list):
        return None, None
    items = sum(len(q.get("profile") or []) for q in data if isinstance(q, dict))
    return len(data), items


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class JobOutcome:
    key: str
    task: str
    split: str
    set: str
    ranker: str
    status: str  # done | skipped | failed | needs avocado build
    output: str
    questions: int | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def questions_per_second(self) -> float | None:
        if self.status != "done" or not self.questions or not self.seconds:
            return None
        return round(self.questions / self.seconds, 1)

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "questions_per_second": self.questions_per_second}


class RankAllObserver(Protocol):
    def update(self, key: str, status: str, done: int = 0, total: int | None = None) -> None: ...


class SilentJobObserver:
    def update(self, key: str, status: str, done: int = 0, total: int | None = None) -> None:
        pass


def _outcome(plan: JobPlan, status: str, **fields: Any) -> JobOutcome:
    job = plan.job
    return JobOutcome(
        job.key, job.task.name, job.split, job.set, job.ranker, status, str(job.output), **fields
    )


Message = tuple[str, str, dict[str, Any]]  # (kind, job key, fields)


def _run_jobs(
    plans: Sequence[JobPlan],
    make: Callable[[], Ranker],
    use_date: bool,
    emit: Callable[[Message], None],
) -> None:
    """Rank ``plans`` with one ranker made once; report through ``emit``."""
    ranker: Ranker | None = None
    for plan in plans:
        job = plan.job
        emit(("running", job.key, {}))
        started = time.perf_counter()
        try:
            if ranker is None:
                ranker = make()
            progress = _Throttled(lambda n, key=job.key: emit(("progress", key, {"done": n})))
            reporter = _JobReporter(
                progress, lambda total, key=job.key: emit(("total", key, {"total": total}))
            )
            result = rank_with_record(
                job.task,
                job.input,
                job.output,
                ranker,
                plan.parameters,
                use_date=use_date,
                reporter=reporter,
                shard=job.shard,
            )
            progress.flush()
            emit(
                (
                    "done",
                    job.key,
                    {"questions": result.questions, "seconds": time.perf_counter() - started},
                )
            )
        except LampctlError as exc:
            emit(("failed", job.key, {"error": str(exc)}))
        except OSError as exc:
            emit(("failed", job.key, {"error": f"{exc.filename or job.output}: {exc.strerror}"}))
    if ranker is not None and ranker.name in CPU_RANKERS:
        ranker.close()  # the encoder stays loaded for the worker's next group


class _Throttled:
    """Progress counts sent at most a few times a second (they may cross a process boundary)."""

    def __init__(self, send: Callable[[int], None]) -> None:
        self.send = send
        self.done = 0
        self.last = 0.0

    def __call__(self, amount: int = 1) -> None:
        self.done += amount
        now = time.monotonic()
        if now - self.last > 0.25:
            self.last = now
            self.send(self.done)

    def flush(self) -> None:
        self.send(self.done)


class _JobReporter:
    def __init__(self, progress: _Throttled, total: Callable[[int | None], None]) -> None:
        self._progress = progress
        self._total = total

    def start(self, label: str, total: int | None, unit: str = "questions") -> None:
        self._total(total)

    def advance(self, amount: int = 1) -> None:
        self._progress(amount)

    def log(self, message: str) -> None:
        pass


def _encoder_factory(config: EncoderConfig) -> Callable[[], Ranker]:
    """The encoder ranker, made on first call and then reused: one model load per worker."""
    return functools.cache(lambda: make_ranker("contriever", config))


def _encoder_worker(
    config: EncoderConfig, use_date: bool, groups: Any, messages: Any, parent_pid: int
) -> None:  # pragma: no cover - runs in a child process; covered through run_rank_all
    worker_setup(parent_pid)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    make = _encoder_factory(config)
    while True:
        group = groups.get()
        if group is None:
            break
        try:
            _run_jobs(group, make, use_date, messages.put)
        except BaseException as exc:  # keep the parent informed, whatever happened
            for plan in group:
                messages.put(("failed", plan.job.key, {"error": f"worker crashed: {exc!r}"}))
            raise
    messages.put(("worker-exit", "", {}))


def run_rank_all(
    plans: Sequence[JobPlan],
    *,
    encoder: EncoderConfig,
    devices: Sequence[str] = ("auto",),
    jobs: int = 1,
    use_date: bool = False,
    force: bool = False,
    observer: RankAllObserver | None = None,
    encoder_unavailable: str | None = None,
) -> list[JobOutcome]:
    """Run the plans: CPU rankers in this process, encoder jobs here or in one worker per
    device. With ``encoder_unavailable`` (why the encoder cannot be had, e.g. an offline
    node without the checkpoint), encoder jobs fail with that reason and the others run."""
    observer = observer or SilentJobObserver()
    outcomes: dict[str, JobOutcome] = {}
    by_key = {plan.job.key: plan for plan in plans}
    todo: list[JobPlan] = []
    for plan in plans:
        if plan.state.startswith("needs "):
            outcomes[plan.job.key] = _outcome(plan, plan.state)
        elif plan.state == "up to date" and not force:
            remove_dead_temp_files(plan.job.output)  # skipped: no atomic writer tidies it
            outcomes[plan.job.key] = _outcome(plan, "skipped", questions=plan.questions)
        else:
            todo.append(plan)
            continue
        observer.update(plan.job.key, outcomes[plan.job.key].status)
    for plan in todo:
        observer.update(plan.job.key, "queued")

    totals: dict[str, int | None] = {}

    def handle(message: Message) -> None:
        kind, key, fields = message
        if kind == "total":
            totals[key] = fields["total"]
            observer.update(key, "running", 0, fields["total"])
        elif kind == "running":
            observer.update(key, "running")
        elif kind == "progress":
            observer.update(key, "running", fields["done"], totals.get(key))
        elif kind == "done":
            outcomes[key] = _outcome(
                by_key[key],
                "done",
                questions=fields["questions"],
                seconds=round(fields["seconds"], 3),
            )
            observer.update(key, "done", fields["questions"], totals.get(key))
        elif kind == "failed":
            outcomes[key] = _outcome(by_key[key], "failed", error=fields["error"])
            observer.update(key, "failed")

    cpu_jobs = [p for p in todo if p.job.ranker in CPU_RANKERS]
    for ranker_name in CPU_RANKERS:
        mine = [p for p in cpu_jobs if p.job.ranker == ranker_name]
        if mine:
            _run_jobs(mine, lambda n=ranker_name: make_ranker(n, jobs=jobs), use_date, handle)

    encoder_jobs = [p for p in todo if p.job.ranker not in CPU_RANKERS]
    if encoder_unavailable is not None:
        for plan in encoder_jobs:
            outcomes[plan.job.key] = _outcome(plan, "failed", error=encoder_unavailable)
            observer.update(plan.job.key, "failed")
        encoder_jobs = []
    groups: dict[tuple[str, str], list[JobPlan]] = {}
    for plan in encoder_jobs:
        groups.setdefault((plan.job.task.name, plan.job.split), []).append(plan)
    if groups and len(devices) <= 1:
        config = replace(encoder, device=devices[0] if devices else encoder.device)
        make = _encoder_factory(config)
        for group in groups.values():
            _run_jobs(group, make, use_date, handle)
    elif groups:
        _run_in_workers(list(groups.values()), encoder, devices, use_date, handle)
    return [
        outcomes.get(plan.job.key)
        or _outcome(plan, "failed", error="not ranked: its worker stopped before this job")
        for plan in plans
    ]


def _run_in_workers(
    groups: list[list[JobPlan]],
    encoder: EncoderConfig,
    devices: Sequence[str],
    use_date: bool,
    handle: Callable[[Message], None],
) -> None:
    """One spawned process per device; each takes whole (task, split) groups from a queue."""
    context = mp.get_context("spawn")  # CUDA and threads make fork unsafe here
    group_queue = context.Queue()
    messages = context.Queue()
    for group in groups:
        group_queue.put(group)
    workers = []
    for device in devices:
        group_queue.put(None)
        worker = context.Process(
            target=_encoder_worker,
            args=(replace(encoder, device=device), use_date, group_queue, messages, os.getpid()),
            daemon=True,
        )
        worker.start()
        workers.append(worker)
    running = len(workers)
    try:
        while running:
            try:
                message = messages.get(timeout=1.0)
            except queue.Empty:
                if not any(w.is_alive() for w in workers):
                    break
                continue
            if message[0] == "worker-exit":
                running -= 1
            else:
                handle(message)
    except KeyboardInterrupt:
        for worker in workers:
            worker.terminate()
        raise
    finally:
        for worker in workers:
            worker.join(timeout=5)


def fold_errors(failures: list[tuple[str, str]]) -> list[str]:
    """One line per distinct error: ``key: error`` once, ``N jobs (key, ...): error`` when
    several jobs failed alike (a full disk, a missing checkpoint), in first-seen order."""
    keys: dict[str, list[str]] = {}
    for key, error in failures:
        keys.setdefault(error, []).append(key)
    lines = []
    for error, names in keys.items():
        if len(names) == 1:
            lines.append(f"{names[0]}: {error}")
        else:
            shown = ", ".join(names[:2]) + (", ..." if len(names) > 2 else "")
            lines.append(f"{len(names)} jobs ({shown}): {error}")
    return lines
