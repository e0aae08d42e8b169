"""The paper's retrieval-augmented model inputs (LaMP ``prompts.py``), string for string.

For each question the first k items of its ranked profile are packed into the input under a
token budget, with the task's frames from the registry (``prompt:`` in configs/tasks.yaml).
The arithmetic is the reference's, quirks included (docs/reference.md, "Model inputs"):

    factor = 0.6; budget = max_length - min(len(tok(input)), int(factor * max_length))
    per = (budget - reserve - 2 * (m - 1) - len(tok(phrase))) // m
    for each item: need = len(tok(need frame)); kept = tok(text, max_length=per + saved - need)
                   saved += per - len(kept) - need; slot = decode(kept, skip_special_tokens)
    any exception: factor -= 0.1 and again; once factor < 0 the source is the bare input.

What is not the reference's is how the tokenizer is asked. The reference tokenizes every item
in full, one call each. Here each distinct text is tokenized once per run, in batches, and only
as far as any truncation can reach: ``tok(text, max_length=L, truncation=True)`` is the text's
first ``L - s`` tokens between its ``s`` special tokens (right truncation, ``L >= s``), and ``L``
never exceeds ``max_length``. Texts are cut before a whitespace for that first tokenization;
for the whitespace-splitting pre-tokenizers this is used with (BERT, Metaspace, ByteLevel,
Whitespace) a cut there cannot change the tokens before it. Any other tokenizer, and every call
with ``L < s`` (where tokenizers do not truncate, or fail), goes to the tokenizer as the
reference calls it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from lampctl.catalog.tasks import PromptSpec
from lampctl.errors import InputError
from lampctl.inputs.tokenizer import ModelTokenizer

START_FACTOR = 0.6
FACTOR_STEP = 0.1
_WHITESPACE_SPLITTING = {
    "BertPreTokenizer",
    "Whitespace",
    "WhitespaceSplit",
    "Metaspace",
    "ByteLevel",
}
_CUT = re.compile(r"\S(?=\s)")
_WORD = re.compile(r"[^\W_]\S*")  # a letter or digit, up to the next whitespace
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# --------------------------------------------------------------------------- tokenizer


class CountingTokenizer:
    """The tokenizer calls the reference makes, answered from one batched tokenization of each
    distinct text (see the module docstring for why the answers are the same)."""

    def __init__(self, tokenizer: ModelTokenizer) -> None:
        self.tokenizer = tokenizer
        self.special = tokenizer.special
        # text -> (its first content ids, whether that is all of them)
        self._content: dict[str, tuple[list[int], bool]] = {}
        self._lengths: dict[str, int] = {}  # exact len(tok(s)) of frames and phrases
        self._long: dict[str, int] = {}  # texts known to have at least this many tokens
        self._chars_per_token = 6.0  # a first guess, then learned from the data
        backend = tokenizer.backend
        self.sliceable = backend is not None and tokenizer.right_truncation
        pre = repr(backend.pre_tokenizer) if backend is not None else ""
        names = set(re.findall(r"([A-Za-z]+)\(", pre))
        self.prefix_safe = bool(names) and names <= _WHITESPACE_SPLITTING | {"Sequence"}
        self._backend = backend if self.sliceable else None
        self._backend_checked = tokenizer.verified
        self.calls = 0

    # ---- batched work

    def prime_texts(self, caps: dict[str, int]) -> None:
        """Content ids (no special tokens) of each text, at least ``cap`` of them (all, when the
        text has fewer); a text already known that far is not tokenized again."""
        todo = {}
        for text, cap in caps.items():
            known = self._content.get(text)
            if known is None or (not known[1] and len(known[0]) < cap):
                todo[text] = max(cap, 1)
        factor = 1.0
        while todo:
            texts = list(todo)
            cut = []
            for text in texts:
                limit = int(todo[text] * self._chars_per_token * factor) + 16
                match = _CUT.search(text, limit) if self.prefix_safe and len(text) > limit else None
                cut.append(text[: match.end()] if match else text)
            ratios = []
            for text, short, ids in zip(texts, cut, self._encode(cut), strict=True):
                complete = len(short) == len(text)
                if not complete and ids:
                    ratios.append(len(short) / len(ids))
                if complete or len(ids) >= todo[text]:
                    self._content[text] = (ids, complete)
                    del todo[text]
            if ratios:  # learn how many characters a token takes in this data
                ratios.sort()
                self._chars_per_token = max(2.0, ratios[int(0.95 * (len(ratios) - 1))] * 1.05)
            factor *= 2  # too few tokens in the prefix (a sparse text): a longer one

    def prime_lengths(self, strings: Sequence[str]) -> None:
        """Exact ``len(tok(s))`` (special tokens included) for short strings: frames, phrases."""
        todo = [s for s in dict.fromkeys(strings) if s not in self._lengths]
        if todo:
            for s, ids in zip(todo, self._encode(todo), strict=True):
                self._lengths[s] = self.special + len(ids)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        """Content ids, in one batched call. The tokenizers backend is called directly where
        the first batch shows it answers exactly as the transformers call does."""
        self.calls += 1
        if self._backend is not None:
            backend = self._backend
            backend.no_truncation()
            backend.no_padding()
            encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
            ids = [e.ids for e in encode(texts, add_special_tokens=False)]
            if not self._backend_checked:
                sample = texts[:64]
                plain = self.tokenizer.full(sample, add_special_tokens=False)["input_ids"]
                self._backend_checked = True
                if [list(x) for x in plain] != ids[: len(sample)]:
                    self._backend = None
                    return self._encode(texts)
            return ids
        full = self.tokenizer.full
        return [list(x) for x in full(texts, add_special_tokens=False)["input_ids"]]

    def surely_longer(self, text: str, tokens: int) -> bool:
        """Whether ``text`` certainly has at least ``tokens`` content tokens, without tokenizing
        it: under a whitespace-splitting pre-tokenizer every whitespace-separated word with a
        letter or digit in it becomes at least one token."""
        if not self.prefix_safe or len(text) < tokens:
            return False
        if text.isascii() and not _ASCII_CONTROL.search(text):
            # Plain ASCII: every whitespace-separated word is printable and so a token or more.
            if len(text.split(None, tokens)) <= tokens:
                return False
        elif sum(1 for _ in islice(_WORD.finditer(text), tokens)) < tokens:
            return False
        self._long[text] = tokens  # a lower bound: all that min(len, cap) needs
        return True

    # ---- the reference's calls

    def length(self, text: str) -> int:
        """``len(tok(text))``, exact for frames and phrases; for a primed text exact up to the
        cap it was primed with (enough for ``min(len, int(factor * max_length))``)."""
        if text in self._lengths:
            return self._lengths[text]
        known = self._content.get(text)
        if known is None:
            if text in self._long:
                return self.special + self._long[text]
            self.prime_lengths([text])
            return self._lengths[text]
        return self.special + len(known[0])

    def truncate(self, text: str, limit: int) -> tuple[int, list[int], bool]:
        """``tok(text, max_length=limit, truncation=True)``: (its length, ids to decode, whether
        the text was cut)."""
        if not self.sliceable or limit < self.special:
            self.calls += 1
            tokenizer = self.tokenizer.full
            ids = tokenizer(text, max_length=limit, truncation=True)["input_ids"]
            full = tokenizer(text)["input_ids"] if limit >= 0 else ids
            return len(ids), list(ids), len(ids) < len(full)
        room = limit - self.special
        known = self._content.get(text)
        if known is None or (not known[1] and len(known[0]) <= room):
            self.prime_texts({text: room + 1})
            known = self._content[text]
        content = known[0]
        kept = content[:room]
        return self.special + len(kept), kept, len(content) > room

    def decode(self, batches: list[list[int]]) -> list[str]:
        """``batch_decode(..., skip_special_tokens=True)``, by the backend in one call where
        that is known to be what transformers does (``ModelTokenizer.backend_decodes``)."""
        if not batches:
            return []
        if self.tokenizer.backend_decodes:
            return list(self.tokenizer.backend.decode_batch(batches, skip_special_tokens=True))
        return list(self.tokenizer.full.batch_decode(batches, skip_special_tokens=True))


# --------------------------------------------------------------------------- one question


@dataclass(frozen=True)
class Built:
    source: str
    truncated: bool  # an item's text was cut, or the source fell back to the bare input
    # The source's length as the reference's budget counts it: the input's tokens (as far as
    # min(len, int(factor * max_length)) reads them) plus the items' kept and frame tokens,
    # the separators and the fixed phrase.
    tokens: int = 0


def item_values(
    spec: PromptSpec,
    item: dict[str, Any],
    question_id: str,
    name: str,
    numbers: tuple[str, ...] = (),
) -> dict[str, Any]:
    """The item's fields the frames use, as text (``numbers``: fields that may be numbers,
    written as Python writes them: a rating 5.0 reads "5.0", as LongLaMP's f-strings do)."""
    values = {}
    for key in spec.item_fields:
        value = item.get(key)
        if key in numbers and isinstance(value, int | float) and not isinstance(value, bool):
            values[key] = str(value)
            continue
        if key not in item or item[key] is None:
            raise InputError(
                f"{name}: question {question_id!r}, profile item {item.get('id')!r} has no "
                f"{key!r} field, which the prompt needs"
            )
        if not isinstance(item[key], str):  # str.format would paste a list's or dict's repr
            raise InputError(
                f"{name}: question {question_id!r}, profile item {item.get('id')!r}: "
                f"{key!r} is a {type(item[key]).__name__}, not text"
            )
        values[key] = item[key]
    return values


def need_frame(spec: PromptSpec, values: dict[str, Any]) -> str | None:
    if spec.need_tokens is not None:
        return None
    if spec.need_frame is not None:
        return spec.need_frame.format(**values)
    return spec.frame.format(**{**values, "text": " "})


def build_source(
    spec: PromptSpec,
    question_input: str,
    items: list[dict[str, Any]],
    max_length: int,
    tokens: CountingTokenizer,
) -> tuple[Built, list[list[int]] | None, list[dict[str, Any]]]:
    """The reference's prompt for one question: (result with items still to decode, the ids to
    decode, the items' values). Decoding is batched by the caller."""
    m = len(items)
    if m == 0:  # the reference divides by zero at every factor, then gives the bare input
        return Built(question_input, True, tokens.length(question_input)), None, []
    phrase = tokens.length(spec.phrase) if spec.phrase else 0
    factor = START_FACTOR
    while True:
        budget = max_length - min(tokens.length(question_input), int(factor * max_length))
        try:
            per = (budget - spec.reserve - 2 * (m - 1) - phrase) // m
            saved = 0
            kept_ids: list[list[int]] = []
            cut = False
            used = max_length - budget + spec.reserve + 2 * (m - 1) + phrase
            for values in items:
                frame = need_frame(spec, values)
                need = spec.need_tokens if frame is None else tokens.length(frame)
                length, ids, was_cut = tokens.truncate(values[spec.field], per + saved - need)
                saved += per - length - need
                kept_ids.append(ids)
                cut = cut or was_cut
                used += length + need
            return Built("", cut, used), kept_ids, items
        except Exception:  # as the reference: any failure lowers the factor and tries again
            factor -= FACTOR_STEP
            if factor < 0:
                return Built(question_input, True, tokens.length(question_input)), None, []


def assemble(spec: PromptSpec, question_input: str, slots: list[str], items: list[dict]) -> str:
    parts = [
        spec.frame.format(**{**values, "text": slot})
        for slot, values in zip(slots, items, strict=True)
    ]
    joined = spec.joiner.join(parts)
    if spec.insert_after is not None:
        at = question_input.find(spec.insert_after)
        if at == -1:
            return question_input
        end = at + len(spec.insert_after)
        return question_input[:end] + spec.joiner + joined + question_input[end:]
    assert spec.source is not None
    return spec.source.format(items=joined, input=question_input)


def prime_first_attempt(
    spec: PromptSpec,
    tokens: CountingTokenizer,
    questions: list[tuple[str, list[dict[str, Any]]]],
    max_length: int,
    phrase: int,
) -> None:
    """Tokenize, item position by item position across the chunk, just the tokens the first
    attempt (factor 0.6) will read of each item: its truncation length is known once the items
    before it are. Retries, rare, tokenize further on demand."""
    state = []
    for question_input, items in questions:
        m = len(items)
        if m:
            used = min(tokens.length(question_input), int(START_FACTOR * max_length))
            per = (max_length - used - spec.reserve - 2 * (m - 1) - phrase) // m
            state.append([per, 0, items])
    position = 0
    while state:
        caps: dict[str, int] = {}
        limits = []
        for per, saved, items in state:
            values = items[position]
            frame = need_frame(spec, values)
            need = spec.need_tokens if frame is None else tokens.length(frame)
            limit = per + saved - need
            limits.append((limit, need))
            if limit >= tokens.special:
                text = values[spec.field]
                caps[text] = max(caps.get(text, 0), limit - tokens.special + 1)
        tokens.prime_texts(caps)
        following = []
        for entry, (limit, need) in zip(state, limits, strict=True):
            if limit < 0:
                continue  # the first attempt fails here; the retry asks on demand
            length, _, _ = tokens.truncate(entry[2][position][spec.field], limit)
            entry[1] += entry[0] - length - need
            if position + 1 < len(entry[2]):
                following.append(entry)
        state = following
        position += 1
