"""``lampctl rank-all``: every task and split with the paper's best ranker, resumable."""

from __future__ import annotations

import collections
import shutil
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from lampctl.cli._common import (
    BatchSizeOpt,
    CacheDirOpt,
    CheckpointOpt,
    DataDirOpt,
    JobsOpt,
    JsonOpt,
    MaxTokensOpt,
    PlainProgress,
    PrecisionOpt,
    QuietOpt,
    RankerOpt,
    RevisionOpt,
    SetsOpt,
    ShardOpt,
    SplitsOpt,
    State,
    TasksOpt,
    TsvOpt,
    UseDateOpt,
    clock,
    emit,
    fail_with,
    first_errors,
    folding_table,
    get_state,
    note_finished,
    progress_line,
    stderr_console,
)
from lampctl.retrieval.rankers import CPU_RANKERS
from lampctl.settings import DEFAULT_DATA_DIR

if TYPE_CHECKING:
    from lampctl.retrieval.jobs import JobOutcome, JobPlan

STYLES = {"done": "green", "failed": "red", "running": "cyan", "skipped": "dim"}


class LiveJobs:
    """One line per job (queued, running, done, skipped, failed, with questions/s).

    When there are more jobs than the terminal has lines, finished and skipped rows collapse
    into one summary line, so the running jobs stay in view.
    """

    def __init__(self, state: State, plans: list[JobPlan], note: str = "") -> None:
        self.console = stderr_console()
        shown = state.progress
        self.enabled = shown and self.console.is_terminal
        self.plain = PlainProgress(self.console) if shown and not self.enabled else None
        self.note = note
        self.rows: dict[str, dict[str, Any]] = {
            p.job.key: {
                "plan": p,
                "status": "planned",
                "done": 0,
                "total": p.questions,
                "started": None,
                "ended": None,
            }
            for p in plans
        }
        self.live = Live(
            get_renderable=self.render, console=self.console, refresh_per_second=4, transient=False
        )
        self._running = False
        self._stopped = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> LiveJobs:
        if self.enabled:
            self.live.start()
            self._running = True
        elif self.plain is not None:
            # A log file hears at once what started, then a line every interval even while
            # nothing advances (an encoder loading, a long first chunk on a CPU).
            states = [r["plan"].state for r in self.rows.values()]
            todo = sum(s != "up to date" and not s.startswith("needs ") for s in states)
            note = f"; {self.note}" if self.note else ""
            self.plain.say(f"rank-all: {len(self.rows)} jobs, {todo} to run{note}")
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        return self

    def _tick(self) -> None:
        assert self.plain is not None
        while not self._stopped.wait(max(self.plain.every, 1.0)):
            self._log()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopped.set()
        if self._ticker is not None:  # its last line comes before the summary, never after
            self._ticker.join()
            self._ticker = None
        if self._running:
            self.live.stop()
            self._running = False

    def update(self, key: str, status: str, done: int = 0, total: int | None = None) -> None:
        row = self.rows[key]
        now = time.perf_counter()
        if status == "running" and row["started"] is None:
            row["started"] = now
        if status in ("done", "failed") and row["ended"] is None:
            row["ended"] = now
            if status == "done":
                note_finished(str(row["plan"].job.output))
        row["status"] = status
        row["done"] = max(row["done"], done)
        if total is not None:
            row["total"] = total
        if self.plain is not None:
            self._log()

    def _log(self) -> None:
        """For a log file: now and then, how many jobs are finished and how far the running
        ones are (with rate and ETA)."""
        assert self.plain is not None
        if not self.plain.due():
            return
        rows = self.rows.values()
        finished = sum(r["status"] in ("done", "failed", "skipped") for r in rows)
        parts = [f"rank-all: {finished}/{len(self.rows)} jobs finished"]
        for row in rows:
            if row["status"] == "running" and row["started"] is not None:
                plan: JobPlan = row["plan"]
                name = f"{plan.job.task.name} {plan.job.split} {plan.job.set} {plan.job.ranker}"
                elapsed = time.perf_counter() - row["started"]
                parts.append(progress_line(name, row["done"], row["total"], "questions", elapsed))
        self.plain.say("; ".join(parts))

    def _eta(self, row: dict[str, Any]) -> str:
        if row["status"] != "running" or not row["done"] or not row["total"]:
            return ""
        elapsed = time.perf_counter() - row["started"]
        return clock((row["total"] - row["done"]) * elapsed / row["done"])

    def _rate(self, row: dict[str, Any]) -> str:
        if row["started"] is None or not row["done"]:
            return ""
        end = row["ended"] if row["ended"] is not None else time.perf_counter()
        return f"{row['done'] / max(end - row['started'], 1e-6):.0f}"

    def render(self) -> Table:
        table = folding_table(
            "task",
            "split",
            "set",
            "ranker",
            "status",
            "questions",
            "q/s",
            "eta",
            caption=self.note or None,
        )
        rows = list(self.rows.values())
        room = max(shutil.get_terminal_size((100, 40)).lines - 8, 3)
        if len(rows) > room:
            finished = [r for r in rows if r["status"] in ("done", "skipped")]
            rows = [r for r in rows if r["status"] not in ("done", "skipped")]
            if finished:
                table.add_row(
                    "", "", "", "", f"{len(finished)} finished", "", "", "",
                    style=STYLES["skipped"],
                )  # fmt: skip
            rows = rows[: room - 1]
        for row in rows:
            plan: JobPlan = row["plan"]
            total = row["total"] if row["total"] is not None else "?"
            table.add_row(
                plan.job.task.name,
                plan.job.split,
                plan.job.set,
                plan.job.ranker,
                row["status"],
                f"{row['done']}/{total}",
                self._rate(row),
                self._eta(row),
                style=STYLES.get(row["status"], ""),
            )
        return table


def rank_all(
    ctx: typer.Context,
    tasks: TasksOpt = None,
    splits: SplitsOpt = None,
    sets: SetsOpt = None,
    ranker: RankerOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    checkpoint: CheckpointOpt = None,
    revision: RevisionOpt = None,
    device: Annotated[
        str | None, typer.Option("--device", help="One device: auto, cpu, cuda, cuda:N or mps.")
    ] = None,
    devices: Annotated[
        str,
        typer.Option(
            "--devices",
            help="auto (every GPU, else one device) or a list: cuda:0,cuda:1 - one encoder "
            "worker per device.",
        ),
    ] = "auto",
    batch_size: BatchSizeOpt = None,
    max_tokens: MaxTokensOpt = None,
    precision: PrecisionOpt = None,
    cache_dir: CacheDirOpt = None,
    use_date: UseDateOpt = False,
    jobs: JobsOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Redo jobs that are up to date.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan (with --json: as JSON); rank nothing.")
    ] = False,
    shard_spec: ShardOpt = None,
    json_out: JsonOpt = False,
    tsv_out: TsvOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Rank every task, split and set present in the data dir with the paper's best ranker.

    Up-to-date rankings (same input sha256, ranker and parameters) are skipped, so an
    interrupted run finishes the rest when run again. The encoder is loaded once per worker.

    Examples:

      lampctl rank-all

      lampctl rank-all --dry-run

      lampctl rank-all -t 4 -s user --devices cuda:0,cuda:1 --precision bf16

      lampctl --json rank-all --ranker bm25 --jobs 8

      lampctl rank-all --shard 0/16    (in a SLURM array: from its variables)
    """
    from lampctl.api.ranking import rank_all as rank_everything

    state = get_state(ctx, json_out, quiet)
    encoder_options = {
        "checkpoint": checkpoint, "revision": revision, "device": device,
        "precision": precision, "batch_size": batch_size, "max_tokens": max_tokens,
        "cache_dir": cache_dir,
    }  # fmt: skip
    run = rank_everything(
        tasks or [], splits or [], sets or [], ranker=ranker, data_dir=data_dir,
        encoder_options=encoder_options, device=device, devices=devices, use_date=use_date,
        jobs=jobs, force=force, dry_run=dry_run, shard=shard_spec, config=state.config,
        display=lambda plans, note: LiveJobs(state, plans, note),
    )  # fmt: skip
    if dry_run:
        _show_plan(state, run.plans)
        return
    _show_outcomes(state, run.outcomes, run.devices, run.seconds, run.errors)
    fail_with(run.errors)


def _show_plan(state: State, plans: list[JobPlan]) -> None:
    def human(console: Console) -> None:
        table = folding_table(
            "task", "split", "set", "ranker", "questions", "items", "state", "output"
        )
        for p in plans:
            table.add_row(
                p.job.task.name,
                p.job.split,
                p.job.set,
                p.job.ranker,
                "" if p.questions is None else str(p.questions),
                "" if p.profile_items is None else str(p.profile_items),
                p.state,
                str(p.job.output),
            )
        console.print(table)

    emit(
        state, {"command": "rank-all", "dry_run": True, "jobs": [p.as_dict() for p in plans]}, human
    )
    encode = [p for p in plans if p.job.ranker not in CPU_RANKERS and p.state != "up to date"]
    texts = sum(p.texts or 0 for p in encode)
    if encode and texts and not (state.json or state.quiet):
        stderr_console().print(
            f"{len(encode)} encoder job(s) to run: {texts:,} texts (queries and profile "
            "items) to encode; a CPU encodes them many times slower than a GPU.",
            markup=False,
        )


def _show_outcomes(
    state: State, outcomes: list[JobOutcome], devices: list[str], seconds: float, errors: list[str]
) -> None:
    counts = {
        status: sum(o.status == status for o in outcomes)
        for status in ("done", "skipped", "failed")
    }
    counts["needs_build"] = sum(o.status.startswith("needs ") for o in outcomes)

    seen = collections.Counter(o.error for o in outcomes if o.error)

    def note(error: str | None) -> str:
        # An error many jobs share is printed once, below the table, not in every row.
        return "" if not error else (error if seen[error] == 1 else "failed (see below)")

    def human(console: Console) -> None:
        table = folding_table(
            "task", "split", "set", "ranker", "status", "questions", "q/s", "note"
        )
        for o in outcomes:
            table.add_row(
                o.task,
                o.split,
                o.set,
                o.ranker,
                o.status,
                "" if o.questions is None else str(o.questions),
                "" if o.questions_per_second is None else f"{o.questions_per_second:.1f}",
                note(o.error),
                style=STYLES.get(o.status, ""),
            )
        console.print(table)
        console.print(
            f"{counts['done']} ranked, {counts['skipped']} up to date, "
            f"{counts['needs_build']} need a build, {counts['failed']} failed "
            f"in {seconds:.1f} s",
            markup=False,
        )

    emit(
        state,
        {
            "command": "rank-all",
            **counts,
            "devices": devices,
            "seconds": round(seconds, 3),
            "error": first_errors(errors),
            "jobs": [o.as_dict() for o in outcomes],
        },
        human,
    )
