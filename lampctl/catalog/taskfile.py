"""Reading ``configs/tasks.yaml`` (and a user's ``--config`` over it) into the typed registry:
unknown keys are refused and every error names the key and the file."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

from lampctl.catalog.tasks import (
    METRICS,
    QUERY_RULES,
    EncoderDefaults,
    EvaluationSpec,
    HubSpec,
    Layout,
    PeftSpec,
    PromptSpec,
    QueryRule,
    Registry,
    TaskSpec,
)
from lampctl.errors import ConfigError
from lampctl.retrieval.rankers import RANKERS
from lampctl.settings import PRECISIONS

# --------------------------------------------------------------------------- loading

_TOP_KEYS = {"layout", "splits", "sets", "encoder", "tasks"}
_TASK_KEYS = {
    "number",
    "title",
    "profile_text",
    "query",
    "default_ranker",
    "needs_build",
    "evaluation",
    "prompt",
    "peft",
    "folder",
    "aliases",
    "opt_in",
    "output_task_names",
    "family",
    "hub",
    "number_fields",
    "test_outputs",
    "recency",
    "model_defaults",
    "avocado",
    "email_reader",
}
_HUB_KEYS = {"repo", "revision", "configs", "sets", "item_fields", "columns", "user_fields"}
_EVAL_KEYS = {"metric", "labels", "scale"}
_PROMPT_KEYS = set(PromptSpec.__dataclass_fields__)
_QUERY_KEYS = {"rule", "marker", "pick"}


def merge_yaml(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge_yaml(base.get(key), value) if key in base else value
        return merged
    return override


def _check_keys(where: str, data: Any, allowed: set[str], origin: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: {where} must be a mapping")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(
            f"{origin}: unknown key {where}.{unknown[0]} (allowed: {', '.join(sorted(allowed))})"
        )
    return data


def _need(where: str, data: dict[str, Any], key: str, kind: type, origin: str) -> Any:
    if key not in data:
        raise ConfigError(f"{origin}: {where}.{key} is missing")
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{origin}: {where}.{key} must be a {kind.__name__}, got {value!r}")
    return value


def _positive(where: str, data: dict[str, Any], key: str, origin: str) -> int:
    value = _need(where, data, key, int, origin)
    if value < 1:
        raise ConfigError(f"{origin}: {where}.{key} must be at least 1, got {value}")
    return int(value)


def _choice(
    where: str,
    data: dict[str, Any],
    key: str,
    default: str,
    allowed: Sequence[str] | None,
    origin: str,
) -> str:
    if key not in data:
        return default
    value = _need(where, data, key, str, origin)
    if allowed is not None and value not in allowed:
        raise ConfigError(
            f"{origin}: {where}.{key} must be one of {', '.join(allowed)}, got {value!r}"
        )
    return str(value)


def _parse_task(name: str, raw: Any, splits: tuple[str, ...], origin: str) -> TaskSpec:
    where = f"tasks.{name}"
    raw = _check_keys(where, raw, _TASK_KEYS, origin)
    number = _need(where, raw, "number", int, origin)
    fields = _need(where, raw, "profile_text", list, origin)
    if not fields or not all(isinstance(f, str) and f for f in fields):
        raise ConfigError(f"{origin}: {where}.profile_text must be a non-empty list of fields")
    query_raw = _check_keys(f"{where}.query", raw.get("query"), _QUERY_KEYS, origin)
    rule = _need(f"{where}.query", query_raw, "rule", str, origin)
    if rule not in QUERY_RULES:
        raise ConfigError(
            f"{origin}: {where}.query.rule {rule!r} is not one of {', '.join(QUERY_RULES)}"
        )
    if rule == "after":
        query = QueryRule(rule, marker=_need(f"{where}.query", query_raw, "marker", str, origin))
    elif rule == "whole":
        query = QueryRule(rule)
    else:
        pick = _need(f"{where}.query", query_raw, "pick", list, origin)
        if not pick or not all(isinstance(p, int) and p >= 1 for p in pick):
            raise ConfigError(f"{origin}: {where}.query.pick must list positions from 1")
        query = QueryRule(rule, pick=tuple(pick))
    rankers = _check_keys(f"{where}.default_ranker", raw.get("default_ranker"), set(splits), origin)
    for split in splits:
        ranker = _need(f"{where}.default_ranker", rankers, split, str, origin)
        if ranker not in RANKERS:
            raise ConfigError(
                f"{origin}: {where}.default_ranker.{split} {ranker!r} is not a ranker "
                f"({', '.join(RANKERS)})"
            )
    return TaskSpec(
        name=name,
        number=number,
        title=str(raw.get("title", name)),
        profile_text=tuple(fields),
        query=query,
        default_ranker=dict(rankers),
        needs_build=raw.get("needs_build"),
        evaluation=_parse_evaluation(where, raw.get("evaluation"), origin),
        prompt=_parse_prompt(where, raw.get("prompt"), origin),
        peft=_parse_peft(where, raw.get("peft"), origin),
        folder=_text_or_none(where, raw, "folder", origin),
        aliases=_names(where, raw, "aliases", origin),
        opt_in=bool(raw.get("opt_in", False)),
        output_task_names=_names(where, raw, "output_task_names", origin),
        family=_text_or_none(where, raw, "family", origin) or "LaMP",
        hub=_parse_hub(where, raw.get("hub"), splits, origin),
        number_fields=_names(where, raw, "number_fields", origin),
        test_outputs=bool(raw.get("test_outputs", False)),
        recency=_choice(where, raw, "recency", "date", ("date", "order"), origin),
        model_defaults=_model_defaults(where, raw.get("model_defaults"), origin),
        avocado=_choice(where, raw, "avocado", "subject", ("subject", "completion"), origin),
        email_reader=_choice(where, raw, "email_reader", "lamp", ("lamp", "mailparser"), origin),
    )


def _model_defaults(where: str, raw: Any, origin: str) -> dict[str, int]:
    if raw is None:
        return {}
    where = f"{where}.model_defaults"
    raw = _check_keys(where, raw, {"max_new_tokens", "max_length"}, origin)
    return {key: _positive(where, raw, key, origin) for key in raw}


def _parse_hub(where: str, raw: Any, splits: tuple[str, ...], origin: str) -> HubSpec | None:
    if raw is None:
        return None
    where = f"{where}.hub"
    raw = _check_keys(where, raw, _HUB_KEYS, origin)
    configs = _check_keys(f"{where}.configs", raw.get("configs"), set(splits), origin)
    sets = _need(where, raw, "sets", dict, origin)
    for table, name in ((configs, "configs"), (sets, "sets")):
        if not table or not all(isinstance(v, str) and v for v in table.values()):
            raise ConfigError(f"{origin}: {where}.{name} must map names to non-empty names")
    return HubSpec(
        repo=_need(where, raw, "repo", str, origin),
        revision=str(_need(where, raw, "revision", str, origin)),
        configs=dict(configs),
        sets={str(k): str(v) for k, v in sets.items()},
        item_fields=_names(where, raw, "item_fields", origin),
        columns=_names(where, raw, "columns", origin) or ("input", "output", "profile"),
        user_fields=_names(where, raw, "user_fields", origin),
    )


def _text_or_none(where: str, raw: dict[str, Any], key: str, origin: str) -> str | None:
    return _need(where, raw, key, str, origin) if key in raw else None


def _names(where: str, raw: dict[str, Any], key: str, origin: str) -> tuple[str, ...]:
    if key not in raw:
        return ()
    names = _need(where, raw, key, list, origin)
    if not all(isinstance(n, str | int) for n in names):
        raise ConfigError(f"{origin}: {where}.{key} must be a list of names")
    return tuple(str(n) for n in names)


def _parse_peft(where: str, raw: Any, origin: str) -> PeftSpec | None:
    if raw is None:
        return None
    where = f"{where}.peft"
    raw = _check_keys(where, raw, {"source", "target", "cut"}, origin)
    source = _need(where, raw, "source", str, origin)
    target = _need(where, raw, "target", str, origin)
    cut = raw.get("cut")
    if cut is not None:
        cut = _check_keys(f"{where}.cut", cut, {"field", "low", "high"}, origin)
        field_name = _need(f"{where}.cut", cut, "field", str, origin)
        low, high = cut.get("low", 0.1), cut.get("high", 0.25)
        if not all(isinstance(v, int | float) for v in (low, high)) or not 0 <= low <= high <= 1:
            raise ConfigError(f"{origin}: {where}.cut needs 0 <= low <= high <= 1")
        spec = PeftSpec(source, target, field_name, float(low), float(high))
    else:
        spec = PeftSpec(source, target)
    try:
        names = spec.item_fields
    except ValueError as exc:
        raise ConfigError(f"{origin}: {where}: bad template: {exc}") from None
    if not names:
        raise ConfigError(f"{origin}: {where}: the templates name no item field")
    for template in (source, target):
        for _, name, format_spec, _ in string.Formatter().parse(template):
            if name is not None and not name.isidentifier():
                raise ConfigError(
                    f"{origin}: {where}: {{{name}}} is not an item field name (use {{field}})"
                )
            if format_spec and "{" in format_spec:
                raise ConfigError(f"{origin}: {where}: a format spec cannot hold a field")
    return spec


def _parse_evaluation(where: str, raw: Any, origin: str) -> EvaluationSpec | None:
    if raw is None:
        return None
    where = f"{where}.evaluation"
    raw = _check_keys(where, raw, _EVAL_KEYS, origin)
    metric = _choice(where, raw, "metric", "", METRICS, origin)
    if metric == "classification":
        labels = _need(where, raw, "labels", list, origin)
        if not labels or not all(isinstance(label, str) for label in labels):
            raise ConfigError(f"{origin}: {where}.labels must be a non-empty list of strings")
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{origin}: {where}.labels repeats a label")
        return EvaluationSpec(metric, labels=tuple(labels))
    if metric == "rating":
        scale = raw.get("scale", [1.0, 5.0])
        if (
            not isinstance(scale, list)
            or len(scale) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in scale)
        ):
            raise ConfigError(f"{origin}: {where}.scale must be [low, high]")
        return EvaluationSpec(metric, scale=(float(scale[0]), float(scale[1])))
    return EvaluationSpec(metric)


def _parse_prompt(where: str, raw: Any, origin: str) -> PromptSpec | None:
    if raw is None:
        return None
    where = f"{where}.prompt"
    raw = _check_keys(where, raw, _PROMPT_KEYS, origin)
    text: dict[str, Any] = {}
    for key in ("field", "frame"):
        text[key] = _need(where, raw, key, str, origin)
    for key in ("need_frame", "phrase", "joiner", "source", "insert_after"):
        if key in raw:
            text[key] = _need(where, raw, key, str, origin)
    if "style" in raw:
        text["style"] = _choice(where, raw, "style", "budget", ("budget", "ranked"), origin)
    if "words" in raw:
        text["words"] = _positive(where, raw, "words", origin)
    for key in ("need_tokens", "reserve"):
        if key in raw:
            value = _need(where, raw, key, int, origin)
            if value < 0:
                raise ConfigError(f"{origin}: {where}.{key} must not be negative")
            text[key] = value
    if "{text}" not in text["frame"]:
        raise ConfigError(f"{origin}: {where}.frame needs a {{text}} slot")
    if ("source" in text) == ("insert_after" in text):
        raise ConfigError(f"{origin}: {where} needs exactly one of source and insert_after")
    if "source" in text and not {"{items}", "{input}"} <= set(re.findall(r"{\w+}", text["source"])):
        raise ConfigError(f"{origin}: {where}.source needs {{items}} and {{input}}")
    spec = PromptSpec(**text)
    try:
        spec.item_fields  # noqa: B018 - parses the templates
    except ValueError as exc:
        raise ConfigError(f"{origin}: {where}: bad template: {exc}") from None
    return spec


def parse_registry(data: dict[str, Any], origin: str) -> Registry:
    _check_keys("(top level)", data, _TOP_KEYS, origin)
    layout_raw = _check_keys("layout", data.get("layout"), set(Layout.__dataclass_fields__), origin)
    layout = Layout(
        **{k: _need("layout", layout_raw, k, str, origin) for k in Layout.__dataclass_fields__}
    )
    splits = tuple(_need("", data, "splits", list, origin))
    sets = tuple(_need("", data, "sets", list, origin))
    enc_raw = _check_keys(
        "encoder", data.get("encoder"), set(EncoderDefaults.__dataclass_fields__), origin
    )
    revision = enc_raw.get("revision")
    if revision is not None and not isinstance(revision, str):
        raise ConfigError(f"{origin}: encoder.revision must be a string or null")
    encoder = EncoderDefaults(
        checkpoint=_need("encoder", enc_raw, "checkpoint", str, origin),
        revision=revision,
        batch_size=_positive("encoder", enc_raw, "batch_size", origin),
        max_tokens_per_batch=_positive("encoder", enc_raw, "max_tokens_per_batch", origin),
        device=_choice("encoder", enc_raw, "device", "auto", None, origin),
        precision=_choice("encoder", enc_raw, "precision", "fp32", PRECISIONS, origin),
    )
    if not encoder.checkpoint.strip():
        raise ConfigError(f"{origin}: encoder.checkpoint must not be empty")
    device = encoder.device.strip().lower()
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?(,\s*cuda(:\d+)?)*", device):
        raise ConfigError(
            f"{origin}: encoder.device {encoder.device!r} is not auto, cpu, cuda, cuda:N or mps"
        )
    tasks_raw = _need("", data, "tasks", dict, origin)
    tasks = {name: _parse_task(name, raw, splits, origin) for name, raw in tasks_raw.items()}
    numbers = [t.number for t in tasks.values() if not t.opt_in]
    if len(set(numbers)) != len(numbers):
        raise ConfigError(f"{origin}: two tasks share a number")
    folders = [t.dir_name for t in tasks.values()]
    if len(set(folders)) != len(folders):
        raise ConfigError(f"{origin}: two tasks share a folder")
    return Registry(tasks=tasks, layout=layout, splits=splits, sets=sets, encoder=encoder)
