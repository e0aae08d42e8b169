"""Typed views of LaMP files for msgspec: decode only the fields a command uses.

Decoding into these structs skips what is not named (a question's profile can stay raw bytes
until an item is needed), which is most of the work on an 800 MB questions file.
"""

from __future__ import annotations

import codecs
from typing import Any

import msgspec


def decode(raw: Any, decoder: msgspec.json.Decoder[Any] | None = None) -> Any:
    """Decode with msgspec, raising ``UnicodeDecodeError`` (with the byte's offset) whenever the
    bytes are not UTF-8. msgspec's own report of bad UTF-8 changed across releases (0.18 raised
    ``UnicodeDecodeError``, 0.19+ a ``DecodeError`` with its own words), so the cause is checked
    here, by Python's codec, and never read from msgspec's message."""
    try:
        return msgspec.json.decode(raw) if decoder is None else decoder.decode(raw)
    except msgspec.DecodeError:
        codecs.decode(raw, "utf-8")  # raises UnicodeDecodeError when that is the cause
        raise


class ItemId(msgspec.Struct):
    id: str | int


class RawQuestion(msgspec.Struct):
    """A question with its input and profile left as raw JSON (checked to be JSON, not yet
    decoded): a reader decodes those of the questions it uses."""

    id: str | int
    input: msgspec.Raw
    profile: msgspec.Raw


class QuestionUser(msgspec.Struct):
    """Only what a per-user breakdown needs."""

    id: str | int
    user_id: Any = None
