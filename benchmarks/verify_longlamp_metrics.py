"""Check lampctl's LongLaMP metrics against Hugging Face ``evaluate``'s own metric scripts.

The official ``longLaMP/metrics/generation_metrics.py`` (``compute_metrics``) strips each pair,
wraps each gold as ``[gold]`` and calls ``evaluate.load("sacrebleu")``, ``"rouge"`` and
``"meteor"``. This script runs exactly that, with the three metric scripts loaded from a local
copy of the huggingface/evaluate repository (``--hf-metrics``: its ``metrics/`` folder, so
nothing comes from the hub), on generated English pairs of several sentences each (real words
from WordNet's glosses, predictions made by dropping, swapping and replacing words with
synonyms, abbreviations such as "e.g." and "Dr." that sentence splitting must keep), and
compares each metric with ``lampctl.evaluate``:

- bleu, meteor: the values ``evaluate`` returns;
- rouge: ``evaluate``'s rouge with ``use_aggregator=False``, averaged (its default aggregates
  with a bootstrap, whose median is random; lampctl reports the exact mean, and the bootstrap's
  median is printed beside it).

Both sides need NLTK's WordNet and punkt_tab data (``NLTK_DATA``). Times are whole calls in
this process, after NLTK's data is loaded and without ``evaluate.load``, so the ratio is
the scoring's.

Usage: NLTK_DATA=DIR python benchmarks/verify_longlamp_metrics.py --hf-metrics EVALUATE/metrics
       [--pairs 2000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ABBREVIATIONS = ["e.g.", "Dr.", "i.e.", "U.S.", "Mr.", "etc.", "p.m."]


def glosses(limit: int) -> list[str]:
    """Sentences of English: WordNet's noun glosses (its definitions and examples)."""
    from nltk.corpus import wordnet

    out: list[str] = []
    for synset in wordnet.all_synsets("n"):
        out.append(synset.definition().capitalize() + ".")
        out.extend(example[:1].upper() + example[1:] + "." for example in synset.examples())
        if len(out) >= limit:
            break
    return out


def synonym(word: str) -> str:
    from nltk.corpus import wordnet

    names = {lemma.name().replace("_", " ") for s in wordnet.synsets(word) for lemma in s.lemmas()}
    names.discard(word)
    return sorted(names)[0] if names else word


def make_pairs(count: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    sentences = glosses(count * 6)
    golds, predictions = [], []
    for _ in range(count):
        gold = rng.sample(sentences, rng.randint(2, 6))
        gold.insert(rng.randrange(len(gold)), f"See {rng.choice(ABBREVIATIONS)} the notes")
        gold_text = ("\n" if rng.random() < 0.3 else " ").join(gold)  # rougeLsum: lines
        words = gold_text.split()
        kind = rng.random()
        if kind < 0.03:
            prediction = ""  # empty: scored 0 by lampctl, kept by compute_metrics
        elif kind < 0.06:
            prediction = "   "
        else:
            out = []
            for word in words:
                roll = rng.random()
                if roll < 0.1:
                    continue
                if roll < 0.25:
                    out.append(synonym(word.strip(".,;")))
                elif roll < 0.3:
                    out.append(rng.choice(words))
                else:
                    out.append(word)
            if rng.random() < 0.3:
                rng.shuffle(out)
            prediction = " ".join(out)
        golds.append(("  " if rng.random() < 0.1 else "") + gold_text)
        predictions.append(prediction)
    return predictions, golds


def official(folder: Path, predictions: list[str], golds: list[str]) -> tuple[dict, float]:
    import evaluate
    import numpy as np

    bleu, rouge, meteor = (
        evaluate.load(str(folder / name)) for name in ("sacrebleu", "rouge", "meteor")
    )
    preds = [p.strip() for p in predictions]  # postprocess_text
    labels = [[g.strip()] for g in golds]
    started = time.perf_counter()
    result_bleu = bleu.compute(predictions=preds, references=labels)
    result_rouge = rouge.compute(predictions=preds, references=labels)
    result_meteor = meteor.compute(predictions=preds, references=labels)
    seconds = time.perf_counter() - started
    exact = rouge.compute(predictions=preds, references=labels, use_aggregator=False)
    scores = {"bleu": result_bleu["score"], "meteor": float(result_meteor["meteor"])}
    for ours, theirs in (
        ("rouge-1", "rouge1"),
        ("rouge-2", "rouge2"),
        ("rouge-L", "rougeL"),
        ("rouge-LSum", "rougeLsum"),
    ):
        scores[ours] = float(np.mean(exact[theirs]))
        scores[ours + " (bootstrap median)"] = float(result_rouge[theirs])
    return scores, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hf-metrics", type=Path, required=True, help="huggingface/evaluate's metrics/ folder"
    )
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import lampctl
    from lampctl.scoring.generation import meteor_ready

    problem = meteor_ready()
    if problem:
        sys.exit(problem)
    predictions, golds = make_pairs(args.pairs, args.seed)
    ids = [f"q{i}" for i in range(len(golds))]
    lampctl.evaluate("LongLaMP-2", {"w": "Warm up."}, {"w": "Warming up."})  # loads WordNet
    started = time.perf_counter()
    ours = lampctl.evaluate(
        "LongLaMP-2", dict(zip(ids, predictions, strict=True)), dict(zip(ids, golds, strict=True))
    )
    our_seconds = time.perf_counter() - started
    theirs, their_seconds = official(args.hf_metrics, predictions, golds)
    empty = sum(not p.strip() for p in predictions)
    print(f"{len(golds)} pairs ({empty} empty or blank predictions), WordNet-gloss English")
    print(f"{'metric':<30}{'lampctl':>14}{'evaluate':>14}{'difference':>12}")
    worst = 0.0
    for name, value in theirs.items():
        key = name.split(" ")[0]
        if name != key:
            print(f"{name:<30}{'':>14}{value:>14.6f}")
            continue
        difference = abs(ours[key] - value)
        worst = max(worst, difference / max(abs(value), 1e-12))
        print(f"{name:<30}{ours[key]:>14.6f}{value:>14.6f}{difference:>12.2e}")
    print(f"largest relative difference: {worst:.2e}")
    print(
        f"scoring time: lampctl {our_seconds:.2f} s, evaluate's scripts {their_seconds:.2f} s "
        f"({their_seconds / our_seconds:.1f}x)"
    )


if __name__ == "__main__":
    main()
