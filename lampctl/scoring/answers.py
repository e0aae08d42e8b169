"""Reading predictions and golds for ``evaluate``: the official ``{task, golds}`` form, JSONL or
{id: output}; zips (read member by member, capped) and folders of per-task files; and the
questions' users for a per-user breakdown."""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lampctl.catalog.tasks import Registry, TaskSpec
from lampctl.errors import InputError, LampctlError
from lampctl.io.data import answer_rows, parse_json_bytes, read_bytes

# --------------------------------------------------------------------------- reading files


@dataclass(frozen=True)
class Answers:
    """Predictions or golds: ``{id: output}`` from one file, with the task it names (if any)."""

    name: str
    task: str | None
    outputs: dict[str, str]


def _pairs_without_repeats(name: str):  # noqa: ANN202 - a json object_pairs_hook
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise InputError(f"{name}: id {key!r} appears twice")
            seen[key] = value
        return seen

    return hook


def parse_answers(raw: bytes, name: str) -> Answers:
    """The official ``{"task", "golds": [{"id", "output"}]}``, JSONL of ``{"id", "output"}``,
    or a ``{id: output}`` object."""
    if not raw.strip():
        raise InputError(f"{name}: file is empty")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text (offset {exc.start})") from None
    rows: list[Any]
    task: str | None = None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{name}: neither JSON nor JSONL (line {number}: {exc.msg})"
                ) from None
    if data is not None:
        if isinstance(data, dict) and "golds" in data:
            task = data.get("task") if isinstance(data.get("task"), str) else None
            rows = data["golds"]
            if not isinstance(rows, list):
                raise InputError(f"{name}: 'golds' must be a list of {{id, output}}")
        elif isinstance(data, dict):
            # Parse again to catch repeated keys, which json.loads keeps silently.
            data = json.loads(text, object_pairs_hook=_pairs_without_repeats(name))
            rows = [{"id": key, "output": value} for key, value in data.items()]
        elif isinstance(data, list):
            rows = data
        else:
            raise InputError(f"{name}: expected predictions, got a JSON {type(data).__name__}")
    outputs = answer_rows(rows, name)
    if not outputs:
        raise InputError(f"{name}: holds no predictions")
    return Answers(name, task, outputs)


def load_answers(path: Path) -> Answers:
    return parse_answers(read_bytes(path, "predictions file"), str(path))


MAX_MEMBER_BYTES = 256 * 1024 * 1024  # far above any LaMP task's predictions (a few MB)


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, limit: int) -> bytes:
    """A zip member's bytes, read in blocks and stopped at ``limit`` (the header's size is not
    trusted); a member zipfile cannot read (encrypted, bad CRC, unknown compression) is one
    ``InputError`` naming it."""
    if info.flag_bits & 0x1:
        raise InputError(f"{name}: is encrypted; zip the predictions without a password")
    blocks: list[bytes] = []
    size = 0
    try:
        with archive.open(info) as member:
            while block := member.read(1 << 20):
                size += len(block)
                if size > limit:
                    raise InputError(
                        f"{name}: inflates to more than {limit:,} bytes; raise "
                        "--max-member-bytes if it is really a predictions file"
                    )
                blocks.append(block)
    except NotImplementedError:
        raise InputError(f"{name}: compressed with a method zipfile cannot read") from None
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError, zlib.error) as exc:
        raise InputError(f"{name}: cannot be read from the zip ({exc})") from None
    return b"".join(blocks)


def load_bundle(path: Path, max_member_bytes: int = MAX_MEMBER_BYTES) -> list[Answers]:
    """Every predictions file of a zip (read in place, never extracted) or a folder."""
    found: list[Answers] = []
    if path.is_dir():
        for member in sorted(path.iterdir()):
            if member.is_file() and member.suffix in (".json", ".jsonl"):
                found.append(load_answers(member))
    else:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(f"{path}: not a readable zip ({exc})") from None
        with archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                name = info.filename
                if info.is_dir() or name.startswith("__MACOSX/") or "/." in f"/{name}":
                    continue
                if not name.endswith((".json", ".jsonl")):
                    continue
                label = f"{path}:{name}"
                found.append(
                    parse_answers(read_member(archive, info, label, max_member_bytes), label)
                )
    if not found:
        raise InputError(f"{path}: no .json prediction files in it")
    return found


def is_bundle(path: Path) -> bool:
    return path.is_dir() or zipfile.is_zipfile(path)


def task_of(registry: Registry, answers: Answers) -> TaskSpec:
    if answers.task is None:
        raise InputError(
            f"{answers.name}: names no task (files in a zip or folder need the official "
            '{"task": "LaMP_N", "golds": [...]} form)'
        )
    return registry.task(answers.task)


def check_task(registry: Registry, answers: Answers, task: TaskSpec) -> None:
    """A file's ``"task"`` must name ``task`` (or a name its files carry: LaMP-2N's outputs
    say ``LaMP_2``, as the scorer of their time keyed them)."""
    if answers.task is None or task.names_output_task(answers.task):
        return
    try:
        named = registry.task(answers.task).name
    except LampctlError:
        named = answers.task
    if named != task.name:
        raise InputError(f"{answers.name}: is for {answers.task}, not {task.name}")


def aligned(
    predictions: Answers, golds: Answers, partial: bool = False
) -> tuple[list[str], list[str], list[str]]:
    """(ids, predictions, golds) in the golds' order; the id sets must be equal, or, when
    ``partial``, the predicted ids a subset of the golds' (a prediction without a gold is
    still an error)."""
    missing = [i for i in golds.outputs if i not in predictions.outputs]
    extra = [i for i in predictions.outputs if i not in golds.outputs]
    if partial and not extra:
        ids = [i for i in golds.outputs if i in predictions.outputs]
        return ids, [predictions.outputs[i] for i in ids], [golds.outputs[i] for i in ids]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} gold ids have no prediction (first: {_few(missing)})")
        if extra:
            parts.append(f"{len(extra)} predictions have no gold (first: {_few(extra)})")
        hint = " (score the predicted ones alone with --partial)" if missing and not extra else ""
        raise InputError(
            f"{predictions.name}: ids differ from {golds.name}: {'; '.join(parts)}{hint}"
        )
    ids = list(golds.outputs)
    return ids, [predictions.outputs[i] for i in ids], [golds.outputs[i] for i in ids]


def _few(ids: list[str]) -> str:
    return ", ".join(repr(i) for i in ids[:3])


def user_ids_of(questions: Any, name: str) -> dict[str, Any]:
    """Question id -> user: ``user_id`` where the questions carry it (time split), else the
    question itself (user split: one question per user)."""
    if not isinstance(questions, list):
        raise InputError(f"{name}: expected a JSON list of questions")
    users: dict[str, Any] = {}
    for question in questions:
        qid = str(question.get("id")) if isinstance(question, dict) else None
        if qid is None:
            raise InputError(f"{name}: a question has no id")
        users[qid] = _user_of(qid, question.get("user_id"), name)
    return users


def _user_of(qid: str, user: Any, name: str) -> str:
    """A question's user for grouping: its ``user_id`` (a string or a whole number), or the
    question itself when it has none."""
    if user is None:
        return f"question:{qid}"
    if isinstance(user, str) or (isinstance(user, int) and not isinstance(user, bool)):
        return str(user)
    raise InputError(
        f"{name}: question {qid!r} has a user_id that is a {type(user).__name__}, not a string"
    )


def read_user_ids(path: Path) -> dict[str, Any]:
    """Only ids and user ids are decoded (profiles are skipped), so big files load quickly."""
    raw = read_bytes(path, "questions file")
    import msgspec

    from lampctl.io.fastjson import QuestionUser

    try:
        decoded = msgspec.json.decode(raw, type=list[QuestionUser])
    except msgspec.DecodeError:  # malformed: let the plain parser name the problem
        return user_ids_of(parse_json_bytes(raw, str(path)), str(path))
    return {str(q.id): _user_of(str(q.id), q.user_id, str(path)) for q in decoded}
