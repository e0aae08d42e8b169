"""Typed views of LaMP files for msgspec: decode only the fields a command uses.

Decoding into these structs skips what is not named (a question's profile can stay raw bytes
until an item is needed), which is most of the work on an 800 MB questions file.
"""

from __future__ import annotations

from typing import Any

import msgspec


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
