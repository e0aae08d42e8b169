"""``lampctl.merge`` and ``lampctl.gather``: what ``lampctl merge`` and ``lampctl gather`` do."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lampctl import settings
from lampctl.arguments import checked_arguments
from lampctl.catalog.bundled import cached_registry as registry
from lampctl.errors import OptionError
from lampctl.io.data import as_path


@dataclass
class MergeRun:
    """What ``merge`` did: one result per file, and the sets it left out and why."""

    results: list[Any]  # merge.MergeResult
    left_out: list[str]


@checked_arguments
def merge(
    tasks: Sequence[str] = (),
    splits: Sequence[str] = (),
    sets: Sequence[str] = (),
    *,
    data_dir: Path | str | None = None,
    questions: Path | str | None = None,
    ranking: Path | str | None = None,
    outputs: Path | str | None = None,
    output: Path | str | None = None,
    no_ranking: bool = False,
    top_k: int | None = None,
    fmt: str = "json",
    force: bool = False,
    allow_stale: bool = False,
    config: Path | str | None = None,
    on_file: Callable[[str], None] | None = None,
) -> MergeRun:
    """Questions, ranked profiles (or the profile order, ``no_ranking``) and gold outputs in
    one file per set: every ranked set of the data dir asked for, or explicit files."""
    from lampctl.catalog.datadir import explicit_files, ranked_sets
    from lampctl.merge import MERGE_FORMATS, merge_set, merged_path

    if fmt not in MERGE_FORMATS:
        raise OptionError("format", f"use {' or '.join(MERGE_FORMATS)}")
    if no_ranking and ranking is not None:
        raise OptionError(
            "ranking",
            "ranking=PATH and no_ranking=True exclude each other",
            mentions=("ranking", "no_ranking"),
        )
    left_out: list[str] = []
    explicit = [as_path(p) for p in (questions, ranking, outputs, output)]
    files = dict(zip(("questions", "ranking", "outputs", "output"), explicit, strict=True))
    selection = {"task": tasks, "split": splits, "set": sets}
    need = {"questions": questions, "output": output}
    if explicit_files(files, need, selection=selection):
        if ranking is None and not no_ranking:
            raise OptionError(
                "ranking",
                "give ranking=PATH, or no_ranking=True",
                mentions=("ranking", "no_ranking"),
            )
        jobs = [(*explicit, None)]  # explicit files name no task: any task's golds
    else:
        found, folder = registry(config), settings.data_dir(data_dir)
        chosen = ranked_sets(found, folder, tasks, splits, sets, not no_ranking, left_out=left_out)
        jobs = [
            (s.questions, s.ranking, s.outputs, merged_path(
                found.path("merged", folder, s.task, s.split, s.set), top_k, fmt,
                ranked=not no_ranking,
            ), s.task)
            for s in chosen
        ]  # fmt: skip
    results = []
    for source, ranked, golds, target, task in jobs:
        result = merge_set(source, ranked, golds, target, top_k, fmt, force, allow_stale, task)
        results.append(result)
        if on_file is not None:
            on_file(result.output)
    return MergeRun(results, left_out)


@checked_arguments
def gather(
    tasks: Sequence[str] = (),
    splits: Sequence[str] = (),
    sets: Sequence[str] = (),
    *,
    data_dir: Path | str | None = None,
    clean: bool = False,
    predictions: Path | str | None = None,
    config: Path | str | None = None,
) -> list[Any]:
    """Shard files into their final files: every ranking of the data dir asked for that has
    shards (``shards.GatherResult`` each), or the shards of one ``predictions`` file
    (``peft predict --shard``; a ``PredictionsGathered``)."""
    from lampctl.errors import ShardError
    from lampctl.io.data import load_questions
    from lampctl.retrieval.shards import find_shards
    from lampctl.retrieval.shards import gather as gather_ranking

    if predictions is not None:
        from lampctl.model.predicting import gather_predictions

        return [gather_predictions(Path(predictions), clean)]
    found, folder = registry(config), settings.data_dir(data_dir)
    results = []
    for spec, split, set_name in found.combinations(tasks, splits, sets, folder):
        final = found.path("ranking", folder, spec, split, set_name)
        if find_shards(final):
            questions = found.path("questions", folder, spec, split, set_name)
            results.append(gather_ranking(final, questions, load_questions(questions), clean))
    if not results:
        raise ShardError(f"{folder}: no shard files to gather for the chosen tasks")
    return results
