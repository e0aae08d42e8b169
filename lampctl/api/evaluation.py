"""``lampctl.evaluate``: the official metrics, on whatever ``lampctl evaluate`` reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lampctl.arguments import checked_arguments
from lampctl.catalog.bundled import cached_registry as registry
from lampctl.errors import InputError, OptionError

if TYPE_CHECKING:
    from lampctl.catalog.tasks import Registry, TaskSpec
    from lampctl.scoring.answers import Answers
    from lampctl.scoring.metrics import Evaluation


# --------------------------------------------------------------------------- evaluate


Answerish = Mapping[str, Any] | Sequence[Mapping[str, Any]] | Path | str


def _answers(value: Answerish, name: str) -> Any:
    """Predictions or golds as ``evaluate`` takes them: a file (any form ``lampctl evaluate``
    reads), the official ``{"task", "golds": [{"id", "output"}]}`` object, a list of
    ``{"id", "output"}`` or ``{id: output}``."""
    import json

    from lampctl.scoring.answers import Answers, load_answers, parse_answers

    if isinstance(value, (str, Path)):
        return load_answers(Path(value))
    if (isinstance(value, Mapping) and "golds" in value) or isinstance(value, list | tuple):
        return parse_answers(json.dumps(value, default=str).encode(), name)
    if isinstance(value, Mapping):
        return Answers(name, None, {str(k): str(v) for k, v in value.items()})
    raise InputError(
        f"{name}: expected a file path, {{id: output}}, [{{id, output}}] or the official "
        f"{{task, golds}} object, got {type(value).__name__}"
    )


@checked_arguments
def evaluate(
    task: str,
    predictions: Answerish,
    golds: Answerish,
    *,
    bootstrap: int = 0,
    seed: int = 0,
    meteor: bool = True,
    drop_empty: bool = False,
    config: Path | str | None = None,
) -> dict[str, Any]:
    """The official metrics of ``predictions`` against ``golds``, under the names ``lampctl
    --json evaluate`` reports (``accuracy``/``f1``, ``MAE``/``RMSE``, ``rouge-1``/``rouge-L``);
    with ``bootstrap``, also ``bootstrap``: a seeded median and 95% interval per metric. Each
    of the two is a file path, ``{id: output}``, a list of ``{id, output}`` or the official
    ``{task, golds}`` object (whose task must be ``task``)."""
    from lampctl.scoring.answers import check_task
    from lampctl.scoring.metrics import Extras, evaluate_task

    if bootstrap < 0 or seed < 0:
        raise OptionError("bootstrap", "bootstrap and seed are 0 or more")
    found = registry(config)
    spec = found.task(task)
    given = [_answers(predictions, "predictions"), _answers(golds, "golds")]
    for answers in given:
        check_task(found, answers, spec)
    extras = Extras(bootstrap=bootstrap, seed=seed, meteor=meteor, drop_empty=drop_empty)
    result = evaluate_task(spec, *given, extras)
    scores: dict[str, Any] = dict(result.metrics)
    if result.bootstrap:
        scores["bootstrap"] = result.bootstrap
    return scores


# --------------------------------------------------------------------------- files


@checked_arguments
def score_files(
    predictions: Path | str,
    task: str | None = None,
    *,
    golds: Path | str | None = None,
    split: str = "user",
    set: str = "dev",  # noqa: A002 - the command's option
    data_dir: Path | str | None = None,
    by_user: bool = False,
    questions: Path | str | None = None,
    compare_with: Path | str | None = None,
    bootstrap: int = 0,
    permutations: int = 0,
    seed: int = 0,
    max_member_bytes: int | None = None,
    partial: bool = False,
    meteor: bool = True,
    drop_empty: bool = False,
    config: Path | str | None = None,
) -> list[Evaluation]:
    """What ``lampctl evaluate`` scores: one task's predictions file (golds from ``golds`` or
    the data dir's set; per user, against another file), or a zip or folder of per-task files,
    one result per task. ``partial``: score the predicted questions alone (a pilot, one
    shard, some users), with the coverage reported (questions, and users where the questions
    file is at hand); a prediction without a gold is still an error."""
    from lampctl import settings
    from lampctl.scoring.answers import (
        MAX_MEMBER_BYTES,
        check_task,
        is_bundle,
        load_answers,
        load_bundle,
        read_user_ids,
    )
    from lampctl.scoring.metrics import Extras, evaluate_task  # numpy: only when scoring

    found = registry(config)
    split, set_name = found.check_split(split), found.check_set(set)
    folder = settings.data_dir(data_dir)
    predictions, limit = Path(predictions), max_member_bytes or MAX_MEMBER_BYTES
    if not predictions.exists():
        raise InputError(f"{predictions}: file not found")
    if is_bundle(predictions):
        if compare_with is not None or by_user:
            raise OptionError(
                "predictions",
                "compare_with=PATH and by_user=True take one task's file",
                mentions=("compare_with", "by_user"),
            )
        bundle = _by_task(found, load_bundle(predictions, limit))
        if task is not None:
            wanted = found.task(task).name
            if wanted not in bundle:
                raise InputError(
                    f"{predictions}: has no predictions for {wanted} (it holds {', '.join(bundle)})"
                )
            bundle = {wanted: bundle[wanted]}
        gold_bundle = _by_task(found, load_bundle(Path(golds), limit)) if golds else {}
        results = []
        for name, answers in bundle.items():
            spec = found.task(name)
            gold = gold_bundle.get(spec.name) if golds else None
            if golds and gold is None:
                raise InputError(f"{golds}: has no golds for {spec.name}")
            gold = gold or _data_golds(found, folder, spec, split, set_name)
            extras = Extras(bootstrap=bootstrap, seed=seed, partial=partial, meteor=meteor,
                            drop_empty=drop_empty)  # fmt: skip
            results.append(evaluate_task(spec, answers, gold, extras))
        return results
    if task is None:
        raise OptionError("task", "name the task of a single file")
    spec = found.task(task)
    answers = load_answers(predictions)
    check_task(found, answers, spec)
    gold = load_answers(Path(golds)) if golds else _data_golds(found, folder, spec, split, set_name)
    check_task(found, gold, spec)
    user_ids = None
    source = (
        Path(questions) if questions else found.path("questions", folder, spec, split, set_name)
    )
    if by_user or (partial and source.is_file()):  # a partial score counts users where it can
        user_ids = read_user_ids(source)
    other = load_answers(Path(compare_with)) if compare_with else None
    if other is not None:
        check_task(found, other, spec)
    extras = Extras(
        bootstrap=bootstrap,
        seed=seed,
        user_ids=user_ids,
        other=other,
        permutations=permutations,
        partial=partial,
        meteor=meteor,
        drop_empty=drop_empty,
    )
    return [evaluate_task(spec, answers, gold, extras)]


def _by_task(tasks: Registry, bundle: list[Answers]) -> dict[str, Answers]:
    """A zip's or folder's files by task; two files for one task is an error."""
    from lampctl.scoring.answers import task_of

    found: dict[str, Answers] = {}
    for answers in bundle:
        name = task_of(tasks, answers).name
        if name in found:
            raise InputError(
                f"{answers.name}: a second file for {name} (the first: {found[name].name}); "
                "keep one"
            )
        found[name] = answers
    return found


def _data_golds(
    found: Registry, data_dir: Path, spec: TaskSpec, split: str, set_name: str
) -> Answers:
    from lampctl.scoring.answers import load_answers

    path = found.path("outputs", data_dir, spec, split, set_name)
    if not path.exists():
        raise InputError(
            f"{path}: gold outputs not found; pass golds= (--golds), or split/set/data_dir "
            "(--split/--set/--data-dir) for the data dir's (test golds are not published)"
        )
    return load_answers(path)
