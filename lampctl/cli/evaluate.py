"""``lampctl evaluate``: the official LaMP metrics, offline, with what papers need on top."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from lampctl.cli._common import (
    DataDirOpt,
    JsonOpt,
    QuietOpt,
    TsvOpt,
    emit,
    folding_table,
    get_state,
)
from lampctl.scoring.answers import MAX_MEMBER_BYTES, is_bundle
from lampctl.settings import DEFAULT_DATA_DIR

if TYPE_CHECKING:
    from lampctl.scoring.metrics import Evaluation

MAX_RESAMPLES = 1_000_000  # a million resamples take minutes; more is a typo


def evaluate(
    ctx: typer.Context,
    predictions: Annotated[
        Path,
        typer.Option(
            "--predictions",
            "-p",
            help="A predictions file (official {task, golds}, JSONL of {id, output}, or "
            "{id: output}), or a zip or folder of per-task files for all tasks at once.",
        ),
    ],
    task: Annotated[
        str | None,
        typer.Option("--task", "-t", help="Task (for one file; a zip or folder names its own)."),
    ] = None,
    golds: Annotated[
        Path | None,
        typer.Option(
            "--golds",
            help="Gold outputs (or a zip/folder of them); default: {set}_outputs.json of the "
            "data dir.",
        ),
    ] = None,
    split: Annotated[str, typer.Option("--split", "-s", help="user or time.")] = "user",
    set_name: Annotated[str, typer.Option("--set", help="The set scored: dev or train.")] = "dev",
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    by_user: Annotated[
        bool, typer.Option("--by-user", help="Each metric per user: mean and spread over users.")
    ] = False,
    questions: Annotated[
        Path | None,
        typer.Option("--questions", help="Questions file for --by-user (default: the data dir's)."),
    ] = None,
    compare_with: Annotated[
        Path | None,
        typer.Option(
            "--compare", help="Other predictions: the difference and a paired p-value per metric."
        ),
    ] = None,
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap",
            min=0,
            max=MAX_RESAMPLES,
            help="Bootstrap resamples for a median and 95% interval.",
        ),
    ] = 0,
    permutations: Annotated[
        int,
        typer.Option(
            "--permutations",
            min=1,
            max=MAX_RESAMPLES,
            help="Random swaps for --compare's p-value.",
        ),
    ] = 10000,
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Seed of --bootstrap and --compare (0 or more).")
    ] = 0,
    max_member_bytes: Annotated[
        int,
        typer.Option(
            "--max-member-bytes",
            min=1,
            help="Most bytes one file in a predictions zip may inflate to.",
        ),
    ] = MAX_MEMBER_BYTES,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial",
            help="Score only the predicted questions (a pilot, a shard, --users) and report "
            "the coverage; a prediction without a gold is still an error.",
        ),
    ] = False,
    meteor: Annotated[
        bool,
        typer.Option(
            "--meteor/--no-meteor",
            help="LongLaMP: score METEOR (needs NLTK's wordnet and punkt_tab data).",
        ),
    ] = True,
    drop_empty: Annotated[
        bool,
        typer.Option(
            "--drop-empty",
            help="LongLaMP: leave out pairs with an empty prediction or gold, as the official "
            "evaluate_data does (default: an empty prediction scores 0 and is counted).",
        ),
    ] = False,
    json_out: JsonOpt = False,
    tsv_out: TsvOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score predictions with the official LaMP metrics, offline and deterministically.

    accuracy and macro F1 (LaMP-1, 2), MAE and RMSE (LaMP-3), rouge-1 and rouge-L F-measure
    (LaMP-4 to 7; the exact mean over questions); for LongLaMP, BLEU, rouge-1/2/L/LSum and
    METEOR, as its generation_metrics.py computes them. Golds come from --golds or from the data
    dir ({split}/LaMP_N/{set}_outputs.json).

    Examples:

      lampctl evaluate -t LaMP-4 -p preds.json --split user --set dev

      lampctl evaluate -t 3 -p preds.jsonl --golds golds.json --bootstrap 1000

      lampctl evaluate -t 7 -s time -p mine.json --compare baseline.json --by-user

      lampctl evaluate -t 4 -p pilot.json --partial    (10 users of a pilot)

      lampctl --json evaluate -p submission.zip --split time    (all tasks)
    """
    from lampctl.api.evaluation import score_files

    state = get_state(ctx, json_out, quiet)
    results = score_files(
        predictions, task, golds=golds, split=split, set=set_name, data_dir=data_dir,
        by_user=by_user, questions=questions, compare_with=compare_with, bootstrap=bootstrap,
        permutations=permutations, seed=seed, max_member_bytes=max_member_bytes,
        partial=partial, meteor=meteor, drop_empty=drop_empty, config=state.config,
    )  # fmt: skip
    payload = {"command": "evaluate", "split": split, "set": set_name, "seed": seed}
    if len(results) == 1 and not is_bundle(predictions):
        payload.update(results[0].as_dict())
    else:
        payload["tasks"] = {r.task: r.as_dict() for r in results}
    emit(state, payload, lambda console: _table(console, results))


def _table(console: Console, results: list[Evaluation]) -> None:
    any_boot = any(r.bootstrap for r in results)
    any_user = any(r.by_user for r in results)
    any_compare = any(r.compare for r in results)
    columns = ["task", "metric", "value", "better", "n"]
    if any_boot:
        columns.append("bootstrap median [95%]")
    if any_user:
        columns.append("per user mean ± sd")
    if any_compare:
        columns += ["other", "difference", "p"]
    table = folding_table(*columns)
    for r in results:
        for name, value in r.metrics.items():
            row = [
                r.task,
                name,
                f"{value:.4f}",
                "higher" if r.higher_is_better else "lower",
                str(r.count),
            ]
            if any_boot:
                b = (r.bootstrap or {}).get(name)
                row.append(f"{b['median']:.4f} [{b['low']:.4f}, {b['high']:.4f}]" if b else "")
            if any_user:
                u = (r.by_user or {}).get(name)
                row.append(f"{u['mean']:.4f} ± {u['std']:.4f}" if u else "")
            if any_compare:
                c = (r.compare or {}).get(name)
                row += (
                    [f"{c['other']:.4f}", f"{c['difference']:+.4f}", f"{c['p_value']:.4g}"]
                    if c
                    else ["", "", ""]
                )
            table.add_row(*row)
    console.print(table)
    for r in results:
        notes = []
        count = r.outside_labels
        if count and "bleu" in r.metrics:  # LongLaMP: empty predictions
            notes.append(f"{count} empty prediction{'s' if count != 1 else ''} (scored 0)")
        elif count:
            if r.metrics.keys() >= {"MAE"}:
                what = f"{count} unparsable or non-finite rating{'s' if count != 1 else ''}"
            else:
                what = f"{count} prediction{'s' if count != 1 else ''} outside the labels"
            notes.append(f"{what} (scored as the official scorer scores unparsable ones)")
        if r.dropped:
            pairs = "pair" if r.dropped == 1 else "pairs"
            notes.append(f"{r.dropped} {pairs} with an empty side left out (--drop-empty)")
        if r.by_user:
            notes.append(f"{r.by_user['users']} users")
        if r.coverage:
            c = r.coverage
            users = f", {c['users']} of {c['of_users']} users" if "users" in c else ""
            notes.append(f"PARTIAL: {c['questions']} of {c['of']} questions{users}")
        if notes:
            console.print(f"{r.task}: " + "; ".join(notes), markup=False)
