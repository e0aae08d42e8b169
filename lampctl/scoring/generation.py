"""LongLaMP's long-form metrics, offline: what ``longLaMP/metrics/generation_metrics.py`` of the
LongLaMP repository computes through Hugging Face ``evaluate``, from the libraries behind it.

- ``bleu``: sacreBLEU's corpus score (0-100; its defaults: 13a tokens, exponential smoothing,
  one reference per question), from per-question n-gram counts summed over the questions, so
  a bootstrap sample or one user's questions are scored the same way;
- ``rouge-1``, ``rouge-2``, ``rouge-L``, ``rouge-LSum``: Google's ``rouge_score`` F-measure,
  no stemmer, as the exact mean over questions (``evaluate`` reports a bootstrap's median),
  computed by ``lampctl.scoring.fastrouge`` (equal to it bit for bit, and faster);
- ``meteor``: NLTK's ``meteor_score`` per question (alpha 0.9, beta 3, gamma 0.5, words from
  ``word_tokenize``), mean over questions. It needs NLTK's WordNet and punkt data; without
  them the score is refused in one line that says how to get them (``meteor=False`` leaves it
  out and scores the rest).

Each question is scored on its own, so a long list is scored in pieces by forked processes at
once, one per usable core (the numbers are the same). Predictions and golds are stripped
first. The official ``evaluate_data`` silently drops a
pair whose prediction or gold is empty before stripping; here an empty prediction scores
zero and is counted (``empty``), and ``drop_empty`` reproduces the official drop.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from functools import lru_cache
from types import SimpleNamespace

import numpy as np

from lampctl.errors import InputError

ROUGE = ("rouge-1", "rouge-2", "rouge-L", "rouge-LSum")
ORDERS = 4  # BLEU's n-gram orders
# Columns of a question's row: ROUGE F-measures, METEOR, kept (0 when dropped), then BLEU's
# counts: matches per order, n-grams per order, hypothesis length, reference length.
_KEPT = len(ROUGE) + 1
_BLEU = _KEPT + 1
WIDTH = _BLEU + 2 * ORDERS + 2


def meteor_ready() -> str | None:
    """None when NLTK and its WordNet and punkt data are there; else how to get them."""
    try:
        import nltk
    except ImportError:
        return "meteor needs NLTK: pip install 'lampctl[longlamp]' (or nltk)"
    missing = []
    for resource, name in (("corpora/wordnet", "wordnet"), ("tokenizers/punkt_tab", "punkt_tab")):
        try:
            nltk.data.find(resource)
        except LookupError:
            missing.append(name)
    if missing:
        return (
            f"meteor needs NLTK's {' and '.join(missing)} data, which is not installed: run "
            f"'python -m nltk.downloader {' '.join(missing)} omw-1.4' where there is network "
            "(into a folder NLTK_DATA names, on shared scratch for offline nodes), or leave "
            "meteor out (--no-meteor) to score the rest"
        )
    return None


# Questions per process below which scoring stays in this one (a forked child costs ~0.1 s).
PARALLEL_MIN = 500


def score_rows(
    predictions: Sequence[str],
    golds: Sequence[str],
    meteor: bool = True,
    drop_empty: bool = False,
    workers: int | None = None,
) -> np.ndarray:
    """One row of ``WIDTH`` numbers per question (see the columns above).

    Rows are independent, so a long list is cut into ``workers`` pieces (default: one per
    usable core, at least ``PARALLEL_MIN`` questions each) scored at once by forked children
    that share this process's loaded tokenizers and WordNet; each row is the same numbers
    either way."""
    if meteor:
        problem = meteor_ready()
        if problem is not None:
            raise InputError(problem)
    from lampctl.parallel import Forked, fork_is_safe, usable_cpus

    if len(predictions) != len(golds):
        raise ValueError("predictions and golds differ in length")
    scorer = _RowScorer(meteor, drop_empty)
    count = len(predictions)
    if workers is None:
        fits = fork_is_safe() and scorer.forkable
        workers = min(usable_cpus(), count // PARALLEL_MIN) if fits else 1
    workers = max(1, min(workers, count))
    if workers == 1:
        return scorer(predictions, golds)
    cuts = [count * n // workers for n in range(workers + 1)]
    children = [
        Forked("scoring", scorer, predictions[a:b], golds[a:b])
        for a, b in zip(cuts[1:-1], cuts[2:], strict=True)
    ]
    try:
        first = scorer(predictions[: cuts[1]], golds[: cuts[1]])
        return np.concatenate([first, *(child.result() for child in children)])
    finally:
        for child in children:
            child.close()


_INHERITED: list[object] = []  # a forked child's copies of its parent's WordNet files


class _RowScorer:
    """Scores rows; built (tokenizers, WordNet loaded) before any child is forked."""

    def __init__(self, meteor: bool, drop_empty: bool) -> None:
        from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

        self.tokens = Tokenizer13a()
        self.meteor_of = _meteor_scorer() if meteor else None
        self.drop_empty = drop_empty
        self.parent = os.getpid()
        self.files: dict | None = None
        self.forkable = True
        if self.meteor_of is not None:
            self.meteor_of("Warm up.", "Warming up.")  # loads punkt and WordNet here, once
            reader = _wordnet()
            from nltk.corpus.reader.wordnet import WordNetCorpusReader

            if isinstance(reader, WordNetCorpusReader):
                files = getattr(reader, "_data_file_map", None)
                self.files = files if isinstance(files, dict) else None
                self.forkable = self.files is not None

    def _own_files(self) -> None:
        """In a forked child: NLTK's WordNet reads synsets by seeking the data files it holds
        open, and a forked child shares each open file's offset with its parent, so reads at
        once would land at each other's offsets. The child opens its own files (WordNet
        reopens what its map lacks); the inherited ones are kept open, since closing one would
        move the offset it shares."""
        if self.files:
            _INHERITED.append(dict(self.files))
            self.files.clear()

    def __call__(self, predictions: Sequence[str], golds: Sequence[str]) -> np.ndarray:
        from lampctl.scoring.fastrouge import fmeasures

        if os.getpid() != self.parent:
            self._own_files()
        tokens, meteor_of = self.tokens, self.meteor_of
        rows = np.zeros((len(predictions), WIDTH))
        for row, (raw_prediction, raw_gold) in enumerate(zip(predictions, golds, strict=True)):
            if self.drop_empty and (raw_prediction == "" or raw_gold == ""):
                continue  # the official evaluate_data's drop: the row stays, weighed 0
            prediction, gold = str(raw_prediction).strip(), str(raw_gold).strip()
            rows[row, : len(ROUGE)] = fmeasures(gold, prediction)  # rouge_score's, bit for bit
            if meteor_of is not None:
                rows[row, len(ROUGE)] = meteor_of(gold, prediction)
            rows[row, _KEPT] = 1.0
            rows[row, _BLEU:] = _bleu_counts(tokens(prediction).split(), tokens(gold).split())
        return rows


def _bleu_counts(hypothesis: list[str], reference: list[str]) -> list[int]:
    """sacreBLEU's sufficient statistics for one segment with one reference: clipped matches
    and hypothesis n-grams per order, then the two lengths."""
    matches, totals = [], []
    for n in range(1, ORDERS + 1):  # the n-grams: tuples of n shifted copies, zipped
        hyp = Counter(zip(*[hypothesis[i:] for i in range(n)], strict=False))
        ref = Counter(zip(*[reference[i:] for i in range(n)], strict=False))
        matches.append(sum((hyp & ref).values()))  # & keeps the smaller count: clipping
        totals.append(max(len(hypothesis) - n + 1, 0))
    return [*matches, *totals, len(hypothesis), len(reference)]


def _word_tokenize(text: str) -> list[str]:
    from nltk import word_tokenize

    return list(word_tokenize(text))


def _wordnet() -> object:
    from nltk.corpus import wordnet

    return wordnet


def _meteor_scorer() -> Callable[[str, str], float]:
    """METEOR of one (gold, prediction), as ``evaluate``'s meteor calls NLTK for one
    reference. NLTK's Porter stemmer and WordNet lookups are asked the same words again for
    every pair; their answers are pure functions of the word, so each word's is kept: the
    scores are unchanged, and meteor_score's own work takes 2.5x less time (word_tokenize,
    which NLTK's scorer leaves to its caller, is most of what is left)."""
    from nltk.stem.porter import PorterStemmer
    from nltk.translate.meteor_score import meteor_score

    stemmer = SimpleNamespace(stem=lru_cache(maxsize=None)(PorterStemmer().stem))
    wordnet = SimpleNamespace(synsets=lru_cache(maxsize=None)(_wordnet().synsets))

    def one(gold: str, prediction: str) -> float:
        return float(
            meteor_score([_word_tokenize(gold)], _word_tokenize(prediction), stemmer=stemmer,
                         wordnet=wordnet, alpha=0.9, beta=3, gamma=0.5)
        )  # fmt: skip

    return one


def aggregate(rows: np.ndarray, meteor: bool = True) -> dict[str, float]:
    """The metrics over ``rows`` (all questions, a sample or one user's): BLEU from the
    summed counts, the others the mean over the rows kept."""
    from sacrebleu.metrics import BLEU

    kept = rows[rows[:, _KEPT] > 0]
    out: dict[str, float] = {}
    counts = (
        kept[:, _BLEU:].sum(axis=0).astype(np.int64)
        if len(kept)
        else np.zeros(WIDTH - _BLEU, dtype=np.int64)
    )
    correct, total = counts[:ORDERS].tolist(), counts[ORDERS : 2 * ORDERS].tolist()
    sys_len, ref_len = int(counts[2 * ORDERS]), int(counts[2 * ORDERS + 1])
    out["bleu"] = float(
        BLEU.compute_bleu(correct, total, sys_len, ref_len, smooth_method="exp").score
    ) if ref_len else 0.0  # fmt: skip
    means = kept[:, : len(ROUGE) + 1].mean(axis=0) if len(kept) else np.zeros(len(ROUGE) + 1)
    out.update({name: float(value) for name, value in zip(ROUGE, means, strict=False)})
    if meteor:
        out["meteor"] = float(means[len(ROUGE)])
    return out


def dropped(rows: np.ndarray) -> int:
    """Questions left out by the official drop (``drop_empty``)."""
    return int((rows[:, _KEPT] == 0).sum())
