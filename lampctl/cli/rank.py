"""``lampctl rank``: ranking files for one task and split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from lampctl import settings
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
    TaskOpt,
    TopKOpt,
    UseDateOpt,
    emit,
    folding_table,
    get_state,
    note_finished,
    usable_cpus,
)
from lampctl.data import refuse_overwriting_inputs
from lampctl.datadir import check_data_dir
from lampctl.encoder import EncoderConfig
from lampctl.rankers import CPU_RANKERS, check_ranker_name, make_ranker
from lampctl.ranking import (
    RankResult,
    default_output,
    planned_sets,
    rank_with_record,
)
from lampctl.records import ranking_parameters
from lampctl.settings import DEFAULT_DATA_DIR
from lampctl.shards import parse_shard


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
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Rank every question's profile against the question, best item first.

    Writes {set}_questions_rank.json = {question id: \\[profile ids, best first]} beside each
    questions file, using the task's default ranker for the split unless --ranker says otherwise.

    Examples:

      lampctl rank --task LaMP-3 --split time

      lampctl rank -t 5 --set dev --ranker bm25 --format trec --top-k 10

      lampctl rank -t LaMP-2 --input my_questions.json --output my_rank.json --device cuda:1

      lampctl rank -t 4 --set train --shard 3/8    (then: lampctl gather -t 4)
    """
    state = get_state(ctx, json_out, quiet)
    if output_path is not None and input_path is None:
        raise typer.BadParameter("--output needs --input", param_hint="--output")
    if sets and input_path is not None:
        raise typer.BadParameter("--set and --input exclude each other", param_hint="--set")
    shard = parse_shard(shard_spec)
    if shard is not None and fmt != "json":
        raise typer.BadParameter(
            "shards are JSON rankings; gather them first", param_hint="--shard"
        )
    registry = state.registry()
    spec = registry.task(task)
    split = registry.check_split(split)
    ranker_name = check_ranker_name(ranker) if ranker else spec.default_ranker[split]

    if input_path is not None:
        files = [(input_path, output_path or default_output(input_path, fmt))]
    else:
        check_data_dir(registry, data_dir)
        files = []
        for set_name in planned_sets(registry, data_dir, spec, split, sets or []):
            questions = registry.path("questions", data_dir, spec, split, set_name)
            ranking = registry.path("ranking", data_dir, spec, split, set_name)
            files.append((questions, ranking.with_suffix(".trec") if fmt == "trec" else ranking))
    if shard is not None:
        files = [(source, shard.path(target)) for source, target in files]
    for source, target in files:  # before the encoder loads
        refuse_overwriting_inputs([target], {"questions": source})

    results: list[RankResult] = []
    with CliReporter(state) as reporter:
        config = (  # a BM25 or recency run reads no encoder settings
            EncoderConfig()
            if ranker_name in CPU_RANKERS
            else settings.encoder_settings(
                registry, checkpoint, revision, device, precision, batch_size, max_tokens, cache_dir
            )
        )
        engine = make_ranker(ranker_name, config, log=reporter.log, jobs=jobs or usable_cpus())
        parameters = ranking_parameters(ranker_name, config, use_date, top_k, fmt)
        try:
            for questions_path, ranking_path in files:
                results.append(
                    rank_with_record(
                        spec,
                        questions_path,
                        ranking_path,
                        engine,
                        parameters,
                        use_date=use_date,
                        top_k=top_k,
                        fmt=fmt,
                        reporter=reporter,
                        shard=shard,
                    )
                )
                note_finished(str(ranking_path))
        finally:
            engine.close()

    def human(console: Console) -> None:
        table = folding_table("input", "questions", "items", "ranker", "seconds", "output")
        for r in results:
            table.add_row(
                r.input,
                str(r.questions),
                str(r.profile_items),
                r.ranker,
                f"{r.seconds:.2f}",
                r.output,
            )
        console.print(table)

    emit(
        state,
        {
            "command": "rank",
            "task": spec.name,
            "split": split,
            "ranker": ranker_name,
            "shard": shard.label if shard else None,
            "files": [r.as_dict() for r in results],
        },
        human,
    )
