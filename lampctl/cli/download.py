"""``lampctl download``: every LaMP file, resumable and verified."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from lampctl.cli._common import (
    DataDirOpt,
    JsonOpt,
    PlainProgress,
    QuietOpt,
    SetsOpt,
    SplitsOpt,
    State,
    TasksOpt,
    TsvOpt,
    clock,
    emit,
    fail_with,
    first_errors,
    folding_table,
    get_state,
    note_finished,
    stderr_console,
)
from lampctl.settings import BASE_URL_ENV, DEFAULT_DATA_DIR

if TYPE_CHECKING:
    from rich.progress import TaskID

    from lampctl.download import FileOutcome, PlannedFile


class RichTransfers:
    """One display: overall bytes, plus a bar per file in flight."""

    def __init__(self, state: State, plan: list[PlannedFile]) -> None:
        console = stderr_console()
        shown = state.progress
        self.enabled = shown and console.is_terminal
        self.plain = PlainProgress(console) if shown and not self.enabled else None
        self.finished = 0
        self.bytes = 0
        self.started = time.monotonic()
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
        )
        self.overall: TaskID | None = None
        self.files: dict[str, TaskID] = {}
        self.count = len(plan)

    def __enter__(self) -> RichTransfers:
        if self.enabled:
            self.progress.start()
            self.overall = self.progress.add_task(f"0/{self.count} files", total=None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()

    def _plain_line(self) -> str:
        elapsed = time.monotonic() - self.started
        rate = self.bytes / elapsed / 1e6 if elapsed > 0 else 0.0
        return (
            f"download: {self.finished}/{self.count} files, {self.bytes / 1e6:,.1f} MB "
            f"received, {rate:,.1f} MB/s, {clock(elapsed)} elapsed"
        )

    def begin(self, item: PlannedFile, total: int | None, already: int) -> None:
        if not self.enabled:
            return
        task = self.files.get(item.rel)
        if task is None:
            self.files[item.rel] = self.progress.add_task(item.rel, total=total, completed=already)
        else:
            self.progress.reset(task, total=total, completed=already)

    def advance(self, item: PlannedFile, amount: int) -> None:
        self.bytes += amount
        if self.plain is not None and self.plain.due():
            self.plain.say(self._plain_line())
        if self.enabled and item.rel in self.files:
            self.progress.advance(self.files[item.rel], amount)
            if self.overall is not None:
                self.progress.advance(self.overall, amount)

    def end(self, item: PlannedFile, outcome: FileOutcome) -> None:
        if outcome.status == "downloaded":
            note_finished(str(item.dest))
        self.finished += 1
        if self.plain is not None and self.plain.due():
            self.plain.say(self._plain_line())
        if not self.enabled:
            return
        if item.rel in self.files:
            self.progress.remove_task(self.files.pop(item.rel))
        if self.overall is not None:
            done = int(self.progress.tasks[0].fields.get("done", 0)) + 1
            self.progress.update(self.overall, description=f"{done}/{self.count} files", done=done)


def download(
    ctx: typer.Context,
    tasks: TasksOpt = None,
    splits: SplitsOpt = None,
    sets: SetsOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            envvar=BASE_URL_ENV,
            help="Mirror to use instead of https://ciir.cs.umass.edu/downloads/LaMP/.",
        ),
    ] = None,
    source: Annotated[
        Path | None,
        typer.Option(
            "--source",
            help="LongLaMP: a local copy of the Hugging Face dataset repo (as 'hf download "
            "LongLaMP/LongLaMP --repo-type dataset --local-dir DIR' leaves it), for nodes "
            "without network.",
        ),
    ] = None,
    revision: Annotated[
        str | None,
        typer.Option(
            "--revision", help="LongLaMP: the hub revision to read (default: the registry's)."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print each url -> path and its state; fetch nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Download again, even if verified.")
    ] = False,
    verify: Annotated[
        bool, typer.Option("--verify", help="Re-hash present files against the manifest.")
    ] = False,
    check_remote: Annotated[
        bool,
        typer.Option(
            "--check-remote",
            help="Ask the server whether each present file changed since it was downloaded "
            "(ETag, else size).",
        ),
    ] = False,
    no_fixes: Annotated[
        bool, typer.Option("--no-fixes", help="Keep the raw files (no known-data fixes).")
    ] = False,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Files at once.")] = 4,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0.1, help="Seconds without data before a try times out."),
    ] = 60.0,
    retries: Annotated[
        int, typer.Option("--retries", min=0, help="Retries per file on network errors, 429, 5xx.")
    ] = 5,
    json_out: JsonOpt = False,
    tsv_out: TsvOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Download LaMP tasks 1-5 and 7 and the LaMP-6 id files, both splits, into the data layout.

    Bytes go to <file>.part and resume with HTTP Range; a file is renamed into place only when
    its size, JSON and shape check out, and its sha256 is recorded in MANIFEST.json (later
    commands reuse it while the file keeps its size and mtime, instead of reading it again). The
    deprecated news categorization (LaMP-2N, the first release's LaMP-2) is opt-in: it is
    fetched only with --task LaMP-2N, into {split}/LaMP_2N/. LongLaMP (--task LongLaMP-2,
    -3, -4, or LongLaMP for all) is opt-in too: read from its Hugging Face dataset (or
    --source DIR) and converted into {split}/LongLaMP_N/; LongLaMP-1 is built instead
    ('lampctl avocado build --task LongLaMP-1').

    Examples:

      lampctl download

      lampctl download --task LaMP-3 --split time --set dev --dry-run

      lampctl download --verify

      lampctl download --base-url http://127.0.0.1:8000/ --jobs 8

      lampctl download --base-url ./lamp-server-copy    (a wget copy)

      lampctl download --check-remote    (did the server's files change?)

      lampctl download --task LaMP-2N    (the deprecated news task, opt-in)

      lampctl download --task LongLaMP --source ./LongLaMP    (a local copy)
    """
    from lampctl.api.downloading import download as fetch

    state = get_state(ctx, json_out, quiet)
    if base_url is not None and _from_environment(ctx, "base_url") and tasks:
        found = state.registry()  # a mirror set for LaMP does not stand in LongLaMP's way
        if all(found.task(t).hub is not None for t in found.expand(tasks)):
            base_url = None
    run = fetch(
        tasks or [], splits or [], sets or [], data_dir=data_dir, base_url=base_url,
        source=source, revision=revision,
        apply_fixes=not no_fixes, dry_run=dry_run, jobs=jobs, force=force, verify=verify,
        check_remote=check_remote, retries=retries, timeout=timeout, config=state.config,
        display=lambda plan: RichTransfers(state, plan),
    )  # fmt: skip
    if dry_run:
        _show_plan(state, run.plan)
        return
    _show_outcomes(state, data_dir, run.outcomes, run.seconds)
    fail_with(run.errors)


def _from_environment(ctx: typer.Context, name: str) -> bool:
    found = ctx.get_parameter_source(name)
    return found is not None and found.name == "ENVIRONMENT"


def _show_plan(state: State, plan: list[PlannedFile]) -> None:
    def human(console: Console) -> None:
        for item in plan:
            console.print(f"{item.url} -> {item.dest}  [{item.state}]", markup=False)
        console.print(f"{len(plan)} files", markup=False)

    emit(
        state, {"command": "download", "dry_run": True, "files": [p.as_dict() for p in plan]}, human
    )


def _show_outcomes(
    state: State, data_dir: Path, outcomes: list[FileOutcome], seconds: float
) -> None:
    fetched = sum(o.bytes_fetched for o in outcomes)
    counts: dict[str, Any] = {
        status: sum(o.status == status for o in outcomes)
        for status in ("downloaded", "skipped", "verified", "changed", "failed")
    }
    counts["fixed"] = sum(bool(o.fixes) for o in outcomes)

    def human(console: Console) -> None:
        table = folding_table("file", "status", "size", "fixes / error")
        # One row per file, except that files failing for one shared reason (a host that is
        # down) are one row with their count, not seventy copies of the message.
        shared = Counter(o.error for o in outcomes if o.status == "failed")
        shown: set[str | None] = set()
        for o in outcomes:
            if o.status == "failed" and shared[o.error] > 3:
                if o.error not in shown:
                    shown.add(o.error)
                    count = shared[o.error]
                    table.add_row(f"({count} files)", o.status, "", str(o.error), style="red")
                continue
            note = o.error or ", ".join(o.fixes)
            table.add_row(o.rel, o.status, f"{o.size or 0:,}", note, style=_style(o.status))
        console.print(table)
        console.print(
            f"{counts['downloaded']} downloaded, {counts['skipped']} skipped, "
            f"{counts['verified']} verified, {counts['changed']} changed, "
            f"{counts['fixed']} fixed, {counts['failed']} failed; "
            f"{fetched / 1e6:.1f} MB in {seconds:.1f} s",
            markup=False,
        )

    emit(
        state,
        {
            "command": "download",
            "data_dir": str(data_dir),
            **counts,
            "bytes_fetched": fetched,
            "error": first_errors(
                [str(o.error) for o in outcomes if o.status in ("failed", "changed")]
            ),
            "seconds": round(seconds, 3),
            "files": [o.as_dict() for o in outcomes],
        },
        human,
    )


def _style(status: str) -> str:
    return {"failed": "red", "downloaded": "green"}.get(status, "")
