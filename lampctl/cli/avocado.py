"""``lampctl avocado build``: LaMP-6 from the user's licensed Avocado corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lampctl.cli._common import (
    CliReporter,
    DataDirOpt,
    JsonOpt,
    QuietOpt,
    TsvOpt,
    emit,
    folding_table,
    get_state,
    usable_cpus,
)
from lampctl.settings import AVOCADO_ENV, DEFAULT_DATA_DIR, DEFAULT_MAX_EMAIL_BYTES

avocado_app = typer.Typer(
    name="avocado",
    help="LaMP-6 from the licensed Avocado email corpus (LDC2015T03).",
    no_args_is_help=True,
    rich_markup_mode="rich",
)


def build(
    ctx: typer.Context,
    avocado_dir: Annotated[
        Path,
        typer.Option(
            "--avocado-dir",
            envvar=AVOCADO_ENV,
            help="Your copy's avocado-1.0.2/data/text/ folder (zip archives of raw emails).",
            show_default=False,
        ),
    ],
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    task: Annotated[
        str,
        typer.Option(
            "--task",
            "-t",
            help="LaMP-6, or LongLaMP-1 (email completion, from id files you were given).",
        ),
    ] = "LaMP-6",
    questions_dir: Annotated[
        Path | None,
        typer.Option(
            "--questions-dir",
            help="Read the LaMP-6 id files from this data layout instead of --data-dir.",
        ),
    ] = None,
    skip_missing: Annotated[
        bool,
        typer.Option(
            "--skip-missing",
            help="Drop questions and profile items whose email is missing, instead of stopping.",
        ),
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", "-j", min=1, help="Processes (default: all usable cores)."),
    ] = None,
    old_workers: Annotated[
        int | None, typer.Option("--workers", min=1, hidden=True, help="Old name of --jobs.")
    ] = None,
    max_email_bytes: Annotated[
        int,
        typer.Option("--max-email-bytes", min=1024, help="Most bytes one email may inflate to."),
    ] = DEFAULT_MAX_EMAIL_BYTES,
    json_out: JsonOpt = False,
    tsv_out: TsvOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Build LaMP-6 (both splits) from the Avocado zips, reading only the emails it needs.

    Reads {split}/LaMP_6/{set}_questions_ids.json (and _outputs_ids.json) from the data dir and
    writes {set}_questions.json and {set}_outputs.json beside them. The id files are kept, so a
    rebuild is always possible. Nothing is extracted to disk.

    Examples:

      lampctl avocado build --avocado-dir /corpora/avocado-1.0.2/data/text

      lampctl avocado build --avocado-dir text --questions-dir ids --skip-missing

      lampctl avocado build --avocado-dir text --task LongLaMP-1
    """
    from lampctl.avocado import build_lamp6

    state = get_state(ctx, json_out, quiet)
    with CliReporter(state) as reporter:
        result = build_lamp6(
            state.registry(), data_dir, avocado_dir, questions_dir=questions_dir,
            skip_missing=skip_missing, workers=jobs or old_workers or usable_cpus(),
            max_email_bytes=max_email_bytes, reporter=reporter, task_name=task,
        )  # fmt: skip

    def human(console: Console) -> None:
        table = folding_table("split", "set", "questions")
        for split, sets in result.built.items():
            for set_name, count in sets.items():
                table.add_row(split, set_name, str(count))
        console.print(table)
        console.print(
            f"{result.emails_parsed} emails parsed from {result.archives} archives "
            f"({result.members} members) in {result.seconds:.1f} s; "
            f"{result.missing} missing, {result.duplicates} duplicate ids",
            markup=False,
        )

    emit(state, {"command": "avocado build", **result.as_dict()}, human)
