"""BM25 with exactly the scores of rank_bm25's ``BM25Okapi``, computed without its loops.

rank_bm25 counts every token in a Python loop and, for every query term, walks every document
in Python. Here each distinct text is split and turned into integer token ids once per process
(a user's history recurs across the time split's questions and sets), and each question's
document frequencies and query-term counts come from numpy over those ids. Every
floating-point operation that reaches a score is the same operation, in the same order, as
rank_bm25's, so the scores are bit-identical.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain, count
from typing import TYPE_CHECKING, Any

import numpy as np

from lampctl.retrieval.rankers.base import PreparedQuestion, ProgressFn, Ranker

if TYPE_CHECKING:
    from lampctl.retrieval.encoder import EncoderConfig, LogFn


class TokenCache:
    """Each distinct text as token ids (and its distinct ids in first-occurrence order),
    computed once and kept while within a token budget (oldest texts dropped first)."""

    def __init__(self, max_tokens: int = 2_000_000, max_vocab: int = 1_000_000) -> None:
        self.max_tokens = max_tokens
        self.max_vocab = max_vocab
        self.vocab: dict[str, int] = {}
        self._entries: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._held = 0
        self.hits = 0
        self.misses = 0
        self._table = np.full(0, -1, dtype=np.int64)

    def table(self) -> np.ndarray:
        """A scratch array indexed by token id, all -1 between uses (callers restore it)."""
        if len(self._table) < len(self.vocab):
            self._table = np.full(max(len(self.vocab) * 2, 1024), -1, dtype=np.int64)
        return self._table

    def lookup(self, texts: Sequence[str]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(token ids, distinct ids in first-occurrence order) of each text."""
        if len(self.vocab) > self.max_vocab:  # ids are per vocabulary: start both afresh
            self.vocab.clear()
            self._entries.clear()
            self._held = 0
        elif self._held > self.max_tokens:  # the oldest half goes (never mid-question)
            for old in list(self._entries)[: len(self._entries) // 2]:
                self._held -= len(self._entries.pop(old)[0])
        found = list(map(self._entries.get, texts))
        missing = list(dict.fromkeys(t for t, e in zip(texts, found, strict=True) if e is None))
        self.hits += len(texts) - len(missing)
        if missing:
            self.misses += len(missing)
            self._add(missing)
            found = list(map(self._entries.__getitem__, texts))
        return [e[0] for e in found], [e[1] for e in found]

    def _add(self, texts: list[str]) -> None:
        docs = list(map(str.split, texts))
        firsts = list(map(dict.fromkeys, docs))
        flat = list(chain.from_iterable(docs))
        vocab = self.vocab
        new = dict.fromkeys(flat).keys() - vocab.keys()
        vocab.update(zip(new, count(len(vocab))))
        ids = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))
        flat_firsts = list(chain.from_iterable(firsts))
        first_ids = np.fromiter(
            map(vocab.__getitem__, flat_firsts), dtype=np.int64, count=len(flat_firsts)
        )
        token_ends = np.cumsum(list(map(len, docs))).tolist()
        first_ends = np.cumsum(list(map(len, firsts))).tolist()
        entries = self._entries
        token_start = first_start = 0
        for text, token_end, first_end in zip(texts, token_ends, first_ends, strict=True):
            entries[text] = (ids[token_start:token_end], first_ids[first_start:first_end])
            token_start, first_start = token_end, first_end
        self._held += len(flat)


class ReuseMeter:
    """How often a question's texts were seen lately, cheaply (the texts' hashes, two
    generations of at most ``limit`` each, so memory stays small on any file): worth caching
    token ids in the time split, where a user's history recurs; not in the user split, where
    every profile is new."""

    def __init__(self, limit: int = 200_000) -> None:
        self.limit = limit
        self._recent: set[int] = set()
        self._older: set[int] = set()
        self.rate = 0.0

    def observe(self, texts: Sequence[str]) -> float:
        hashes = list(map(hash, texts))
        recent, older = self._recent, self._older
        repeated = sum(map(recent.__contains__, hashes)) + sum(map(older.__contains__, hashes))
        recent.update(hashes)
        if len(recent) > self.limit:
            self._older, self._recent = recent, set()
        self.rate = 0.7 * self.rate + 0.3 * min(repeated / max(len(texts), 1), 1.0)
        return self.rate


# rank_bm25's BM25Okapi defaults, which the LaMP reference uses.
K1, B, EPSILON = 1.5, 0.75, 0.25


class BM25Ranker(Ranker):
    name = "bm25"

    def __init__(
        self,
        k1: float = K1,
        b: float = B,
        epsilon: float = EPSILON,
        jobs: int = 1,
    ) -> None:
        self.k1 = k1
        self.b = b
        self.epsilon = epsilon
        self.jobs = max(1, jobs)
        self.cache = TokenCache()
        self.reuse = ReuseMeter()

    def __getstate__(self) -> dict[str, object]:
        # A worker's copy: its own caches, one job (it is a worker), no pool.
        return {"k1": self.k1, "b": self.b, "epsilon": self.epsilon}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(**state)  # type: ignore[misc]

    @classmethod
    def create(cls, *, jobs: int, encoder: EncoderConfig, log: LogFn | None) -> BM25Ranker:
        return cls(jobs=jobs)

    @classmethod
    def record_parameters(cls, encoder: EncoderConfig) -> dict[str, Any]:
        return {"k1": K1, "b": B, "epsilon": EPSILON}

    def describe(self) -> dict[str, object]:
        return {"ranker": self.name, "k1": self.k1, "b": self.b, "epsilon": self.epsilon}

    def score(
        self, questions: Sequence[PreparedQuestion], progress: ProgressFn | None = None
    ) -> Iterator[np.ndarray]:
        for question in questions:
            yield self.scores_for(question.query, question.texts)
            if progress:
                progress(1)

    def scores_for(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """BM25Okapi scores of ``texts`` (one question's profile) for ``query``.

        Two ways to the same numbers: where texts recur (the time split), from token ids
        cached per text; where they do not, straight from the strings, which is cheaper when
        nothing is reused."""
        n_docs = len(texts)
        if n_docs == 0:
            return np.zeros(0)
        if self.reuse.observe(texts) >= 0.3:
            return self._from_cached_ids(query, texts)
        return self._from_strings(query, texts)

    def _from_strings(self, query: str, texts: Sequence[str]) -> np.ndarray:
        n_docs = len(texts)
        # Every per-token step below runs inside C (str.split, chain, dict, map) or numpy.
        docs = list(map(str.split, texts))
        doc_len = np.fromiter(map(len, docs), dtype=np.int64, count=n_docs)
        flat = list(chain.from_iterable(docs))
        if not flat:
            return np.zeros(n_docs)  # rank_bm25 divides by zero here; nothing can match
        # Each word numbered by the position of its first occurrence: increasing numbers are
        # rank_bm25's dict order, and one C-level pass numbers every token.
        n_tokens = len(flat)
        local: dict[str, int] = {}
        ids = np.fromiter(map(local.setdefault, flat, count()), dtype=np.int64, count=n_tokens)
        owner = np.repeat(np.arange(n_docs), doc_len)
        # Number of documents holding each word: its distinct (document, word) pairs.
        key_type = np.int32 if n_docs * n_tokens < 2**31 else np.int64  # int32 sorts faster
        pairs = np.sort((owner * n_tokens + ids).astype(key_type))
        pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]
        by_first = np.bincount(pairs % n_tokens, minlength=n_tokens)
        freqs = by_first[by_first > 0]
        idf_of_freq, floor = self._idf(n_docs, freqs)
        tokens = query.split()
        positions = [local.get(t) for t in tokens]
        freq_list = by_first.tolist()
        query_terms, slots, term_idf = self._query_terms(
            tokens, [None if p is None else freq_list[p] for p in positions], idf_of_freq, floor
        )
        if not slots:
            return np.zeros(n_docs)
        slot_of_word = np.full(n_tokens, -1, dtype=np.int64)
        slot_of_word[[local[t] for t in query_terms]] = np.arange(len(query_terms))
        all_slots = slot_of_word[ids]
        hits = np.flatnonzero(all_slots >= 0)
        return self._combine(doc_len, hits, all_slots[hits], len(query_terms), slots, term_idf)

    def _from_cached_ids(self, query: str, texts: Sequence[str]) -> np.ndarray:
        n_docs = len(texts)
        token_ids, distinct_ids = self.cache.lookup(texts)
        doc_len = np.fromiter(map(len, token_ids), dtype=np.int64, count=n_docs)
        if int(doc_len.sum()) == 0:
            return np.zeros(n_docs)
        # A word's first place among the documents' distinct words is its first occurrence.
        words, first, doc_count = np.unique(
            np.concatenate(distinct_ids), return_index=True, return_counts=True
        )
        freqs = doc_count[np.argsort(first, kind="stable")]
        idf_of_freq, floor = self._idf(n_docs, freqs)
        tokens = query.split()
        query_ids = np.fromiter(
            map(self.cache.vocab.get, tokens, [-1] * len(tokens)), dtype=np.int64
        )
        table = self.cache.table()
        table[words] = doc_count  # look-ups by token id instead of searching
        counts = np.where(query_ids >= 0, table[query_ids], -1).tolist()
        table[words] = -1
        query_terms, slots, term_idf = self._query_terms(
            tokens, [c if c > 0 else None for c in counts], idf_of_freq, floor
        )
        if not slots:
            return np.zeros(n_docs)
        vocab = self.cache.vocab
        term_words = [vocab[token] for token in query_terms]
        table[term_words] = np.arange(len(term_words))
        all_slots = table[np.concatenate(token_ids)]
        table[term_words] = -1
        hits = np.flatnonzero(all_slots >= 0)
        return self._combine(doc_len, hits, all_slots[hits], len(query_terms), slots, term_idf)

    # ---- the arithmetic both ways share, in rank_bm25's order

    def _idf(self, n_docs: int, freqs: np.ndarray) -> tuple[dict[int, float], float]:
        """idf per document count, and the floor for negative idfs (epsilon * mean idf)."""
        # idf depends only on a word's document count: compute it once per distinct count.
        idf_of_freq = {
            freq: math.log(n_docs - freq + 0.5) - math.log(freq + 0.5)
            for freq in np.flatnonzero(np.bincount(freqs)).tolist()
        }
        idf_table = np.zeros(n_docs + 1)
        idf_table[list(idf_of_freq)] = list(idf_of_freq.values())
        # rank_bm25 sums idfs one by one in dict order; a cumulative sum does the same additions.
        average_idf = float(np.cumsum(idf_table[freqs])[-1]) / len(freqs)
        return idf_of_freq, self.epsilon * average_idf

    @staticmethod
    def _query_terms(
        tokens: Sequence[str],
        token_freqs: Iterable[int | None],
        idf_of_freq: dict[int, float],
        floor: float,
    ) -> tuple[dict[str, int], list[int], list[float]]:
        query_terms: dict[str, int] = {}
        slots: list[int] = []
        term_idf: list[float] = []
        for token, freq in zip(tokens, token_freqs, strict=True):
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
        return query_terms, slots, term_idf

    def _combine(
        self,
        doc_len: np.ndarray,
        hits: np.ndarray,
        slot_of_hit: np.ndarray,
        n_terms: int,
        slots: list[int],
        term_idf: list[float],
    ) -> np.ndarray:
        n_docs = len(doc_len)
        owner = np.repeat(np.arange(n_docs), doc_len)[hits]
        term_freq = np.bincount(slot_of_hit * n_docs + owner, minlength=n_terms * n_docs)
        term_freq = term_freq.reshape(n_terms, n_docs).astype(np.float64)
        avgdl = int(doc_len.sum()) / n_docs
        norm = self.k1 * (1 - self.b + self.b * doc_len / avgdl)
        contrib = np.array(term_idf)[:, None] * (
            term_freq * (self.k1 + 1) / (term_freq + norm[None, :])
        )
        # One addition per query token, in query order, as rank_bm25 accumulates.
        # rank_bm25 starts from +0.0, which turns a sum of -0.0 terms into +0.0.
        return np.cumsum(contrib[slots], axis=0)[-1] + 0.0
