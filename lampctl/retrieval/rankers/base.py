"""The one Ranker interface and the one ordering rule every ranker shares."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lampctl.retrieval.encoder import EncoderConfig, LogFn

ProgressFn = Callable[[int], None]


@dataclass(frozen=True)
class PreparedQuestion:
    """A question reduced to what rankers need: its query and its items' texts or dates."""

    id: str
    query: str
    item_ids: list[str]
    texts: list[str] = field(default_factory=list)
    dates: list[tuple[int, ...]] = field(default_factory=list)


class Ranker(ABC):
    """Scores each question's profile; higher scores rank first."""

    name: str = ""
    # What progress counts when a file is ranked in this process: "questions", or "texts"
    # for an encoder, whose work is each query and item encoded.
    progress_unit: str = "questions"
    needs_text: bool = True
    needs_dates: bool = False
    jobs: int = 1  # CPU worker processes (see ``worker_pool``)
    _pool: Any = None

    @abstractmethod
    def score(
        self, questions: Sequence[PreparedQuestion], progress: ProgressFn | None = None
    ) -> Iterator[np.ndarray]:
        """Yield one score array per question, in order; call ``progress(n)`` as work is done."""

    @classmethod
    def create(cls, *, jobs: int, encoder: EncoderConfig, log: LogFn | None) -> Ranker:
        """The ranker for a run; each takes the options it uses."""
        return cls()

    @classmethod
    def record_parameters(cls, encoder: EncoderConfig) -> dict[str, Any]:
        """The parameters that decide this ranker's rankings, beyond its name, as the records
        beside ranking files carry them (no model is loaded to say so)."""
        return {}

    def describe(self) -> dict[str, object]:
        """The ranker's settings as reported in ``--json`` output (with the resolved model
        length for encoders)."""
        return {"ranker": self.name}

    def worker_pool(self) -> Any:
        """A process pool of ``jobs`` workers, each holding a copy of this ranker, started on
        first use and kept for later files (so per-text caches carry over, as in rank-all
        over a split's train, dev and test). None for one job."""
        if self.jobs <= 1:
            return None
        if self._pool is None:
            from lampctl.parallel import pool_context

            self._pool = pool_context().Pool(self.jobs, init_rank_worker, (os.getpid(), self))
        return self._pool

    def close(self) -> None:
        """Stop the worker processes, if any were started."""
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None


_WORKER_RANKER: Ranker | None = None


def init_rank_worker(parent_pid: int, ranker: Ranker) -> None:
    """Run first in each ranking worker: dies with the parent, keeps its copy of the ranker
    (and so its caches) for every chunk it is sent."""
    from lampctl.parallel import worker_setup

    global _WORKER_RANKER
    worker_setup(parent_pid)
    _WORKER_RANKER = ranker


def worker_ranker() -> Ranker:
    """This worker's ranker (``init_rank_worker`` set it)."""
    if _WORKER_RANKER is None:
        raise RuntimeError("ranking worker started without its ranker")
    return _WORKER_RANKER


def order_by_scores(scores: np.ndarray) -> np.ndarray:
    """Indices best first: score descending; for equal scores the later item comes first.

    This is what a stable ascending sort followed by a reversal gives, which is what the
    LaMP reference produces whenever its own sort happened to be stable.
    """
    positions = np.arange(len(scores))
    return np.lexsort((positions, scores))[::-1]
