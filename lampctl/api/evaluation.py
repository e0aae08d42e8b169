"""``lampctl.evaluate``: the official metrics, on whatever ``lampctl evaluate`` reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lampctl.bundled import cached_registry as registry
from lampctl.errors import InputError, OptionError

if TYPE_CHECKING:
    pass


# --------------------------------------------------------------------------- evaluate


Answerish = Mapping[str, Any] | Sequence[Mapping[str, Any]] | Path | str


def _answers(value: Answerish, name: str) -> Any:
    """Predictions or golds as ``evaluate`` takes them: a file (any form ``lampctl evaluate``
    reads), the official ``{"task", "golds": [{"id", "output"}]}`` object, a list of
    ``{"id", "output"}`` or ``{id: output}``."""
    import json

    from lampctl.answers import Answers, load_answers, parse_answers

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


def evaluate(
    task: str,
    predictions: Answerish,
    golds: Answerish,
    *,
    bootstrap: int = 0,
    seed: int = 0,
    config: Path | str | None = None,
) -> dict[str, Any]:
    """The official metrics of ``predictions`` against ``golds``, under the names ``lampctl
    --json evaluate`` reports (``accuracy``/``f1``, ``MAE``/``RMSE``, ``rouge-1``/``rouge-L``);
    with ``bootstrap``, also ``bootstrap``: a seeded median and 95% interval per metric. Each
    of the two is a file path, ``{id: output}``, a list of ``{id, output}`` or the official
    ``{task, golds}`` object (whose task must be ``task``)."""
    from lampctl.answers import check_task
    from lampctl.metrics import Extras, evaluate_task

    if bootstrap < 0 or seed < 0:
        raise OptionError("bootstrap", "bootstrap and seed are 0 or more")
    found = registry(config)
    spec = found.task(task)
    given = [_answers(predictions, "predictions"), _answers(golds, "golds")]
    for answers in given:
        check_task(found, answers, spec)
    result = evaluate_task(spec, *given, Extras(bootstrap=bootstrap, seed=seed))
    scores: dict[str, Any] = dict(result.metrics)
    if result.bootstrap:
        scores["bootstrap"] = result.bootstrap
    return scores
