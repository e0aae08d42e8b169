"""``lampctl rank``: ranking files for one task and split."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from lampctl import api
from lampctl.cli._common import (
    BatchSizeOpt,
    CacheDirOpt,
    CheckpointOpt,
    CliReporter,
    DataDirOpt,
    DeviceOpt,
    FormatOpt,
    JobsOpt,
    JsonOpt,
    MaxTokensOpt,
    PrecisionOpt,
    QuietOpt,
    RankerOpt,
    RevisionOpt,
    SetsOpt,
    ShardOpt,
    SplitOpt,
    State,
    TaskOpt,
    TopKOpt,
    TsvOpt,
    UseDateOpt,
    emit,
    folding_table,
    get_state,
    note_finished,
)
from lampctl.retrieval.shards import parse_shard
from lampctl.settings import DEFAULT_DATA_DIR

if TYPE_CHECKING:
    from lampctl.retrieval.rankfile import RankResult


def rank(
    ctx: typer.Context,
    task: TaskOpt,
    split: SplitOpt = "user",
    sets: SetsOpt = None,
    ranker: RankerOpt = None,
    input_path: Annotated[
        Path | None, typer.Option("--input", "-i", help="Rank this one questions file instead.")
    ] = None,
    output_path: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Where --input's ranking goes (default: beside it)."),
    ] = None,
    fmt: FormatOpt = "json",
    top_k: TopKOpt = None,
    use_date: UseDateOpt = False,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    checkpoint: CheckpointOpt = None,
    revision: RevisionOpt = None,
    device: DeviceOpt = None,
    batch_size: BatchSizeOpt = None,
    max_tokens: MaxTokensOpt = None,
    precision: PrecisionOpt = None,
    cache_dir: CacheDirOpt = None,
    jobs: JobsOpt = None,
    shard_spec: ShardOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Rank again even if up to date.")] = False,
    json_out: JsonOpt = False,
    tsv_out: TsvOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Rank every question's profile against the question, best item first.

    Writes {set}_questions_rank.json = {question id: \\[profile ids, best first]} beside each
    questions file, using the task's default ranker for the split unless --ranker says otherwise.
    A ranking whose record says it is up to date (same input, ranker and parameters) is skipped;
    --force ranks it again.

    Examples:

      lampctl rank --task LaMP-3 --split time

      lampctl rank -t 5 --set dev --ranker bm25 --format trec --top-k 10

      lampctl rank -t 2 --input my_q.json --output my_rank.json --device cuda:1

      lampctl rank -t 4 --set train --shard 3/8    (then: lampctl gather -t 4)
    """
    state = get_state(ctx, json_out, quiet)
    encoder_options = {
        "checkpoint": checkpoint, "revision": revision, "device": device,
        "precision": precision, "batch_size": batch_size, "max_tokens": max_tokens,
        "cache_dir": cache_dir,
    }  # fmt: skip
    with CliReporter(state) as reporter:
        results = api.rank(
            task, split, sets or [], ranker=ranker, input=input_path, output=output_path,
            fmt=fmt, top_k=top_k, use_date=use_date, data_dir=data_dir, shard=shard_spec,
            jobs=jobs, encoder_options=encoder_options, force=force, config=state.config,
            reporter=reporter, log=reporter.log, on_file=note_finished,
        )  # fmt: skip
    _show_rank(state, state.registry().task(task).name, split, shard_spec, results)


def _show_rank(
    state: State, task: str, split: str, shard_spec: str | None, results: list[RankResult]
) -> None:
    def human(console: Console) -> None:
        table = folding_table("input", "questions", "items", "ranker", "seconds", "output")
        for r in results:
            seconds = f"{r.seconds:.2f}" if r.state == "ranked" else r.state
            table.add_row(
                r.input, str(r.questions), str(r.profile_items), r.ranker, seconds, r.output
            )
        console.print(table)

    shard = parse_shard(shard_spec)
    payload = {
        "command": "rank", "task": task, "split": split,
        "ranker": results[0].ranker if results else None,
        "shard": shard.label if shard else None,
        "files": [r.as_dict() for r in results],
    }  # fmt: skip
    emit(state, payload, human)
