"""Predictions: each user's adapter on the base model (``peft predict``), or one model for a
prompts file (``generate``), written as the official predictions file that ``lampctl
evaluate`` reads: ``{"task": "LaMP_N", "golds": [{"id", "output"}, ...]}`` in input order.

``peft predict`` batches across users: a group of users' adapters is loaded into slots of the
base model and each row of a batch names its own slot (``lampctl.model.adapters``; a user
without an adapter gets the base model, slot 0, and is counted). Rows are sorted by length
within a group, so batches carry little padding. Finished groups are appended to a
``.partial.jsonl`` beside the output (synced), so a killed run resumes where it stopped; the
final file is written atomically and the partial file removed.

A resumed run keeps only the answers whose inputs are those of now. The partial file's first
line names what every answer shares (the base model and a fingerprint of its files, the
decoding options, the precision, the task); each answer carries a key, the sha256 of its
source and of its user's adapter files (none: the base model). An answer whose key differs
(an edited question, a retrained or replaced adapter) is answered again, and the run says how
many were (``redone``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lampctl.errors import InputError
from lampctl.io.outputs import check_outputs, check_writable, local_folder
from lampctl.model.loading import (
    BaseModel,
    generate_texts,
    load_base_model,
    model_fingerprint,
    source_lengths,
)
from lampctl.model.options import DecodeOptions
from lampctl.reporting import Reporter, SilentReporter

if TYPE_CHECKING:
    from lampctl.model.training import UserRows

GROUP_USERS = 16  # adapter slots: users per group (the slots are made once, then refilled)


@dataclass(frozen=True)
class Row:
    user: str
    id: str
    source: str


@dataclass(frozen=True)
class PredictRun:
    output: str
    task: str
    base_model: str
    device: str
    rows: int
    users: int
    without_adapter: int
    resumed: int
    redone: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def write_predictions(output: Path, task: str, predictions: Sequence[tuple[str, str]]) -> None:
    from lampctl.io.data import atomic_writer

    golds = [{"id": qid, "output": text} for qid, text in predictions]
    with atomic_writer(output) as handle:
        handle.write(json.dumps({"task": task, "golds": golds}, ensure_ascii=False))


def _sorted_batches(
    base: BaseModel, rows: Sequence[Row], options: DecodeOptions
) -> list[list[int]]:
    """Indexes of ``rows`` in batches, longest sources first (as little padding as can be)."""
    lengths = source_lengths(base, [r.source for r in rows], options.max_length)
    order = sorted(range(len(rows)), key=lambda i: (-lengths[i], i))
    return [order[i : i + options.batch_size] for i in range(0, len(order), options.batch_size)]


def answer_key(source: str, adapter: str | None) -> str:
    """What one answer depends on beyond the run's shared settings: its source and its
    user's adapter (the sha256 of its files; None: the base model)."""
    return hashlib.sha256(json.dumps([source, adapter], ensure_ascii=False).encode()).hexdigest()


class Partial:
    """Finished rows of an interrupted run, kept beside the output: one JSON line per row
    (id, output, key), after a first line naming what all of them share. ``load`` keeps the
    rows whose key is the one wanted now and counts the others (``stale``)."""

    FORMAT = 2

    def __init__(self, output: Path, header: dict[str, Any]) -> None:
        self.path = partial_path(output)
        self.header = {"format": self.FORMAT, **header}
        self.done: dict[str, tuple[str, str]] = {}  # id -> (output, key)
        self.stale = 0
        self._handle: Any = None

    def load(self, wanted: dict[str, str]) -> dict[str, str]:
        """``wanted``: id -> key of every row of this run; the answers kept, by id."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return {}
        rows: list[dict[str, Any]] = []
        for line in lines[1:]:
            try:
                row = json.loads(line)
                rows.append({"id": str(row["id"]), "output": str(row["output"]),
                             "key": row.get("key")})  # fmt: skip
            except (ValueError, KeyError, TypeError):
                break  # a torn last line: the rows before it stand
        try:
            same_run = bool(lines) and json.loads(lines[0]) == self.header
        except ValueError:
            same_run = False
        for row in rows:
            if same_run and wanted.get(row["id"]) == row["key"]:
                self.done[row["id"]] = (row["output"], row["key"])
            elif row["id"] in wanted:
                self.stale += 1
        return {qid: output for qid, (output, _) in self.done.items()}

    def add(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """(id, output, key) rows, appended and synced."""
        if self._handle is None:  # written afresh with what was kept: a torn line never stays
            self._handle = self.path.open("w", encoding="utf-8")
            self._handle.write(json.dumps(self.header) + "\n")
            for qid, (text, key) in self.done.items():
                self._write(qid, text, key)
        for qid, text, key in rows:
            self._write(qid, text, key)
            self.done[qid] = (text, key)
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def _write(self, qid: str, text: str, key: str) -> None:
        line = json.dumps({"id": qid, "output": text, "key": key}, ensure_ascii=False)
        self._handle.write(line + "\n")

    def output(self, qid: str) -> str:
        return self.done[qid][0]

    def close(self, remove: bool) -> None:
        if self._handle is not None:
            self._handle.close()
        if remove:
            self.path.unlink(missing_ok=True)


def partial_path(output: Path) -> Path:
    """Where an interrupted run keeps its finished answers: hidden, beside the output."""
    return output.with_name(f".{output.name}.partial.jsonl")


def read_eval_rows(path: Path) -> list[UserRows]:
    """The evaluation rows of a ``peft-data`` file (``_eval.jsonl``), by user; a question id
    that stands twice is an ``InputError``."""
    from lampctl.model.training import read_user_rows

    users = read_user_rows(path, need_target=False)
    seen: set[str] = set()
    for user in users:
        for qid in user.ids:
            if qid in seen:
                raise InputError(f"{path}: question id {qid!r} appears twice")
            seen.add(qid)
    return users


def predict_users(
    rows_path: Path,
    model: str,
    adapters: Path,
    output: Path,
    task: str,
    options: DecodeOptions,
    *,
    revision: str | None = None,
    users: Sequence[str] | None = None,
    shard: tuple[int, int] | None = None,
    device: str = "auto",
    precision: str = "fp32",
    training_rows: Path | None = None,
    users_file: Path | None = None,
    reporter: Reporter | None = None,
) -> PredictRun:
    """Each user's questions answered with that user's adapter, batched across users.

    Shards are balanced by ``training_rows`` (the file the adapters were trained from) when
    it is given, as ``peft train --shard`` balances them, so array task i answers exactly the
    users whose adapters it trained."""
    from lampctl.model.adapters import GatheredAdapters
    from lampctl.model.loading import model_identity
    from lampctl.model.training import choose, read_user_rows

    reporter = reporter or SilentReporter()
    started = time.perf_counter()
    # Before any work: no output onto an input, into the model's or adapters' folder, or
    # onto another output; and every output can be written.
    check_outputs(
        {"output": output, "partial file of output": partial_path(output)},
        {"rows": rows_path, "training rows": training_rows, "users": users_file},
        input_folders={"model": local_folder(model), "adapters": adapters},
    )
    check_writable([output])
    grouped = read_eval_rows(rows_path)
    if not grouped:
        raise InputError(f"{rows_path}: holds no evaluation rows (an empty peft-data file)")
    by_user = {
        u.user: [Row(u.user, qid, source) for qid, (source, _) in zip(u.ids, u.pairs, strict=True)]
        for u in grouped
    }
    weight = None
    if shard is not None and training_rows is not None and training_rows.is_file():
        counts = {u.user: len(u.pairs) for u in read_user_rows(training_rows)}
        weight = lambda user: counts.get(user.user, 0)  # noqa: E731
    chosen = [u.user for u in choose(grouped, users, shard, rows_path, weight)]
    identity = model_identity(model, revision)
    digests = adapter_digests(adapters, chosen, identity)
    header = {
        "task": task,
        "base_model": identity,
        "model_files": model_fingerprint(model, revision),
        "decoding": options.as_record(),
        "precision": precision,
    }
    wanted = {r.id: answer_key(r.source, digests[u]) for u in chosen for r in by_user[u]}
    key_of = wanted.get
    partial = Partial(output, header)
    done = partial.load(wanted)
    resumed = len(done)
    todo_users = [u for u in chosen if any(r.id not in done for r in by_user[u])]
    total = len(wanted)
    base = load_base_model(model, revision, device, precision)
    reporter.start("predict", total, unit="questions")
    remaining = sum(r.id not in done for u in todo_users for r in by_user[u])
    reporter.advance(total - remaining)  # resumed rows
    if partial.stale:
        reporter.log(f"{partial.stale} earlier answer(s) are stale (inputs changed): redoing")
    gathered = GatheredAdapters(base.model, adapters, GROUP_USERS)
    try:
        for first in range(0, len(todo_users), GROUP_USERS):
            group = todo_users[first : first + GROUP_USERS]
            slot_of = gathered.load([u for u in group if digests[u] is not None])
            todo = [r for u in group for r in by_user[u] if r.id not in done]
            answers: list[tuple[str, str, str]] = []
            for batch in _sorted_batches(base, todo, options):
                picked = [todo[i] for i in batch]
                with gathered.rows.batch([slot_of.get(r.user, 0) for r in picked], base.device):
                    texts = generate_texts(base, [r.source for r in picked], options)
                answers.extend(
                    (r.id, t, str(key_of(r.id))) for r, t in zip(picked, texts, strict=True)
                )
                reporter.advance(len(picked))
            partial.add(answers)
    except BaseException:
        partial.close(remove=False)
        raise
    order = [r.id for u in chosen for r in by_user[u]]
    write_predictions(output, task, [(qid, partial.output(qid)) for qid in order])
    partial.close(remove=True)
    return PredictRun(
        str(output), task, identity, base.device, len(order), len(chosen),
        sum(digests[u] is None for u in chosen), resumed, partial.stale,
        round(time.perf_counter() - started, 3),
    )  # fmt: skip


def adapter_digests(adapters: Path, users: Sequence[str], identity: str) -> dict[str, str | None]:
    """Each user's adapter, by the sha256 of its files (None: no adapter, the base model);
    an adapter whose record names another base model is an ``InputError``."""
    from lampctl.io.data import sha256_file
    from lampctl.model.adapter_files import ADAPTER_FILES, read_adapter_record

    digests: dict[str, str | None] = {}
    for user in users:
        folder = adapters / user
        if not all((folder / name).is_file() for name in ADAPTER_FILES):
            digests[user] = None
            continue
        trained_on = (read_adapter_record(folder) or {}).get("base_model")
        if isinstance(trained_on, str) and trained_on != identity:
            raise InputError(
                f"{folder}: this adapter was trained on {trained_on}, not {identity}; "
                "predict with the model it was trained on"
            )
        files = "".join(sha256_file(folder / name) for name in ADAPTER_FILES)
        digests[user] = hashlib.sha256(files.encode()).hexdigest()
    return digests


@dataclass(frozen=True)
class GenerateRun:
    output: str
    task: str
    model: str
    device: str
    rows: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_prompt_rows(path: Path) -> list[Row]:
    """``{"id", "source", ...}`` per line (what ``lampctl prompts`` writes)."""
    if not path.is_file():
        raise InputError(f"{path}: no such prompts file (run 'lampctl prompts' first)")
    rows: list[Row] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                qid, source = str(data["id"]), data["source"]
            except (ValueError, KeyError, TypeError):
                raise InputError(f"{path}: line {number} is not a prompt row") from None
            if not isinstance(source, str):
                raise InputError(f"{path}: line {number}: source is not a string")
            if qid in seen:
                raise InputError(f"{path}: question id {qid!r} appears twice")
            seen.add(qid)
            rows.append(Row("", qid, source))
    if not rows:
        raise InputError(f"{path}: no prompt rows")
    return rows


def generate_file(
    prompts: Path,
    model: str,
    output: Path,
    task: str,
    options: DecodeOptions,
    *,
    revision: str | None = None,
    device: str = "auto",
    precision: str = "fp32",
    reporter: Reporter | None = None,
) -> GenerateRun:
    """One model's outputs for every prompt, batched by length, in the file's order."""
    reporter = reporter or SilentReporter()
    started = time.perf_counter()
    check_outputs(
        {"output": output}, {"prompts": prompts}, input_folders={"model": local_folder(model)}
    )
    check_writable([output])
    rows = read_prompt_rows(prompts)
    base = load_base_model(model, revision, device, precision)
    reporter.start("generate", len(rows), unit="prompts")
    answers: dict[int, str] = {}
    for batch in _sorted_batches(base, rows, options):
        texts = generate_texts(base, [rows[i].source for i in batch], options)
        answers.update(zip(batch, texts, strict=True))
        reporter.advance(len(batch))
    write_predictions(output, task, [(row.id, answers[i]) for i, row in enumerate(rows)])
    return GenerateRun(
        str(output), task, base.identity, base.device, len(rows),
        round(time.perf_counter() - started, 3),
    )  # fmt: skip


@dataclass(frozen=True)
class PredictionsGathered:
    output: str
    shards: int
    predictions: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def gather_predictions(final: Path, clean: bool = False) -> PredictionsGathered:
    """Join ``final``'s shard files (``peft predict --shard i/n``: ``STEM.shard-i-of-n.json``)
    into ``final``, shard by shard: every shard present, of one run (one shard count, one
    task), no question in two shards; ``final`` may name one of the shards instead.
    ``clean``: then remove the shard files."""
    from lampctl.errors import ShardError
    from lampctl.io.data import read_json
    from lampctl.retrieval.shards import complete_shards, final_of

    final = final_of(final)
    count, paths = complete_shards(final)
    task: str | None = None
    joined: dict[str, str] = {}
    for path in paths:
        data = read_json(path, "predictions shard")  # a shard of users may hold none
        golds = data.get("golds") if isinstance(data, dict) else None
        if not isinstance(golds, list) or not all(
            isinstance(g, dict) and "id" in g and "output" in g for g in golds
        ):
            raise ShardError(f"{path}: not a predictions file ({{'task', 'golds'}})")
        if path != paths[0] and data.get("task") != task:
            raise ShardError(f"{path}: predictions for {data.get('task')!r}, not {task!r}")
        task = data.get("task")
        outputs = {str(g["id"]): str(g["output"]) for g in golds}
        if len(outputs) < len(golds):
            raise ShardError(f"{path}: a question id appears twice")
        overlap = joined.keys() & outputs.keys()
        if overlap:
            raise ShardError(f"{path}: question {sorted(overlap)[0]!r} is in two shards")
        joined.update(outputs)
    write_predictions(final, str(task), list(joined.items()))
    if clean:
        for path in paths:
            path.unlink(missing_ok=True)
    return PredictionsGathered(str(final), count, len(joined))
