"""Scoring predictions with the official LaMP metrics, offline and deterministic.

The metrics are the official scorer's (``eval/evaluation.py`` of the LaMP repository, through
Hugging Face ``evaluate``), computed here without fetching anything:

- classification (LaMP-1, LaMP-2): each stripped string becomes its index in the task's label
  list (else -1); accuracy, and macro F1 over the labels with scikit-learn's semantics (a label
  with no true and no predicted samples scores 0);
- rating (LaMP-3): ``float(x)``, else the end of the scale farther from the gold; MAE and RMSE.
  Unlike the official script, a prediction that parses to a non-finite number (``nan``,
  ``inf``, ``1e309``) counts as unparsable, so the metrics stay finite;
- rouge (LaMP-4 to 7): rouge-1 and rouge-L F-measure from Google's ``rouge_score`` (no stemmer,
  default tokenizer), reported as the exact mean over questions;
- generation (LongLaMP): BLEU, ROUGE-1/2/L/LSum and METEOR (``lampctl.scoring.generation``).

On top: a seeded bootstrap (median and 95% interval, the official ROUGE numbers are such a
median), a per-user breakdown, and a paired approximate-randomization test between two systems.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lampctl.catalog.tasks import EvaluationSpec, TaskSpec
from lampctl.errors import InputError
from lampctl.scoring.answers import Answers, aligned

# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Scored:
    """Per-question values of one system, ready to aggregate over any subset of questions."""

    spec: EvaluationSpec
    system: np.ndarray  # classification: label index; rating: value; rouge: (n, 2) F-measures
    gold: np.ndarray  # classification: label index; rating: value; rouge: unused
    outside: int  # predictions outside the labels / unparsable ratings / empty (generation)
    meteor: bool = True  # generation: METEOR is scored

    def __len__(self) -> int:
        return len(self.system)

    def with_system(self, system: np.ndarray) -> Scored:
        return Scored(self.spec, system, self.gold, self.outside, self.meteor)

    @property
    def names(self) -> tuple[str, ...]:
        names = self.spec.names
        return names if self.meteor else tuple(n for n in names if n != "meteor")


def score(
    spec: EvaluationSpec,
    predictions: Sequence[str],
    golds: Sequence[str],
    meteor: bool = True,
    drop_empty: bool = False,
) -> Scored:
    """Per-question values; ``meteor`` and ``drop_empty`` are the generation metric's
    (``lampctl.scoring.generation``)."""
    if spec.metric == "generation":
        from lampctl.scoring import generation

        rows = generation.score_rows(predictions, golds, meteor, drop_empty)
        empty = sum(not str(p).strip() for p in predictions)
        return Scored(spec, rows, np.zeros(0), empty, meteor)
    preds = [str(p).strip() for p in predictions]
    refs = [str(g).strip() for g in golds]
    if spec.metric == "classification":
        index = {label: i for i, label in enumerate(spec.labels)}
        system = np.array([index.get(p, -1) for p in preds], dtype=np.int64)
        gold = np.array([index.get(g, -1) for g in refs], dtype=np.int64)
        return Scored(spec, system, gold, int((system < 0).sum()))
    if spec.metric == "rating":
        low, high = spec.scale
        values, outside = [], 0
        gold_values = [_gold_rating(g) for g in refs]
        for p, g in zip(preds, gold_values, strict=True):
            value = _finite_float(p)
            if value is None:
                outside += 1
                value = low if abs(low - g) > abs(high - g) else high
            values.append(value)
        return Scored(spec, np.array(values), np.array(gold_values), outside)
    from lampctl.scoring.fastrouge import fmeasures

    pairs = np.empty((len(preds), 2))
    for row, (p, g) in enumerate(zip(preds, refs, strict=True)):
        # (target, prediction), as evaluate's rouge calls rouge_score; equal to it bit for bit
        pairs[row] = fmeasures(g, p, orders=(1,), lsum=False)
    return Scored(spec, pairs, np.zeros(0), 0)


def _finite_float(text: str) -> float | None:
    """``float(text)``, or None when it is no number or not a finite one."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _gold_rating(text: str) -> float:
    value = _finite_float(text)
    if value is None:
        raise InputError(f"a gold rating is not a finite number: {text!r}")
    return value


def aggregate(scored: Scored, index: np.ndarray | None = None) -> dict[str, float]:
    """The official metrics over all questions (or over ``index``, a bootstrap sample)."""
    system = scored.system if index is None else scored.system[index]
    names = scored.spec.names
    if scored.spec.metric == "generation":
        from lampctl.scoring import generation

        return generation.aggregate(system, scored.meteor)
    if scored.spec.metric == "rouge":
        means = system.mean(axis=0) if len(system) else np.zeros(2)
        return {names[0]: float(means[0]), names[1]: float(means[1])}
    gold = scored.gold if index is None else scored.gold[index]
    if scored.spec.metric == "rating":
        error = system - gold
        return {
            names[0]: float(np.mean(np.abs(error))),
            names[1]: float(math.sqrt(np.mean(error * error))),
        }
    return {
        names[0]: float(np.mean(system == gold)),
        names[1]: macro_f1(system, gold, len(scored.spec.labels)),
    }


def macro_f1(predicted: np.ndarray, gold: np.ndarray, labels: int) -> float:
    """Macro F1 over labels ``0..labels-1`` (scikit-learn's ``f1_score(labels=range(n),
    average="macro")``; -1, outside the labels, counts against the others but is no class)."""
    hit = predicted == gold
    size = labels + 1  # shift by one so that -1 has a bin
    tp = np.bincount(gold[hit] + 1, minlength=size)[1:]
    pred_count = np.bincount(predicted + 1, minlength=size)[1:]
    true_count = np.bincount(gold + 1, minlength=size)[1:]
    fp, fn = pred_count - tp, true_count - tp
    precision = np.divide(tp, tp + fp, out=np.zeros(labels), where=(tp + fp) > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros(labels), where=(tp + fn) > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(labels), where=denominator > 0)
    return float(f1.mean())


# --------------------------------------------------------------------------- on top


def bootstrap(scored: Scored, samples: int, seed: int) -> dict[str, dict[str, float]]:
    """Median and 2.5/97.5 percentiles of each metric over ``samples`` resamples of the
    questions (with replacement), as rouge_score's BootstrapAggregator reports ROUGE."""
    rng = np.random.default_rng(seed)
    n = len(scored)
    draws: dict[str, list[float]] = {name: [] for name in scored.names}
    for _ in range(samples):
        for name, value in aggregate(scored, rng.integers(0, n, n)).items():
            draws[name].append(value)
    return {
        name: {
            "median": float(np.median(values)),
            "low": float(np.percentile(values, 2.5)),
            "high": float(np.percentile(values, 97.5)),
        }
        for name, values in draws.items()
    }


def by_user(scored: Scored, users: Sequence[Any]) -> dict[str, Any]:
    """Each metric per user, then its mean, spread and range over users. Macro F1 is left out:
    over a label list this long it is not meaningful for a user's few questions."""
    groups: dict[Any, list[int]] = {}
    for row, user in enumerate(users):
        groups.setdefault(user, []).append(row)
    per_user: dict[str, list[float]] = {}
    for rows in groups.values():
        for name, value in aggregate(scored, np.array(rows)).items():
            if name != "f1":
                per_user.setdefault(name, []).append(value)
    result: dict[str, Any] = {"users": len(groups)}
    for name, values in per_user.items():
        array = np.array(values)
        result[name] = {
            "mean": float(array.mean()),
            "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
            "min": float(array.min()),
            "max": float(array.max()),
        }
    return result


def compare(
    first: Scored, second: Scored, permutations: int, seed: int
) -> dict[str, dict[str, float]]:
    """First minus second per metric, with a two-sided paired approximate-randomization
    p-value: each question's two predictions are swapped at random ``permutations`` times and
    the difference recomputed; p = (as extreme + 1) / (permutations + 1). Identical systems
    give a difference of 0 and p = 1."""
    observed = aggregate(first)
    other = aggregate(second)
    difference = {name: observed[name] - other[name] for name in observed}
    rng = np.random.default_rng(seed)
    extreme = dict.fromkeys(observed, 0)
    n = len(first)
    for _ in range(permutations):
        swap = rng.random(n) < 0.5
        mask = swap[:, None] if first.system.ndim == 2 else swap
        a = first.with_system(np.where(mask, second.system, first.system))
        b = second.with_system(np.where(mask, first.system, second.system))
        left, right = aggregate(a), aggregate(b)
        for name in observed:
            if abs(left[name] - right[name]) >= abs(difference[name]) - 1e-12:
                extreme[name] += 1
    return {
        name: {
            "this": observed[name],
            "other": other[name],
            "difference": difference[name],
            "p_value": (extreme[name] + 1) / (permutations + 1),
        }
        for name in observed
    }


# --------------------------------------------------------------------------- one task


@dataclass
class Evaluation:
    task: str
    predictions: str
    golds: str
    count: int
    metrics: dict[str, float]
    higher_is_better: bool
    outside_labels: int
    bootstrap: dict[str, dict[str, float]] | None = None
    by_user: dict[str, Any] | None = None
    compare: dict[str, dict[str, float]] | None = None
    compared_with: str | None = None
    coverage: dict[str, Any] | None = None  # with partial: what share of the golds is scored
    dropped: int | None = None  # generation with drop_empty: pairs the official drop left out

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "predictions": self.predictions,
            "golds": self.golds,
            "count": self.count,
            **self.metrics,
            "metrics": self.metrics,
            "higher_is_better": self.higher_is_better,
            "outside_labels": self.outside_labels,
            "bootstrap": self.bootstrap,
            "by_user": self.by_user,
            "compare": self.compare,
            "compared_with": self.compared_with,
            "coverage": self.coverage,
            "dropped": self.dropped,
        }


def coverage(ids: Sequence[str], golds: Answers, user_ids: dict[str, Any] | None) -> dict:
    """What a partial score covers: questions scored of the golds', and (when the questions'
    users are known) users with a scored question of the golds' users."""
    found: dict[str, Any] = {"partial": True, "questions": len(ids), "of": len(golds.outputs)}
    if user_ids is not None:
        found["users"] = len({str(user_ids[i]) for i in ids if i in user_ids})
        found["of_users"] = len({str(user_ids[i]) for i in golds.outputs if i in user_ids})
    return found


@dataclass(frozen=True)
class Extras:
    bootstrap: int = 0
    seed: int = 0
    user_ids: dict[str, Any] | None = None  # question id -> user, for --by-user
    other: Answers | None = None
    permutations: int = 10000
    partial: bool = False  # score the predicted ids alone, and report the coverage
    meteor: bool = True  # generation (LongLaMP): score METEOR (needs NLTK's data)
    drop_empty: bool = False  # generation: the official drop of pairs with an empty side


def evaluate_task(
    task: TaskSpec, predictions: Answers, golds: Answers, extras: Extras | None = None
) -> Evaluation:
    extras = extras or Extras()
    spec = task.evaluation
    if spec is None:
        raise InputError(f"{task.name} has no evaluation in the task registry")
    ids, preds, refs = aligned(predictions, golds, extras.partial)
    scored = score(spec, preds, refs, extras.meteor, extras.drop_empty)
    result = Evaluation(
        task=task.name,
        predictions=predictions.name,
        golds=golds.name,
        count=len(ids),
        metrics=aggregate(scored),
        higher_is_better=spec.higher_is_better,
        outside_labels=scored.outside,
    )
    if spec.metric == "generation" and extras.drop_empty:
        from lampctl.scoring.generation import dropped

        result.dropped = dropped(scored.system)
    if extras.partial:
        result.coverage = coverage(ids, golds, extras.user_ids)
    if extras.bootstrap:
        result.bootstrap = bootstrap(scored, extras.bootstrap, extras.seed)
    if extras.user_ids is not None:
        missing = [i for i in ids if i not in extras.user_ids]
        if missing:
            raise InputError(
                f"the questions file has no question {missing[0]!r} (and {len(missing) - 1} "
                "more) for the per-user breakdown"
            )
        result.by_user = by_user(scored, [extras.user_ids[i] for i in ids])
    if extras.other is not None:
        if extras.partial:  # the other file is scored on the same questions
            missing = [i for i in ids if i not in extras.other.outputs]
            if missing:
                raise InputError(
                    f"{extras.other.name}: has no prediction for {missing[0]!r}, which the "
                    "partial score covers"
                )
            other_preds = [extras.other.outputs[i] for i in ids]
        else:
            _, other_preds, _ = aligned(extras.other, golds)
        other = score(spec, other_preds, refs, extras.meteor, extras.drop_empty)
        result.compare = compare(scored, other, extras.permutations, extras.seed)
        result.compared_with = extras.other.name
    return result
