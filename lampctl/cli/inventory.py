"""``lampctl status`` and ``lampctl stats``: what a data dir holds."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from lampctl.cli._common import (
    DataDirOpt,
    JsonOpt,
    QuietOpt,
    SetsOpt,
    SplitsOpt,
    TasksOpt,
    TsvOpt,
    emit,
    folding_table,
    get_state,
    tell_left_out,
)
from lampctl.settings import DEFAULT_DATA_DIR

if TYPE_CHECKING:
    from lampctl.inventory import StatusRow


def status_command(
    ctx: typer.Context,
    tasks: TasksOpt = None,
    splits: SplitsOpt = None,
    sets: SetsOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 if anything expected is missing or stale.")
    ] = False,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Hash every input again (the quick check trusts an unchanged size and mtime).",
        ),
    ] = False,
    json_out: JsonOpt = False,
    tsv_out: TsvOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Show, per task, split and set, which files exist, are verified, stale or incomplete.

    Questions and outputs are checked against the download manifest, rankings, merged files
    and model inputs against their records (input changed? other parameters?), and shard files
    for missing shards. The quick check re-hashes an input only when its size or mtime
    changed; --verify hashes every one (a copy made with cp -p or rsync -t keeps the mtime).

    Examples:

      lampctl status

      lampctl status --task LaMP-3 --check

      lampctl status --data-dir /scratch/lamp --check --verify
    """
    from lampctl.api.inventory import status

    state = get_state(ctx, json_out, quiet)
    report = status(
        tasks or [], splits or [], sets or [], data_dir=data_dir, verify=verify,
        config=state.config,
    )  # fmt: skip
    rows, problems, waiting = report.rows, report.problems, report.not_built

    def human(console: Console) -> None:
        if console.width < WIDE_STATUS:
            _status_lines(console, rows)
        else:
            _status_table(console, rows)
        console.print(f"{problems} of {len(rows)} rows need attention", markup=False)
        if waiting:
            console.print(
                f"{waiting} not built yet (LaMP-6 needs the licensed Avocado corpus: "
                "'lampctl avocado build'); not counted unless asked for with --task",
                markup=False,
            )

    payload = {"command": "status", "problems": problems, "not_built": waiting}
    emit(state, {**payload, "rows": [r.as_dict() for r in rows]}, human)
    if check and problems:
        raise typer.Exit(1)


WIDE_STATUS = 180  # columns the full status table needs; narrower terminals get lines


def _status_table(console: Console, rows: list[StatusRow]) -> None:
    table = folding_table(
        "task",
        "split",
        "set",
        "questions",
        "outputs",
        "download",
        "ranking",
        "ranked by",
        "merged",
        "prompts",
        "peft",
        "adapters",
        "predictions",
        "problems",
    )
    for r in rows:
        table.add_row(
            r.task,
            r.split,
            r.set,
            r.questions,
            r.outputs,
            r.verified,
            r.ranking.split(" (")[0],  # the details stand in problems
            r.ranked_by,
            r.merged,
            r.prompts,
            r.peft,
            "; ".join(_adapters_words(r)),
            "; ".join(_predictions_words(r)),
            "; ".join([*r.problems, *r.notes]),
            style="red" if r.problems else "",
        )
    console.print(table)


def _adapters_words(row: StatusRow) -> list[str]:
    """'dev_peft_file_adapters/flan-t5-base-1a2b3c4d: 3 of 4 users up to date
    (google/flan-t5-base)', one per adapters folder."""
    words = []
    for entry in row.adapters:
        count = (
            "rows file missing"
            if entry["users"] is None
            else f"{entry['up_to_date']} of {entry['users']} users up to date"
        )
        base = f" ({entry['base_model']})" if entry["base_model"] else ""
        words.append(f"{entry['folder']}: {count}{base}")
    return words


def _predictions_words(row: StatusRow) -> list[str]:
    """'dev_peft_file_predictions_...json: google/flan-t5-base, beams 4, 128 new tokens, up
    to date', one per predictions file."""
    return [
        f"{e['file']}: " + ", ".join(str(w) for w in (e["model"], e["decoding"], e["state"]) if w)
        for e in row.predictions
    ]


def _status_lines(console: Console, rows: list[StatusRow]) -> None:
    """The same facts as the table, a few lines a set, for a narrow terminal: words wrap
    at spaces instead of being cut into columns."""
    for r in rows:
        ranking = r.ranking.split(" (")[0] + (f" ({r.ranked_by})" if r.ranked_by else "")
        facts = [
            f"questions {r.questions}",
            f"outputs {r.outputs}",
            f"download {r.verified}",
            f"ranking {ranking}",
            f"merged {r.merged}",
        ]
        if r.prompts:
            facts.append(f"prompts {r.prompts}")
        if r.peft:
            facts.append(f"peft {r.peft}")
        facts += [f"adapters {words}" for words in _adapters_words(r)]
        facts += [f"predictions {words}" for words in _predictions_words(r)]
        style = "red" if r.problems else ""
        line = f"{r.task} {r.split} {r.set}: " + ", ".join(facts)
        console.print(line, style=style, markup=False, soft_wrap=False)
        for problem in [*r.problems, *r.notes]:
            console.print(f"  - {problem}", style=style, markup=False, soft_wrap=False)


def stats_command(
    ctx: typer.Context,
    tasks: TasksOpt = None,
    splits: SplitsOpt = None,
    sets: SetsOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    json_out: JsonOpt = False,
    tsv_out: TsvOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Dataset statistics per task, split and set (the LaMP paper's Table 1 numbers).

    Questions, users, profile size (mean, median, max) and whitespace tokens (input, profile
    item, gold output).

    Examples:

      lampctl stats

      lampctl --json stats --task LaMP-7 --split time
    """
    from lampctl.api.inventory import stats

    state = get_state(ctx, json_out, quiet)
    rows, left_out = stats(
        tasks or [], splits or [], sets or [], data_dir=data_dir, config=state.config
    )
    tell_left_out(state, left_out)
    columns = ("task", "split", "set", "questions", "users", "profile mean", "median", "max",
               "input tok", "item tok", "output tok")  # fmt: skip

    def human(console: Console) -> None:
        table = folding_table(*columns)
        for r in rows:
            output = "-" if r.output_tokens_mean is None else f"{r.output_tokens_mean:.1f}"
            table.add_row(
                r.task, r.split, r.set, str(r.questions), str(r.users), f"{r.profile_mean:.1f}",
                f"{r.profile_median:g}", str(r.profile_max), f"{r.input_tokens_mean:.1f}",
                f"{r.item_tokens_mean:.1f}", output,
            )  # fmt: skip
        console.print(table)

    payload = {"command": "stats", "rows": [r.as_dict() for r in rows], "left_out": left_out}
    emit(state, payload, human)
