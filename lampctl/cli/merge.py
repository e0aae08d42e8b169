"""``lampctl merge`` and ``lampctl gather``: assembling ranked files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from lampctl.cli._common import (
    DataDirOpt,
    JsonOpt,
    QuietOpt,
    SetsOpt,
    SplitsOpt,
    TasksOpt,
    TopKOpt,
    emit,
    get_state,
)
from lampctl.data import load_questions
from lampctl.errors import InputError, ShardError
from lampctl.merge import MERGE_FORMATS, MergeResult, merge_set
from lampctl.ranking import planned_sets
from lampctl.shards import GatherResult, find_shards, gather


def merge(
    ctx: typer.Context,
    task: Annotated[str, typer.Option("--task", "-t", help="Task: LaMP-3, LaMP_3 or 3.")],
    split: Annotated[str, typer.Option("--split", "-s", help="user or time.")] = "user",
    sets: SetsOpt = None,
    data_dir: DataDirOpt = Path("data_raw"),
    top_k: TopKOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="json or jsonl.")] = "json",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Merge questions, ranked profiles and gold outputs into {set}_questions_merged.json.

    Each question keeps its fields; its profile is reordered by the ranking (the first
    --top-k items) and its gold "output" is attached (test sets have none).

    Examples:

      lampctl merge --task LaMP-3 --split time

      lampctl merge -t 5 --set dev --top-k 4 --format jsonl
    """
    state = get_state(ctx, json_out, quiet)
    if fmt not in MERGE_FORMATS:
        raise typer.BadParameter(f"use {' or '.join(MERGE_FORMATS)}", param_hint="--format")
    registry = state.registry()
    spec = registry.task(task)
    split = registry.check_split(split)
    results: list[MergeResult] = []
    for set_name in planned_sets(registry, data_dir, spec, split, sets or []):

        def path(kind: str, set_name: str = set_name) -> Path:
            return registry.path(kind, data_dir, spec, split, set_name)

        ranking = path("ranking")
        if not ranking.exists():
            raise InputError(f"{ranking}: no ranking; run 'lampctl rank -t {spec.name}' first")
        outputs = path("outputs") if path("outputs").exists() else None
        if outputs is None and set_name != "test":
            raise InputError(f"{path('outputs')}: outputs file not found")
        target = path("merged")
        if fmt == "jsonl":
            target = target.with_suffix(".jsonl")
        results.append(merge_set(path("questions"), ranking, outputs, target, top_k, fmt))

    def human(console: Console) -> None:
        table = Table("output", "questions", "gold outputs", "seconds")
        for r in results:
            table.add_row(
                r.output, str(r.questions), "yes" if r.with_outputs else "no", f"{r.seconds:.2f}"
            )
        console.print(table)

    emit(state, {"command": "merge", "files": [r.as_dict() for r in results]}, human)


def gather_command(
    ctx: typer.Context,
    tasks: TasksOpt = None,
    splits: SplitsOpt = None,
    sets: SetsOpt = None,
    data_dir: DataDirOpt = Path("data_raw"),
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Gather shard rankings (from --shard i/n runs) into the final ranking files.

    Checks that every shard is present and was made from the same input with the same
    parameters, then writes the ranking atomically: byte-identical to an unsharded run.
    Without --task, gathers every ranking that has shard files.

    Examples:

      lampctl gather --task LaMP-4 --split user

      lampctl gather
    """
    state = get_state(ctx, json_out, quiet)
    registry = state.registry()
    results: list[GatherResult] = []
    for spec, split, set_name in registry.combinations(tasks or [], splits or [], sets or []):
        final = registry.path("ranking", data_dir, spec, split, set_name)
        if not find_shards(final):
            continue
        questions_path = registry.path("questions", data_dir, spec, split, set_name)
        results.append(gather(final, questions_path, load_questions(questions_path)))
    if not results:
        raise ShardError(f"{data_dir}: no shard files to gather for the chosen tasks")

    def human(console: Console) -> None:
        table = Table("ranking", "shards", "questions")
        for r in results:
            table.add_row(r.output, str(r.shards), str(r.questions))
        console.print(table)

    emit(state, {"command": "gather", "files": [r.as_dict() for r in results]}, human)
