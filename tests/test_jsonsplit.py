"""A questions file decoded in several processes (lampctl.io.jsonsplit) against one msgspec decode
of the whole file: the same questions, or a refusal that sends the caller back to one process."""

from __future__ import annotations

import json
import random
from pathlib import Path

import msgspec
import pytest

from lampctl.errors import InputError
from lampctl.io import jsonsplit
from lampctl.peftdata.rows import PeftQuestion, read_questions

TRICKY = [
    'a "quoted" }, {"id": "q9", "profile": [] } inside',
    'back\\slash \\"profile\\": [{ and a brace }',
    "ünïcödé, emoji \U0001f600, and a line\nbreak",
    '"profile": [{"id": 1}], "user_id": 3}, {"id": "fake"',
    "",
]


def _questions(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    questions = []
    for number in range(count):
        profile = [
            {
                "id": f"{number}-{i}",
                "text": rng.choice(TRICKY) + " " * rng.randint(0, 3),
                "nested": {"list": [1, [2, {"x": "}]"}]], "e": {}, "empty": []},
                "score": rng.choice([1, 2.5, None, True]),
            }
            for i in range(rng.randint(0, 6))
        ]
        question: dict = {"id": number if number % 5 == 0 else f"q{number}", "input": TRICKY[0]}
        if number % 3:
            question["user_id"] = rng.randint(1, 4)  # before or after the profile, or none
        question["profile"] = profile
        if number % 4 == 1:
            question["late"] = {"user": [None, "]"]}
        questions.append(question)
    return questions


def _write(path: Path, questions: list[dict], layout: str) -> Path:
    if layout == "compact":
        path.write_text(json.dumps(questions, separators=(",", ":"), ensure_ascii=False))
    elif layout == "indent":
        path.write_text("\n  " + json.dumps(questions, indent=2) + "\n")
    else:
        path.write_text(json.dumps(questions))
    return path


def _as_tuples(questions: list[PeftQuestion]) -> list[tuple]:
    return [(q.id, bytes(q.input), bytes(q.profile), q.user_id) for q in questions]


def _one_process(path: Path) -> list[tuple]:
    return _as_tuples(msgspec.json.decode(path.read_bytes(), type=list[PeftQuestion]))


@pytest.mark.parametrize("layout", ["compact", "dumps", "indent"])
@pytest.mark.parametrize("parts", [2, 3, 7])
def test_pieces_give_the_whole_files_questions(tmp_path, layout, parts):
    path = _write(tmp_path / "questions.json", _questions(60, seed=parts), layout)
    data = path.read_bytes()
    cuts = jsonsplit.find_cuts(data, parts, jsonsplit.anchor_pattern(b'"profile"'))
    assert len(cuts) == parts - 1  # the file really is cut, once per extra process
    assert all(data[c : c + 1] == b"," for c in cuts)
    decoded = jsonsplit.decode_parts(path, PeftQuestion, b'"profile"', parts)
    assert decoded is not None
    assert _as_tuples(decoded) == _one_process(path)


def test_a_cut_that_is_not_between_questions_is_refused(tmp_path):
    # items with a "profile" key of their own: the cut found from the middle of the first
    # question's profile falls between two items, so that piece cannot decode
    items = [{"id": str(i), "profile": {"a": [i]}, "text": "t"} for i in range(400)]
    questions = [{"id": "q0", "input": "x", "profile": items}, {"id": "q1", "input": "y",
                 "profile": []}]  # fmt: skip
    path = _write(tmp_path / "questions.json", questions, "dumps")
    assert jsonsplit.find_cuts(path.read_bytes(), 2, jsonsplit.anchor_pattern(b'"profile"'))
    assert jsonsplit.decode_parts(path, PeftQuestion, b'"profile"', 2) is None
    # the reader then decodes it in one process
    assert _as_tuples(read_questions(path, parts=2)) == _one_process(path)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[:-2],  # cut short
        lambda data: data[: len(data) * 3 // 4] + b"\xff" + data[len(data) * 3 // 4 + 1 :],
        lambda data: data + b" []",  # something after the list
    ],
    ids=["truncated", "bad-utf8", "trailing"],
)
def test_a_broken_file_is_refused_and_named_by_the_one_process_reader(tmp_path, damage):
    path = _write(tmp_path / "questions.json", _questions(40), "dumps")
    path.write_bytes(damage(path.read_bytes()))
    assert jsonsplit.decode_parts(path, PeftQuestion, b'"profile"', 3) is None
    with pytest.raises(InputError, match=str(path)):
        read_questions(path, parts=3)


def test_a_file_without_the_anchor_key_is_not_split(tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([{"id": i, "input": "x", "items": []} for i in range(50)]))
    assert jsonsplit.find_cuts(path.read_bytes(), 4, jsonsplit.anchor_pattern(b'"profile"')) == []
    assert jsonsplit.decode_parts(path, PeftQuestion, b'"profile"', 4) is None


def test_part_count_needs_enough_bytes_per_process():
    size = jsonsplit.MIN_PART_BYTES
    assert jsonsplit.part_count(size * 10, 4) == 4
    assert jsonsplit.part_count(size * 2 + 1, 16) == 2
    assert jsonsplit.part_count(size - 1, 16) == 1
    assert jsonsplit.part_count(size * 10, 0) == 1
