"""BM25 with exactly the scores of rank_bm25's ``BM25Okapi``, computed without its loops.

rank_bm25 builds a new index per question and, for every query term, walks every document in
Python. Here token counts are computed once per distinct text (cached across questions), the
document frequencies come from C-level ``Counter`` updates, and only the documents that contain
a query term are visited. Every floating-point operation that reaches a score is the same
operation, in the same order, as rank_bm25's, so the scores are bit-identical.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np

from lampctl.rankers.base import PreparedQuestion, ProgressFn, Ranker


class BM25Ranker(Ranker):
    name = "bm25"

    def __init__(
        self, k1: float = 1.5, b: float = 0.75, epsilon: float = 0.25, cache_size: int = 500_000
    ) -> None:
        self.k1 = k1
        self.b = b
        self.epsilon = epsilon
        self._cache_size = cache_size
        self._counts: dict[str, Counter[str]] = {}

    def describe(self) -> dict[str, object]:
        return {"ranker": self.name, "k1": self.k1, "b": self.b, "epsilon": self.epsilon}

    def score(
        self, questions: Sequence[PreparedQuestion], progress: ProgressFn | None = None
    ) -> Iterator[np.ndarray]:
        for question in questions:
            yield self.scores_for(question.query, question.texts)
            if progress:
                progress(1)

    def _token_counts(self, text: str) -> Counter[str]:
        counts = self._counts.get(text)
        if counts is None:
            if len(self._counts) >= self._cache_size:
                self._counts.clear()
            counts = self._counts[text] = Counter(text.split())
        return counts

    def scores_for(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """BM25Okapi scores of ``texts`` (one question's profile) for ``query``."""
        n_docs = len(texts)
        if n_docs == 0:
            return np.zeros(0)
        docs = [self._token_counts(text) for text in texts]
        doc_len = np.array([sum(counts.values()) for counts in docs])
        # Number of documents holding each word, in first-occurrence order (rank_bm25's order).
        doc_freq: Counter[str] = Counter()
        for counts in docs:
            doc_freq.update(counts.keys())
        total_len = int(doc_len.sum())
        if not doc_freq or total_len == 0:
            return np.zeros(n_docs)  # rank_bm25 divides by zero here; nothing can match

        idf_of_freq = {
            freq: math.log(n_docs - freq + 0.5) - math.log(freq + 0.5)
            for freq in set(doc_freq.values())
        }
        idfs = np.array([idf_of_freq[freq] for freq in doc_freq.values()])
        # rank_bm25 sums idfs one by one in dict order; a cumulative sum does the same additions.
        average_idf = float(np.cumsum(idfs)[-1]) / len(doc_freq)
        floor = self.epsilon * average_idf

        query_terms: dict[str, int] = {}
        slots: list[int] = []
        term_idf: list[float] = []
        for token in query.split():
            freq = doc_freq.get(token)
            if freq is None:
                continue  # rank_bm25 adds 0 * (...) == 0 for unknown terms
            idf = idf_of_freq[freq]
            if idf < 0:
                idf = floor
            if idf == 0:
                continue
            slot = query_terms.setdefault(token, len(query_terms))
            if slot == len(term_idf):
                term_idf.append(idf)
            slots.append(slot)
        if not slots:
            return np.zeros(n_docs)

        term_freq = np.zeros((len(query_terms), n_docs))
        wanted = query_terms.keys()
        for doc_index, counts in enumerate(docs):
            for token in counts.keys() & wanted:
                term_freq[query_terms[token], doc_index] = counts[token]
        avgdl = total_len / n_docs
        norm = self.k1 * (1 - self.b + self.b * doc_len / avgdl)
        contrib = np.array(term_idf)[:, None] * (
            term_freq * (self.k1 + 1) / (term_freq + norm[None, :])
        )
        # One addition per query token, in query order, as rank_bm25 accumulates.
        # rank_bm25 starts from +0.0, which turns a sum of -0.0 terms into +0.0.
        return np.cumsum(contrib[slots], axis=0)[-1] + 0.0
