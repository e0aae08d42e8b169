"""One set of a data dir, read on demand: ``lampctl.load``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lampctl import settings
from lampctl.arguments import checked_arguments
from lampctl.catalog.bundled import cached_registry as registry
from lampctl.errors import InputError

if TYPE_CHECKING:
    from lampctl.catalog.tasks import Registry, TaskSpec
    from lampctl.io.data import Question


# --------------------------------------------------------------------------- one set


@dataclass(frozen=True)
class LampSet:
    """One (task, split, set) of a data dir: its questions, golds and ranking, read on demand."""

    task: TaskSpec
    split: str
    set: str
    data_dir: Path
    registry: Registry = field(repr=False)

    def path(self, kind: str) -> Path:
        """``questions``, ``outputs``, ``ranking`` or ``merged``: the file's path."""
        return self.registry.path(kind, self.data_dir, self.task, self.split, self.set)

    def questions(self) -> list[Question]:
        """The questions, checked (ids unique, every profile item with an id). Each has
        ``id``, ``input``, ``profile``, ``user_id`` (the time split's ``user_id`` as text; in
        the user split each question is its own user: its id) and ``raw`` (as in the file)."""
        from lampctl.io.data import load_questions

        path = self.path("questions")
        if not path.exists() and self.task.needs_build:
            ids = self.path("id_questions")
            if ids.exists():
                raise InputError(
                    f"{ids}: not built yet; run 'lampctl {self.task.needs_build} build'"
                )
        return load_questions(path)

    def golds(self) -> dict[str, Any]:
        """{question id: gold output}; empty for a test set (no golds are published)."""
        from lampctl.io.data import load_outputs

        path = self.path("outputs")
        if not path.exists() and self.set == "test" and not self.task.test_outputs:
            return {}
        return load_outputs(path, self.task)

    def ranking(self) -> dict[str, list[str]] | None:
        """{question id: [profile ids, best first]}, or None before ``rank``."""
        from lampctl.merge import load_ranking

        path = self.path("ranking")
        return load_ranking(path) if path.exists() else None

    def ranked_questions(self, top_k: int | None = None) -> list[Question]:
        """The questions, each with its profile in ranked order (the first ``top_k``): the
        same objects as ``questions()``, whose ``raw`` is the record ``merge`` writes (gold
        ``output`` attached, none on test). Needs the ranking."""
        from lampctl.io.data import Question
        from lampctl.merge import merge_questions, ranking_top_k

        ranking = self.ranking()
        if ranking is None:
            raise InputError(
                f"{self.path('ranking')}: no ranking; run 'lampctl rank -t {self.task.name} "
                f"-s {self.split}' first"
            )
        golds = self.golds() if self.set != "test" or self.task.test_outputs else None
        complete = ranking_top_k(self.path("ranking")) is None
        questions = self.questions()
        merged = merge_questions(
            questions,
            ranking,
            golds,
            str(self.path("ranking")),
            str(self.path("outputs")),
            top_k,
            complete,
        )
        return [
            Question(q.id, q.input, m["profile"], m) for q, m in zip(questions, merged, strict=True)
        ]

    def __repr__(self) -> str:
        return f"LampSet({self.task.name} {self.split} {self.set}, data_dir={str(self.data_dir)!r})"


@checked_arguments
def load(
    task: str,
    split: str = "user",
    set: str = "dev",  # noqa: A002 - the LaMP word for it
    data_dir: Path | str | None = None,
    config: Path | str | None = None,
) -> LampSet:
    """One set of a data dir (``data_dir`` or LAMPCTL_DATA_DIR, else ``data_raw``)."""
    found = registry(config)
    return LampSet(
        found.task(task),
        found.check_split(split),
        found.check_set(set),
        settings.data_dir(data_dir),
        found,
    )
