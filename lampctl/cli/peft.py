"""``lampctl peft-data``: every user's own training set, for one adapter per user."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from lampctl.cli._common import (
    CliReporter,
    DataDirOpt,
    JsonOpt,
    QuietOpt,
    SetsOpt,
    SplitsOpt,
    State,
    TasksOpt,
    TsvOpt,
    emit,
    folding_table,
    get_state,
    note_finished,
    tell_left_out,
)
from lampctl.settings import DEFAULT_DATA_DIR

if TYPE_CHECKING:
    from lampctl.peftdata.files import PeftRun

PathOpt = Annotated[Path | None, typer.Option()]


def peft_data_command(
    ctx: typer.Context,
    tasks: TasksOpt = None,
    splits: SplitsOpt = None,
    sets: SetsOpt = None,
    order: Annotated[
        str, typer.Option("--order", help="file: profile order as stored; ranked: the ranking's.")
    ] = "file",
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="LaMP-7's random cuts: random.Random(seed).")
    ] = 0,
    users: Annotated[
        Path | None, typer.Option("--users", help="Only these users: a JSON list of user ids.")
    ] = None,
    shard_spec: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="Only shard i/n (i from 0) of the users, balanced by training rows (a user is "
            "never split); default from SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT and "
            "SLURM_ARRAY_TASK_MIN when set.",
            show_default=False,
        ),
    ] = None,
    tokenizer: Annotated[
        str | None,
        typer.Option("--tokenizer", help="Truncate sources with this tokenizer (the fork's)."),
    ] = None,
    revision: Annotated[str | None, typer.Option("--revision", help="Tokenizer revision.")] = None,
    max_length: Annotated[
        int | None,
        typer.Option("--max-length", min=1, help="With --tokenizer: tokens per source."),
    ] = None,
    val_ratio: Annotated[
        float | None,
        typer.Option(
            "--val-ratio", help="Split each profile: this share trains, the rest validates."
        ),
    ] = None,
    max_items: Annotated[
        int | None, typer.Option("--max-items", min=1, help="Keep the first N items of each part.")
    ] = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    questions: Annotated[
        Path | None, typer.Option("--questions", help="Build from these files instead: questions,")
    ] = None,
    outputs: Annotated[
        Path | None, typer.Option("--outputs", help="... its gold outputs (optional),")
    ] = None,
    ranking: Annotated[
        Path | None, typer.Option("--ranking", help="... its ranking (with --order ranked),")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="... the training rows (JSONL),")
    ] = None,
    eval_output: Annotated[
        Path | None, typer.Option("--eval-output", help="... the evaluation rows,")
    ] = None,
    users_output: Annotated[
        Path | None, typer.Option("--users-output", help="... and the list of users.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Build again even if up to date.")] = False,
    json_out: JsonOpt = False,
    tsv_out: TsvOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write every user's training set for one adapter per user, as the LaMP authors' PEFT
    code builds it: rows from the profile of the user's first question, one per item, in the
    task's format; the user's questions with their golds as evaluation rows; the users in order.

    Writes, beside each questions file, SET_peft_CHOICES.jsonl ({"user_id", "id", "source",
    "target"} per line, grouped by user), SET_peft_CHOICES_eval.jsonl (no target on test),
    SET_peft_CHOICES_users.json (the reference's --user_ids format) and a record; CHOICES
    names the options that shape the rows (dev_peft_file.jsonl with the defaults,
    dev_peft_ranked.jsonl with --order ranked), so variants never overwrite each other. A rerun
    skips what is up to date. Without --task, every task, split and set present.

    Examples:

      lampctl peft-data --task LaMP-4 --split time --set dev

      lampctl peft-data -t 7 -s time --seed 1 --shard 3/16    (users 3 of 16)

      lampctl peft-data -t 5 --order ranked --tokenizer t5-base --val-ratio 0.2

      lampctl peft-data -t 3 --questions q.json --outputs o.json -o train.jsonl
    """
    from lampctl.peftdata.files import peft_data

    state = get_state(ctx, json_out, quiet)
    with CliReporter(state) as reporter:
        run = peft_data(
            tasks or [], splits or [], sets or [], order=order, seed=seed, users=users,
            shard=shard_spec, tokenizer=tokenizer, revision=revision, max_length=max_length,
            val_ratio=val_ratio, max_items=max_items, data_dir=data_dir, questions=questions,
            outputs=outputs, ranking=ranking, output=output, eval_output=eval_output,
            users_output=users_output, force=force, config=state.config,
            on_start=lambda label, total: reporter.start(label, total, unit="users"),
            progress=reporter.advance, on_file=note_finished,
        )  # fmt: skip
    tell_left_out(state, run.left_out)
    _show_peft_data(state, run)


def _show_peft_data(state: State, run: PeftRun) -> None:
    results = run.results

    def human(console: Console) -> None:
        table = folding_table("output", "users", "rows", "rows/user (min-max)", "status", "seconds")
        for r in results:
            s = r.stats
            counts = ("", "", "")
            if s is not None:
                spread = f"{s.rows_per_user_mean:.1f} ({s.rows_per_user_min}-{s.rows_per_user_max})"
                counts = (str(s.users), str(s.rows), spread)
            table.add_row(r.output, *counts, r.status, f"{r.seconds:.2f}")
        console.print(table)
        for r in results:
            if r.stats and r.stats.source_tokens_per_user:
                src, tgt = r.stats.source_tokens_per_user, r.stats.target_tokens_per_user or {}
                console.print(
                    f"{Path(r.output).name}: tokens per user: source {src['mean']:.0f} "
                    f"({src['min']}-{src['max']}), target {tgt.get('mean', 0):.0f} "
                    f"({tgt.get('min')}-{tgt.get('max')})",
                    markup=False,
                )

    payload = {"command": "peft-data", "shard": run.shard}
    files = [r.as_dict() for r in results]
    emit(state, {**payload, "files": files, "left_out": run.left_out}, human)
