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
    TsvOpt,
    emit,
    folding_table,
    get_state,
    note_finished,
    tell_left_out,
)
from lampctl.settings import DEFAULT_DATA_DIR


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
    tsv_out: TsvOpt = False,
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
    from lampctl.api.merging import merge as merge_files

    state = get_state(ctx, json_out, quiet)
    run = merge_files(
        tasks or [], splits or [], sets or [], data_dir=data_dir, questions=questions_file,
        ranking=ranking_file, outputs=outputs_file, output=output_file, no_ranking=no_ranking,
        top_k=top_k, fmt=fmt, force=force, allow_stale=allow_stale, config=state.config,
        on_file=note_finished,
    )  # fmt: skip
    tell_left_out(state, run.left_out)

    def human(console: Console) -> None:
        table = folding_table("output", "questions", "gold outputs", "status", "seconds")
        for r in run.results:
            outputs = "yes" if r.with_outputs else "no"
            table.add_row(r.output, str(r.questions), outputs, r.status, f"{r.seconds:.2f}")
        console.print(table)

    payload = {"command": "merge", "files": [r.as_dict() for r in run.results]}
    emit(state, {**payload, "left_out": run.left_out}, human)


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
    tsv_out: TsvOpt = False,
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
    from lampctl.api.merging import gather

    state = get_state(ctx, json_out, quiet)
    results = gather(
        tasks or [], splits or [], sets or [], data_dir=data_dir, clean=clean,
        predictions=predictions, config=state.config,
    )  # fmt: skip
    for result in results:
        note_finished(result.output)

    def human(console: Console) -> None:
        if predictions is not None:
            (r,) = results
            line = f"{r.predictions} predictions from {r.shards} shards -> {r.output}"
            console.print(line, markup=False)
            return
        table = folding_table("ranking", "shards", "questions")
        for r in results:
            table.add_row(r.output, str(r.shards), str(r.questions))
        console.print(table)

    emit(state, {"command": "gather", "files": [r.as_dict() for r in results]}, human)
