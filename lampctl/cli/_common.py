"""What every command shares: output mode, the progress display, and option declarations."""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from lampctl import settings
from lampctl.catalog.tasks import Registry
from lampctl.cli.progress import SmoothedRate, clock, progress_line, rate_words  # noqa: F401
from lampctl.parallel import usable_cpus  # noqa: F401 - the commands take it from here

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


@dataclass
class State:
    """Global options, set on the top-level callback (or per command for ``--json``)."""

    json: bool = False
    quiet: bool = False
    config: Path | None = None
    tsv: bool = False  # --tsv: tables as tab-separated lines on stdout
    _registry: Registry | None = field(default=None, repr=False)

    @property
    def progress(self) -> bool:
        """Progress (bars on a terminal, plain lines in a log) goes to stderr unless
        ``--quiet``: under ``--json`` too, whose object alone goes to stdout."""
        return not self.quiet

    def registry(self) -> Registry:
        if self._registry is None:
            from lampctl.catalog.bundled import cached_registry as registry

            self._registry = registry(self.config)
        return self._registry


def get_state(ctx: typer.Context, json_flag: bool = False, quiet_flag: bool = False) -> State:
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    if json_flag:
        root.obj.json = True
    if quiet_flag:
        root.obj.quiet = True
    if ctx.params.get("tsv_out"):  # every command's --tsv (TsvOpt)
        root.obj.tsv = True
    from lampctl.reporting import set_notice_sink

    state = root.obj  # notices (a cache that cannot be written) go to stderr, unless --quiet
    set_notice_sink(lambda message: None if state.quiet else _note(message))
    return root.obj


def _note(message: str) -> None:
    stderr_console().print(f"Note: {message}", markup=False)


# What this invocation has finished, for the message after Ctrl-C (the core reports through
# callbacks; the CLI keeps the list).
FINISHED: list[str] = []


def note_finished(path: str) -> None:
    FINISHED.append(path)


def interrupted_message() -> str:
    if not FINISHED:
        return (
            "Interrupted before any file was finished (no half-written file is used); run the "
            "same command again."
        )
    shown = ", ".join(FINISHED[-3:])
    more = f" and {len(FINISHED) - 3} more" if len(FINISHED) > 3 else ""
    return (
        f"Interrupted: {len(FINISHED)} file(s) finished and kept ({shown}{more}); run the same "
        "command again to resume (files already up to date are skipped)."
    )


def json_error(message: str, exit_code: int, **fields: Any) -> None:
    """Under ``--json``, a failure is still one JSON object on stdout."""
    payload = {"error": message, "exit_code": exit_code, **fields}
    sys.stdout.write(json.dumps(payload, default=str) + "\n")
    sys.stdout.flush()


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def folding_table(*headers: str, **options: Any) -> Table:
    """A results table whose cells fold onto more lines rather than being cut with an
    ellipsis: in an 80-column terminal every word and path stays whole. Narrow terminals get
    a light frame (no column rules), leaving the room to the words."""
    if shutil.get_terminal_size((200, 40)).columns < 120 and "box" not in options:
        options.update(box=box.SIMPLE_HEAD, pad_edge=False)
    return Table(*(Column(h, overflow="fold") for h in headers), **options)


PIPE_WIDTH = 100_000  # off a terminal nothing folds: a row is one line, whatever its width


def stdout_console() -> Console:
    """Results on stdout. On a terminal tables fold to its width (cells fold onto more lines,
    never cut). Off a terminal (a pipe, a file) every row is one line at its full width, so
    ``grep`` finds a row whole and ``cut``/``awk`` see one record per line."""
    width = None if sys.stdout.isatty() else PIPE_WIDTH
    return Console(highlight=False, soft_wrap=True, width=width)


class TsvConsole:
    """The results console under ``--tsv``: each table as a header line and one line
    per row, cells separated by tabs (a tab or line break inside a cell becomes a space).
    Anything else the command prints (notes, totals) goes to stderr, so stdout holds only
    the columns."""

    is_terminal = False
    width = PIPE_WIDTH

    def __init__(self) -> None:
        self._notes = stderr_console()

    def print(self, *objects: Any, **_: Any) -> None:
        for shown in objects:
            if isinstance(shown, Table):
                self._table(shown)
            else:
                self._notes.print(shown, markup=False)

    @staticmethod
    def _table(table: Table) -> None:
        def cell(value: Any) -> str:
            text = value.plain if isinstance(value, Text) else str(value)
            return " ".join(text.replace("\t", " ").splitlines())

        columns = table.columns
        lines = ["\t".join(cell(c.header) for c in columns)]
        lines += [
            "\t".join(cell(c) for c in row) for row in zip(*(c.cells for c in columns), strict=True)
        ]
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()


class PlainProgress:
    """Progress for a stderr that is not a terminal (a SLURM log, ``2> file``): a plain line
    now and then (every LAMPCTL_PROGRESS_SECONDS, 30 by default), as pip and tqdm write to
    files, instead of a live display nobody sees."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.every = settings.progress_seconds()
        self.last = time.monotonic()

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            return True
        return False

    def say(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)


def live_progress(console: Console) -> Progress:
    """The terminal's progress display: bar, count, items per second, elapsed and ETA (rich's
    progress module is imported only here, when a terminal shows it)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    class RateColumn(ProgressColumn):
        """Items per second over rich's moving window (questions/s, emails/s)."""

        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            if not speed:
                return Text("")
            return Text(rate_words(speed, str(task.fields.get("unit", ""))))

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[unit]}"),
        RateColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


class CliReporter:
    """Progress bars (plain lines off a terminal) and messages on stderr; silent under
    ``--quiet``."""

    def __init__(self, state: State) -> None:
        self._console = stderr_console()
        self._quiet = not state.progress
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._plain: PlainProgress | None = None
        self._current: list[Any] = []  # label, total, unit, done, started, SmoothedRate
        if not self._quiet and not self._console.is_terminal:
            self._plain = PlainProgress(self._console)
        elif not self._quiet:
            self._progress = live_progress(self._console)

    def __enter__(self) -> CliReporter:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def start(self, label: str, total: int | None, unit: str = "questions") -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(label, total=total, unit=unit)
        if self._plain is not None:
            now = time.monotonic()
            self._current = [label, total, unit, 0, now, SmoothedRate(now)]

    def advance(self, amount: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, amount)
        if self._plain is not None and self._current:
            self._current[3] += amount
            if self._plain.due():
                self._plain.say(self._plain_line())

    def _plain_line(self) -> str:
        label, total, unit, done, started, smoothed = self._current
        now = time.monotonic()
        rate = smoothed.update(done, now)
        return progress_line(label, done, total, unit, now - started, rate)

    def log(self, message: str) -> None:
        if not self._quiet:
            if self._progress is not None:
                self._progress.console.print(message, markup=False)
            else:
                self._console.print(message, markup=False)


def emit(state: State, payload: dict[str, Any], human: Callable[[Console], None]) -> None:
    """The command's result on stdout: one JSON object under ``--json``, else human text.
    A payload with failures carries them in ``error`` (None when all went well)."""
    if state.json:
        payload.setdefault("error", None)
        sys.stdout.write(json.dumps(finite(payload), default=str, allow_nan=False) + "\n")
    elif state.tsv:  # asked for by name: printed under --quiet too, as --json is
        human(TsvConsole())  # type: ignore[arg-type] - prints tables, the rest to stderr
    elif not state.quiet:
        human(stdout_console())


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinity made None: ``--json`` output is always valid JSON
    (``json.dumps`` would write bare NaN and Infinity, which JSON has not)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def tell_left_out(state: State, left_out: list[str]) -> None:
    """What a command over "everything" left out, and why, one line each on stderr (the
    JSON summary carries the same list as ``left_out``)."""
    if state.json or state.quiet:
        return
    console = stderr_console()
    for line in left_out:
        console.print(f"Left out: {line}", markup=False)


def first_errors(errors: list[str]) -> str | None:
    """The ``error`` field of a JSON summary: the distinct failures, or None."""
    distinct = list(dict.fromkeys(errors))
    return "; ".join(distinct) if distinct else None


def fail_with(errors: list[str]) -> None:
    """Each distinct failure as one ``Error:`` line on stderr, then exit code 1 (if any)."""
    if errors:
        console = stderr_console()
        for error in dict.fromkeys(errors):  # a host that is down: one line, not one per file
            console.print(f"Error: {error}", markup=False)
        raise typer.Exit(1)


# --------------------------------------------------------------------------- shared options

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON object describing what was done.")
]


TsvOpt = Annotated[
    bool,
    typer.Option(
        "--tsv",
        help="Print tables as tab-separated lines (a header, then one line per row); notes go"
        " to stderr.",
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress bars, messages or summaries.")
]
DataDirOpt = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar="LAMPCTL_DATA_DIR",  # settings.VARIABLES names them all
        help="Folder holding {user,time}/LaMP_N/ files.",
        show_default=True,
    ),
]
TaskOpt = Annotated[
    str, typer.Option("--task", "-t", help="Task: LaMP-3, LaMP_3 or 3.", show_default=False)
]
TasksOpt = Annotated[
    list[str] | None,
    typer.Option("--task", "-t", help="Only these tasks (repeatable; default: all)."),
]
SplitOpt = Annotated[str, typer.Option("--split", "-s", help="user or time.")]
SplitsOpt = Annotated[
    list[str] | None, typer.Option("--split", "-s", help="Only this split (repeatable).")
]
SetsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Only these sets: train, dev, test (repeatable; default: all present)."
    ),
]
RankerOpt = Annotated[
    str | None,
    typer.Option(
        "--ranker", "-r", help="bm25, recency or contriever (default: the task's, per split)."
    ),
]
CheckpointOpt = Annotated[
    str | None,
    typer.Option(
        "--checkpoint",
        help="Encoder: hub id or local folder (default: $LAMPCTL_CHECKPOINT, the config's "
        "encoder.checkpoint, else facebook/contriever).",
        show_default=False,
    ),
]
RevisionOpt = Annotated[
    str | None,
    typer.Option(
        "--revision",
        help="Encoder: hub revision (tag, branch or commit; default: $LAMPCTL_REVISION).",
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="auto, cpu, cuda, cuda:N or mps (auto: cuda, mps, cpu; default: $LAMPCTL_DEVICE, "
        "else auto).",
        show_default=False,
    ),
]
BatchSizeOpt = Annotated[
    int | None, typer.Option("--batch-size", min=1, help="Encoder: most texts per batch.")
]
MaxTokensOpt = Annotated[
    int | None,
    typer.Option("--max-tokens-per-batch", min=1, help="Encoder: most padded tokens per batch."),
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="Encoder: fp32 (matches the reference), fp16 or bf16 (default: "
        "$LAMPCTL_PRECISION, else fp32).",
        show_default=False,
    ),
]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Encoder: keep embeddings on disk here for later runs."),
]
UseDateOpt = Annotated[
    bool, typer.Option("--use-date", help='Rank "{text} date: {date}", as the reference option.')
]
TopKOpt = Annotated[
    int | None, typer.Option("--top-k", min=1, help="Keep the first N items (default: all).")
]


JobsOpt = Annotated[
    int | None,
    typer.Option("--jobs", "-j", min=1, help="CPU processes for BM25 (default: all usable cores)."),
]
ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="Rank only shard i/n (i from 0) of each file; default from SLURM_ARRAY_TASK_ID, "
        "SLURM_ARRAY_TASK_COUNT and SLURM_ARRAY_TASK_MIN when set.",
        show_default=False,
    ),
]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="json or trec.")]
