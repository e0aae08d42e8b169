"""A question's query and its profile items' texts and dates, by the task's rules in the
registry (``query``, ``profile_text``, ``date`` in configs/tasks.yaml)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from lampctl.catalog.tasks import TaskSpec
from lampctl.errors import InputError

# --------------------------------------------------------------------------- queries and texts

_QUOTED = re.compile(r'"([^"]*)"')


def build_query(task: TaskSpec, text: str, question_id: str) -> str:
    """The query of a question, by the task's query rule."""
    rule = task.query
    if rule.rule == "whole":  # LongLaMP review and topic writing: the whole input
        return text
    if rule.rule == "after":
        marker = rule.marker or ""
        at = text.find(marker)
        if at < 0:
            raise InputError(
                f"question {question_id!r}: input has no {marker!r} marker "
                f"({task.name} queries are the text after it)"
            )
        return text[at + len(marker) :].strip()
    quoted = _QUOTED.findall(text)
    if len(quoted) < max(rule.pick):
        raise InputError(
            f"question {question_id!r}: {task.name} input needs {max(rule.pick)} double-quoted "
            f"strings (the paper title and its two candidate references), found {len(quoted)}"
        )
    return " ".join(quoted[i - 1] for i in rule.pick)


def item_text(task: TaskSpec, item: Mapping[str, Any], question_id: str, use_date: bool) -> str:
    """The ranked text of one profile item: its fields joined by a space (plus the date)."""
    parts = []
    for field in task.profile_text:
        value = item.get(field)
        if field in task.number_fields and _is_number(value):
            value = str(value)  # a rating 5.0 reads "5.0", as the official f-string writes it
        if not isinstance(value, str):
            what = "has no" if value is None else f"has a non-string ({type(value).__name__})"
            raise InputError(
                f"question {question_id!r}, profile item {item.get('id')!r}: "
                f"{what} {field!r} field, which {task.name} ranks on"
            )
        parts.append(value)
    text = " ".join(parts)
    if use_date:
        text = f"{text} date: {item_date_text(item, question_id)}"
    return text


def item_texts(
    task: TaskSpec, profile: Sequence[Mapping[str, Any]], question_id: str, use_date: bool
) -> list[str]:
    """``item_text`` for a whole profile; the common case (all fields strings) without a call
    per item, and ``item_text``'s checks and messages when anything is off."""
    if not use_date:
        fields = task.profile_text
        try:
            if len(fields) == 1:
                (field,) = fields
                texts = [item[field] for item in profile]
                if all(type(t) is str for t in texts):
                    return texts
            else:
                return [" ".join([item[f] for f in fields]) for item in profile]
        except (KeyError, TypeError):
            pass
    return [item_text(task, item, question_id, use_date) for item in profile]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_DATE = re.compile(r"\d+(?:-\d+)*")


def item_date_text(item: Mapping[str, Any], question_id: str) -> str:
    date = item.get("date")
    if isinstance(date, int) and not isinstance(date, bool):
        date = str(date)
    if not isinstance(date, str) or not _DATE.fullmatch(date.strip()):
        problem = "has no date" if date is None else f"has a malformed date {date!r}"
        raise InputError(
            f"question {question_id!r}, profile item {item.get('id')!r}: {problem} "
            "(expected YYYY, YYYY-MM or YYYY-MM-DD)"
        )
    return date.strip()


def parse_date(item: Mapping[str, Any], question_id: str) -> tuple[int, ...]:
    """Dates as integer tuples split on ``-``, as the reference does: 2012 < 2012-03-06."""
    return tuple(int(part) for part in item_date_text(item, question_id).split("-"))
