"""``lampctl.merge`` on real files: each set's questions with their profiles in ranked order
and their gold outputs, checked against a plain loop written here from the description
(docs/inspecting.md: the reference's ``merge_with_rank.py``)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from synth import SynthSpec, user_split

from lampctl.errors import InputError
from lampctl.merge import merge_set, merged_path


def _files(tmp_path: Path, questions: int = 12) -> tuple[Path, Path, Path, list, dict]:
    data = user_split(3, SynthSpec(questions=questions, profile_min=1, profile_max=9))
    rng = random.Random(5)
    ranking = {}
    for q in data:
        ids = [str(item["id"]) for item in q["profile"]]
        rng.shuffle(ids)
        ranking[q["id"]] = ids
    golds = {q["id"]: str(rng.randint(1, 5)) for q in data}
    qpath, rpath, opath = tmp_path / "q.json", tmp_path / "r.json", tmp_path / "o.json"
    qpath.write_text(json.dumps(data))
    rpath.write_text(json.dumps(ranking))
    opath.write_text(json.dumps({"task": "LaMP_3", "golds": [
        {"id": k, "output": v} for k, v in golds.items()]}))  # fmt: skip
    return qpath, rpath, opath, data, {"ranking": ranking, "golds": golds}


def _reference(data: list, ranking: dict | None, golds: dict | None, top_k: int | None) -> list:
    out = []
    for q in data:
        record = dict(q)
        if ranking is None:
            profile = list(q["profile"])
        else:
            profile = []
            for pid in ranking[q["id"]]:
                for item in q["profile"]:
                    if str(item["id"]) == pid:
                        profile.append(item)
        record["profile"] = profile if top_k is None else profile[:top_k]
        if golds is not None:
            record["output"] = golds[q["id"]]
        out.append(record)
    return out


@pytest.mark.parametrize(("top_k", "fmt"), [(None, "json"), (3, "json"), (2, "jsonl")])
def test_merged_equals_a_plain_loop(tmp_path, top_k, fmt):
    qpath, rpath, opath, data, made = _files(tmp_path)
    out = tmp_path / f"m.{fmt}"
    result = merge_set(qpath, rpath, opath, out, top_k=top_k, fmt=fmt)
    assert (result.status, result.questions, result.ranked) == ("merged", len(data), True)
    text = out.read_text()
    got = json.loads(text) if fmt == "json" else [json.loads(line) for line in text.splitlines()]
    assert got == _reference(data, made["ranking"], made["golds"], top_k)
    if fmt == "json":  # the bytes of one json.dumps of the whole list
        assert text == json.dumps(got, ensure_ascii=False)


def test_without_ranking_or_golds_the_profile_keeps_its_order(tmp_path):
    qpath, _, _, data, _ = _files(tmp_path)
    result = merge_set(qpath, None, None, tmp_path / "m.json", top_k=2)
    assert not result.ranked and not result.with_outputs
    assert json.loads((tmp_path / "m.json").read_text()) == _reference(data, None, None, 2)


def test_a_rerun_is_up_to_date_until_an_input_changes(tmp_path):
    qpath, rpath, opath, _, made = _files(tmp_path)
    out = tmp_path / "m.json"
    assert merge_set(qpath, rpath, opath, out).status == "merged"
    assert merge_set(qpath, rpath, opath, out).status == "up to date"
    golds = made["golds"]
    first = next(iter(golds))
    golds[first] = "changed"
    opath.write_text(json.dumps({"task": "LaMP_3", "golds": [
        {"id": k, "output": v} for k, v in golds.items()]}))  # fmt: skip
    assert merge_set(qpath, rpath, opath, out).status == "merged"
    assert json.loads(out.read_text())[0]["output"] == "changed"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("unknown", "which its profile does not have"),
        ("twice", "twice"),
        ("short", "leaves out 1 of"),
        ("missing", "no ranking for question"),
    ],
)
def test_a_bad_ranking_is_one_error_naming_the_question(tmp_path, change, message):
    qpath, rpath, opath, data, made = _files(tmp_path)
    ranking = made["ranking"]
    qid = next(q["id"] for q in data if len(q["profile"]) >= 2)
    if change == "unknown":
        ranking[qid] = [*ranking[qid][:-1], "no-such-item"]
    elif change == "twice":
        ranking[qid] = [ranking[qid][0], *ranking[qid][:-1]]
    elif change == "short":
        ranking[qid] = ranking[qid][:-1]
    else:
        del ranking[qid]
    rpath.write_text(json.dumps(ranking))
    out = tmp_path / "m.json"
    with pytest.raises(InputError) as caught:
        merge_set(qpath, rpath, opath, out)
    assert message in str(caught.value) and repr(qid) in str(caught.value)
    assert not out.exists() and not list(tmp_path.glob(".m.json*"))  # nothing half-written


def test_merged_names_never_collide():
    default = Path("dev_questions_merged.json")
    names = {
        merged_path(default, top_k, fmt, ranked)
        for top_k in (None, 4) for fmt in ("json", "jsonl") for ranked in (True, False)
    }  # fmt: skip
    assert len(names) == 8
    name = merged_path(default, 4, "jsonl", False).name
    assert name == "dev_questions_merged_unranked_top4.jsonl"
