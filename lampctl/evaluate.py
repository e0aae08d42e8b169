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
  default tokenizer), reported as the exact mean over questions.

On top: a seeded bootstrap (median and 95% interval, the official ROUGE numbers are such a
median), a per-user breakdown, and a paired approximate-randomization test between two systems.
"""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lampctl.data import parse_json_bytes, read_bytes
from lampctl.errors import InputError
from lampctl.tasks import EvaluationSpec, Registry, TaskSpec

# --------------------------------------------------------------------------- reading files


@dataclass(frozen=True)
class Answers:
    """Predictions or golds: ``{id: output}`` from one file, with the task it names (if any)."""

    name: str
    task: str | None
    outputs: dict[str, str]


def _pairs_without_repeats(name: str):  # noqa: ANN202 - a json object_pairs_hook
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise InputError(f"{name}: id {key!r} appears twice")
            seen[key] = value
        return seen

    return hook


def parse_answers(raw: bytes, name: str) -> Answers:
    """The official ``{"task", "golds": [{"id", "output"}]}``, JSONL of ``{"id", "output"}``,
    or a ``{id: output}`` object."""
    if not raw.strip():
        raise InputError(f"{name}: file is empty")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text (offset {exc.start})") from None
    rows: list[Any]
    task: str | None = None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputError(
                    f"{name}: neither JSON nor JSONL (line {number}: {exc.msg})"
                ) from None
    if data is not None:
        if isinstance(data, dict) and "golds" in data:
            task = data.get("task") if isinstance(data.get("task"), str) else None
            rows = data["golds"]
            if not isinstance(rows, list):
                raise InputError(f"{name}: 'golds' must be a list of {{id, output}}")
        elif isinstance(data, dict):
            # Parse again to catch repeated keys, which json.loads keeps silently.
            data = json.loads(text, object_pairs_hook=_pairs_without_repeats(name))
            rows = [{"id": key, "output": value} for key, value in data.items()]
        elif isinstance(data, list):
            rows = data
        else:
            raise InputError(f"{name}: expected predictions, got a JSON {type(data).__name__}")
    outputs: dict[str, str] = {}
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or "id" not in row or "output" not in row:
            raise InputError(f"{name}: entry #{index} is not an {{id, output}} object")
        rid = row["id"]
        if isinstance(rid, int) and not isinstance(rid, bool):
            rid = str(rid)
        if not isinstance(rid, str):
            raise InputError(f"{name}: entry #{index} has a non-string id {rid!r}")
        if rid in outputs:
            raise InputError(f"{name}: id {rid!r} appears twice")
        output = row["output"]
        if not isinstance(output, str):
            raise InputError(
                f"{name}: output of {rid!r} is a {type(output).__name__}, not a string"
            )
        outputs[rid] = output
    if not outputs:
        raise InputError(f"{name}: holds no predictions")
    return Answers(name, task, outputs)


def load_answers(path: Path) -> Answers:
    return parse_answers(read_bytes(path, "predictions file"), str(path))


MAX_MEMBER_BYTES = 256 * 1024 * 1024  # far above any LaMP task's predictions (a few MB)


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, limit: int) -> bytes:
    """A zip member's bytes, read in blocks and stopped at ``limit`` (the header's size is not
    trusted); a member zipfile cannot read (encrypted, bad CRC, unknown compression) is one
    ``InputError`` naming it."""
    if info.flag_bits & 0x1:
        raise InputError(f"{name}: is encrypted; zip the predictions without a password")
    blocks: list[bytes] = []
    size = 0
    try:
        with archive.open(info) as member:
            while block := member.read(1 << 20):
                size += len(block)
                if size > limit:
                    raise InputError(
                        f"{name}: inflates to more than {limit:,} bytes; raise "
                        "--max-member-bytes if it is really a predictions file"
                    )
                blocks.append(block)
    except NotImplementedError:
        raise InputError(f"{name}: compressed with a method zipfile cannot read") from None
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError, zlib.error) as exc:
        raise InputError(f"{name}: cannot be read from the zip ({exc})") from None
    return b"".join(blocks)


def load_bundle(path: Path, max_member_bytes: int = MAX_MEMBER_BYTES) -> list[Answers]:
    """Every predictions file of a zip (read in place, never extracted) or a folder."""
    found: list[Answers] = []
    if path.is_dir():
        for member in sorted(path.iterdir()):
            if member.is_file() and member.suffix in (".json", ".jsonl"):
                found.append(load_answers(member))
    else:
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise InputError(f"{path}: not a readable zip ({exc})") from None
        with archive:
            for info in sorted(archive.infolist(), key=lambda i: i.filename):
                name = info.filename
                if info.is_dir() or name.startswith("__MACOSX/") or "/." in f"/{name}":
                    continue
                if not name.endswith((".json", ".jsonl")):
                    continue
                label = f"{path}:{name}"
                found.append(
                    parse_answers(read_member(archive, info, label, max_member_bytes), label)
                )
    if not found:
        raise InputError(f"{path}: no .json prediction files in it")
    return found


def is_bundle(path: Path) -> bool:
    return path.is_dir() or zipfile.is_zipfile(path)


def task_of(registry: Registry, answers: Answers) -> TaskSpec:
    if answers.task is None:
        raise InputError(
            f"{answers.name}: names no task (files in a zip or folder need the official "
            '{"task": "LaMP_N", "golds": [...]} form)'
        )
    return registry.task(answers.task)


def check_task(registry: Registry, answers: Answers, task: TaskSpec) -> None:
    if answers.task is not None and registry.task(answers.task).name != task.name:
        raise InputError(f"{answers.name}: is for {answers.task}, not {task.name}")


def aligned(predictions: Answers, golds: Answers) -> tuple[list[str], list[str], list[str]]:
    """(ids, predictions, golds) in the golds' order; the id sets must be equal."""
    missing = [i for i in golds.outputs if i not in predictions.outputs]
    extra = [i for i in predictions.outputs if i not in golds.outputs]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} gold ids have no prediction (first: {_few(missing)})")
        if extra:
            parts.append(f"{len(extra)} predictions have no gold (first: {_few(extra)})")
        raise InputError(f"{predictions.name}: ids differ from {golds.name}: {'; '.join(parts)}")
    ids = list(golds.outputs)
    return ids, [predictions.outputs[i] for i in ids], [golds.outputs[i] for i in ids]


def _few(ids: list[str]) -> str:
    return ", ".join(repr(i) for i in ids[:3])


# --------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Scored:
    """Per-question values of one system, ready to aggregate over any subset of questions."""

    spec: EvaluationSpec
    system: np.ndarray  # classification: label index; rating: value; rouge: (n, 2) F-measures
    gold: np.ndarray  # classification: label index; rating: value; rouge: unused
    outside: int  # predictions outside the labels / unparsable ratings (scored all the same)

    def __len__(self) -> int:
        return len(self.system)

    def with_system(self, system: np.ndarray) -> Scored:
        return Scored(self.spec, system, self.gold, self.outside)


def score(spec: EvaluationSpec, predictions: Sequence[str], golds: Sequence[str]) -> Scored:
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
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
    pairs = np.empty((len(preds), 2))
    for row, (p, g) in enumerate(zip(preds, refs, strict=True)):
        result = scorer.score(g, p)  # (target, prediction), as evaluate's rouge calls it
        pairs[row] = (result["rouge1"].fmeasure, result["rougeL"].fmeasure)
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
    draws: dict[str, list[float]] = {name: [] for name in scored.spec.names}
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
        }


@dataclass(frozen=True)
class Extras:
    bootstrap: int = 0
    seed: int = 0
    user_ids: dict[str, Any] | None = None  # question id -> user, for --by-user
    other: Answers | None = None
    permutations: int = 10000


def evaluate_task(
    task: TaskSpec, predictions: Answers, golds: Answers, extras: Extras | None = None
) -> Evaluation:
    extras = extras or Extras()
    spec = task.evaluation
    if spec is None:
        raise InputError(f"{task.name} has no evaluation in the task registry")
    ids, preds, refs = aligned(predictions, golds)
    scored = score(spec, preds, refs)
    result = Evaluation(
        task=task.name,
        predictions=predictions.name,
        golds=golds.name,
        count=len(ids),
        metrics=aggregate(scored),
        higher_is_better=spec.higher_is_better,
        outside_labels=scored.outside,
    )
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
        _, other_preds, _ = aligned(extras.other, golds)
        other = score(spec, other_preds, refs)
        result.compare = compare(scored, other, extras.permutations, extras.seed)
        result.compared_with = extras.other.name
    return result


def user_ids_of(questions: Any, name: str) -> dict[str, Any]:
    """Question id -> user: ``user_id`` where the questions carry it (time split), else the
    question itself (user split: one question per user)."""
    if not isinstance(questions, list):
        raise InputError(f"{name}: expected a JSON list of questions")
    users: dict[str, Any] = {}
    for question in questions:
        qid = str(question.get("id")) if isinstance(question, dict) else None
        if qid is None:
            raise InputError(f"{name}: a question has no id")
        users[qid] = _user_of(qid, question.get("user_id"), name)
    return users


def _user_of(qid: str, user: Any, name: str) -> str:
    """A question's user for grouping: its ``user_id`` (a string or a whole number), or the
    question itself when it has none."""
    if user is None:
        return f"question:{qid}"
    if isinstance(user, str) or (isinstance(user, int) and not isinstance(user, bool)):
        return str(user)
    raise InputError(
        f"{name}: question {qid!r} has a user_id that is a {type(user).__name__}, not a string"
    )


def read_user_ids(path: Path) -> dict[str, Any]:
    """Only ids and user ids are decoded (profiles are skipped), so big files load quickly."""
    raw = read_bytes(path, "questions file")
    import msgspec

    from lampctl.fastjson import QuestionUser

    try:
        decoded = msgspec.json.decode(raw, type=list[QuestionUser])
    except msgspec.DecodeError:  # malformed: let the plain parser name the problem
        return user_ids_of(parse_json_bytes(raw, str(path)), str(path))
    return {str(q.id): _user_of(str(q.id), q.user_id, str(path)) for q in decoded}
