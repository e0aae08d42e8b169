"""lampctl's ROUGE equals Google's rouge_score bit for bit (the reference is rouge_score
itself), on texts with case, punctuation, non-ASCII letters, numbers, newlines and empties."""

from __future__ import annotations

import random

import pytest
from rouge_score import rouge_scorer

from lampctl.scoring.fastrouge import fmeasures, lcs_length

VOCAB = ("the cat sat on a mat Dog dog, DOG! 5.0 x-y naïve café über 42 \n . ; to be or not "
         "İstanbul ǅ K ﬁne  \t").split(" ")  # fmt: skip
TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(rng.randint(0, 50)))


@pytest.mark.parametrize("seed", range(4))
def test_every_rouge_type_equals_rouge_score(seed):
    rng = random.Random(seed)
    scorer = rouge_scorer.RougeScorer(list(TYPES), use_stemmer=False)
    for _ in range(500):
        target, prediction = _text(rng), _text(rng)
        expected = scorer.score(target, prediction)
        assert fmeasures(target, prediction) == [expected[t].fmeasure for t in TYPES]
        assert fmeasures(target, prediction, orders=(1,), lsum=False) == [
            expected["rouge1"].fmeasure, expected["rougeL"].fmeasure]  # fmt: skip


def test_the_bit_parallel_lcs_equals_the_table():
    rng = random.Random(7)
    for _ in range(300):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 70))]
        b = [rng.choice("abcd") for _ in range(rng.randint(0, 70))]
        table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                table[i + 1][j + 1] = (table[i][j] + 1 if x == y
                                       else max(table[i][j + 1], table[i + 1][j]))  # fmt: skip
        assert lcs_length(a, b) == table[-1][-1]
