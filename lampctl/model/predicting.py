"""Predictions: each user's adapter on the base model (``peft predict``), or one model for a
prompts file (``generate``), written as the official predictions file that ``lampctl
evaluate`` reads: ``{"task": "LaMP_N", "golds": [{"id", "output"}, ...]}`` in input order.

``peft predict`` batches across users: a group of users' adapters is loaded into slots of the
base model and each row of a batch names its own slot (``lampctl.model.adapters``; a user
without an adapter gets the base model, slot 0, and is counted). Rows are sorted by length
within a group, so batches carry little padding. Finished groups are appended to a
``.partial.jsonl`` beside the output (synced), so a killed run resumes where it stopped; the
final file is written atomically and the partial file removed.

A resumed run keeps only the answers whose inputs are those of now (``model.resume``). Each
predictions file gets a record beside it, so a rerun with nothing changed is skipped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lampctl.errors import InputError
from lampctl.io.outputs import check_writable, local_folder
from lampctl.model.loading import (
    BaseModel,
    generate_texts,
    load_base_model,
    model_fingerprint,
    source_lengths,
)
from lampctl.model.options import DecodeOptions
from lampctl.model.resume import Partial, answer_key, partial_path
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
    device: str | None
    rows: int
    users: int
    without_adapter: int
    resumed: int
    redone: int
    seconds: float
    status: str = "written"  # or "up to date": the record says nothing changed

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
    force: bool = False,
    reporter: Reporter | None = None,
) -> PredictRun:
    """Each user's questions answered with that user's adapter, batched across users.

    Shards are balanced by ``training_rows`` (the file the adapters were trained from) when
    it is given, as ``peft train --shard`` balances them, so array task i answers exactly the
    users whose adapters it trained."""
    from lampctl.ledger import DerivedOutput

    reporter = reporter or SilentReporter()
    started = time.perf_counter()
    # Before any work: no output onto an input, into the model's or adapters' folder, or
    # onto another output; and every output can be written.
    derived = DerivedOutput(
        output, {"rows": rows_path}, {}, also={"partial file of output": partial_path(output)},
        input_folders={"model": local_folder(model), "adapters": adapters},
        inputs={"training rows": training_rows, "users": users_file},
    )  # fmt: skip
    check_writable([output])
    plan = _plan(rows_path, model, revision, adapters, task, options, precision, users, shard,
                 training_rows)  # fmt: skip
    derived.parameters = plan.parameters()
    if derived.up_to_date(force) is not None:
        return PredictRun(
            str(output), task, plan.identity, None, len(plan.wanted), len(plan.chosen),
            sum(plan.digests[u] is None for u in plan.chosen), 0, 0, 0.0, "up to date",
        )  # fmt: skip
    partial = Partial(output, plan.header)
    done = partial.load(plan.wanted)
    base = load_base_model(model, revision, device, precision)
    reporter.start("predict", len(plan.wanted), unit="questions")
    reporter.advance(len(done))  # resumed rows
    if partial.stale:
        reporter.log(f"{partial.stale} earlier answer(s) are stale (inputs changed): redoing")
    try:
        _answer(base, plan, adapters, options, partial, reporter)
    except BaseException:
        partial.close(remove=False)
        raise
    order = list(plan.wanted)
    write_predictions(output, task, [(qid, partial.output(qid)) for qid in order])
    derived.write_record({"questions": len(order)})
    partial.close(remove=True)
    return PredictRun(
        str(output), task, plan.identity, base.device, len(order), len(plan.chosen),
        sum(plan.digests[u] is None for u in plan.chosen), len(done), partial.stale,
        round(time.perf_counter() - started, 3),
    )  # fmt: skip


@dataclass(frozen=True)
class PredictPlan:
    """What a prediction run answers and with what: the users chosen, their rows, their
    adapters' digests, and each answer's key (``wanted``: id -> key, in output order)."""

    identity: str
    chosen: list[str]
    by_user: dict[str, list[Row]]
    digests: dict[str, str | None]
    header: dict[str, Any]
    wanted: dict[str, str]

    def parameters(self) -> dict[str, Any]:
        """What the record of the predictions holds: the shared settings and every answer's
        key, hashed in order (an edited row or a retrained adapter makes it stale)."""
        keys = json.dumps(list(self.wanted.items())).encode()
        return {**self.header, "answers_sha256": hashlib.sha256(keys).hexdigest()}


def _plan(
    rows_path: Path,
    model: str,
    revision: str | None,
    adapters: Path,
    task: str,
    options: DecodeOptions,
    precision: str,
    users: Sequence[str] | None,
    shard: tuple[int, int] | None,
    training_rows: Path | None,
) -> PredictPlan:
    from lampctl.model.loading import model_identity
    from lampctl.model.training import choose, read_user_rows

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
    return PredictPlan(identity, chosen, by_user, digests, header, wanted)


def _answer(
    base: BaseModel,
    plan: PredictPlan,
    adapters: Path,
    options: DecodeOptions,
    partial: Partial,
    reporter: Reporter,
) -> None:
    """The answers not in ``partial`` yet, a group of users at a time, each group appended."""
    from lampctl.model.adapters import GatheredAdapters

    done = partial.done
    todo_users = [u for u in plan.chosen if any(r.id not in done for r in plan.by_user[u])]
    gathered = GatheredAdapters(base.model, adapters, GROUP_USERS)
    for first in range(0, len(todo_users), GROUP_USERS):
        group = todo_users[first : first + GROUP_USERS]
        slot_of = gathered.load([u for u in group if plan.digests[u] is not None])
        todo = [r for u in group for r in plan.by_user[u] if r.id not in done]
        answers: list[tuple[str, str, str]] = []
        for batch in _sorted_batches(base, todo, options):
            picked = [todo[i] for i in batch]
            with gathered.rows.batch([slot_of.get(r.user, 0) for r in picked], base.device):
                texts = generate_texts(base, [r.source for r in picked], options)
            answers.extend((r.id, t, plan.wanted[r.id]) for r, t in zip(picked, texts, strict=True))
            reporter.advance(len(picked))
        partial.add(answers)


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
    device: str | None
    rows: int
    seconds: float
    status: str = "written"  # or "up to date"

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
    force: bool = False,
    reporter: Reporter | None = None,
) -> GenerateRun:
    """One model's outputs for every prompt, batched by length, in the file's order; skipped
    when the record beside the output says the prompts, model and options are those of now
    (``force`` redoes it)."""
    from lampctl.ledger import DerivedOutput
    from lampctl.model.loading import model_identity

    reporter = reporter or SilentReporter()
    started = time.perf_counter()
    parameters = {
        "task": task,
        "base_model": model_identity(model, revision),
        "decoding": options.as_record(),
        "precision": precision,
    }
    derived = DerivedOutput(
        output, {"prompts": prompts}, parameters, input_folders={"model": local_folder(model)}
    )
    check_writable([output])
    rows = read_prompt_rows(prompts)
    derived.parameters = {**parameters, "model_files": model_fingerprint(model, revision)}
    if derived.up_to_date(force) is not None:
        return GenerateRun(str(output), task, parameters["base_model"], None, len(rows), 0.0,
                           "up to date")  # fmt: skip
    base = load_base_model(model, revision, device, precision)
    reporter.start("generate", len(rows), unit="prompts")
    answers: dict[int, str] = {}
    for batch in _sorted_batches(base, rows, options):
        texts = generate_texts(base, [rows[i].source for i in batch], options)
        answers.update(zip(batch, texts, strict=True))
        reporter.advance(len(batch))
    write_predictions(output, task, [(row.id, answers[i]) for i, row in enumerate(rows)])
    derived.write_record({"questions": len(rows)})
    return GenerateRun(
        str(output), task, base.identity, base.device, len(rows),
        round(time.perf_counter() - started, 3),
    )  # fmt: skip


def _rows_order(shard: Path) -> dict[str, int]:
    """Each question's place in the evaluation rows a predictions shard was made from (its
    record names them); {} when that cannot be read (the shards' own order then stands)."""
    from lampctl.errors import LampctlError
    from lampctl.ledger import read_record, record_path, recorded_path

    record = read_record(record_path(shard)) or {}
    source = (record.get("sources") or {}).get("rows")
    if not isinstance(source, dict) or "path" not in source:
        return {}
    try:
        users = read_eval_rows(recorded_path(record, source["path"], shard))
    except LampctlError:
        return {}
    ids = [qid for user in users for qid in user.ids]
    return {qid: place for place, qid in enumerate(ids)}


@dataclass(frozen=True)
class PredictionsGathered:
    output: str
    shards: int
    predictions: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def gather_predictions(final: Path, clean: bool = False) -> PredictionsGathered:
    """Join ``final``'s shard files (``peft predict --shard i/n``: ``STEM.shard-i-of-n.json``)
    into ``final``: every shard present, of one run (one shard count, one task), no question
    in two shards; ``final`` may name one of the shards instead. The answers are written in
    the order the unsharded run gives (the evaluation rows' order, read from the file the
    shards' records name), so the two files are the same bytes. ``clean``: then remove the
    shard files and their records."""
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
    order = _rows_order(paths[0])
    ranked = sorted(joined, key=lambda qid: order.get(qid, len(order)))  # stable: shard order
    write_predictions(final, str(task), [(qid, joined[qid]) for qid in ranked])
    if clean:
        from lampctl.ledger import record_path

        for path in paths:
            path.unlink(missing_ok=True)
            record_path(path).unlink(missing_ok=True)
    return PredictionsGathered(str(final), count, len(joined))
