"""Sources for a chunk of questions at a time with one counting tokenizer, their stats, and
the JSONL rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lampctl.catalog.tasks import TaskSpec
from lampctl.errors import InputError
from lampctl.inputs.packing import (
    START_FACTOR,
    Built,
    CountingTokenizer,
    assemble,
    build_source,
    item_values,
    need_frame,
    prime_first_attempt,
)
from lampctl.inputs.reading import PromptQuestion
from lampctl.inputs.tokenizer import ModelTokenizer


@dataclass(frozen=True)
class PromptStats:
    questions: int
    hit_budget: int
    bare_input: int
    mean_tokens: float
    max_tokens: int
    over_max_length: int
    tokenizer_calls: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def combine(cls, parts: Sequence[Tally]) -> PromptStats:
        """The stats of a file from those of its parts (in any order)."""
        counted = sum(p.counted for p in parts)
        total = sum(p.total_tokens for p in parts)
        return cls(
            questions=sum(p.questions for p in parts),
            hit_budget=sum(p.hit_budget for p in parts),
            bare_input=sum(p.bare_input for p in parts),
            mean_tokens=round(total / counted, 2) if counted else 0.0,
            max_tokens=max((p.max_tokens for p in parts), default=0),
            over_max_length=sum(p.over_max_length for p in parts),
            tokenizer_calls=sum(p.tokenizer_calls for p in parts),
        )


@dataclass
class Tally:
    """What ``PromptStats`` sums up, as a builder counts it."""

    questions: int = 0
    hit_budget: int = 0
    bare_input: int = 0
    counted: int = 0  # sources with a token count (all, with a tokenizer)
    total_tokens: int = 0
    max_tokens: int = 0
    over_max_length: int = 0
    tokenizer_calls: int = 0


class PromptBuilder:
    """Sources a chunk of questions at a time, in question order, with one ``CountingTokenizer``
    for the whole file (a text that recurs across chunks is tokenized once); ``stats`` sums up
    the chunks so far. ``tokenizer`` None: the bare inputs."""

    def __init__(
        self, task: TaskSpec, tokenizer: ModelTokenizer | None, max_length: int, name: str
    ) -> None:
        if task.prompt is None:
            raise InputError(f"{task.name} has no prompt in the task registry")
        self.spec = task.prompt
        self.max_length = max_length
        self.name = name
        self.tokens = CountingTokenizer(tokenizer) if tokenizer is not None else None
        self.phrase = 0
        if self.tokens is not None and self.spec.phrase:
            self.tokens.prime_lengths([self.spec.phrase])
            self.phrase = self.tokens.length(self.spec.phrase)
        self.input_cap = int(START_FACTOR * max_length) + 1  # all min(len, int(f * max)) reads
        self.numbers = task.number_fields
        self.tally = Tally()
        # The ranked style's round trip: tok(text, max_length=None, truncation=True) cuts at
        # the tokenizer's model_max_length (none when it is transformers' "unset" sentinel).
        # (read only for that style: the full tokenizer is transformers', which LaMP's budget
        # path does without once the tokenizer's verdict is cached)
        ranked = tokenizer is not None and self.spec.style == "ranked"
        limit = int(getattr(tokenizer.full, "model_max_length", 0) or 0) if ranked else 0
        self.round_trip = limit if 0 < limit < UNSET_MAX_LENGTH else UNSET_MAX_LENGTH

    def add(self, questions: Sequence[PromptQuestion]) -> list[str]:
        tally = self.tally
        tally.questions += len(questions)
        tokens = self.tokens
        if tokens is None:
            return [q.input for q in questions]
        if self.spec.style == "ranked":
            return self._ranked(questions, tokens)
        spec, max_length = self.spec, self.max_length
        values_of = [
            [item_values(spec, item, q.id, self.name, self.numbers) for item in q.items]
            for q in questions
        ]
        inputs = [q.input for q in questions]
        cap = self.input_cap
        tokens.prime_texts({t: cap for t in inputs if not tokens.surely_longer(t, cap)})
        frames = [need_frame(spec, v) for values in values_of for v in values]
        tokens.prime_lengths([f for f in frames if f is not None])
        prime_first_attempt(
            spec, tokens, list(zip(inputs, values_of, strict=True)), max_length, self.phrase
        )
        pending: list[tuple[Built, list[dict[str, Any]] | None]] = []
        to_decode: list[list[int]] = []
        for question_input, values in zip(inputs, values_of, strict=True):
            built, ids, items = build_source(spec, question_input, values, max_length, tokens)
            tally.counted += 1
            tally.total_tokens += built.tokens
            tally.max_tokens = max(tally.max_tokens, built.tokens)
            tally.over_max_length += built.tokens > max_length
            pending.append((built, None if ids is None else items))
            if ids is not None:
                to_decode.extend(ids)
        slots = tokens.decode(to_decode)
        offset = 0
        sources = []
        for question_input, (built, items) in zip(inputs, pending, strict=True):
            if items is None:
                sources.append(built.source)
                tally.bare_input += 1
            else:
                sources.append(
                    assemble(spec, question_input, slots[offset : offset + len(items)], items)
                )
                offset += len(items)
            tally.hit_budget += built.truncated
        tally.tokenizer_calls = tokens.calls
        return sources

    def _ranked(self, questions: Sequence[PromptQuestion], tokens: CountingTokenizer) -> list[str]:
        """LongLaMP's prompts (``create_prompt_generator(..., is_ranked=True)``): each of the
        question's items framed whole, its long field cut to ``words`` words and put through
        the tokenizer and back, joined by the joiner, then the task's tail and the input."""
        spec, tally = self.spec, self.tally
        values_of = [
            [item_values(spec, item, q.id, self.name, self.numbers) for item in q.items]
            for q in questions
        ]
        texts = [_first_words(v[spec.field], spec.words) for vs in values_of for v in vs]
        if tokens.sliceable:  # every text's tokens in one batched call, as far as the cut
            tokens.prime_texts(dict.fromkeys(texts, self.round_trip - tokens.special + 1))
        kept = []
        for text in texts:
            _, ids, cut = tokens.truncate(text, self.round_trip)
            kept.append(ids)
            tally.hit_budget += cut
        slots = tokens.decode(kept)
        sources, offset = [], 0
        for question, values in zip(questions, values_of, strict=True):
            sources.append(assemble(spec, question.input, slots[offset : offset + len(values)],
                                    values))  # fmt: skip
            offset += len(values)
        tokens.prime_lengths(sources)  # each source's length, for the stats (one batch)
        for source in sources:
            length = tokens.length(source)
            tally.counted += 1
            tally.total_tokens += length
            tally.max_tokens = max(tally.max_tokens, length)
            tally.over_max_length += length > self.max_length
        tally.tokenizer_calls = tokens.calls
        return sources

    def stats(self) -> PromptStats:
        return PromptStats.combine([self.tally])


UNSET_MAX_LENGTH = 10**9  # transformers' VERY_LARGE_INTEGER stands for "no limit" above this


def _first_words(text: str, words: int | None) -> str:
    """The official abstract cut: its first ``words`` whitespace words, joined by one space
    (every text, cut or not, is re-joined so, as ``' '.join(text.split()[:750])`` does)."""
    return text if words is None else " ".join(text.split()[:words])


def build_prompts(
    task: TaskSpec,
    questions: list[PromptQuestion],
    tokenizer: ModelTokenizer | None,
    max_length: int,
    name: str,
    chunk: int = 512,
) -> tuple[list[str], PromptStats]:
    """Sources for every question, in order (``tokenizer`` None: the bare inputs)."""
    builder = PromptBuilder(task, tokenizer, max_length, name)
    sources: list[str] = []
    for start in range(0, len(questions), chunk):
        sources.extend(builder.add(questions[start : start + chunk]))
    return sources, builder.stats()


def read_golds(path: Path | None, task: TaskSpec | None = None) -> dict[str, Any] | None:
    if path is None:
        return None
    from lampctl.io.data import load_outputs

    return load_outputs(path, task)


def render_rows(
    questions: list[PromptQuestion], sources: list[str], golds: dict[str, Any] | None, name: str
) -> str:
    lines = []
    for question, source in zip(questions, sources, strict=True):
        row: dict[str, Any] = {"id": question.id, "source": source}
        if golds is not None:
            if question.id not in golds:
                raise InputError(f"{name}: no gold output for question {question.id!r}")
            row["target"] = golds[question.id]
        lines.append(json.dumps(row, ensure_ascii=False))
    return "".join(line + "\n" for line in lines)
