"""Typed views of LaMP files for msgspec: decode only the fields a command uses.

Decoding into these structs skips what is not named (a question's profile can stay raw bytes
until an item is needed), which is most of the work on an 800 MB questions file.
"""

from __future__ import annotations

import codecs
import ctypes
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


class _Buffer(ctypes.Structure):
    """CPython's ``Py_buffer`` (this layout since Python 3.3; in the stable ABI since 3.11)."""

    _fields_ = [
        ("buf", ctypes.c_void_p),
        ("obj", ctypes.c_void_p),
        ("len", ctypes.c_ssize_t),
        ("itemsize", ctypes.c_ssize_t),
        ("readonly", ctypes.c_int),
        ("ndim", ctypes.c_int),
        ("format", ctypes.c_char_p),
        ("shape", ctypes.c_void_p),
        ("strides", ctypes.c_void_p),
        ("suboffsets", ctypes.c_void_p),
        ("internal", ctypes.c_void_p),
    ]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_Buffer), ctypes.c_int]
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_Buffer)]


def buffer_address(obj: Any) -> int:
    """Where ``obj``'s bytes start in memory: a ``msgspec.Raw`` decoded from a buffer views
    that buffer, so its offset in the file is its address less the buffer's."""
    view = _Buffer()
    if _get_buffer(obj, ctypes.byref(view), 0) != 0:
        raise TypeError("not a buffer")
    try:
        return int(view.buf or 0)
    finally:
        _release_buffer(ctypes.byref(view))


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
