"""How core code reports progress without printing: a sink the CLI implements."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Protocol


class LampctlNotice(UserWarning):
    """Something the user should know that does not stop the work (a cache that cannot be
    written): a warning for the Python API, one ``Note:`` line on stderr in the CLI."""


_NOTICED: set[str] = set()
_NOTICE_SINK: list[Callable[[str], None]] = []


def notice_once(key: str, message: str) -> None:
    """Say ``message`` once per process (``key`` names the kind): to the CLI's sink when one
    is set, else as a ``LampctlNotice`` warning."""
    if key in _NOTICED:
        return
    _NOTICED.add(key)
    if _NOTICE_SINK:
        _NOTICE_SINK[-1](message)
    else:
        warnings.warn(message, LampctlNotice, stacklevel=3)


def forget_notices() -> None:
    """Every notice may be said again (a new session of work, a test)."""
    _NOTICED.clear()


def set_notice_sink(sink: Callable[[str], None] | None) -> None:
    """Where notices go (the CLI: stderr); None: back to warnings."""
    _NOTICE_SINK.clear()
    if sink is not None:
        _NOTICE_SINK.append(sink)


class Reporter(Protocol):
    def start(self, label: str, total: int | None, unit: str = "questions") -> None:
        """A new unit of work begins (``total`` is None when unknown)."""

    def advance(self, amount: int = 1) -> None:
        """``amount`` more of the current work is done."""

    def log(self, message: str) -> None:
        """A one-line message for the user (stderr in the CLI)."""


class SilentReporter:
    def start(self, label: str, total: int | None, unit: str = "questions") -> None:
        pass

    def advance(self, amount: int = 1) -> None:
        pass

    def log(self, message: str) -> None:
        pass
