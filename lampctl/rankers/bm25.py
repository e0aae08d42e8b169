"""BM25 with exactly the scores of rank_bm25's ``BM25Okapi``, computed without its loops.

rank_bm25 counts every token in a Python loop and, for every query term, walks every document
in Python. Here the per-token work runs inside C (``str.split``, ``dict.fromkeys``, ``Counter``
over chained iterators, ``map``), the query terms' frequencies come from one ``bincount``, and
questions are spread over CPU processes. Every floating-point operation that reaches a score is
the same operation, in the same order, as rank_bm25's, so the scores are bit-identical.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from itertools import chain

import numpy as np

from lampctl.parallel import fork_is_safe, pool_context, worker_setup
from lampctl.rankers.base import PreparedQuestion, ProgressFn, Ranker


class BM25Ranker(Ranker):
    name = "bm25"

    def __init__(
        self,
        k1: float = 1.5,
        b: float = 0.75,
        epsilon: float = 0.25,
        jobs: int = 1,
    ) -> None:
        self.k1 = k1
        self.b = b
        self.epsilon = epsilon
        self.jobs = max(1, jobs)

    def describe(self) -> dict[str, object]:
        return {"ranker": self.name, "k1": self.k1, "b": self.b, "epsilon": self.epsilon}

    def score(
        self, questions: Sequence[PreparedQuestion], progress: ProgressFn | None = None
    ) -> Iterator[np.ndarray]:
        if self.jobs > 1 and len(questions) >= 2 * _CHUNK:
            yield from parallel_scores(self, questions, progress)
            return
        for question in questions:
            yield self.scores_for(question.query, question.texts)
            if progress:
                progress(1)

    def scores_for(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """BM25Okapi scores of ``texts`` (one question's profile) for ``query``."""
        n_docs = len(texts)
        if n_docs == 0:
            return np.zeros(0)
        # Every per-token step below runs inside C (map, chain, Counter, dict.fromkeys).
        docs = list(map(str.split, texts))
        doc_len = np.fromiter(map(len, docs), dtype=np.int64, count=n_docs)
        total_len = int(doc_len.sum())
        if total_len == 0:
            return np.zeros(n_docs)  # rank_bm25 divides by zero here; nothing can match
        # Number of documents holding each word, in first-occurrence order (rank_bm25's order).
        doc_freq: Counter[str] = Counter(chain.from_iterable(map(dict.fromkeys, docs)))

        # idf depends only on a word's document count: compute it once per distinct count.
        freqs = np.fromiter(doc_freq.values(), dtype=np.int64, count=len(doc_freq))
        idf_of_freq = {
            freq: math.log(n_docs - freq + 0.5) - math.log(freq + 0.5)
            for freq in np.unique(freqs).tolist()
        }
        idf_table = np.zeros(n_docs + 1)
        idf_table[list(idf_of_freq)] = list(idf_of_freq.values())
        # rank_bm25 sums idfs one by one in dict order; a cumulative sum does the same additions.
        average_idf = float(np.cumsum(idf_table[freqs])[-1]) / len(doc_freq)
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

        # Frequencies of the query's terms in every document, from one pass over all tokens.
        flat = list(chain.from_iterable(docs))
        hits = np.flatnonzero(
            np.fromiter(map(query_terms.__contains__, flat), dtype=bool, count=len(flat))
        )
        owner = np.repeat(np.arange(n_docs), doc_len)[hits]
        slot_of_hit = np.fromiter(
            map(query_terms.__getitem__, map(flat.__getitem__, hits.tolist())),
            dtype=np.int64,
            count=hits.size,
        )
        n_terms = len(query_terms)
        term_freq = np.bincount(slot_of_hit * n_docs + owner, minlength=n_terms * n_docs)
        term_freq = term_freq.reshape(n_terms, n_docs).astype(np.float64)
        avgdl = total_len / n_docs
        norm = self.k1 * (1 - self.b + self.b * doc_len / avgdl)
        contrib = np.array(term_idf)[:, None] * (
            term_freq * (self.k1 + 1) / (term_freq + norm[None, :])
        )
        # One addition per query token, in query order, as rank_bm25 accumulates.
        # rank_bm25 starts from +0.0, which turns a sum of -0.0 terms into +0.0.
        return np.cumsum(contrib[slots], axis=0)[-1] + 0.0


# --------------------------------------------------------------------------- several processes

_CHUNK = 64
_SHARED: tuple[BM25Ranker, Sequence[PreparedQuestion]] | None = None


def _score_chunk(bounds: tuple[int, int]) -> list[np.ndarray]:
    if _SHARED is None:
        raise RuntimeError("BM25 worker started without the questions it should score")
    ranker, questions = _SHARED
    return [ranker.scores_for(q.query, q.texts) for q in questions[bounds[0] : bounds[1]]]


def parallel_scores(
    ranker: BM25Ranker, questions: Sequence[PreparedQuestion], progress: ProgressFn | None
) -> Iterator[np.ndarray]:
    """Score chunks of questions in ``ranker.jobs`` forked processes, yielding in order.

    The questions reach the workers through fork's copy of this process, not through pickling;
    where fork is unsafe (torch already loaded, or no fork on this platform), chunks are scored
    here instead.
    """
    global _SHARED
    if not fork_is_safe():
        for question in questions:
            yield ranker.scores_for(question.query, question.texts)
            if progress:
                progress(1)
        return
    bounds = [(i, min(i + _CHUNK, len(questions))) for i in range(0, len(questions), _CHUNK)]
    _SHARED = (ranker, questions)
    try:
        with pool_context().Pool(ranker.jobs, worker_setup, (os.getpid(),)) as pool:
            for chunk in pool.imap(_score_chunk, bounds):
                yield from chunk
                if progress:
                    progress(len(chunk))
    finally:
        _SHARED = None
