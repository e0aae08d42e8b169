"""Recency: newest profile item first, dates compared as integer tuples."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from lampctl.retrieval.rankers.base import PreparedQuestion, ProgressFn, Ranker


class RecencyRanker(Ranker):
    name = "recency"
    needs_text = False
    needs_dates = True

    def score(
        self, questions: Sequence[PreparedQuestion], progress: ProgressFn | None = None
    ) -> Iterator[np.ndarray]:
        for question in questions:
            # The score of an item is the dense rank of its date tuple, so tuples of different
            # lengths keep Python's ordering (2012 < 2012-01-01) and equal dates tie.
            distinct = {date: rank for rank, date in enumerate(sorted(set(question.dates)))}
            yield np.array([distinct[d] for d in question.dates], dtype=np.float64)
            if progress:
                progress(1)
