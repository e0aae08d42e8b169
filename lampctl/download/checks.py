"""What makes a downloaded file acceptable: its kind (JSON, not an HTML page), its shape, and
the registry's fixes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from lampctl.errors import InputError
from lampctl.io.data import parse_json_bytes

# --------------------------------------------------------------------------- checks and fixes


STREAM_FROM_BYTES = 64 * 1024 * 1024  # larger files are checked without loading them whole
_BLOCK = 16 * 1024 * 1024
_MAX_QUESTION_CHARS = 256 * 1024 * 1024


def check_file(path: Path, kind: str, name: str, block: int = _BLOCK) -> str:
    """Check a downloaded file's kind and shape; return its sha256. Files of questions larger
    than ``STREAM_FROM_BYTES`` are read in blocks, one question at a time, so an 860 MB file
    never sits in memory whole (or as millions of objects)."""
    if kind != "questions" or path.stat().st_size < STREAM_FROM_BYTES:
        raw = path.read_bytes()
        check_shape(parse_json_bytes(raw, name), kind, name)
        return hashlib.sha256(raw).hexdigest()
    return scan_questions(path, name, block)


def scan_questions(path: Path, name: str, block: int) -> str:
    import codecs
    import json

    digest = hashlib.sha256()
    text_of = codecs.getincrementaldecoder("utf-8-sig")()
    decoder = json.JSONDecoder()
    buffer, pos, index, offset = "", 0, 0, 0  # offset: characters dropped before the buffer
    state = "start"  # start -> item -> separator -> ... -> end
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(block)
            digest.update(chunk)
            try:
                buffer = buffer[pos:] + text_of.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                raise InputError(f"{name}: not UTF-8 text (near byte {exc.start})") from None
            offset += pos
            pos = 0
            eof = not chunk
            while True:
                while pos < len(buffer) and buffer[pos] in " \t\r\n":
                    pos += 1
                if pos >= len(buffer):
                    break
                if state == "start":
                    if buffer[pos] != "[":
                        if buffer[pos] == "<":
                            raise InputError(
                                f"{name}: is an HTML page, not JSON (a failed download?)"
                            )
                        raise InputError(f"{name}: expected a list of questions")
                    pos += 1
                    state = "first"
                elif state in ("first", "item"):
                    if state == "first" and buffer[pos] == "]":
                        pos += 1
                        state = "end"
                        continue
                    try:
                        question, end = decoder.raw_decode(buffer, pos)
                    except json.JSONDecodeError as exc:
                        if eof or len(buffer) - pos > _MAX_QUESTION_CHARS:
                            raise InputError(
                                f"{name}: invalid JSON in question #{index} (character "
                                f"{offset + exc.pos}): {exc.msg}"
                                + (" (truncated file?)" if eof else "")
                            ) from None
                        break  # the question goes on in the next block
                    if not isinstance(question, dict) or not {"id", "input", "profile"} <= set(
                        question
                    ):
                        raise InputError(f"{name}: question #{index} lacks id, input or profile")
                    index += 1
                    pos = end
                    state = "separator"
                elif state == "separator":
                    if buffer[pos] == ",":
                        state = "item"
                    elif buffer[pos] == "]":
                        state = "end"
                    else:
                        raise InputError(
                            f"{name}: invalid JSON after question #{index - 1} (character "
                            f"{offset + pos}): expected ',' or ']'"
                        )
                    pos += 1
                else:
                    raise InputError(
                        f"{name}: extra data after the list (character {offset + pos})"
                    )
            if eof:
                break
    if state != "end":
        raise InputError(f"{name}: truncated file: the list of questions does not end")
    return digest.hexdigest()


def check_shape(data: Any, kind: str, name: str) -> None:
    if kind == "questions":
        if not isinstance(data, list):
            raise InputError(f"{name}: expected a list of questions, got {type(data).__name__}")
        for index, question in enumerate(data):
            if not isinstance(question, dict) or not {"id", "input", "profile"} <= set(question):
                raise InputError(f"{name}: question #{index} lacks id, input or profile")
    elif kind == "outputs":
        if (
            not isinstance(data, dict)
            or "task" not in data
            or not isinstance(data.get("golds"), list)
        ):
            raise InputError(f"{name}: expected an object with 'task' and a 'golds' list")
    else:
        raise InputError(f"{name}: unknown file kind {kind!r}")


def apply_drop_first(data: Any, kind: str) -> Any:
    if kind == "questions":
        return data[1:]
    return {**data, "golds": data["golds"][1:]}
