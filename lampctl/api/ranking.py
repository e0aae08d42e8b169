"""``lampctl.rank`` and ``rank_all``: what ``lampctl rank`` and ``lampctl rank-all`` do."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lampctl import settings
from lampctl.catalog.bundled import cached_registry as registry
from lampctl.errors import LampctlError, OptionError

if TYPE_CHECKING:
    from lampctl.catalog.tasks import Registry, TaskSpec
    from lampctl.reporting import Reporter
    from lampctl.retrieval.encoder import EncoderConfig
    from lampctl.retrieval.jobs import JobOutcome, JobPlan
    from lampctl.retrieval.rankfile import RankResult
from lampctl.arguments import checked_arguments
from lampctl.io.data import as_path

# --------------------------------------------------------------------------- rank


@checked_arguments
def rank_targets(
    found: Registry,
    spec: TaskSpec,
    split: str,
    sets: Sequence[str],
    data_dir: Path,
    input: Path | None = None,  # noqa: A002 - the command's option
    output: Path | None = None,
    fmt: str = "json",
    shard: Any = None,
) -> list[tuple[Path, Path]]:
    """(questions file, ranking file) for each file ``rank`` would rank."""
    from lampctl.catalog.datadir import check_data_dir, explicit_files
    from lampctl.retrieval.rankfile import default_output, planned_sets

    if shard is not None and fmt != "json":
        raise OptionError("shard", "shards are JSON rankings; gather them first")
    if explicit_files({"input": input}, task="any", selection={"set": sets},
                      data_dir_only={"output": output}):  # fmt: skip
        files = [(input, output or default_output(input, fmt))]
    else:
        check_data_dir(found, data_dir)
        files = []
        for set_name in planned_sets(found, data_dir, spec, split, sets):
            questions = found.path("questions", data_dir, spec, split, set_name)
            ranking = found.path("ranking", data_dir, spec, split, set_name)
            files.append((questions, ranking.with_suffix(".trec") if fmt == "trec" else ranking))
    if shard is not None:
        files = [(source, shard.path(target)) for source, target in files]
    return files


@checked_arguments
def rank(
    task: str,
    split: str = "user",
    sets: Sequence[str] = (),
    *,
    ranker: str | None = None,
    input: Path | str | None = None,  # noqa: A002 - the command's option
    output: Path | str | None = None,
    fmt: str = "json",
    top_k: int | None = None,
    use_date: bool = False,
    data_dir: Path | str | None = None,
    shard: str | None = None,
    jobs: int | None = None,
    encoder: EncoderConfig | None = None,
    encoder_options: Mapping[str, Any] | None = None,
    force: bool = False,
    config: Path | str | None = None,
    reporter: Reporter | None = None,
    log: Callable[[str], None] | None = None,
    on_file: Callable[[str], None] | None = None,
) -> list[RankResult]:
    """Rank each question's profile against the question, as ``lampctl rank`` does: a set's
    files in a data dir (all present, or ``sets``), or ``input`` into ``output``; one record
    beside each ranking. ``encoder`` (default: ``encoder.encoder_config``, given
    ``encoder_options``: checkpoint, revision, device, precision, batch_size, max_tokens,
    cache_dir) matters only for the encoder ranker; ``shard`` is ``"i/n"`` (or the SLURM
    array's). A ranking whose record says it is up to date (same input, ranker and
    parameters) is skipped, as ``rank-all`` skips it, unless ``force``."""
    from lampctl.io.outputs import check_outputs
    from lampctl.ledger import freshness, outputs_with_record, ranking_parameters
    from lampctl.parallel import usable_cpus
    from lampctl.retrieval.encoder import EncoderConfig, encoder_config
    from lampctl.retrieval.rankers import CPU_RANKERS, check_ranker_name, make_ranker
    from lampctl.retrieval.rankfile import RankResult, rank_with_record
    from lampctl.retrieval.shards import parse_shard

    found = registry(config)
    spec = found.task(task)
    split = found.check_split(split)
    name = check_ranker_name(ranker) if ranker else spec.default_ranker[split]
    parsed = parse_shard(shard)
    files = rank_targets(
        found,
        spec,
        split,
        [found.check_set(s) for s in sets],
        settings.data_dir(data_dir),
        as_path(input),
        as_path(output),
        fmt,
        parsed,
    )
    for source, target in files:  # before the encoder loads
        check_outputs(outputs_with_record(target), {"questions": source})
    if name in CPU_RANKERS:  # a BM25 or recency run reads no encoder settings
        encoder = EncoderConfig()
    elif encoder is None:
        encoder = encoder_config(found, **(encoder_options or {}))
    parameters = ranking_parameters(name, encoder, use_date, top_k, fmt)
    extra = {"shard": parsed.label} if parsed else None
    done: dict[Path, RankResult] = {}  # the up-to-date rankings, skipped
    for questions_path, ranking_path in files:
        state, record = freshness(ranking_path, questions_path, parameters, extra, tidy=True)
        if state == "up to date" and record is not None and not force:
            done[ranking_path] = RankResult(
                task=spec.name,
                input=str(questions_path),
                output=str(ranking_path),
                ranker=name,
                format=fmt,
                questions=int(record.get("questions") or 0),
                profile_items=int(record.get("profile_items") or 0),
                seconds=0.0,
                parameters=dict(parameters),
                state="up to date",
            )
    if len(done) == len(files):  # nothing to rank: no encoder is loaded
        return [done[target] for _, target in files]
    engine = make_ranker(name, encoder, log=log, jobs=jobs or usable_cpus())
    results: list[RankResult] = []
    try:
        for questions_path, ranking_path in files:
            if ranking_path in done:
                results.append(done[ranking_path])
                continue
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
                    shard=parsed,
                    count_texts=True,  # an encoder's progress: texts (rank-all: questions)
                )
            )
            if on_file:
                on_file(str(ranking_path))
    finally:
        engine.close()
    return results


@dataclass
class RankAllRun:
    """What ``rank_all`` did: the plan, each job's outcome (none on a dry run), the devices
    the encoder used, one line per distinct failure, and the wall time."""

    plans: list[JobPlan]
    outcomes: list[JobOutcome] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


@checked_arguments
def rank_all(
    tasks: Sequence[str] = (),
    splits: Sequence[str] = (),
    sets: Sequence[str] = (),
    *,
    ranker: str | None = None,
    data_dir: Path | str | None = None,
    encoder_options: Mapping[str, Any] | None = None,
    device: str | None = None,
    devices: str = "auto",
    use_date: bool = False,
    jobs: int | None = None,
    force: bool = False,
    dry_run: bool = False,
    shard: str | None = None,
    config: Path | str | None = None,
    display: Callable[[list[JobPlan], str], AbstractContextManager[Any]] | None = None,
) -> RankAllRun:
    """Rank every task, split and set present with the paper's best ranker (or ``ranker``),
    as ``lampctl rank-all`` does: up-to-date rankings skipped; the encoder's checkpoint found
    once before any job (a node that cannot load it still runs the BM25 and recency jobs, and
    the encoder jobs fail with one folded error); one encoder worker per device. ``display``
    makes the observer of the jobs' progress from the plans and a note on the encoder."""
    from lampctl.catalog.datadir import check_data_dir
    from lampctl.parallel import usable_cpus
    from lampctl.retrieval.encoder import (
        EncoderConfig,
        encoder_config,
        locate_checkpoint,
        resolve_devices,
    )
    from lampctl.retrieval.jobs import fold_errors, plan_rank_all, run_rank_all
    from lampctl.retrieval.rankers import CPU_RANKERS, check_ranker_name
    from lampctl.retrieval.shards import parse_shard

    if device is not None and devices != "auto":
        raise OptionError(
            "device", "use device=NAME or devices=LIST, not both", mentions=("device", "devices")
        )
    found, folder = registry(config), settings.data_dir(data_dir)
    name = check_ranker_name(ranker) if ranker else None
    given_device = {"device": device} if device is not None else {}  # over encoder_options'
    encoder = (  # a BM25 or recency run reads no encoder settings
        EncoderConfig()
        if name in CPU_RANKERS
        else encoder_config(found, **{**(encoder_options or {}), **given_device})
    )
    check_data_dir(found, folder)
    plans = plan_rank_all(
        found, folder, list(tasks), list(splits), list(sets), name, encoder, use_date,
        count=dry_run, shard=parse_shard(shard),
    )  # fmt: skip
    if dry_run:
        return RankAllRun(plans)
    needs_encoder = any(
        p.job.ranker not in CPU_RANKERS
        and (force or p.state != "up to date")
        and not p.state.startswith("needs ")
        for p in plans
    )
    chosen: list[str] = []
    if device is not None:
        chosen = [device]
    elif needs_encoder:
        chosen = resolve_devices(devices if devices != "auto" else encoder.device)
    unavailable = None
    if needs_encoder:  # once, before any job: an offline node learns it here, in one line
        try:
            location = locate_checkpoint(encoder.checkpoint, encoder.revision)
            encoder = replace(encoder, location=location)
        except LampctlError as exc:  # the jobs that need no encoder still run
            unavailable = str(exc)
    started = time.perf_counter()
    note = (
        f"encoder {encoder.checkpoint} ({encoder.precision}) on {', '.join(chosen)}"
        if needs_encoder
        else ""
    )
    with display(plans, note) if display else contextlib.nullcontext() as observer:
        outcomes = run_rank_all(
            plans, encoder=encoder, devices=chosen or ["auto"], jobs=jobs or usable_cpus(),
            use_date=use_date, force=force, observer=observer, encoder_unavailable=unavailable,
        )  # fmt: skip
    failed = [o for o in outcomes if o.status == "failed"]
    errors = fold_errors([(o.key, o.error or "") for o in failed if o.error != unavailable])
    without = len(failed) - sum(o.error != unavailable for o in failed)
    if without:  # one line for every job the missing encoder stopped
        errors.insert(0, f"{without} encoder job(s) not run: {unavailable}")
    return RankAllRun(plans, outcomes, chosen, errors, time.perf_counter() - started)
