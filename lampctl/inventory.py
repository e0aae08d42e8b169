"""What is in a data dir: ``status`` (files, verification, staleness, shards) and ``stats``."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lampctl.catalog.datadir import unbuilt
from lampctl.catalog.tasks import Registry, TaskSpec
from lampctl.download import Manifest
from lampctl.inputs.naming import prompts_prefix
from lampctl.io.data import TMP_SUFFIX, gc_paused, load_outputs, load_questions
from lampctl.ledger import (
    RECORD_SUFFIX,
    derived_freshness,
    freshness,
    ranking_parameters,
    read_record,
    record_path,
    recorded_path,
)
from lampctl.retrieval.encoder import EncoderConfig
from lampctl.retrieval.queries import item_text
from lampctl.retrieval.shards import missing_shards


@dataclass
class StatusRow:
    task: str
    split: str
    set: str
    questions: str  # present | ids only | partial download (N bytes) | missing
    outputs: str  # present | missing | none published | partial download (N bytes)
    verified: str  # verified | unverified | changed | built | -
    ranking: str  # up to date | stale: why (no record, input changed, ...) | missing
    ranked_by: str  # "contriever facebook/contriever fp32", "bm25", or ""
    shards: str  # "" or "missing 2/4, 3/4"
    merged: str  # the merged file's state, or "N up to date, M stale" over its variants | missing
    prompts: str = ""  # "2 up to date, 1 stale" over the set's model-input files
    peft: str = ""  # the same over the set's per-user training files (peft-data)
    # What the experiments made: per adapters folder (one per base model) and per predictions
    # file of ``peft predict`` or ``generate``; see ``adapter_sets`` and ``prediction_files``.
    adapters: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # Normal states worth saying that are not problems: LaMP-6 before ``avocado build``
    # (the corpus is licensed; most users never build it) unless LaMP-6 was asked for.
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _verified(manifest: Manifest, data_dir: Path, paths: list[Path]) -> str:
    states = []
    for path in paths:
        entry = manifest.get(path.relative_to(data_dir).as_posix())
        if entry is None:
            states.append("unverified")
        elif entry.get("size") != path.stat().st_size:
            states.append("changed")
        else:
            states.append("verified")
    for state in ("changed", "unverified", "verified"):
        if state in states:
            return state
    return "-"


def status(
    registry: Registry,
    data_dir: Path,
    tasks: Sequence[str] = (),
    splits: Sequence[str] = (),
    sets: Sequence[str] = (),
    encoder: EncoderConfig | None = None,
    rehash: bool = False,
) -> list[StatusRow]:
    """One row per (task, split, set). A ranking is judged against what ``rank-all`` would
    make now (the split's default ranker, ``encoder``'s settings), so the two always agree.
    ``rehash``: hash every input again instead of trusting an unchanged size and mtime."""
    manifest = Manifest.load(data_dir)
    encoder = encoder or EncoderConfig()
    asked = {registry.task(name).name for name in registry.expand(tasks)}
    rows = []
    for task, split, set_name in registry.combinations(tasks, splits, sets, data_dir):
        row = _status_row(registry, manifest, data_dir, task, split, set_name, encoder, rehash)
        if task.name in asked:  # asked for by name, an unbuilt task is a problem too
            row.problems[:0] = row.notes
            row.notes.clear()
        rows.append(row)
    return rows


def _partial(path: Path) -> str | None:
    part = path.with_name(path.name + ".part")
    if part.exists():
        return f"partial download ({part.stat().st_size:,} bytes)"
    return None


def _made_by(record: dict[str, Any] | None) -> str:
    parameters = (record or {}).get("parameters") or {}
    words = [str(parameters.get("ranker", ""))]
    if parameters.get("checkpoint"):
        words.append(str(parameters["checkpoint"]))
        if parameters.get("revision"):
            words[-1] += f"@{parameters['revision']}"
        words.append(str(parameters.get("precision", "")))
    if parameters.get("use_date"):
        words.append("use_date")
    return " ".join(w for w in words if w)


def _status_row(
    registry: Registry,
    manifest: Manifest,
    data_dir: Path,
    task: TaskSpec,
    split: str,
    set_name: str,
    encoder: EncoderConfig,
    rehash: bool = False,
) -> StatusRow:
    def path(kind: str) -> Path:
        return registry.path(kind, data_dir, task, split, set_name)

    questions, outputs, ranking = path("questions"), path("outputs"), path("ranking")
    has_outputs = set_name != "test" or task.test_outputs  # LongLaMP publishes test golds
    problems: list[str] = []
    notes: list[str] = []
    downloaded: list[Path] = []
    if questions.exists():
        q_state = "present"
        downloaded.append(questions)
    elif task.needs_build and path("id_questions").exists():
        q_state = "ids only"
        notes.append(f"needs {task.needs_build} build")
        downloaded.append(path("id_questions"))
    else:
        q_state = _partial(questions) or _partial(path("id_questions")) or "missing"
        problems.append("questions missing" if q_state == "missing" else f"questions: {q_state}")
    if not has_outputs:
        o_state = "none published"
    elif outputs.exists():
        o_state = "present"
        downloaded.append(outputs)
    elif task.needs_build and path("id_outputs").exists():
        o_state = "ids only"
        downloaded.append(path("id_outputs"))
    else:
        o_state = _partial(outputs) or _partial(path("id_outputs")) or "missing"
        problems.append("outputs missing" if o_state == "missing" else f"outputs: {o_state}")
    if task.needs_build:  # built files are made here, so only their id files were downloaded
        downloaded = [p for p in downloaded if p.name.endswith("_ids.json")]
    verified = _verified(manifest, data_dir, downloaded)
    if verified == "changed":
        problems.append("changed since download")
    if task.needs_build and q_state == "present":
        verified = "built" if verified == "-" else verified
    ranked_by = ""
    if ranking.exists():
        record = read_record(record_path(ranking))
        ranked_by = _made_by(record)
        if not questions.exists():
            r_state = "stale: questions missing"
        else:  # as rank-all judges it: no (readable) record is stale
            expected = ranking_parameters(task.default_ranker[split], encoder, use_date=False)
            r_state, _ = freshness(ranking, questions, expected, rehash=rehash)
        if r_state.startswith("stale"):
            problems.append(f"ranking {r_state}")
    elif q_state == "present":
        r_state = "missing"
        problems.append("ranking missing")
    else:
        r_state = "-"
    for leftover in _leftovers(registry, data_dir, task, split, set_name):
        problems.append(f"leftover temp file {leftover.name} (an interrupted write; delete it)")
    absent = missing_shards(ranking)
    shard_note = ", ".join(f"{i}/{n}" for n, ids in absent.items() for i in ids)
    if shard_note:
        problems.append(f"shards missing: {shard_note}")
    merged_file = path("merged")
    merged = _files_state(merged_variants(merged_file), problems, rehash, True) or "missing"
    prompts = _files_state(
        sorted(questions.parent.glob(f"{prompts_prefix(set_name)}*.jsonl")), problems, rehash
    )
    peft_files = [
        p
        for p in sorted(questions.parent.glob(f"{set_name}_peft_*.jsonl"))
        if not p.name.endswith("_eval.jsonl")
    ]
    peft = _files_state(peft_files, problems, rehash)
    adapters = adapter_sets(questions.parent, set_name, problems)
    predictions = prediction_files(questions.parent, set_name, problems, rehash)
    return StatusRow(
        task.name,
        split,
        set_name,
        q_state,
        o_state,
        verified,
        r_state,
        ranked_by,
        f"missing {shard_note}" if shard_note else "",
        merged,
        prompts,
        peft,
        adapters,
        predictions,
        problems,
        notes,
    )


def adapter_sets(folder: Path, set_name: str, problems: list[str]) -> list[dict[str, Any]]:
    """Each ``{set}_peft_{variant}_adapters/{model}/`` folder of the set: the base model its
    adapters' records name, and how many of the users of the rows file beside it have an
    adapter that is up to date with that user's rows (the record's rows hash and the adapter
    files' own hashes; the training options are ``peft train``'s to judge). A folder whose
    users are not all up to date is named in ``problems``."""
    from lampctl.errors import LampctlError
    from lampctl.model.adapter_files import adapter_state, read_adapter_record
    from lampctl.model.training import read_user_rows

    found = []
    for model_dir in sorted(folder.glob(f"{set_name}_peft_*_adapters/*/")):
        rows = model_dir.parent.with_name(
            model_dir.parent.name.removesuffix("_adapters") + ".jsonl"
        )
        name = f"{model_dir.parent.name}/{model_dir.name}"
        try:
            users = read_user_rows(rows) if rows.is_file() else None
        except (LampctlError, OSError):
            users = None
        bases = sorted(
            {
                str((read_adapter_record(user_dir) or {}).get("base_model") or "?")
                for user_dir in model_dir.iterdir()
                if user_dir.is_dir() and not user_dir.name.startswith(".")
            }
        )
        entry: dict[str, Any] = {"folder": name, "base_model": ", ".join(bases) or None}
        if users is None:
            entry.update(users=None, up_to_date=None)
            problems.append(f"{name}: its rows file {rows.name} is missing or unreadable")
        else:
            fresh = sum(
                adapter_state(model_dir / u.user, lambda _kind, u=u: {"rows_sha256": u.sha256})
                == "up to date"
                for u in users
            )
            entry.update(users=len(users), up_to_date=fresh)
            if fresh < len(users):
                problems.append(f"{name}: {len(users) - fresh} of {len(users)} users not trained")
        found.append(entry)
    return found


def prediction_files(
    folder: Path, set_name: str, problems: list[str], rehash: bool = False
) -> list[dict[str, Any]]:
    """Each predictions file of the set (``peft predict``'s and ``generate``'s) with the model
    and decoding its record names, judged against its record: its rows or prompts unchanged,
    and, for ``peft predict``, no adapter of its model written after it."""
    found = []
    patterns = (
        f"{set_name}_peft_*_predictions_*.json",
        f"{prompts_prefix(set_name)}*_predictions_*.json",
    )
    for path in sorted({p for pattern in patterns for p in folder.glob(pattern)}):
        if path.name.endswith(RECORD_SUFFIX):  # the record of a predictions file
            continue
        record = read_record(record_path(path)) or {}
        parameters = record.get("parameters") or {}
        decoding = parameters.get("decoding") or {}
        state = _recorded_freshness(path, rehash)
        if state == "up to date" and "_peft_" in path.name:
            state = _adapters_since(path)
        if state != "up to date":
            problems.append(f"{path.name} {state}")
        found.append({
            "file": path.name,
            "model": parameters.get("base_model"),
            "decoding": (
                f"beams {decoding.get('num_beams')}, {decoding.get('max_new_tokens')} new tokens"
                if decoding else None
            ),
            "state": state,
        })  # fmt: skip
    return found


def _adapters_since(predictions: Path) -> str:
    """ "stale: adapters retrained" when an adapter of the predictions' base model was saved
    after the predictions were written (the adapters' digests are in the answers' keys,
    which ``peft predict`` checks on its next run); else "up to date"."""
    stem = predictions.name.split("_predictions_", 1)[0]
    slug = predictions.name.split("_predictions_", 1)[1].rsplit("_beams", 1)[0]
    adapters = predictions.with_name(f"{stem}_adapters") / slug
    from lampctl.model.adapter_files import RECORD

    written = predictions.stat().st_mtime
    if adapters.is_dir() and any(
        record.stat().st_mtime > written for record in adapters.glob(f"*/{RECORD}")
    ):
        return "stale: adapters retrained since"
    return "up to date"


def merged_variants(default: Path) -> list[Path]:
    """The set's merged files: the default one and its variants (``_topN``, ``_unranked``,
    ``.jsonl``), which all start with the default file's stem."""
    if not default.parent.is_dir():
        return []
    return sorted(
        p
        for p in default.parent.glob(f"{default.stem}*")
        if p.name.endswith((".json", ".jsonl")) and not p.name.endswith(RECORD_SUFFIX)
    )


def _recorded_freshness(path: Path, rehash: bool = False) -> str:
    """A derived file judged against its own record (its inputs' sha256, its own hash)."""
    record = read_record(record_path(path))
    if record is None:
        return "stale: no record"
    sources = {
        role: recorded_path(record, entry.get("path", ""), path)
        for role, entry in (record.get("sources") or {}).items()
    }
    return derived_freshness(path, sources, record.get("parameters") or {}, rehash)[0]


def _files_state(
    paths: list[Path], problems: list[str], rehash: bool, one_by_name: bool = False
) -> str:
    """How many of the derived files are up to date (with ``one_by_name``, a lone file's own
    state); each that is not is named in ``problems``."""
    states = {path.name: _recorded_freshness(path, rehash) for path in paths}
    for name, state in states.items():
        if state != "up to date":
            problems.append(f"{name} {state}")
    if not states:
        return ""
    if one_by_name and len(states) == 1:
        return next(iter(states.values()))
    fresh = sum(state == "up to date" for state in states.values())
    stale = len(states) - fresh
    return f"{fresh} up to date" + (f", {stale} stale" if stale else "")


def _leftovers(
    registry: Registry, data_dir: Path, task: TaskSpec, split: str, set_name: str
) -> list[Path]:
    """Temp files of interrupted writes of any of the set's files (rankings, merged files,
    model inputs, downloads), from one listing of the task's folder."""
    folder = registry.task_dir(data_dir, task, split)
    if not folder.is_dir():
        return []
    kinds = ("questions", "outputs", "ranking", "merged", "id_questions", "id_outputs")
    # A file's stem also starts its variants' names (merged_top4, rank.shard-0-of-4).
    stems = [registry.path(kind, data_dir, task, split, set_name).stem for kind in kinds]
    prefixes = tuple(f".{stem}" for stem in [*stems, prompts_prefix(set_name)])
    return sorted(
        p for p in folder.iterdir() if p.name.startswith(prefixes) and p.name.endswith(TMP_SUFFIX)
    )


@dataclass(frozen=True)
class StatsRow:
    task: str
    split: str
    set: str
    questions: int
    users: int
    profile_mean: float
    profile_median: float
    profile_max: int
    input_tokens_mean: float
    item_tokens_mean: float
    output_tokens_mean: float | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def stats(
    registry: Registry,
    data_dir: Path,
    tasks: Sequence[str] = (),
    splits: Sequence[str] = (),
    sets: Sequence[str] = (),
    left_out: list[str] | None = None,
) -> list[StatsRow]:
    """The LaMP paper's Table 1 numbers, per task, split and set present (whitespace tokens).
    Sets that hold only id files (not built yet) are named in ``left_out`` when given."""
    rows = []
    for task, split, set_name in registry.combinations(tasks, splits, sets, data_dir):
        questions_path = registry.path("questions", data_dir, task, split, set_name)
        if not questions_path.exists():
            if left_out is not None and unbuilt(registry, data_dir, task, split, set_name):
                left_out.append(
                    f"{task.name} {split} {set_name}: not built yet (run 'lampctl "
                    f"{task.needs_build} build')"
                )
            continue
        with gc_paused():
            questions = load_questions(questions_path)
            rows.append(_stats_row(registry, data_dir, task, split, set_name, questions))
    return rows


def _stats_row(
    registry: Registry,
    data_dir: Path,
    task: TaskSpec,
    split: str,
    set_name: str,
    questions: list[Any],
) -> StatsRow:
    sizes = [len(q.profile) for q in questions] or [0]
    users = {q.raw.get("user_id", q.id) for q in questions}
    item_tokens = [
        len(item_text(task, item, q.id, use_date=False).split())
        for q in questions
        for item in q.profile
        if all(isinstance(item.get(f), str) for f in task.profile_text)
    ]
    outputs_path = registry.path("outputs", data_dir, task, split, set_name)
    output_mean = None
    if outputs_path.exists():
        golds = load_outputs(outputs_path, task)
        lengths = [len(str(v).split()) for v in golds.values()]
        output_mean = round(statistics.fmean(lengths), 2) if lengths else 0.0
    return StatsRow(
        task.name,
        split,
        set_name,
        len(questions),
        len(users),
        round(statistics.fmean(sizes), 2),
        float(statistics.median(sizes)),
        max(sizes),
        round(statistics.fmean([len(q.input.split()) for q in questions] or [0]), 2),
        round(statistics.fmean(item_tokens), 2) if item_tokens else 0.0,
        output_mean,
    )
