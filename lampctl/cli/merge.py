"""``lampctl merge`` and ``lampctl gather``: assembling ranked files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lampctl.cli._common import (
    DataDirOpt,
    JsonOpt,
    QuietOpt,
    SetsOpt,
    SplitsOpt,
    TasksOpt,
    TopKOpt,
    emit,
    folding_table,
    get_state,
    note_finished,
    tell_left_out,
)
from lampctl.data import load_questions
from lampctl.datadir import ranked_sets
from lampctl.errors import ShardError
from lampctl.merge import MERGE_FORMATS, MergeResult, merge_set, merged_path
from lampctl.settings import DEFAULT_DATA_DIR
from lampctl.shards import GatherResult, find_shards, gather


def merge(
    ctx: typer.Context,
    tasks: TasksOpt = None,
    splits: SplitsOpt = None,
    sets: SetsOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    top_k: TopKOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="json or jsonl.")] = "json",
    no_ranking: Annotated[
        bool,
        typer.Option("--no-ranking", help="Keep each profile's own order (no ranking needed)."),
    ] = False,
    questions_file: Annotated[
        Path | None, typer.Option("--questions", help="Merge these files instead: questions,")
    ] = None,
    ranking_file: Annotated[
        Path | None, typer.Option("--ranking", help="... its ranking (omit with --no-ranking),")
    ] = None,
    outputs_file: Annotated[
        Path | None, typer.Option("--outputs", help="... its gold outputs (optional),")
    ] = None,
    output_file: Annotated[
        Path | None, typer.Option("--output", "-o", help="... into this file.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Merge again even if up to date.")] = False,
    allow_stale: Annotated[
        bool,
        typer.Option(
            "--allow-stale",
            help="Merge a ranking whose record says it was made from other questions.",
        ),
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Merge questions, ranked profiles and gold outputs into {set}_questions_merged.json.

    Each question keeps its fields; its profile is reordered by the ranking (the first
    --top-k items) and its gold "output" is attached (test sets have none). Every ranking is
    checked against its questions first. Without --task, every task, split and set that has a
    ranking is merged. --top-k N writes {set}_questions_merged_topN.json and --no-ranking
    {set}_questions_merged_unranked.json, so choices never overwrite each other; a record
    beside each file lets reruns skip what is up to date and lets status see it go stale.

    Examples:

      lampctl merge --task LaMP-3 --split time

      lampctl merge -t 5 --set dev --top-k 4 --format jsonl

      lampctl merge    (everything ranked)

      lampctl merge --questions q.json --ranking r.json --outputs o.json -o m.json
    """
    state = get_state(ctx, json_out, quiet)
    if fmt not in MERGE_FORMATS:
        raise typer.BadParameter(f"use {' or '.join(MERGE_FORMATS)}", param_hint="--format")
    if no_ranking and ranking_file is not None:
        raise typer.BadParameter(
            "--ranking and --no-ranking exclude each other", param_hint="--ranking"
        )
    left_out: list[str] = []
    explicit = [questions_file, ranking_file, outputs_file, output_file]
    if any(p is not None for p in explicit):
        if questions_file is None or output_file is None:
            raise typer.BadParameter(
                "explicit files need --questions and --output", param_hint="--questions"
            )
        if ranking_file is None and not no_ranking:
            raise typer.BadParameter("give --ranking, or --no-ranking", param_hint="--ranking")
        if tasks or splits or sets:
            raise typer.BadParameter(
                "--task/--split/--set and explicit files exclude each other", param_hint="--task"
            )
        jobs = [(questions_file, ranking_file, outputs_file, output_file)]
    else:
        registry = state.registry()
        sets_found = ranked_sets(
            registry,
            data_dir,
            tasks or [],
            splits or [],
            sets or [],
            not no_ranking,
            left_out=left_out,
        )
        jobs = [
            (
                s.questions,
                s.ranking,
                s.outputs,
                merged_path(
                    registry.path("merged", data_dir, s.task, s.split, s.set),
                    top_k,
                    fmt,
                    ranked=not no_ranking,
                ),
            )
            for s in sets_found
        ]
    tell_left_out(state, left_out)
    results: list[MergeResult] = []
    for questions, ranking, outputs, target in jobs:
        result = merge_set(questions, ranking, outputs, target, top_k, fmt, force, allow_stale)
        results.append(result)
        note_finished(result.output)

    def human(console: Console) -> None:
        table = folding_table("output", "questions", "gold outputs", "status", "seconds")
        for r in results:
            table.add_row(
                r.output,
                str(r.questions),
                "yes" if r.with_outputs else "no",
                r.status,
                f"{r.seconds:.2f}",
            )
        console.print(table)

    emit(
        state,
        {"command": "merge", "files": [r.as_dict() for r in results], "left_out": left_out},
        human,
    )


def gather_command(
    ctx: typer.Context,
    tasks: TasksOpt = None,
    splits: SplitsOpt = None,
    sets: SetsOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    clean: Annotated[
        bool, typer.Option("--clean", help="Remove the shard files once gathered.")
    ] = False,
    predictions: Annotated[
        Path | None,
        typer.Option("--predictions", help="Gather this predictions file's shards instead."),
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Gather shard rankings (from --shard i/n runs) into the final ranking files.

    Checks that every shard is present and was made from the same input with the same
    parameters, and is unchanged since written (its record's sha256), then writes the
    ranking atomically: byte-identical to an unsharded run. Without --task, gathers every
    ranking that has shard files.

    Examples:

      lampctl gather --task LaMP-4 --split user

      lampctl gather --clean    (and remove the shard files)

      lampctl gather

      lampctl gather --predictions dev_peft_file_predictions_t5-1a2b3c4d.json
    """
    state = get_state(ctx, json_out, quiet)
    if predictions is not None:  # peft predict --shard i/n files
        from lampctl.model.predicting import gather_predictions

        joined = gather_predictions(predictions, clean)
        note_finished(joined.output)
        emit(
            state,
            {"command": "gather", "files": [joined.as_dict()]},
            lambda console: console.print(
                f"{joined.predictions} predictions from {joined.shards} shards -> {joined.output}",
                markup=False,
            ),
        )
        return
    registry = state.registry()
    results: list[GatherResult] = []
    for spec, split, set_name in registry.combinations(
        tasks or [], splits or [], sets or [], data_dir
    ):
        final = registry.path("ranking", data_dir, spec, split, set_name)
        if not find_shards(final):
            continue
        questions_path = registry.path("questions", data_dir, spec, split, set_name)
        results.append(gather(final, questions_path, load_questions(questions_path), clean))
    if not results:
        raise ShardError(f"{data_dir}: no shard files to gather for the chosen tasks")

    def human(console: Console) -> None:
        table = folding_table("ranking", "shards", "questions")
        for r in results:
            table.add_row(r.output, str(r.shards), str(r.questions))
        console.print(table)

    emit(state, {"command": "gather", "files": [r.as_dict() for r in results]}, human)
