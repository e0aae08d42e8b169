"""LaMP-2N, the deprecated news categorization: opt-in, and the same commands as every task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from lampserver import LampServer, official_mirror
from rank_bm25 import BM25Okapi
from sklearn.metrics import accuracy_score, f1_score
from synth import SynthSpec, write_tree

from lampctl.catalog.bundled import load_registry

LABELS = ["food & drink", "sports", "education", "parents", "religion", "travel", "business",
          "crime", "science & technology", "culture & arts", "entertainment", "politics", "women",
          "style & beauty", "healthy living"]  # fmt: skip


@pytest.fixture
def news(tmp_path) -> Path:
    """A data dir with LaMP-2N (both splits) beside the current LaMP-2 and LaMP-5."""
    return write_tree(tmp_path / "data", tasks=("2N", 2, 5), spec=SynthSpec(questions=5))


@pytest.mark.parametrize("name", ["LaMP-2N", "LaMP_2N", "2N", "LaMP-2-old", "lamp-2n"])
def test_names_resolve_and_the_number_stays_lamp2(name):
    registry = load_registry()
    assert registry.task(name).name == "LaMP-2N"
    assert registry.task("2").name == registry.task("LaMP_2").name == "LaMP-2"
    assert registry.task(name).dir_name == "LaMP_2N"


def test_download_is_opt_in_and_lands_beside_movie_tagging(cli, tmp_path):
    files = official_mirror()
    server = LampServer(files).start()
    try:
        data = tmp_path / "d"
        plain = cli.json("download", "--base-url", server.url, "--data-dir", data, "-t", "2")
        assert plain["downloaded"] == 10
        news = cli.json("download", "--base-url", server.url, "--data-dir", data, "-t", "LaMP-2N")
        assert news["downloaded"] == 10
        everything = cli.json("--json", "download", "--base-url", server.url,
                              "--data-dir", tmp_path / "all", "--dry-run")  # fmt: skip
    finally:
        server.stop()
    for split, prefix in (("user", ""), ("time", "time/")):
        for name in ("dev_questions.json", "dev_outputs.json", "test_questions.json"):
            set_name = name.split("_")[0]
            old = files[f"{prefix}LaMP_2/{set_name}/{name}"]
            assert (data / split / "LaMP_2N" / name).read_bytes() == old  # unchanged
    assert (data / "user/LaMP_2/dev_questions.json").exists()  # movie tagging, its own folder
    assert len(everything["files"]) == 70
    assert not any(f["task"] == "LaMP-2N" for f in everything["files"])
    assert "LaMP-2N" in cli("download", "--help").out


def _reference_order(query: str, texts: list[str]) -> list[int]:
    scores = BM25Okapi([t.split() for t in texts]).get_scores(query.split())
    return sorted(range(len(texts)), key=lambda i: (-scores[i], -i))  # ties: later item first


def test_ranking_equals_rank_bm25_on_title_and_text_after_article(cli, news):
    assert cli("rank", "-t", "2N", "-s", "user", "-r", "bm25", "--data-dir", news).exit_code == 0
    folder = news / "user/LaMP_2N"
    for set_name in ("train", "dev", "test"):
        questions = json.loads((folder / f"{set_name}_questions.json").read_text())
        ranking = json.loads((folder / f"{set_name}_questions_rank.json").read_text())
        for q in questions:
            query = q["input"][q["input"].index("article:") + len("article:") :].strip()
            texts = [f"{p['title']} {p['text']}" for p in q["profile"]]
            if not texts:
                continue
            expected = [q["profile"][i]["id"] for i in _reference_order(query, texts)]
            scores = BM25Okapi([t.split() for t in texts]).get_scores(query.split())
            got = [
                next(i for i, p in enumerate(q["profile"]) if p["id"] == pid)
                for pid in ranking[q["id"]]
            ]
            assert np.all(np.diff(scores[got]) <= 1e-12)  # non-increasing reference scores
            assert ranking[q["id"]] == expected


def test_metrics_equal_scikit_learn_with_its_label_list(cli, tmp_path):
    golds = {str(i): LABELS[i % len(LABELS)] for i in range(40)}
    preds = {k: (v if int(k) % 3 else LABELS[(int(k) * 7) % 15]) for k, v in golds.items()}
    preds["5"] = "not a category"
    g, p = tmp_path / "g.json", tmp_path / "p.json"
    g.write_text(
        json.dumps({"task": "LaMP_2", "golds": [{"id": k, "output": v} for k, v in golds.items()]})
    )
    p.write_text(json.dumps(preds))
    result = cli.json("evaluate", "-t", "LaMP-2N", "-p", p, "--golds", g)
    index = {label: i for i, label in enumerate(LABELS)}
    y_true = [index.get(golds[k], -1) for k in golds]
    y_pred = [index.get(preds[k], -1) for k in golds]
    assert result["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
    expected_f1 = f1_score(y_true, y_pred, labels=list(range(15)), average="macro", zero_division=0)
    assert result["f1"] == pytest.approx(expected_f1, abs=1e-12)
    assert result["outside_labels"] == 1


def test_outputs_saying_lamp2_are_accepted_for_lamp2n_and_still_checked_for_lamp2(cli, tmp_path):
    golds = tmp_path / "g.json"
    golds.write_text(json.dumps({"task": "LaMP_2", "golds": [{"id": "1", "output": "sports"}]}))
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"1": "sports"}))
    assert cli("evaluate", "-t", "2N", "-p", preds, "--golds", golds).exit_code == 0
    assert cli("evaluate", "-t", "2", "-p", preds, "--golds", golds).exit_code == 0
    news_golds = tmp_path / "n.json"
    news_golds.write_text(json.dumps({"task": "LaMP_2N", "golds": [{"id": "1", "output": "x"}]}))
    result = cli("evaluate", "-t", "2", "-p", preds, "--golds", news_golds)
    assert result.exit_code == 1 and "is for LaMP_2N, not LaMP-2" in result.err


def test_every_command_works_on_it_and_everything_takes_it_when_present(cli, news, tmp_path):
    plan = cli.json("rank-all", "--data-dir", news, "--dry-run", "--ranker", "bm25")
    assert {j["task"] for j in plan["jobs"]} == {"LaMP-2", "LaMP-2N", "LaMP-5"}
    assert cli("rank-all", "--data-dir", news, "--ranker", "bm25", "-q").exit_code == 0
    merged = cli.json("merge", "-t", "2N", "--data-dir", news)
    assert len(merged["files"]) == 6
    prompts = cli.json("prompts", "-t", "LaMP-2N", "-s", "user", "--set", "dev", "--no-profile",
                       "--data-dir", news)  # fmt: skip
    assert prompts["files"][0]["output"].endswith("user/LaMP_2N/dev_prompts_noprofile.jsonl")
    peft = cli.json("peft-data", "-t", "2N", "-s", "user", "--set", "dev", "--data-dir", news)
    rows = [json.loads(x) for x in Path(peft["files"][0]["output"]).read_text().splitlines()]
    questions = json.loads((news / "user/LaMP_2N/dev_questions.json").read_text())
    first = questions[0]
    assert rows[0]["source"] == (
        "Which category does this article relate to among the following categories? Just answer "
        "with the category name without further explanation. categories: [travel, education, "
        "parents, style & beauty, entertainment, food & drink, science & technology, business, "
        "sports, healthy living, women, politics, crime, culture & arts, religion] article: "
        f"{first['profile'][0]['text']}"
    )
    assert rows[0]["target"] == first["profile"][0]["category"]
    stats = cli.json("stats", "-t", "2N", "--data-dir", news)
    assert {r["task"] for r in stats["rows"]} == {"LaMP-2N"}
    status = cli.json("status", "--data-dir", news)
    assert "LaMP-2N" in {r["task"] for r in status["rows"]}
    # A data dir without it: never listed, so status --check does not ask for it.
    bare = write_tree(tmp_path / "bare", tasks=(5,), spec=SynthSpec(questions=3))
    assert "LaMP-2N" not in {r["task"] for r in cli.json("status", "--data-dir", bare)["rows"]}
