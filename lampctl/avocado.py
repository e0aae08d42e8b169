"""Building LaMP-6 from the licensed Avocado corpus (LDC2015T03), straight from its zips.

The archives are indexed by member file name in sorted archive order (the first archive wins
when an email id appears twice); only the emails LaMP-6 needs are read, each once, straight
from the zip. Nothing from an archive is ever written to disk, so member names with ``..`` or
absolute paths cannot land anywhere.
"""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from lampctl.catalog.tasks import Registry, TaskSpec
from lampctl.emails import (  # noqa: F401 - parse_email* are this module's API too
    _parse_plain_ascii,
    parse_email,
    parse_email_as_mailparser,
    parse_email_fully,
)
from lampctl.errors import AvocadoError, InputError
from lampctl.io.data import read_json, write_json
from lampctl.parallel import pool_context, worker_setup
from lampctl.reporting import Reporter, SilentReporter
from lampctl.settings import AVOCADO_ENV, DEFAULT_MAX_EMAIL_BYTES

PROMPT = "Generate a subject for the following email: {body}"
# LongLaMP-1 (its data/avocado/create_avocado_dataset.py): the subject and the body's first
# content_length words; the output is the rest of the body's words.
COMPLETION = "Complete the text of the following email. title: {subject}. text: {head}"

NOT_FOUND = (
    "{where}. LaMP-6 is built from the Avocado Research Email Collection (LDC2015T03), which is "
    "licensed and distributed only by the Linguistic Data Consortium "
    "(https://catalog.ldc.upenn.edu/LDC2015T03). Pass the folder avocado-1.0.2/data/text/ of "
    "your copy (it holds the zip archives of raw emails) with --avocado-dir or "
    f"{AVOCADO_ENV}."
)


# --------------------------------------------------------------------------- id files


@dataclass(frozen=True)
class IdFile:
    split: str
    set: str
    questions_path: Path
    outputs_path: Path | None
    questions: list[dict[str, Any]]
    outputs: dict[str, Any] | None


def find_id_files(registry: Registry, task: TaskSpec, root: Path) -> list[IdFile]:
    """The task's id files of both splits under ``root`` (``*_ids.json`` or plain names);
    LongLaMP-1 has no outputs id files (its outputs come from the bodies)."""
    found = []
    for split in registry.splits:
        for set_name in registry.sets:
            questions_path = _first_existing(
                registry.path("id_questions", root, task, split, set_name),
                registry.path("questions", root, task, split, set_name),
                built_ok=False,
            )
            if questions_path is None:
                continue
            outputs_path = _first_existing(
                registry.path("id_outputs", root, task, split, set_name),
                registry.path("outputs", root, task, split, set_name),
                built_ok=True,
            )
            questions = _load_id_questions(questions_path, task.avocado == "completion")
            if task.avocado == "completion":
                outputs_path = None
            outputs = read_json(outputs_path, "outputs file") if outputs_path else None
            if outputs is not None and not (
                isinstance(outputs, dict) and isinstance(outputs.get("golds"), list)
            ):
                raise InputError(f"{outputs_path}: expected an object with a 'golds' list")
            found.append(IdFile(split, set_name, questions_path, outputs_path, questions, outputs))
    return found


def _first_existing(ids_name: Path, plain_name: Path, built_ok: bool) -> Path | None:
    if ids_name.exists():
        return ids_name
    if plain_name.exists():
        if built_ok:
            return plain_name
        data = read_json(plain_name, "questions file")
        if isinstance(data, list) and data and _is_id(data[0].get("input")):
            return plain_name  # a plain-named file that still holds ids
    return None


def _is_id(value: Any) -> bool:
    return isinstance(value, str) and " " not in value.strip() and value.strip().endswith(".txt")


def _load_id_questions(path: Path, completion: bool = False) -> list[dict[str, Any]]:
    data = read_json(path, "Avocado id file")
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of questions")
    for index, question in enumerate(data):
        if not isinstance(question, dict) or not isinstance(question.get("id"), str | int):
            raise InputError(f"{path}: question #{index} has no 'id'")
        if not _is_id(question.get("input")):
            raise InputError(
                f"{path}: question {question['id']!r}: input {question.get('input')!r} is not "
                "an Avocado email id (already built?)"
            )
        length = question.get("content_length")
        if completion and not (isinstance(length, int) and not isinstance(length, bool)
                               and length >= 0):  # fmt: skip
            raise InputError(
                f"{path}: question {question['id']!r} has no 'content_length' (the number of "
                "body words its input shows)"
            )
        for position, item in enumerate(question.get("profile") or []):
            if not isinstance(item, dict) or not _is_id(item.get("text")):
                raise InputError(
                    f"{path}: question {question['id']!r}, profile item #{position} has no "
                    "email id in 'text'"
                )
    return data


def needed_ids(id_files: Iterable[IdFile]) -> set[str]:
    needed: set[str] = set()
    for id_file in id_files:
        for question in id_file.questions:
            needed.add(question["input"].strip())
            needed.update(item["text"].strip() for item in question.get("profile") or [])
    return needed


# --------------------------------------------------------------------------- archives


@dataclass
class ArchiveIndex:
    archives: list[Path]
    location: dict[str, tuple[int, str]]  # email id -> (archive number, member name)
    duplicates: dict[str, list[str]] = field(default_factory=dict)  # id -> archives beyond first
    members: int = 0


def list_archives(avocado_dir: Path) -> list[Path]:
    if not avocado_dir.is_dir():
        raise AvocadoError(NOT_FOUND.format(where=f"No Avocado folder at {avocado_dir}"))
    archives = sorted(p for p in avocado_dir.iterdir() if p.suffix.lower() == ".zip")
    if not archives:
        raise AvocadoError(
            NOT_FOUND.format(where=f"{avocado_dir} holds no .zip archives of Avocado emails")
        )
    return archives


def index_archives(archives: list[Path], needed: set[str], reporter: Reporter) -> ArchiveIndex:
    """Map each needed email id to the first archive (in sorted order) that holds it."""
    index = ArchiveIndex(archives, {})
    reporter.start("indexing Avocado archives", len(archives), unit="archives")
    for number, archive in enumerate(archives):
        try:
            with zipfile.ZipFile(archive) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise AvocadoError(f"{archive}: not a readable zip archive ({exc})") from None
        for info in infos:
            if info.is_dir():
                continue
            index.members += 1
            email_id = PurePosixPath(info.filename.replace("\\", "/")).name
            if email_id not in needed:
                continue
            if email_id in index.location:
                index.duplicates.setdefault(email_id, []).append(archive.name)
            else:
                index.location[email_id] = (number, info.filename)
        reporter.advance(1)
    return index


READERS = {"lamp": parse_email, "mailparser": parse_email_as_mailparser}  # email_reader


def _read_archive(
    archive: Path, members: list[tuple[str, str]], max_bytes: int, reader: str = "lamp"
) -> tuple[dict[str, tuple[str, str]], int]:
    """Parse the listed (email id, member) pairs of one archive with the task's
    ``email_reader``; returns parsed emails and how many bytes were read."""
    parse = READERS[reader]
    parsed: dict[str, tuple[str, str]] = {}
    read = 0
    try:
        with zipfile.ZipFile(archive) as zf:
            for email_id, member in members:
                with zf.open(member) as handle:
                    raw = handle.read(max_bytes + 1)
                if len(raw) > max_bytes:
                    raise AvocadoError(
                        f"{archive}: member {member} decompresses to more than {max_bytes} "
                        "bytes (--max-email-bytes)"
                    )
                read += len(raw)
                parsed[email_id] = parse(raw)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise AvocadoError(f"{archive}: corrupt zip archive ({exc})") from None
    return parsed, read


# --------------------------------------------------------------------------- build


@dataclass(frozen=True)
class BuildResult:
    built: dict[str, dict[str, int]]  # split -> set -> questions written
    files: list[str]
    archives: int
    members: int
    emails_needed: int
    emails_parsed: int
    bytes_read: int
    missing: int
    missing_examples: list[str]
    dropped_questions: int
    dropped_items: int
    duplicates: int
    duplicate_examples: list[str]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def build_lamp6(
    registry: Registry,
    data_dir: Path,
    avocado_dir: Path,
    questions_dir: Path | None = None,
    skip_missing: bool = False,
    workers: int = 2,
    max_email_bytes: int = DEFAULT_MAX_EMAIL_BYTES,
    reporter: Reporter | None = None,
    task_name: str | None = None,
) -> BuildResult:
    """Build an Avocado task (LaMP-6 by default; ``task_name``: LongLaMP-1 too) from the
    corpus's zips and the task's id files."""
    reporter = reporter or SilentReporter()
    started = time.perf_counter()
    if task_name is not None:
        task = registry.task(task_name)
        if task.needs_build != "avocado":
            raise InputError(f"{task.name} is not built from Avocado (it needs no build)")
    else:
        task = next((t for t in registry.tasks.values() if t.needs_build == "avocado"), None)
    if task is None:
        raise AvocadoError("the task registry has no task built from Avocado")
    archives = list_archives(avocado_dir)
    source = questions_dir or data_dir
    id_files = find_id_files(registry, task, source)
    if not id_files:
        example = registry.path("id_questions", Path(), task, "user", "train").as_posix()
        if task.avocado == "completion":
            raise InputError(
                f"{source}: no {task.name} id files (e.g. {example}). LongLaMP does not publish "
                "them: put the files you were given there (or pass --questions-dir)"
            )
        raise InputError(
            f"{source}: no {task.name} id files (e.g. {example}); "
            f"run 'lampctl download --task {task.name}' or pass --questions-dir"
        )
    needed = needed_ids(id_files)
    index = index_archives(archives, needed, reporter)
    missing = sorted(needed - index.location.keys())
    if missing and not skip_missing:
        raise AvocadoError(
            f"{len(missing)} of {len(needed)} emails LaMP-6 needs are not in {avocado_dir} "
            f"(first: {', '.join(missing[:5])}); nothing was written. Check the folder, or "
            "pass --skip-missing to drop the questions and profile items that use them"
        )

    by_archive: dict[int, list[tuple[str, str]]] = {}
    for email_id, (number, member) in sorted(index.location.items()):
        by_archive.setdefault(number, []).append((email_id, member))
    emails: dict[str, tuple[str, str]] = {}
    bytes_read = 0
    reporter.start("parsing emails", len(index.location), unit="emails")
    jobs = sorted(by_archive.items())
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=pool_context(),
            initializer=worker_setup,
            initargs=(os.getpid(),),
        ) as pool:
            futures = [
                (
                    len(members),
                    pool.submit(
                        _read_archive, archives[n], members, max_email_bytes, task.email_reader
                    ),
                )
                for n, members in jobs
            ]
            for count, future in futures:
                parsed, read = future.result()
                emails.update(parsed)
                bytes_read += read
                reporter.advance(count)
    else:
        for n, members in jobs:
            parsed, read = _read_archive(archives[n], members, max_email_bytes, task.email_reader)
            emails.update(parsed)
            bytes_read += read
            reporter.advance(len(members))

    built: dict[str, dict[str, int]] = {}
    outputs_to_write: list[tuple[Path, Any]] = []
    dropped_questions = dropped_items = 0
    for id_file in id_files:
        questions, golds, lost_q, lost_i = _build_set(id_file, emails, task)
        dropped_questions += lost_q
        dropped_items += lost_i
        built.setdefault(id_file.split, {})[id_file.set] = len(questions)
        out_q = registry.path("questions", data_dir, task, id_file.split, id_file.set)
        outputs_to_write.append((out_q, questions))
        if golds is not None:
            out_o = registry.path("outputs", data_dir, task, id_file.split, id_file.set)
            outputs_to_write.append((out_o, {"task": task.dir_name, "golds": golds}))
    for path, data in outputs_to_write:
        if id_file_is(path, id_files):
            raise AvocadoError(f"{path}: refusing to overwrite the id file it was built from")
        write_json(path, data, ensure_ascii=False)
    if missing:
        reporter.log(
            f"skipped {len(missing)} missing emails (first: {', '.join(missing[:5])}): dropped "
            f"{dropped_questions} questions and {dropped_items} profile items"
        )
    if index.duplicates:
        reporter.log(
            f"{len(index.duplicates)} needed email ids appear in more than one archive (first: "
            f"{', '.join(sorted(index.duplicates)[:5])}); the first archive in sorted order won"
        )
    return BuildResult(
        built=built,
        files=[str(p) for p, _ in outputs_to_write],
        archives=len(archives),
        members=index.members,
        emails_needed=len(needed),
        emails_parsed=len(emails),
        bytes_read=bytes_read,
        missing=len(missing),
        missing_examples=missing[:5],
        dropped_questions=dropped_questions,
        dropped_items=dropped_items,
        duplicates=len(index.duplicates),
        duplicate_examples=sorted(index.duplicates)[:5],
        seconds=round(time.perf_counter() - started, 3),
    )


def id_file_is(path: Path, id_files: list[IdFile]) -> bool:
    resolved = path.resolve()
    return any(resolved == f.questions_path.resolve() for f in id_files) or any(
        f.outputs_path is not None and resolved == f.outputs_path.resolve() for f in id_files
    )


def _build_set(
    id_file: IdFile, emails: dict[str, tuple[str, str]], task: TaskSpec | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, int, int]:
    if task is not None and task.avocado == "completion":
        return _build_completion(id_file, emails)
    questions = []
    subjects: dict[str, str] = {}
    dropped: set[str] = set()
    lost_items = 0
    for question in id_file.questions:
        email = emails.get(question["input"].strip())
        if email is None:
            dropped.add(str(question["id"]))
            continue
        profile, lost = _profile_emails(question, emails, strip=False)
        lost_items += lost
        qid = str(question["id"])
        subjects[qid] = email[0]
        questions.append({**question, "input": PROMPT.format(body=email[1]), "profile": profile})
    golds = None
    if id_file.outputs is not None:
        golds = []
        for gold in id_file.outputs["golds"]:
            gid = str(gold.get("id"))
            if gid in subjects:
                golds.append({"id": gold["id"], "output": subjects[gid]})
            elif gid not in dropped:
                raise InputError(f"{id_file.outputs_path}: gold {gid!r} has no question")
    return questions, golds, len(dropped), lost_items


def _build_completion(
    id_file: IdFile, emails: dict[str, tuple[str, str]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, int, int]:
    """LongLaMP-1's rule: the input is the subject and the body's first ``content_length``
    words, the gold the rest of the body's words (bodies stripped, words re-joined with one
    space, as the official script does); profile items get the body as ``text`` and the
    subject as ``title``. The test set gets no golds, as the official script writes none."""
    questions, golds = [], []
    dropped = lost_items = 0
    for question in id_file.questions:
        email = emails.get(question["input"].strip())
        if email is None:
            dropped += 1
            continue
        subject, body = email[0], email[1].strip()
        words = body.split()
        length = question["content_length"]
        profile, lost = _profile_emails(question, emails, strip=True)
        lost_items += lost
        built = {**question, "profile": profile}
        built["input"] = COMPLETION.format(subject=subject, head=" ".join(words[:length]))
        questions.append(built)
        golds.append({"id": question["id"], "output": " ".join(words[length:])})
    return questions, golds if id_file.set != "test" else None, dropped, lost_items


def _profile_emails(
    question: dict[str, Any], emails: dict[str, tuple[str, str]], strip: bool
) -> tuple[list[dict[str, Any]], int]:
    """The question's profile items with their email's body as ``text`` (stripped, for
    LongLaMP-1, as its script strips every body) and its subject as ``title``; and how many
    items were lost to emails not found."""
    profile, lost = [], 0
    for item in question.get("profile") or []:
        found = emails.get(item["text"].strip())
        if found is None:
            lost += 1
            continue
        body = found[1].strip() if strip else found[1]
        profile.append({**item, "text": body, "title": found[0]})
    return profile, lost
