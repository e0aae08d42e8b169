"""Reading LaMP files with errors that name the culprit, and writing files atomically."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import msgspec

from lampctl.errors import InputError, OutputError


def as_path(value: Path | str | None) -> Path | None:
    """An optional path argument, given as text or a Path."""
    return Path(value) if value is not None else None


def read_bytes(path: Path, what: str = "file") -> bytes:
    """A file's bytes; any problem becomes one ``InputError`` naming the file."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a folder, expected a {what}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read {what}: {exc.strerror}") from None


def map_bytes(path: Path, what: str = "file") -> bytes | memoryview:
    """A file's bytes for parsing, mapped from the page cache instead of copied (a read of an
    800 MB file costs about half a second, mostly copying; a mapping costs page-table entries).
    The mapping stays open while anything views it (``msgspec.Raw`` does) and closes with the
    last view. Anything that cannot be mapped (empty, a pipe, a device) is read instead."""
    import mmap

    try:
        with path.open("rb") as handle:
            if stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
                return memoryview(mmap.mmap(handle.fileno(), 0, flags=flags, prot=mmap.PROT_READ))
    except (ValueError, OSError, AttributeError, TypeError):  # empty, or no mmap here: read it
        pass
    return read_bytes(path, what)


def read_json(path: Path, what: str = "file") -> Any:
    """Parse a JSON file; any problem becomes one ``InputError`` naming the file."""
    return parse_json_bytes(read_bytes(path, what), str(path))


def parse_json_bytes(raw: bytes, name: str) -> Any:
    """Parse JSON with msgspec (about twice as fast as ``json`` on LaMP files, same values);
    anything it refuses goes through ``json``, which accepts a little more (NaN, lone
    surrogates) and whose messages name line and column."""
    try:
        return msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        pass
    if not raw.strip():
        raise InputError(f"{name}: file is empty")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{name}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        ) from None
    head = text.lstrip()[:15].lower()
    if head.startswith(("<!doctype", "<html", "<?xml", "<head", "<body")):
        raise InputError(f"{name}: is an HTML page, not JSON (a failed download?)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        hint = " (truncated file?)" if exc.pos >= len(text.rstrip()) else ""
        raise InputError(
            f"{name}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}{hint}"
        ) from None


@dataclass(frozen=True)
class Question:
    id: str
    input: str
    profile: list[dict[str, Any]]
    raw: dict[str, Any]

    @property
    def item_ids(self) -> list[str]:
        return [str(item["id"]) for item in self.profile]

    @property
    def user_id(self) -> str:
        """The question's user: the time split's ``user_id`` as text; in the user split, where
        it is absent, each question is its own user and this is its id."""
        user = self.raw.get("user_id")
        return self.id if user is None else str(user)


def _as_id(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def validate_questions(
    data: Any, name: str, seen: set[str] | None = None, offset: int = 0
) -> list[Question]:
    """Check the questions schema: a list of ``{id, input, profile: [{id, ...}]}``. For a file
    read in chunks, ``seen`` carries the ids of earlier chunks and ``offset`` their count."""
    if not isinstance(data, list):
        raise InputError(f"{name}: expected a JSON list of questions, got {type(data).__name__}")
    questions: list[Question] = []
    seen = set() if seen is None else seen
    for index, raw in enumerate(data, offset):
        if not isinstance(raw, dict):
            raise InputError(f"{name}: question #{index} is not an object")
        qid = _as_id(raw.get("id"))
        if qid is None:
            raise InputError(f"{name}: question #{index} has no string 'id'")
        if qid in seen:
            raise InputError(f"{name}: duplicate question id {qid!r}")
        seen.add(qid)
        if not isinstance(raw.get("input"), str):
            raise InputError(f"{name}: question {qid!r} has no string 'input'")
        profile = raw.get("profile")
        if not isinstance(profile, list):
            raise InputError(f"{name}: question {qid!r} has no 'profile' list")
        item_ids = set()
        for position, item in enumerate(profile):
            iid = _as_id(item.get("id")) if isinstance(item, dict) else None
            if iid is None:
                raise InputError(
                    f"{name}: question {qid!r}, profile item #{position} has no string 'id'"
                )
            item_ids.add(iid)
        if len(item_ids) != len(profile):
            raise InputError(f"{name}: {_repeated_item(qid, profile)}")
        user = raw.get("user_id")
        if user is not None and _as_id(user) is None:
            raise InputError(
                f"{name}: question {qid!r} has a user_id that is a {type(user).__name__}, not "
                "a string"
            )
        questions.append(Question(id=qid, input=raw["input"], profile=profile, raw=raw))
    return questions


def _repeated_item(qid: str, profile: list[dict[str, Any]]) -> str:
    first: dict[str, int] = {}
    for position, item in enumerate(profile):
        iid = str(item["id"])
        if iid in first:
            return (
                f"question {qid!r} repeats profile item id {iid!r} (items #{first[iid]} and "
                f"#{position}); rankings name items by id, so ids must be unique in a profile"
            )
        first[iid] = position
    raise AssertionError("no repeated id")


def load_questions(path: Path) -> list[Question]:
    return validate_questions(read_json(path, "questions file"), str(path))


def _raw_list(path: Path) -> tuple[bytes, list[msgspec.Raw]] | None:
    """The file's bytes and each top-level list element as a view into them; None when the
    file cannot be read or is not a plain JSON list."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        return raw, msgspec.json.decode(raw, type=list[msgspec.Raw])
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


def raw_questions(path: Path) -> list[msgspec.Raw] | None:
    """Each question of a questions file as raw JSON bytes, to decode chunk by chunk (the file's
    bytes stay in memory once, not as millions of Python objects). None when the file is not a
    plain JSON list; ``load_questions`` then says what is wrong."""
    found = _raw_list(path)
    return None if found is None else found[1]


def raw_question_spans(path: Path) -> list[tuple[int, int]] | None:
    """(offset, length) in the file of each question of a questions file, found in one
    msgspec pass; the file's bytes are released before this returns, so readers can fetch a
    few questions at a time. None when the file is not a plain JSON list."""
    from lampctl.io.fastjson import buffer_address

    found = _raw_list(path)
    if found is None:
        return None
    raw, raws = found
    if not raws:
        return []
    base = buffer_address(raw)
    spans = [(buffer_address(r) - base, len(r)) for r in raws]
    start, length = spans[-1]
    if raw[start : start + length] != bytes(raws[-1]):  # Raw did not view the buffer itself
        return None
    return spans


def read_spans(path: Path, spans: list[tuple[int, int]]) -> list[bytes]:
    """The bytes of consecutive questions (as ``raw_question_spans`` found them), in one read."""
    first = spans[0][0]
    last = spans[-1][0] + spans[-1][1]
    with path.open("rb") as handle:
        handle.seek(first)
        block = handle.read(last - first)
    return [block[start - first : start - first + length] for start, length in spans]


def decode_questions(
    raws: Sequence[msgspec.Raw | bytes], name: str, offset: int, seen: set[str] | None = None
) -> list[Question]:
    """Questions ``offset``, ``offset + 1``, ... of a file, from their raw JSON, checked."""
    data = [decode_raw(r, name, offset + i) for i, r in enumerate(raws)]
    return validate_questions(data, name, seen, offset)


def decode_raw(raw: msgspec.Raw | bytes, name: str, index: int) -> Any:
    """One question of ``raw_questions``; errors name the file and the question's position."""
    from lampctl.io import fastjson

    data = bytes(raw)
    try:
        return fastjson.decode(data)
    except UnicodeDecodeError:
        try:
            data.decode("utf-8")
            where = ""
        except UnicodeDecodeError as exc:
            where = f"byte 0x{data[exc.start]:02x} "
        raise InputError(f"{name}: not UTF-8 text ({where}in question #{index})") from None
    except msgspec.DecodeError:  # what msgspec refuses and json accepts (NaN, huge numbers)
        try:
            return json.loads(data)
        except ValueError as exc:
            raise InputError(f"{name}: question #{index} is not valid JSON: {exc}") from None


def answer_rows(rows: Sequence[Any], name: str) -> dict[str, str]:
    """``[{"id", "output"}, ...]`` as ``{id: output}``, checked: every entry an object with an
    id (text, or a whole number) and a text output; no id twice. The one reader of golds and
    predictions (``load_outputs``, ``scoring.answers``): each fault is one ``InputError``
    naming the file and the first entry at fault."""
    outputs: dict[str, str] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or "id" not in row or "output" not in row:
            raise InputError(f"{name}: entry #{index} is not an {{id, output}} object")
        rid = _as_id(row["id"])
        if rid is None:
            raise InputError(f"{name}: entry #{index} has a non-string id {row['id']!r}")
        if rid in outputs:
            raise InputError(f"{name}: id {rid!r} appears twice")
        output = row["output"]
        if not isinstance(output, str):
            kind = type(output).__name__
            kind = "null" if output is None else ("an " if kind[0] in "aeiou" else "a ") + kind
            raise InputError(f"{name}: output of {rid!r} is {kind}, not a string")
        outputs[rid] = output
    return outputs


def load_outputs(path: Path, task: Any = None) -> dict[str, str]:
    """Outputs ``{"task": ..., "golds": [{"id", "output"}]}`` as ``{id: output}``, checked by
    ``answer_rows``; with ``task`` (a ``TaskSpec``), a file whose ``"task"`` names another
    task is an ``InputError``."""
    data = read_json(path, "outputs file")
    if not isinstance(data, dict) or not isinstance(data.get("golds"), list):
        raise InputError(f"{path}: expected an object with a 'golds' list")
    named = data.get("task")
    if (
        task is not None
        and named is not None
        and not (isinstance(named, str) and task.names_output_task(named))
    ):
        raise InputError(f"{path}: is for {named}, not {task.name}")
    return answer_rows(data["golds"], str(path))


# --------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building acyclic data.

    Loading a LaMP file creates millions of containers that live until the end; each
    collection would walk all of them again (a third of BM25's run time on LaMP-4).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def process_umask() -> int:
    """The process umask, read without changing it where Linux allows (threads may be writing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()
TMP_SUFFIX = ".tmp"
CLOSER_THREAD = "lampctl-close-replaced"
REPLACED_IN_A_THREAD_BYTES = 32 << 20


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}."


def owner_tag() -> str:
    """Host and pid in a temp file's name: a later run can tell a dead writer's leftovers from
    a live one's, even on shared scratch seen by several hosts."""
    host = socket.gethostname().split(".")[0].replace("-", "_") or "host"
    return f"{host}-{os.getpid()}-"


def left_by_dead_writer(tag: str) -> bool:
    """Whether a temp name's ``owner_tag()`` part (``HOST-PID-...``) is that of a process of
    this host that is gone (never this process, nor one of another host)."""
    parts = tag.split("-")
    if len(parts) < 3 or parts[0] != owner_tag().split("-")[0] or not parts[1].isdigit():
        return False
    return int(parts[1]) != os.getpid() and not pid_alive(int(parts[1]))


def leftover_temp_files(path: Path) -> list[Path]:
    """Temp files of interrupted writes of ``path`` (any host)."""
    folder = path.parent
    if not folder.is_dir():
        return []
    prefix = _tmp_prefix(path)
    return sorted(
        p for p in folder.iterdir() if p.name.startswith(prefix) and p.name.endswith(TMP_SUFFIX)
    )


def remove_dead_temp_files(path: Path) -> list[Path]:
    """Remove temp files of ``path`` left by killed writers on this host; return them."""
    removed = []
    for leftover in leftover_temp_files(path):
        if left_by_dead_writer(leftover.name[len(_tmp_prefix(path)) :]):
            try:
                leftover.unlink(missing_ok=True)
            except OSError:  # a read-only or foreign folder: leave it, the write will say
                continue
            removed.append(leftover)
    return removed


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def writable_target(path: Path) -> tuple[Path, bool]:
    """(where to write, whether it is a regular file path we may replace by rename).

    A symlink is followed, so its target is replaced and the link kept. An existing path that
    is not a regular file (a device such as /dev/null, a FIFO, a socket) is written through,
    never replaced; a folder is an error.
    """
    real = Path(os.path.realpath(path))
    try:
        mode = real.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # the latter: the write says why
        return real, True
    if stat.S_ISDIR(mode):
        raise InputError(f"{path}: is a folder, not a file to write")
    if stat.S_ISSOCK(mode):
        raise InputError(f"{path}: is a socket; refusing to write to it")
    return real, stat.S_ISREG(mode)


def is_special_file(path: Path) -> bool:
    """An existing output that is not a regular file (``/dev/null``, a FIFO): no record."""
    return not writable_target(path)[1]


@contextlib.contextmanager
def atomic_writer(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temp file beside ``path``; fsync and rename into place only on success.

    The file gets the mode an ordinary ``open`` would give (0666 less the umask), so colleagues
    on shared scratch can read it. Devices and FIFOs are written through, not replaced.
    """
    target, regular = writable_target(path)
    encoding = None if "b" in mode else "utf-8"
    if not regular:
        try:
            with open(target, mode, encoding=encoding) as handle:
                yield handle
        except OSError as exc:
            if exc.filename not in (None, str(target)):
                raise
            raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_dead_temp_files(target)
        fd, tmp_name = tempfile.mkstemp(
            dir=target.parent, prefix=_tmp_prefix(target) + owner_tag(), suffix=TMP_SUFFIX
        )
    except OSError as exc:
        why = exc.strerror or str(exc)
        blocking = next((p for p in target.parents if p.exists()), None)
        if blocking is not None and not blocking.is_dir():
            why = f"{blocking} is a file, not a folder"
        raise OutputError(f"{path}: cannot write: {why}") from None
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o666 & ~process_umask())
        with open(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        replaced = _hold_big_file(target)
        os.replace(tmp, target)
        if replaced is not None:  # the old file's pages are freed as its last fd closes
            closer = threading.Thread(target=os.close, args=(replaced,), name=CLOSER_THREAD)
            closer.daemon = True
            closer.start()
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename not in (None, tmp_name, str(target)):
            raise  # an input the body was reading, not this output
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _hold_big_file(path: Path) -> int | None:
    """An fd on a big file about to be replaced: freeing its pages (about 25 ms for 141 MB)
    then happens when the fd closes, in a thread, not in ``os.replace`` on the caller's. Small
    or missing files cost one ``stat``."""
    try:
        if os.stat(path).st_size < REPLACED_IN_A_THREAD_BYTES:
            return None
        return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None


def write_json(path: Path, data: Any, **options: Any) -> None:
    """Atomically write ``data`` as JSON (``json.dumps`` uses the C encoder; ``dump`` does not)."""
    text = json.dumps(data, **options)
    with atomic_writer(path) as handle:
        handle.write(text)


def sha256_file(path: Path) -> str:
    """The file's sha256, read into one reused 256 KB buffer (a new 1 MB ``bytes`` per read
    cost 4% more on a 556 MB file; what remains is the hash and the page-cache copy)."""
    digest = hashlib.sha256()
    buffer = bytearray(1 << 18)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while size := handle.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()
