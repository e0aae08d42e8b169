"""The public Python API: what the commands do, for notebooks and training scripts.

Every command of the CLI is a thin caller of a function here (parse options, call, render the
result), so a script that calls ``lampctl.rank(...)`` gets the same files, records and errors as
``lampctl rank``. Errors are ``lampctl.errors.LampctlError`` subclasses; an ``OptionError``
names the argument (the CLI shows it as a usage error, exit 2).

    import lampctl

    dev = lampctl.load("LaMP-4", split="user", set="dev", data_dir="data_raw")
    questions = dev.questions()          # [Question(id, input, profile, user_id, raw), ...]
    golds = dev.golds()                  # {question id: gold output}
    scores = lampctl.evaluate("LaMP-4", predictions, golds)   # {"rouge-1": ..., "rouge-L": ...}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lampctl import settings
from lampctl.errors import InputError, OptionError

if TYPE_CHECKING:
    from lampctl.data import Question
    from lampctl.encoder import EncoderConfig
    from lampctl.inputs import PromptResult
    from lampctl.ranking import RankResult
    from lampctl.reporting import Reporter
    from lampctl.tasks import Registry, TaskSpec


def as_path(value: Path | str | None) -> Path | None:
    """An optional path argument, given as text or a Path."""
    return Path(value) if value is not None else None


_REGISTRIES: dict[tuple[Any, ...], Registry] = {}


def registry(config: Path | str | None = None) -> Registry:
    """The task registry: the bundled ``configs/tasks.yaml``, with ``config`` (or
    LAMPCTL_CONFIG) layered over it. Read once per process for the same config file as it is
    (the command and the API share it); a config that changes on disk is read again."""
    from lampctl.tasks import load_registry

    path = settings.config_path(as_path(config))
    key: tuple[Any, ...] = (None,)
    if path is not None:
        try:
            info = path.stat()
            key = (str(path.resolve()), info.st_mtime_ns, info.st_size)
        except OSError:  # let the loader name the problem
            return load_registry(path)
    if key not in _REGISTRIES:
        _REGISTRIES[key] = load_registry(path)
    return _REGISTRIES[key]


# --------------------------------------------------------------------------- one set


@dataclass(frozen=True)
class LampSet:
    """One (task, split, set) of a data dir: its questions, golds and ranking, read on demand."""

    task: TaskSpec
    split: str
    set: str
    data_dir: Path
    registry: Registry = field(repr=False)

    def path(self, kind: str) -> Path:
        """``questions``, ``outputs``, ``ranking`` or ``merged``: the file's path."""
        return self.registry.path(kind, self.data_dir, self.task, self.split, self.set)

    def questions(self) -> list[Question]:
        """The questions, checked (ids unique, every profile item with an id). Each has
        ``id``, ``input``, ``profile``, ``user_id`` (the time split's ``user_id`` as text; in
        the user split each question is its own user: its id) and ``raw`` (as in the file)."""
        from lampctl.data import load_questions

        path = self.path("questions")
        if not path.exists() and self.task.needs_build:
            ids = self.path("id_questions")
            if ids.exists():
                raise InputError(
                    f"{ids}: not built yet; run 'lampctl {self.task.needs_build} build'"
                )
        return load_questions(path)

    def golds(self) -> dict[str, Any]:
        """{question id: gold output}; empty for a test set (no golds are published)."""
        from lampctl.data import load_outputs

        path = self.path("outputs")
        if not path.exists() and self.set == "test":
            return {}
        return load_outputs(path)

    def ranking(self) -> dict[str, list[str]] | None:
        """{question id: [profile ids, best first]}, or None before ``rank``."""
        from lampctl.merge import load_ranking

        path = self.path("ranking")
        return load_ranking(path) if path.exists() else None

    def ranked_questions(self, top_k: int | None = None) -> list[dict[str, Any]]:
        """Each question as ``merge`` writes it: its profile in ranked order (the first
        ``top_k``), its gold ``output`` attached (none on test). Needs the ranking."""
        from lampctl.merge import merge_questions, ranking_top_k

        ranking = self.ranking()
        if ranking is None:
            raise InputError(
                f"{self.path('ranking')}: no ranking; run 'lampctl rank -t {self.task.name} "
                f"-s {self.split}' first"
            )
        golds = self.golds() if self.set != "test" else None
        complete = ranking_top_k(self.path("ranking")) is None
        return merge_questions(
            self.questions(),
            ranking,
            golds,
            str(self.path("ranking")),
            str(self.path("outputs")),
            top_k,
            complete,
        )


def load(
    task: str,
    split: str = "user",
    set: str = "dev",  # noqa: A002 - the LaMP word for it
    data_dir: Path | str | None = None,
    config: Path | str | None = None,
) -> LampSet:
    """One set of a data dir (``data_dir`` or LAMPCTL_DATA_DIR, else ``data_raw``)."""
    found = registry(config)
    return LampSet(
        found.task(task),
        found.check_split(split),
        found.check_set(set),
        settings.data_dir(data_dir),
        found,
    )


# --------------------------------------------------------------------------- evaluate


def evaluate(
    task: str,
    predictions: Mapping[str, str],
    golds: Mapping[str, str],
    *,
    bootstrap: int = 0,
    seed: int = 0,
    config: Path | str | None = None,
) -> dict[str, Any]:
    """The official metrics of ``predictions`` against ``golds`` (both {id: text}), under the
    names ``lampctl --json evaluate`` reports (``accuracy``/``f1``, ``MAE``/``RMSE``,
    ``rouge-1``/``rouge-L``); with ``bootstrap``, also ``bootstrap``: a seeded median and 95%
    interval per metric."""
    from lampctl.answers import Answers
    from lampctl.metrics import Extras, evaluate_task

    if bootstrap < 0 or seed < 0:
        raise OptionError("bootstrap", "bootstrap and seed are 0 or more")
    spec = registry(config).task(task)
    result = evaluate_task(
        spec,
        Answers("predictions", None, {str(k): str(v) for k, v in predictions.items()}),
        Answers("golds", None, {str(k): str(v) for k, v in golds.items()}),
        Extras(bootstrap=bootstrap, seed=seed),
    )
    scores: dict[str, Any] = dict(result.metrics)
    if result.bootstrap:
        scores["bootstrap"] = result.bootstrap
    return scores


# --------------------------------------------------------------------------- rank


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
    from lampctl.datadir import check_data_dir
    from lampctl.ranking import default_output, planned_sets

    if output is not None and input is None:
        raise OptionError("output", "--output needs --input")
    if sets and input is not None:
        raise OptionError("set", "--set and --input exclude each other")
    if shard is not None and fmt != "json":
        raise OptionError("shard", "shards are JSON rankings; gather them first")
    if input is not None:
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
    force: bool = False,
    config: Path | str | None = None,
    reporter: Reporter | None = None,
    log: Callable[[str], None] | None = None,
    on_file: Callable[[str], None] | None = None,
) -> list[RankResult]:
    """Rank each question's profile against the question, as ``lampctl rank`` does: a set's
    files in a data dir (all present, or ``sets``), or ``input`` into ``output``; one record
    beside each ranking. ``encoder`` (default: ``settings.encoder_settings``) matters only for
    the encoder ranker; ``shard`` is ``"i/n"`` (or the SLURM array's). A ranking whose record
    says it is up to date (same input, ranker and parameters) is skipped, as ``rank-all``
    skips it, unless ``force``."""
    from lampctl.data import refuse_overwriting_inputs
    from lampctl.encoder import EncoderConfig
    from lampctl.parallel import usable_cpus
    from lampctl.rankers import CPU_RANKERS, check_ranker_name, make_ranker
    from lampctl.ranking import RankResult, rank_with_record
    from lampctl.records import freshness, ranking_parameters
    from lampctl.shards import parse_shard

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
        refuse_overwriting_inputs([target], {"questions": source})
    if name in CPU_RANKERS:  # a BM25 or recency run reads no encoder settings
        encoder = EncoderConfig()
    elif encoder is None:
        encoder = settings.encoder_settings(found)
    parameters = ranking_parameters(name, encoder, use_date, top_k, fmt)
    extra = {"shard": parsed.label} if parsed else None
    done: dict[Path, RankResult] = {}  # the up-to-date rankings, skipped
    for questions_path, ranking_path in files:
        state, record = freshness(ranking_path, questions_path, parameters, extra)
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
                )
            )
            if on_file:
                on_file(str(ranking_path))
    finally:
        engine.close()
    return results


# --------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class PromptJob:
    task: TaskSpec
    set: str
    questions: Path
    ranking: Path | None
    outputs: Path | None
    output: Path


@dataclass
class PromptsRun:
    """What ``prompts`` did: one result per file, and the sets it left out and why."""

    results: list[PromptResult]
    left_out: list[str]


def prompt_jobs(
    found: Registry,
    *,
    tasks: Sequence[str],
    splits: Sequence[str],
    sets: Sequence[str],
    data_dir: Path,
    k: int,
    max_length: int,
    tokenizer: str | None,
    questions: Path | None,
    ranking: Path | None,
    outputs: Path | None,
    output: Path | None,
    left_out: list[str],
) -> list[PromptJob]:
    """The files ``prompts`` builds: explicit files, or every ranked set asked for."""
    from lampctl.datadir import ranked_sets
    from lampctl.inputs.naming import output_name

    no_profile = tokenizer is None
    if questions is not None or ranking is not None:
        if questions is None or output is None or len(tasks) != 1:
            raise OptionError(
                "questions", "explicit files need one --task, --questions and --output"
            )
        if ranking is None and not no_profile:
            raise OptionError("ranking", "give --ranking, or --no-profile")
        spec = found.task(tasks[0])
        return [
            PromptJob(spec, "file", questions, None if no_profile else ranking, outputs, output)
        ]
    jobs = [
        PromptJob(
            s.task,
            s.set,
            s.questions,
            s.ranking,
            s.outputs,
            s.questions.with_name(output_name(s.set, k, max_length, tokenizer)),
        )
        for s in ranked_sets(
            found,
            data_dir,
            tasks,
            splits,
            sets,
            need_ranking=not no_profile,
            without="--no-profile",
            left_out=left_out,
        )
    ]
    if output is not None:
        if len(jobs) != 1:
            raise OptionError("output", f"--output takes one set; {len(jobs)} are chosen")
        jobs = [replace(jobs[0], output=output)]
    return jobs


def prompts(
    tasks: Sequence[str] = (),
    splits: Sequence[str] = (),
    sets: Sequence[str] = (),
    *,
    k: int = 4,
    max_length: int = 512,
    tokenizer: str | None = None,
    revision: str | None = None,
    no_profile: bool = False,
    data_dir: Path | str | None = None,
    questions: Path | str | None = None,
    ranking: Path | str | None = None,
    outputs: Path | str | None = None,
    output: Path | str | None = None,
    force: bool = False,
    jobs: int | None = None,
    config: Path | str | None = None,
    on_start: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    on_file: Callable[[str], None] | None = None,
    on_planned: Callable[[list[str]], None] | None = None,
) -> PromptsRun:
    """The paper's model inputs, as ``lampctl prompts`` builds them: each ranked set asked
    for (every one, without filters), or explicit files; ``tokenizer`` (hub id or folder, or
    LAMPCTL_TOKENIZER) is needed unless ``no_profile``."""
    from lampctl.data import refuse_overwriting_inputs
    from lampctl.encoder import locate_checkpoint
    from lampctl.inputs import prompts_file
    from lampctl.parallel import usable_cpus
    from lampctl.tokenizer import open_saved_tokenizer, open_tokenizer

    found = registry(config)
    tokenizer = tokenizer or settings.get("LAMPCTL_TOKENIZER")
    if tokenizer is None and not no_profile:
        raise OptionError("tokenizer", "name the model's tokenizer, or pass --no-profile")
    left_out: list[str] = []

    planned = prompt_jobs(
        found,
        tasks=list(tasks),
        splits=list(splits),
        sets=list(sets),
        data_dir=settings.data_dir(data_dir),
        k=k,
        max_length=max_length,
        tokenizer=None if no_profile else tokenizer,
        questions=as_path(questions),
        ranking=as_path(ranking),
        outputs=as_path(outputs),
        output=as_path(output),
        left_out=left_out,
    )
    if on_planned:
        on_planned(left_out)
    for job in planned:  # before the tokenizer loads
        refuse_overwriting_inputs(
            [job.output],
            {"questions": job.questions, "ranking": job.ranking, "outputs": job.outputs},
        )
    results = []
    with ThreadPoolExecutor(max_workers=1) as loader:
        loaded: Any = None
        if not no_profile:
            assert tokenizer is not None
            # Found once, here, so a tokenizer that cannot be had fails before any work. One
            # saved by an earlier run loads in milliseconds; the first load (through
            # transformers) goes on a thread, while the first file is read.
            folder = locate_checkpoint(tokenizer, revision, kind="tokenizer")
            loaded = open_saved_tokenizer(folder) or loader.submit(open_tokenizer, folder)
        for job in planned:
            if on_start:
                on_start(f"{job.task.name} {job.output.name}")
            result = prompts_file(
                job.task,
                job.set,
                job.questions,
                job.ranking,
                job.outputs,
                job.output,
                k=k,
                max_length=max_length,
                tokenizer=loaded,
                tokenizer_id=None if no_profile else tokenizer,
                revision=revision,
                force=force,
                jobs=jobs or usable_cpus(),
                progress=progress,
            )
            results.append(result)
            if on_file:
                on_file(result.output)
    return PromptsRun(results, left_out)
