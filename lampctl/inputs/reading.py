"""Reading ranked questions for prompts: each question's input and its first k ranked items,
decoded from the mapped questions file (the rest of the profile stays raw bytes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec

from lampctl.errors import InputError
from lampctl.io import fastjson

# --------------------------------------------------------------------------- one file


@dataclass(frozen=True)
class PromptQuestion:
    id: str
    input: str
    items: list[dict[str, Any]]  # the first k ranked items, decoded


def read_prompt_questions(
    questions_path: Path,
    ranking_path: Path | None,
    k: int,
) -> list[PromptQuestion]:
    """Each question with its first k ranked items (or profile order without a ranking)."""
    return [q for part in prompt_question_chunks(questions_path, ranking_path, k) for q in part]


def prompt_question_chunks(
    questions_path: Path,
    ranking_path: Path | None,
    k: int,
    chunk: int = 512,
    part: tuple[int, int] = (0, 1),
) -> Iterator[list[PromptQuestion]]:
    """``read_prompt_questions`` a chunk at a time (of part ``i`` of ``n`` equal runs of
    questions, for worker ``i`` of ``n``). Only what is used is decoded: each question's input
    and first k ranked items; the rest stays raw bytes, viewed in the mapped file."""
    from lampctl.io.data import load_questions, map_bytes
    from lampctl.io.fastjson import RawQuestion

    name = str(questions_path)
    raw = map_bytes(questions_path, "questions file")
    try:
        questions = msgspec.json.decode(raw, type=list[RawQuestion])
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        load_questions(questions_path)  # names the problem in the usual words
        raise InputError(f"{name}: {exc}") from None
    picker = _Picker(name, ranking_path, k)
    out: list[PromptQuestion] = []
    seen: set[str] = set()
    worker, workers = part
    first, end = len(questions) * worker // workers, len(questions) * (worker + 1) // workers
    for question in islice(questions, first, end):
        if len(out) == chunk:
            yield out
            out = []
        qid = str(question.id)
        if qid in seen:
            raise InputError(f"{name}: duplicate question id {qid!r}")
        seen.add(qid)
        try:
            out.append(picker.pick(qid, question.input, question.profile))
        except UnicodeDecodeError:  # bytes are checked as far as they are decoded
            load_questions(questions_path)  # names the byte and its offset
            raise InputError(f"{name}: question {qid!r} is not UTF-8 text") from None
    if out:
        yield out


class _Picker:
    """A question's input and its first k ranked items (profile order without a ranking),
    decoded from raw JSON; items are decoded only as far as finding the ranked ids needs."""

    def __init__(self, name: str, ranking_path: Path | None, k: int) -> None:
        from lampctl.io.data import read_bytes
        from lampctl.io.fastjson import ItemId

        self.name, self.ranking_path, self.k = name, ranking_path, k
        self.ranking: dict[str, list[str | int]] | None = None
        if ranking_path is not None:
            try:
                self.ranking = fastjson.decode(
                    read_bytes(ranking_path, "ranking file"),
                    msgspec.json.Decoder(dict[str, list[str | int]]),
                )
            except UnicodeDecodeError as exc:
                raise InputError(f"{ranking_path}: not UTF-8 text (offset {exc.start})") from None
            except msgspec.DecodeError as exc:
                raise InputError(
                    f"{ranking_path}: not a {{question id: [profile ids]}} ranking: {exc}"
                ) from None
        self.item_id = msgspec.json.Decoder(ItemId)
        self.items = msgspec.json.Decoder(list[msgspec.Raw])
        self.text = msgspec.json.Decoder(str)

    def pick(self, qid: str, raw_input: bytes, raw_profile: bytes) -> PromptQuestion:
        name = self.name
        try:
            profile = fastjson.decode(raw_profile, self.items)
        except msgspec.DecodeError:
            raise InputError(f"{name}: question {qid!r} has no 'profile' list") from None
        try:
            question_input = fastjson.decode(raw_input, self.text)
        except msgspec.DecodeError:
            raise InputError(f"{name}: question {qid!r} has no string 'input'") from None
        if self.ranking is None:
            chosen = profile[: self.k]
        else:
            chosen = [profile[i] for i in self._ranked_positions(qid, profile)]
        return PromptQuestion(qid, question_input, [fastjson.decode(i) for i in chosen])

    def _ranked_positions(self, qid: str, profile: list[Any]) -> list[int]:
        assert self.ranking is not None
        ranked = self.ranking.get(qid)
        if ranked is None:
            raise InputError(f"{self.ranking_path}: no ranking for question {qid!r}")
        wanted = [str(i) for i in ranked[: self.k]]
        if len(set(wanted)) != len(wanted):
            raise InputError(f"{self.ranking_path}: question {qid!r} ranks an item twice")
        position: dict[str, int] = {}
        looking = set(wanted)
        for index, item in enumerate(profile):  # until the k ranked ids are found
            try:
                found = str(fastjson.decode(item, self.item_id).id)
            except msgspec.DecodeError:
                raise InputError(
                    f"{self.name}: question {qid!r}, profile item #{index} has no string 'id'"
                ) from None
            if found in looking:
                position[found] = index
                looking.discard(found)
                if not looking:
                    break
        missing = [i for i in wanted if i not in position]
        if missing:
            raise InputError(
                f"{self.ranking_path}: question {qid!r} ranks profile id {missing[0]!r}, which "
                "its profile does not have"
            )
        return [position[i] for i in wanted]
