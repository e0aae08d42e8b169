"""How core code reports progress without printing: a sink the CLI implements."""

from __future__ import annotations

from typing import Protocol


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
