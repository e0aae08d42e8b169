"""Rankers against independent references: rank_bm25 itself, and plain sorting for dates."""

from __future__ import annotations

import random

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from lampctl.retrieval.rankers.base import PreparedQuestion, order_by_scores
from lampctl.retrieval.rankers.bm25 import BM25Ranker
from lampctl.retrieval.rankers.recency import RecencyRanker


def _random_profile(rng: random.Random) -> tuple[str, list[str]]:
    vocab = [f"w{i}" for i in range(rng.randint(1, 60))] + ["The", "the", "a,", "ü"]
    docs = [
        " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 40)))
        for _ in range(rng.randint(1, 40))
    ]
    query = "  ".join(rng.choice(vocab + ["unseen"]) for _ in range(rng.randint(0, 25)))
    return query, docs


def test_bm25_scores_are_bit_identical_to_rank_bm25():
    rng = random.Random(1234)
    ranker = BM25Ranker()
    checked = 0
    while checked < 400:
        query, docs = _random_profile(rng)
        if not any(d.split() for d in docs):
            continue  # rank_bm25 divides by zero on an all-empty profile
        expected = BM25Okapi([d.split() for d in docs]).get_scores(query.split())
        got = ranker.scores_for(query, docs)
        assert got.dtype == expected.dtype
        assert got.tobytes() == expected.tobytes(), (query, docs)
        checked += 1


@pytest.mark.parametrize("path", ["_from_strings", "_from_cached_ids"])
def test_both_bm25_paths_are_bit_identical_to_rank_bm25(path):
    rng = random.Random(99)
    ranker = BM25Ranker()
    compute = getattr(ranker, path)
    checked = 0
    while checked < 300:
        query, docs = _random_profile(rng)
        if not any(d.split() for d in docs):
            continue
        expected = BM25Okapi([d.split() for d in docs]).get_scores(query.split())
        assert compute(query, docs).tobytes() == expected.tobytes(), (query, docs)
        checked += 1


@pytest.mark.parametrize("limits", [(4_000_000, 1_000_000), (300, 40)])
def test_time_split_histories_nested_reordered_and_overlapping(limits):
    """A user's history grows question by question (nested), is sometimes shuffled or cut,
    and users share items (overlap): the cached path must still equal rank_bm25, also when
    its cache evicts texts and restarts its vocabulary (small limits)."""
    from lampctl.retrieval.rankers.bm25 import TokenCache

    rng = random.Random(7)
    ranker = BM25Ranker()
    ranker.cache = TokenCache(max_tokens=limits[0], max_vocab=limits[1])
    vocab = [f"t{i}" for i in range(80)] + ["The", "the", "é", "a,"]
    shared = [" ".join(rng.choice(vocab) for _ in range(rng.randint(0, 30))) for _ in range(30)]
    used_cache = 0
    for _user in range(12):
        history: list[str] = []
        for _step in range(rng.randint(3, 12)):
            history += [
                rng.choice(shared)
                if rng.random() < 0.3
                else " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 30)))
                for _ in range(rng.randint(0, 6))
            ]
            docs = list(history)
            if rng.random() < 0.2:
                rng.shuffle(docs)
            if rng.random() < 0.2 and docs:
                docs = docs[rng.randint(0, len(docs) - 1) :]
            if not any(d.split() for d in docs):
                continue
            query = " ".join(rng.choice(vocab + ["unseen"]) for _ in range(rng.randint(0, 20)))
            expected = BM25Okapi([d.split() for d in docs]).get_scores(query.split())
            got = ranker.scores_for(query, docs)
            assert got.tobytes() == expected.tobytes()
            used_cache += ranker.reuse.rate >= 0.3
    assert used_cache > 20 and ranker.cache.hits > 0


def test_bm25_negative_idf_floor_and_repeated_query_terms():
    docs = ["a b", "a c", "a d", "b b b"]  # 'a' is in 3 of 4 docs: negative idf, floored
    query = "a a b"
    expected = BM25Okapi([d.split() for d in docs]).get_scores(query.split())
    assert BM25Ranker().scores_for(query, docs).tobytes() == expected.tobytes()


def test_bm25_edge_profiles():
    ranker = BM25Ranker()
    assert ranker.scores_for("x", []).shape == (0,)
    for path in (ranker._from_strings, ranker._from_cached_ids):
        assert path("x", ["", " "]).tolist() == [0.0, 0.0]
        assert path("", ["a b"]).tolist() == [0.0]


def test_order_rule_later_item_first_on_ties():
    order = order_by_scores(np.array([1.0, 3.0, 1.0, 3.0, 2.0]))
    assert order.tolist() == [3, 1, 4, 2, 0]


def test_order_rule_matches_stable_sort_then_reverse():
    rng = random.Random(7)
    for _ in range(200):
        scores = [float(rng.randint(0, 4)) for _ in range(rng.randint(0, 20))]
        stable_reversed = sorted(range(len(scores)), key=lambda i: scores[i])[::-1]
        assert order_by_scores(np.array(scores)).tolist() == stable_reversed


def _recency(dates):
    q = PreparedQuestion("q", "", [str(i) for i in range(len(dates))], dates=dates)
    (scores,) = RecencyRanker().score([q])
    return order_by_scores(scores).tolist()


def test_recency_newest_first_with_equal_and_partial_dates():
    dates = [(2012, 3, 6), (2012,), (2013,), (2012, 3, 6), (2011, 12, 31), (2012, 1)]
    # The reference: sort ascending by the tuple (stable), then reverse.
    reference = sorted(range(len(dates)), key=lambda i: dates[i])[::-1]
    assert _recency(dates) == reference == [2, 3, 0, 5, 1, 4]


@pytest.mark.parametrize("seed", range(5))
def test_recency_random_matches_reference(seed):
    rng = random.Random(seed)
    dates = [tuple(rng.randint(1, 3) for _ in range(rng.randint(1, 3))) for _ in range(30)]
    assert _recency(dates) == sorted(range(30), key=lambda i: dates[i])[::-1]
