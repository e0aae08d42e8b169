"""Tasks whose files are a Hugging Face dataset (LongLaMP), converted into lampctl's layout.

LongLaMP (Kumar et al. 2024) publishes each task as configs of the dataset repo
``LongLaMP/LongLaMP`` (``abstract_generation_user``, ``..._temporal``, ...), each with splits
``train``, ``val`` and ``test`` of parquet rows ``{input, output, profile}``. ``download``
reads them from a local copy of the repo (``--source DIR``, as ``hf download LongLaMP/LongLaMP
--repo-type dataset --local-dir DIR`` leaves it) or from the hub at the registry's revision,
and writes, per task, split and set, what every other command reads:

    {split}/LongLaMP_N/{set}_questions.json   [{"id", "input", "profile", "user_id"?}, ...]
    {split}/LongLaMP_N/{set}_outputs.json     {"task": "LongLaMP_N", "golds": [{"id", "output"}]}

(``_user`` configs are the ``user`` split, ``_temporal`` ones ``time``; ``val`` is ``dev``.)

Ids: the rows carry none, so a question's id is ``{config}-{hub split}-{row number}``
(``abstract_generation_user-val-0``), stable for a revision; a row's own ``id`` column wins
where there is one. A profile item keeps its own ``id`` (abstract items have one), else gets
``{question id}-{item number}``. ``user_id`` is the first of the registry's ``user_fields``
the row has; without one, each row is its own user (as LaMP's user split is).

The schema is the registry's (``hub.columns``, ``hub.item_fields``): every parquet file's
schema is checked before anything is written, so a missing column, a file cut short or a
folder that is not a dataset repo is one error and no file changes. Rows are streamed one
record batch at a time, so memory stays near one batch beside the output being written, into
a staging folder (``Staging``): a bad row found while converting leaves the data dir as it
was too.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from lampctl.catalog.tasks import HubSpec, Registry, TaskSpec
from lampctl.download.manifest import Manifest
from lampctl.download.transfer import FileOutcome
from lampctl.errors import InputError
from lampctl.io.data import atomic_writer, sha256_file

BATCH_ROWS = 128  # rows decoded at a time (1024 held 60 MB more, and was no faster)


@dataclass(frozen=True)
class HubJob:
    """One (task, split, set): the config and hub split it comes from, and its two files."""

    task: TaskSpec
    split: str
    set: str
    config: str
    hub_split: str
    questions: Path
    outputs: Path

    @property
    def label(self) -> str:
        return f"{self.config}/{self.hub_split}"


@dataclass(frozen=True)
class PlannedHubFile:
    """What a dry run shows of one file to convert (the shape of ``PlannedFile.as_dict``)."""

    job: HubJob
    kind: str  # questions | outputs
    url: str  # hf://{repo}@{revision}/{config}/{hub split}, or the local folder's config

    @property
    def dest(self) -> Path:
        return self.job.questions if self.kind == "questions" else self.job.outputs

    @property
    def state(self) -> str:
        return "present" if self.dest.is_file() else "missing"

    def as_dict(self) -> dict[str, Any]:
        return {"task": self.job.task.name, "split": self.job.split, "set": self.job.set,
                "kind": self.kind, "url": self.url, "path": str(self.dest),
                "state": self.state, "fix": None}  # fmt: skip


def hub_jobs(
    registry: Registry,
    tasks: Sequence[TaskSpec],
    splits: Sequence[str],
    sets: Sequence[str],
    data_dir: Path,
) -> list[HubJob]:
    jobs = []
    for task, split, set_name in registry.combinations([t.name for t in tasks], splits, sets):
        hub = task.hub
        assert hub is not None
        jobs.append(
            HubJob(
                task, split, set_name, hub.configs[split], hub.sets[set_name],
                registry.path("questions", data_dir, task, split, set_name),
                registry.path("outputs", data_dir, task, split, set_name),
            )
        )  # fmt: skip
    return jobs


def fetch_snapshot(hub: HubSpec, configs: Sequence[str], revision: str | None) -> Path:
    """The hub repo's files for ``configs`` at ``revision`` (default: the registry's), through
    huggingface_hub's cache (``HF_HOME``); offline, the cached snapshot."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:  # pragma: no cover - transformers depends on it
        raise InputError(
            "reading the hub needs huggingface_hub: pip install huggingface_hub"
        ) from None
    wanted = revision or hub.revision
    patterns = ["README.md", *(f"{c}/*" for c in configs), *(f"data/{c}/*" for c in configs)]
    try:
        return Path(
            snapshot_download(
                hub.repo, repo_type="dataset", revision=wanted, allow_patterns=patterns
            )
        )
    except RevisionNotFoundError:
        raise InputError(f"{hub.repo}: no revision {wanted!r} on the hub") from None
    except RepositoryNotFoundError:
        raise InputError(f"{hub.repo}: no such dataset repo on the hub") from None
    except LocalEntryNotFoundError:
        raise InputError(
            f"{hub.repo}@{wanted}: not reachable and not in the local cache; on a node without "
            f"network, pass a local copy with --source DIR ('hf download {hub.repo} --repo-type "
            "dataset --local-dir DIR' where there is network)"
        ) from None
    except HfHubHTTPError as exc:
        raise InputError(f"{hub.repo}@{wanted}: {' '.join(str(exc).split())[:200]}") from None


def resolved_revision(snapshot: Path, asked: str) -> str:
    """The commit a hub snapshot holds: huggingface_hub's cache keeps each snapshot in a
    folder named by its commit hash, so the files' origin names that commit even where a
    branch (the registry's ``main``) was asked for, and ``--revision`` with it gets the same
    files again; else the revision asked for."""
    return snapshot.name if re.fullmatch(r"[0-9a-f]{40}", snapshot.name) else asked


def source_files(source: Path, config: str, hub_split: str) -> list[Path]:
    """The parquet files of one config's split in a dataset repo folder: as its README's
    ``configs:`` block names them, else by the hub's conventional layouts
    (``{config}/{split}-*.parquet``, ``{config}/{split}/*.parquet``, under ``data/`` too)."""
    if not source.is_dir():
        raise InputError(f"{source}: no such folder (--source names a dataset repo's folder)")
    declared = _readme_configs(source)
    if declared is not None and config in declared:
        patterns = declared[config].get(hub_split, [])
    else:
        patterns = [
            f"{root}{config}/{hub_split}{tail}"
            for root in ("", "data/")
            for tail in ("-*.parquet", "/*.parquet", ".parquet")
        ]
    found = sorted({p for pattern in patterns for p in source.glob(pattern) if p.is_file()})
    if not found:
        if declared is None and not any(source.glob("*/*.parquet")):
            raise InputError(
                f"{source}: not a Hugging Face dataset repo (no README.md with a configs: "
                "block and no parquet files); pass the folder 'hf download ... --local-dir' made"
            )
        raise InputError(f"{source}: no parquet files for config {config!r}, split {hub_split!r}")
    return found


def _readme_configs(source: Path) -> dict[str, dict[str, list[str]]] | None:
    """config -> split -> path patterns, from the README's YAML front matter (None without)."""
    readme = source / "README.md"
    if not readme.is_file():
        return None
    match = re.match(r"---\s*\n(.*?)\n---", readme.read_text(encoding="utf-8", errors="replace"),
                     re.S)  # fmt: skip
    if not match:
        return None
    import yaml

    try:
        front = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{readme}: unreadable front matter ({_short(exc)})") from None
    configs = front.get("configs") if isinstance(front, dict) else None
    if not isinstance(configs, list):
        return None
    out: dict[str, dict[str, list[str]]] = {}
    for entry in configs:
        if not isinstance(entry, dict) or "config_name" not in entry:
            continue
        files = entry.get("data_files") or []
        if isinstance(files, dict) and "split" not in files:  # {split: path(s)}, the short form
            files = [{"split": split, "path": paths} for split, paths in files.items()]
        elif isinstance(files, str | dict):
            files = [files]
        splits: dict[str, list[str]] = {}
        for item in files:
            if isinstance(item, dict) and "split" in item:
                paths = item.get("path", [])
                splits[str(item["split"])] = [paths] if isinstance(paths, str) else list(paths)
        out[str(entry["config_name"])] = splits
    return out


def check_schema(job: HubJob, files: Sequence[Path]) -> None:
    """Every file has the registry's columns and profile-item fields; else one error naming
    the config, the split and the fields the file has."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    hub = job.task.hub
    assert hub is not None
    for path in files:
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException) as exc:
            raise InputError(f"{path}: not a readable parquet file ({_short(exc)})") from None
        missing = [c for c in hub.columns if c not in schema.names]
        if missing:
            raise InputError(
                f"{path}: {job.label} has no {missing[0]!r} column (its columns: "
                f"{', '.join(schema.names)}); the registry's hub.columns name the ones read"
            )
        profile = schema.field(hub.columns[2]).type
        item = getattr(profile, "value_type", None)
        names = [item.field(i).name for i in range(item.num_fields)] if pa.types.is_struct(
            item
        ) else []  # fmt: skip
        lacking = [f for f in hub.item_fields if f not in names]
        if lacking:
            raise InputError(
                f"{path}: {job.label} profile items have no {lacking[0]!r} field (their "
                f"fields: {', '.join(names) or 'none'}); the registry's hub.item_fields name "
                "the ones read"
            )


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160]


def _rows(files: Sequence[Path], columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    """The files' rows, a record batch at a time, decoded through the system allocator:
    pyarrow's default pool (mimalloc) kept 75 MB more of freed batches resident. The pool is
    this generator's only while it runs (a notebook's pyarrow keeps its own)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        for path in files:
            try:
                parquet = pq.ParquetFile(path)
                wanted = [c for c in parquet.schema_arrow.names if c in columns]
                for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=wanted):
                    yield from batch.to_pylist()
            except (OSError, pa.ArrowException) as exc:
                raise InputError(f"{path}: not a readable parquet file ({_short(exc)})") from None
    finally:
        pa.set_memory_pool(previous)


def _source_digest(files: Sequence[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}\0{sha256_file(path)}\0".encode())
    return digest.hexdigest()


def convert(
    job: HubJob,
    files: Sequence[Path],
    origin: str,
    manifest: Manifest,
    data_dir: Path,
    stage: Staging,
    force: bool = False,
    verify: bool = False,
) -> list[FileOutcome]:
    """One config's split into the set's questions and outputs files, written into
    ``stage``'s folder, which moves them into place (and records them in the manifest with
    their sha256 and their source's) once every set has converted: a bad row found in the
    last set leaves the data dir as it was. Skipped when both files are there, were made from
    the same source files, and are still what was written: the same size and mtime, else
    (and always with ``verify``) the same sha256. A file changed since is converted again."""
    hub = job.task.hub
    assert hub is not None
    started = time.perf_counter()
    source = _source_digest(files)  # the parquet files' own sha256, hashed together
    rels = [p.relative_to(data_dir).as_posix() for p in (job.questions, job.outputs)]
    entries = [manifest.get(rel) or {} for rel in rels]
    states = [
        _state(path, entry, source, verify)
        for path, entry in zip((job.questions, job.outputs), entries, strict=True)
    ]
    if not force and all(state in ("skipped", "verified") for state in states):
        return [
            FileOutcome(rel, origin, state, size=entry.get("size"), sha256=entry.get("sha256"))
            for rel, entry, state in zip(rels, entries, states, strict=True)
        ]
    changed = {rel for rel, state in zip(rels, states, strict=True) if state == "changed"}
    input_column, output_column, profile_column = hub.columns[:3]
    user_fields = list(hub.user_fields)
    targets = [stage.place(data_dir, path) for path in (job.questions, job.outputs)]
    count = 0
    encode = msgspec.json.Encoder().encode  # compact UTF-8, several times json.dumps' speed
    digests = [hashlib.sha256(), hashlib.sha256()]  # hashed as written, not read back
    with (
        atomic_writer(targets[0], "wb") as questions_file,
        atomic_writer(targets[1], "wb") as outputs_file,
    ):

        def questions(data: bytes) -> None:
            questions_file.write(data)
            digests[0].update(data)

        def outputs(data: bytes) -> None:
            outputs_file.write(data)
            digests[1].update(data)

        questions(b"[")
        outputs(encode({"task": job.task.dir_name})[:-1] + b',"golds":[')
        for number, row in enumerate(_rows(files, [*hub.columns, "id", *user_fields])):
            qid = _row_id(row, job, number)
            question = {"id": qid, "input": row[input_column],
                        "profile": _profile(row[profile_column], qid, job)}  # fmt: skip
            user = next((row[f] for f in user_fields if row.get(f) not in (None, "")), None)
            if user is not None:
                question["user_id"] = str(user)
            if not isinstance(question["input"], str):
                raise InputError(f"{files[0].parent}: {job.label} row {number} has no text input")
            gold = row[output_column]
            if not isinstance(gold, str):
                raise InputError(f"{files[0].parent}: {job.label} row {number} has no text output")
            separator = b"," if number else b""
            questions(separator + encode(question))
            outputs(separator + encode({"id": qid, "output": gold}))
            count = number + 1
        questions(b"]")
        outputs(b"]}")
    seconds = time.perf_counter() - started
    out = []
    for rel, path, final, hashed in zip(
        rels, targets, (job.questions, job.outputs), digests, strict=True
    ):
        stat = path.stat()
        digest = hashed.hexdigest()
        entry = {"url": origin, "sha256": digest, "size": stat.st_size,
                 "mtime_ns": stat.st_mtime_ns, "parquet_sha256": source, "rows": count}  # fmt: skip
        stage.done(rel, path, final, entry)
        note = ["changed since its conversion: converted again"] if rel in changed else []
        out.append(FileOutcome(rel, origin, "downloaded", stat.st_size, stat.st_size, digest,
                               round(seconds, 3), note))  # fmt: skip
    return out


class Staging:
    """Where converted files wait until every set has converted (``folder``). ``commit``
    renames each into place (one file system: the folder is in the data dir) and records it
    in the manifest; ``discard`` removes what is left."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.waiting: list[tuple[str, Path, Path, dict[str, Any]]] = []

    @classmethod
    def beside(cls, data_dir: Path) -> Staging:
        """A staging folder named for this process (a killed run's is removed by the next)."""
        import shutil

        from lampctl.io.data import left_by_dead_writer, owner_tag

        if data_dir.is_dir():
            for old in data_dir.glob(f".*{STAGING}"):
                if left_by_dead_writer(old.name[1:]):
                    shutil.rmtree(old, ignore_errors=True)
        return cls(data_dir / f".{owner_tag()}{STAGING}")

    def place(self, data_dir: Path, final: Path) -> Path:
        return self.folder / final.relative_to(data_dir)

    def done(self, rel: str, path: Path, final: Path, entry: dict[str, Any]) -> None:
        self.waiting.append((rel, path, final, entry))

    def commit(self, manifest: Manifest) -> None:
        import os

        for rel, path, final, entry in self.waiting:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, final)
            manifest.record(rel, {**entry, "mtime_ns": final.stat().st_mtime_ns})
        self.waiting.clear()

    def discard(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


STAGING = "hub-staging"


def _state(path: Path, entry: dict[str, Any], source: str, verify: bool) -> str:
    """skipped (as written: size and mtime), verified (hashed and equal), changed (hashed
    and not), or missing / other source (to convert)."""
    if not path.is_file() or entry.get("parquet_sha256") != source:
        return "missing"
    stat = path.stat()
    if not verify and (entry.get("size"), entry.get("mtime_ns")) == (
        stat.st_size,
        stat.st_mtime_ns,
    ):
        return "skipped"
    return "verified" if sha256_file(path) == entry.get("sha256") else "changed"


def _row_id(row: dict[str, Any], job: HubJob, number: int) -> str:
    own = row.get("id")
    if isinstance(own, str | int) and not isinstance(own, bool) and str(own):
        return str(own)
    return f"{job.config}-{job.hub_split}-{number}"


def _profile(items: Any, qid: str, job: HubJob) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        raise InputError(f"{job.label}: question {qid!r} has no profile list")
    profile = []
    for number, item in enumerate(items):
        if not isinstance(item, dict):
            raise InputError(f"{job.label}: question {qid!r} profile item {number} is not a record")
        own = item.get("id")
        fixed = dict(item)
        fixed["id"] = str(own) if own not in (None, "") else f"{qid}-{number}"
        profile.append(fixed)
    return profile
