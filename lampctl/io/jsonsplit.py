"""One big JSON list decoded in several processes at once.

A questions file is one JSON list; msgspec decodes it on one core at about 2 GB/s, most of it
spent stepping over profiles a command leaves raw. Here the list is cut at commas between its
elements and each piece is decoded in its own forked process; the children send back their
elements with every ``msgspec.Raw`` field as an (offset, length) span of the file, so the
parent rebuilds the same structs, viewing its own mapping of the file, without copying any
profile. The result equals a one-process decode of the whole file, element for element.

Finding the cuts: from a target offset, the next ``anchor`` key (``"profile":``, which every
question has and which cannot occur inside a JSON string) marks a point inside an element;
brackets are counted from there, strings stepped over, to the ``}`` closing that element, and
the ``,`` after it is the cut. Nothing is trusted: each piece is decoded as a list of its own
(a ``[`` and a ``]`` written over the cut commas, in a private copy-on-write mapping, so each
process sees its own brackets and the file is never touched), and a piece can only decode if
its cuts are commas between elements of the top-level list. If any piece fails to decode, the
caller decodes the whole file in one process as before, which also names what is wrong in the
usual words.
"""

from __future__ import annotations

import mmap
import re
from pathlib import Path
from typing import Any

import msgspec

from lampctl.io.fastjson import buffer_address
from lampctl.parallel import Forked

# a part smaller than this is not worth a process: fork and the spans cost about 10 ms
MIN_PART_BYTES = 64 << 20
# the first piece is decoded here, the others in children, which also fork, turn their Raw
# fields into spans and send them: the first piece is this much larger, so all end together
FIRST_PIECE_EXTRA = 0.1

_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_SPACE = frozenset(b" \t\r\n")


def part_count(size: int, cpus: int) -> int:
    """How many processes decode a file of ``size`` bytes with ``cpus`` cores to spare."""
    return max(1, min(cpus, size // MIN_PART_BYTES))


def anchor_pattern(key: bytes) -> re.Pattern[bytes]:
    """``key`` (a JSON string such as ``b'"profile"'``) followed by a colon: a key, never
    text inside a string, where a quote is always escaped."""
    return re.compile(re.escape(key) + rb"\s*:")


def find_cut(data: Any, start: int, anchor: re.Pattern[bytes]) -> int | None:
    """The offset of a comma after ``start`` that probably separates two elements of the
    top-level list (``decode_parts`` checks it), or ``None``."""
    found = anchor.search(data, start)
    if found is None:
        return None
    depth = 0  # brackets opened since the anchor key, inside its element
    for token in _TOKENS.finditer(data, found.end()):
        char = token.group()[0]
        if char in b"[{":
            depth += 1
        elif char in b"]}":
            depth -= 1
            if depth < 0:  # the element's closing brace
                position = token.end()
                while position < len(data) and data[position] in _SPACE:
                    position += 1
                if position < len(data) and data[position] == ord(","):
                    return position
                return None
    return None


def find_cuts(data: Any, parts: int, anchor: re.Pattern[bytes]) -> list[int]:
    """Up to ``parts - 1`` cuts, in order, near equal shares of ``data`` (the first a little
    larger: ``FIRST_PIECE_EXTRA``)."""
    cuts: list[int] = []
    share = len(data) / (parts + FIRST_PIECE_EXTRA)
    for index in range(1, parts):
        start = max(int(share * (index + FIRST_PIECE_EXTRA)), cuts[-1] + 1 if cuts else 0)
        cut = find_cut(data, start, anchor)
        if cut is None:
            break
        cuts.append(cut)
    return cuts


def _decode_piece(
    data: memoryview, begin: int | None, end: int | None, element: type
) -> list[tuple[Any, ...]] | None:
    """One piece in a child: its elements, with Raw fields as (offset, length) spans; ``None``
    when the piece does not decode."""
    try:
        decoded = msgspec.json.Decoder(list[element]).decode(_piece(data, begin, end))
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    base, size = buffer_address(data), len(data)
    elements = []
    for item in decoded:
        values = list(msgspec.structs.astuple(item))
        for index, value in enumerate(values):
            if isinstance(value, msgspec.Raw):
                offset = buffer_address(value) - base
                if not 0 <= offset <= size - len(value):
                    return None  # a Raw that copied its bytes instead of viewing them
                values[index] = (offset, len(value))
        elements.append(tuple(values))
    return elements


def _piece(data: memoryview, begin: int | None, end: int | None) -> memoryview:
    """The bytes between two cuts, as a list: ``[`` over the comma before, ``]`` over the one
    after (in this process's private copy of the page)."""
    if begin is not None:
        data[begin] = ord("[")
    if end is not None:
        data[end] = ord("]")
    return data[begin or 0 : None if end is None else end + 1]


def decode_parts(path: Path, element: type, anchor: bytes, parts: int) -> list[Any] | None:
    """``path``'s list of ``element`` structs, decoded in ``parts`` processes; ``None`` when
    it cannot be split (no cuts found, a piece does not decode, no private mapping here): the
    caller then decodes it in one process. Use only where ``parallel.fork_is_safe()``."""
    try:
        with path.open("rb") as handle:
            mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)
    except (OSError, ValueError):
        return None
    data = memoryview(mapping)
    raw_fields = [
        index
        for index, field in enumerate(msgspec.structs.fields(element))
        if field.type is msgspec.Raw
    ]
    cuts = find_cuts(data, parts, anchor_pattern(anchor))
    if not cuts:
        return None
    bounds = list(zip([None, *cuts], [*cuts, None], strict=True))
    children = [
        Forked("decoding the questions file", _decode_piece, data, begin, end, element)
        for begin, end in bounds[1:]
    ]
    try:
        try:
            first = msgspec.json.Decoder(list[element]).decode(_piece(data, None, cuts[0]))
        except (msgspec.DecodeError, UnicodeDecodeError):
            first = None
        rest = [child.result() for child in children]
    finally:
        for child in children:
            child.close()
    if first is None or any(spans is None for spans in rest):
        return None  # the caller decodes the file in one process (and names what is wrong)
    decoded = list(first)
    for spans in rest:
        for values in spans:
            fields = list(values)
            for index in raw_fields:
                offset, length = fields[index]
                fields[index] = msgspec.Raw(data[offset : offset + length])
            decoded.append(element(*fields))
    return decoded
