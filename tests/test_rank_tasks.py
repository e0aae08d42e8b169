"""Every task and split, ranked through the CLI on files in the real layout, checked against
references written here independently of lampctl's registry."""

from __future__ import annotations

import json

import pytest
from conftest import PAPER_DEFAULTS, reference_scores
from rank_bm25 import BM25Okapi

# The LaMP reference's per-task rules (LaMP/rank_profiles.py), restated here from its description.
TEXT_FIELDS = {
    1: ("title", "abstract"),
    2: ("description",),
    3: ("text",),
    4: ("title", "text"),
    5: ("title", "abstract"),
    6: ("text",),
    7: ("text",),
}
MARKERS = {2: "description:", 3: "review:", 4: "article:", 5: ":", 6: ":", 7: ":"}
DEFAULTS = PAPER_DEFAULTS


def quoted_strings(text):
    """The reference's character loop over double quotes."""
    out, inside, current = [], False, ""
    for char in text:
        if char == '"':
            if inside:
                out.append(current)
                current = ""
            inside = not inside
        elif inside:
            current += char
    return out


def reference_query(task, text):
    if task == 1:
        strings = quoted_strings(text)
        return f"{strings[1]} {strings[2]}"
    marker = MARKERS[task]
    return text[text.find(marker) + len(marker) :].strip()


def reference_key(task, ranker, question, checkpoint):
    """Per-item sort keys (higher ranks first) from the reference's semantics."""
    profile = question["profile"]
    if ranker == "recency":
        return [tuple(map(int, item["date"].split("-"))) for item in profile]
    texts = [" ".join(item[f] for f in TEXT_FIELDS[task]) for item in profile]
    query = reference_query(task, question["input"])
    if ranker == "bm25":
        return list(BM25Okapi([t.split() for t in texts]).get_scores(query.split()))
    return reference_scores(checkpoint, query, texts)


def assert_equivalent(order, keys, ids, tolerance):
    """Same ids; adjacent pairs non-increasing by reference key; ties: later item first."""
    assert sorted(order) == sorted(ids)
    position = {pid: i for i, pid in enumerate(ids)}
    for a, b in zip(order, order[1:], strict=False):
        ka, kb = keys[position[a]], keys[position[b]]
        if isinstance(ka, tuple):
            assert ka > kb or (ka == kb and position[a] > position[b])
        else:
            assert ka >= kb - tolerance
            if ka == kb:
                assert position[a] > position[b]


@pytest.mark.parametrize("task", range(1, 8))
@pytest.mark.parametrize("split", ["user", "time"])
def test_every_task_and_split_with_its_default_ranker(cli, tree, tiny_bert, task, split):
    result = cli(
        "--json",
        "rank",
        "--task",
        f"LaMP_{task}",
        "--split",
        split,
        "--data-dir",
        tree,
        "--checkpoint",
        tiny_bert,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.err
    payload = json.loads(result.out)
    expected_ranker = DEFAULTS[task][0 if split == "user" else 1]
    assert payload["ranker"] == expected_ranker
    assert len(payload["files"]) == 3
    for set_name in ("train", "dev", "test"):
        folder = tree / split / f"LaMP_{task}"
        questions = json.loads((folder / f"{set_name}_questions.json").read_text())
        ranking = json.loads((folder / f"{set_name}_questions_rank.json").read_text())
        assert list(ranking) == [q["id"] for q in questions]
        for question in questions[:3]:
            keys = reference_key(task, expected_ranker, question, tiny_bert)
            ids = [item["id"] for item in question["profile"]]
            assert_equivalent(ranking[question["id"]], keys, ids, tolerance=1e-5)


@pytest.mark.parametrize("ranker", ["bm25", "recency"])
@pytest.mark.parametrize("task", [1, 3, 4, 5])
def test_ranker_override_every_question(cli, tree, task, ranker):
    result = cli("rank", "-t", str(task), "-r", ranker, "--set", "train", "--data-dir", tree)
    assert result.exit_code == 0, result.err
    folder = tree / "user" / f"LaMP_{task}"
    questions = json.loads((folder / "train_questions.json").read_text())
    ranking = json.loads((folder / "train_questions_rank.json").read_text())
    for question in questions:
        keys = reference_key(task, ranker, question, None)
        assert_equivalent(
            ranking[question["id"]], keys, [i["id"] for i in question["profile"]], tolerance=0.0
        )


def test_use_date_appends_the_date_to_ranked_text(cli, tree):
    result = cli(
        "rank",
        "-t",
        "5",
        "--use-date",
        "--input",
        tree / "user/LaMP_5/dev_questions.json",
        "--output",
        tree / "r.json",
    )
    assert result.exit_code == 0, result.err
    questions = json.loads((tree / "user/LaMP_5/dev_questions.json").read_text())
    ranking = json.loads((tree / "r.json").read_text())
    for question in questions:
        texts = [f"{i['title']} {i['abstract']} date: {i['date']}" for i in question["profile"]]
        scores = BM25Okapi([t.split() for t in texts]).get_scores(
            reference_query(5, question["input"]).split()
        )
        assert_equivalent(
            ranking[question["id"]],
            list(scores),
            [i["id"] for i in question["profile"]],
            tolerance=0.0,
        )


def test_input_output_top_k_and_task_spellings(cli, tree):
    source = tree / "user/LaMP_3/test_questions.json"
    for spelling in ("LaMP-3", "LaMP_3", "3", "lamp3"):
        out = tree / f"rank-{spelling}.json"
        result = cli(
            "rank",
            "--task",
            spelling,
            "--ranker",
            "bm25",
            "--input",
            source,
            "--output",
            out,
            "--top-k",
            "2",
        )
        assert result.exit_code == 0, result.err
        ranking = json.loads(out.read_text())
        assert all(len(ids) <= 2 for ids in ranking.values())
    assert len({(tree / f"rank-{s}.json").read_bytes() for s in ("LaMP-3", "3")}) == 1


def test_empty_profile_ranks_to_empty_list(cli, tmp_path):
    path = tmp_path / "q.json"
    path.write_text(json.dumps([{"id": "1", "input": "review: good", "profile": []}]))
    for ranker in ("bm25", "recency"):
        assert (
            cli("rank", "-t", "3", "-r", ranker, "-i", path, "-o", tmp_path / "o.json").exit_code
            == 0
        )
        assert json.loads((tmp_path / "o.json").read_text()) == {"1": []}


@pytest.mark.parametrize("split", ["user", "time"])
def test_worker_processes_rank_byte_identically(cli, tmp_path, monkeypatch, split):
    """Big files are ranked in worker processes that read their own questions: the same bytes
    as one process, for both splits (the time split takes the cached-token path)."""
    from synth import SynthSpec, write_tree

    from lampctl.retrieval import rankfile

    monkeypatch.setattr(rankfile, "WORKER_MIN_BYTES", 0)
    monkeypatch.setattr(rankfile, "WORKER_CHUNK", 7)
    tree = write_tree(
        tmp_path / "d", tasks=(5,), spec=SynthSpec(questions=60, profile_max=30), time_users=4
    )
    source = tree / split / "LaMP_5/train_questions.json"
    outputs = {}
    for jobs in ("1", "2"):
        target = tmp_path / f"rank{jobs}.json"
        result = cli("rank", "-t", "5", "-r", "bm25", "-i", source, "-o", target, "--jobs", jobs)
        assert result.exit_code == 0, result.err
        outputs[jobs] = target.read_bytes()
    assert outputs["1"] == outputs["2"]


def test_a_bad_question_in_a_worker_is_one_line(cli, tmp_path, monkeypatch):
    from synth import SynthSpec, user_split

    from lampctl.retrieval import rankfile

    monkeypatch.setattr(rankfile, "WORKER_MIN_BYTES", 0)
    monkeypatch.setattr(rankfile, "WORKER_CHUNK", 5)
    data = user_split(5, SynthSpec(questions=40, profile_max=8))
    data[23]["profile"].append(
        {
            "id": data[23]["profile"][0]["id"] if data[23]["profile"] else "x",
            "title": "t",
            "abstract": 3,
        }
    )
    source = tmp_path / "q.json"
    source.write_text(json.dumps(data))
    result = cli(
        "rank", "-t", "5", "-r", "bm25", "-i", source, "-o", tmp_path / "r.json", "--jobs", "2"
    )
    assert result.exit_code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and data[23]["id"] in lines[0] and str(source) in lines[0]
    assert not (tmp_path / "r.json").exists()
