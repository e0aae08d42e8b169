"""``peft-data`` files: one set's training rows, evaluation rows and user list, their names
(which carry the choices, so variants never overwrite each other) and their record."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lampctl import settings
from lampctl.arguments import checked_arguments
from lampctl.catalog.tasks import Registry, TaskSpec
from lampctl.errors import InputError, OptionError
from lampctl.peftdata.rows import PeftBuild, PeftOptions, PeftRow, PeftStats, jsonl


@dataclass(frozen=True)
class PeftTargets:
    train: Path
    evaluation: Path
    users: Path


@dataclass(frozen=True)
class PeftJob:
    task: TaskSpec
    set: str
    questions: Path
    outputs: Path | None
    ranking: Path | None
    targets: PeftTargets


@dataclass(frozen=True)
class PeftResult:
    task: str
    set: str
    output: str
    eval_output: str
    users_output: str
    status: str  # written | up to date
    stats: PeftStats | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["stats"] = self.stats.as_dict() if self.stats else None
        return out


def variant_name(
    set_name: str,
    task: TaskSpec,
    options: PeftOptions,
    users_file: Path | None,
    shard: tuple[int, int] | None,
) -> str:
    """``dev_peft_file``, ``dev_peft_ranked_seed3_len512_t5-base-1a2b3c4d_val0.2_max50``, ...:
    every choice that changes the rows is in the name."""
    parts = [f"{set_name}_peft_{options.order}"]
    if task.peft is not None and task.peft.cut:
        parts.append(f"seed{options.seed}")
    if options.tokenizer is not None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", options.tokenizer.rstrip("/").split("/")[-1])
        digest = hashlib.sha256(options.tokenizer.encode()).hexdigest()[:8]
        length = f"len{options.max_length}_" if options.max_length else ""
        parts.append(f"{length}{slug or 'tokenizer'}-{digest}")
    if options.val_ratio is not None:
        parts.append(f"val{options.val_ratio:g}")
    if options.max_items is not None:
        parts.append(f"max{options.max_items}")
    if users_file is not None:
        parts.append(f"users-{hashlib.sha256(users_file.read_bytes()).hexdigest()[:8]}")
    if shard is not None:
        parts.append(f"shard-{shard[0]}-of-{shard[1]}")
    return "_".join(parts)


def targets_beside(questions: Path, stem: str) -> PeftTargets:
    return PeftTargets(
        questions.with_name(f"{stem}.jsonl"),
        questions.with_name(f"{stem}_eval.jsonl"),
        questions.with_name(f"{stem}_users.json"),
    )


def read_users_file(path: Path) -> list[str]:
    from lampctl.io.data import read_json

    data = read_json(path, "users file")
    if not isinstance(data, list) or not all(isinstance(u, str | int) for u in data):
        raise InputError(f"{path}: expected a JSON list of user ids")
    return [str(u) for u in data]


class SourceCutter:
    """The fork's truncation: tokenize each source with ``max_length`` and truncation, decode
    without special tokens; and the token counts the summary reports."""

    def __init__(self, name: str, revision: str | None, max_length: int | None) -> None:
        from lampctl.inputs.tokenizer import open_tokenizer

        self.tokenizer = open_tokenizer(name, revision).full
        limit = max_length or int(self.tokenizer.model_max_length)
        if limit > 1_000_000:
            raise OptionError("max_length", f"tokenizer {name} sets no maximum; give --max-length")
        self.max_length = limit

    def cut(self, rows: list[PeftRow]) -> tuple[list[int], list[int]]:
        """Truncate the rows' sources in place; (source tokens, target tokens) per row."""
        if not rows:
            return [], []
        ids = self.tokenizer([r.source for r in rows], max_length=self.max_length, truncation=True)[
            "input_ids"
        ]
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        for row, text in zip(rows, texts, strict=True):
            row.source = text
        targets = self.tokenizer([r.target for r in rows])["input_ids"]
        return [len(i) for i in ids], [len(t) for t in targets]


def _spread(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "min": 0, "max": 0}
    return {
        "mean": round(sum(values) / len(values), 2),
        "min": min(values),
        "max": max(values),
    }


def peft_file(
    job: PeftJob,
    options: PeftOptions,
    *,
    users_file: Path | None = None,
    shard: tuple[int, int] | None = None,
    revision: str | None = None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> PeftResult:
    """One set's three files and the record beside the training rows; skipped when the record
    says they are up to date. The training rows are hashed as they are written, and the inputs
    hashed (where their record's sha256 cannot be reused) while they are read."""
    from lampctl.io.data import atomic_writer, load_outputs, sha256_file
    from lampctl.io.streams import HashingWriter
    from lampctl.ledger import DerivedOutput, PendingFingerprints, sources_of
    from lampctl.merge import load_ranking, ranking_top_k

    started = time.perf_counter()
    targets = job.targets
    sources = sources_of(
        questions=job.questions, outputs=job.outputs, ranking=job.ranking, users=users_file
    )
    parameters = {**options.as_record(job.task), "shard": list(shard) if shard else None}
    if revision is not None:
        parameters["revision"] = revision
    derived = DerivedOutput(
        targets.train, sources, parameters,
        also={"eval_output": targets.evaluation, "users_output": targets.users},
    )  # fmt: skip
    record = derived.up_to_date(force)
    if record is not None and all(  # the files written beside the rows are unchanged too
        path.exists() and record.get("written", {}).get(key) == sha256_file(path)
        for key, path in (("eval", targets.evaluation), ("users", targets.users))
    ):
        stats = record.get("stats")
        return _result(job, "up to date", PeftStats(**stats) if stats else None, started)
    cutter = (
        SourceCutter(options.tokenizer, revision, options.max_length) if options.tokenizer else None
    )
    with derived.held_still():
        pending = PendingFingerprints(targets.train, sources)
        try:
            build = PeftBuild(
                job.task,
                job.questions,
                load_outputs(job.outputs, job.task) if job.outputs is not None else None,
                load_ranking(job.ranking) if job.ranking is not None else None,
                options,
                users_wanted=read_users_file(users_file) if users_file is not None else None,
                shard=shard,
                ranking_name=str(job.ranking),
                complete=job.ranking is not None and ranking_top_k(job.ranking) is None,
                parse_parts=_parse_parts(job.questions, hashing=pending.forked is not None),
            )
            if not build.chosen and shard is None:
                raise InputError(f"{job.questions}: no users to write (--users is empty)")
            # A shard may be empty (a SLURM array of more tasks than users): its files are
            # written empty, so the array task succeeds and a later step has nothing to do.
            counts: list[int] = []
            source_tokens: list[int] = []
            target_tokens: list[int] = []
            with (
                atomic_writer(targets.train, "wb") as handle,
                HashingWriter(handle, sync=True) as train,
            ):
                for user in build.chosen:
                    rows = build.training(user)
                    if cutter is not None:
                        sources_n, targets_n = cutter.cut(rows)
                        source_tokens.append(sum(sources_n))
                        target_tokens.append(sum(targets_n))
                    train.write(jsonl(rows))
                    counts.append(len(rows))
                    if progress:
                        progress(1)
                train.finish()  # the last rows are written while the evaluation rows are made
                evaluation = [build.evaluation(user) for user in build.chosen]
                evaluation_text = b"".join(jsonl(rows) for rows in evaluation)
                with atomic_writer(targets.evaluation, "wb") as handle:
                    handle.write(evaluation_text)
            fingerprints = pending.result()
        finally:
            pending.close()
    users = [user.id for user in build.chosen]
    users_text = json.dumps(users)
    with atomic_writer(targets.users) as handle:
        handle.write(users_text)
    spread = _spread(counts)
    stats = PeftStats(
        users=len(users),
        rows=sum(counts),
        eval_rows=sum(len(rows) for rows in evaluation),
        rows_per_user_mean=spread["mean"],
        rows_per_user_min=int(spread["min"]),
        rows_per_user_max=int(spread["max"]),
        source_tokens_per_user=_spread(source_tokens) if cutter else None,
        target_tokens_per_user=_spread(target_tokens) if cutter else None,
    )
    written = {
        "eval": hashlib.sha256(evaluation_text).hexdigest(),
        "users": hashlib.sha256(users_text.encode()).hexdigest(),
    }
    extra = {"stats": stats.as_dict(), "written": written}
    derived.write_record(extra, fingerprints=fingerprints, output_sha256=train.sha256)
    return _result(job, "written", stats, started)


def _parse_parts(questions: Path, hashing: bool) -> int:
    """Processes for reading the questions file: the cores left over (one hashes the inputs
    when ``hashing``), one per 64 MB; one where a fork is unsafe (torch is loaded)."""
    from lampctl.io.jsonsplit import part_count
    from lampctl.parallel import fork_is_safe, usable_cpus

    if not fork_is_safe():
        return 1
    return part_count(questions.stat().st_size, usable_cpus() - int(hashing))


def _result(job: PeftJob, status: str, stats: PeftStats | None, started: float) -> PeftResult:
    return PeftResult(
        job.task.name,
        job.set,
        str(job.targets.train),
        str(job.targets.evaluation),
        str(job.targets.users),
        status,
        stats,
        round(time.perf_counter() - started, 3),
    )


def peft_jobs(
    found: Registry,
    *,
    tasks: Sequence[str],
    splits: Sequence[str],
    sets: Sequence[str],
    data_dir: Path,
    options: PeftOptions,
    users_file: Path | None,
    shard: tuple[int, int] | None,
    questions: Path | None,
    outputs: Path | None,
    ranking: Path | None,
    output: Path | None,
    eval_output: Path | None,
    users_output: Path | None,
    left_out: list[str],
) -> list[PeftJob]:
    """The sets ``peft-data`` builds: explicit files, or every set asked for in the data dir
    (with ``order="ranked"``, those that have a ranking)."""
    from lampctl.catalog.datadir import explicit_files, ranked_sets

    ranked = options.order == "ranked"
    selection = {"task": tasks, "split": splits, "set": sets}
    alone = {"output": output, "ranking": ranking, "outputs": outputs}
    need = {"questions": questions, "output": output}
    if explicit_files({"questions": questions}, need, task="one", selection=selection,
                      data_dir_only=alone):  # fmt: skip
        if ranked and ranking is None:
            raise OptionError("ranking", "--order ranked needs --ranking")
        stem = output.name.removesuffix(".jsonl")
        targets = PeftTargets(
            output,
            eval_output or output.with_name(f"{stem}_eval.jsonl"),
            users_output or output.with_name(f"{stem}_users.json"),
        )
        spec = found.task(tasks[0])
        return [PeftJob(spec, "file", questions, outputs, ranking if ranked else None, targets)]
    jobs = []
    try:
        found_sets = ranked_sets(
            found, data_dir, tasks, splits, sets, need_ranking=ranked, without="--order file",
            left_out=left_out,
        )  # fmt: skip
    except InputError:
        if not left_out:
            raise
        raise InputError("nothing to build: " + "; ".join(left_out)) from None
    for s in found_sets:
        stem = variant_name(s.set, s.task, options, users_file, shard)
        targets = targets_beside(s.questions, stem)
        jobs.append(PeftJob(s.task, s.set, s.questions, s.outputs, s.ranking, targets))
    return jobs


@dataclass
class PeftRun:
    results: list[PeftResult]
    left_out: list[str]
    shard: str | None = None  # "i/n" of the users, as parsed (from the option or SLURM's)


@checked_arguments
def peft_data(
    tasks: Sequence[str] = (),
    splits: Sequence[str] = (),
    sets: Sequence[str] = (),
    *,
    order: str = "file",
    seed: int = 0,
    users: Path | str | None = None,
    shard: str | None = None,
    tokenizer: str | None = None,
    revision: str | None = None,
    max_length: int | None = None,
    val_ratio: float | None = None,
    max_items: int | None = None,
    data_dir: Path | str | None = None,
    questions: Path | str | None = None,
    outputs: Path | str | None = None,
    ranking: Path | str | None = None,
    output: Path | str | None = None,
    eval_output: Path | str | None = None,
    users_output: Path | str | None = None,
    force: bool = False,
    config: Path | str | None = None,
    on_start: Callable[[str, int | None], None] | None = None,
    progress: Callable[[int], None] | None = None,
    on_file: Callable[[str], None] | None = None,
) -> PeftRun:
    """Every chosen user's training set for one adapter per user, as ``lampctl peft-data``
    writes it (rows, evaluation rows, user list and a record per set)."""
    from lampctl.catalog.bundled import cached_registry as registry
    from lampctl.io.data import as_path
    from lampctl.retrieval.shards import parse_shard

    found = registry(config)
    options = PeftOptions(order, seed, tokenizer, max_length, val_ratio, max_items)
    options.check()
    parsed = parse_shard(shard)
    shard_pair = (parsed.index, parsed.count) if parsed else None

    left_out: list[str] = []
    planned = peft_jobs(
        found,
        tasks=list(tasks),
        splits=list(splits),
        sets=list(sets),
        data_dir=settings.data_dir(data_dir),
        options=options,
        users_file=as_path(users),
        shard=shard_pair,
        questions=as_path(questions),
        outputs=as_path(outputs),
        ranking=as_path(ranking),
        output=as_path(output),
        eval_output=as_path(eval_output),
        users_output=as_path(users_output),
        left_out=left_out,
    )
    for job in planned:
        if job.task.peft is None:
            raise InputError(f"{job.task.name} has no per-user training template in the registry")
    results = []
    for job in planned:
        if on_start:
            on_start(f"{job.task.name} {job.targets.train.name}", None)
        result = peft_file(
            job,
            options,
            users_file=as_path(users),
            shard=shard_pair,
            revision=revision,
            force=force,
            progress=progress,
        )
        results.append(result)
        if on_file:
            on_file(result.output)
    return PeftRun(results, left_out, parsed.label if parsed else None)
