"""The one Ranker interface and the one ordering rule every ranker shares."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

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
    needs_text: bool = True
    needs_dates: bool = False

    @abstractmethod
    def score(
        self, questions: Sequence[PreparedQuestion], progress: ProgressFn | None = None
    ) -> Iterator[np.ndarray]:
        """Yield one score array per question, in order; call ``progress(n)`` as work is done."""

    def describe(self) -> dict[str, object]:
        """The ranker's settings as reported in ``--json`` output (with the resolved model
        length for encoders). Records beside ranking files use ``records.ranking_parameters``,
        which needs no loaded model."""
        return {"ranker": self.name}


def order_by_scores(scores: np.ndarray) -> np.ndarray:
    """Indices best first: score descending; for equal scores the later item comes first.

    This is what a stable ascending sort followed by a reversal gives, which is what the
    LaMP reference produces whenever its own sort happened to be stable.
    """
    positions = np.arange(len(scores))
    return np.lexsort((positions, scores))[::-1]
