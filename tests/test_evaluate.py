"""`lampctl evaluate` against scikit-learn and rouge_score computed here, plus the extras."""

from __future__ import annotations

import json
import math
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error

from lampctl.catalog.bundled import load_registry
from lampctl.scoring.metrics import aggregate, bootstrap, macro_f1, score

REGISTRY = load_registry()
LABELS2 = list(REGISTRY.task("2").evaluation.labels)
ODD = ["", "  ", " comedy ", "Comedy", "comedy.", "3.0", "4 stars", "0", "7", "кино", "映画", "[1]"]


def official(task: int, preds: list[str], golds: list[str]) -> dict[str, float]:
    """The official scorer's arithmetic, written from its description with the libraries it
    wraps (scikit-learn for the classification and rating metrics, rouge_score for ROUGE)."""
    preds = [str(p).strip() for p in preds]
    golds = [str(g).strip() for g in golds]
    if task in (1, 2):
        labels = list(REGISTRY.task(str(task)).evaluation.labels)

        def index(x):
            return labels.index(x) if x in labels else -1

        p, g = [index(x) for x in preds], [index(x) for x in golds]
        return {
            "accuracy": accuracy_score(g, p),
            "f1": f1_score(g, p, labels=list(range(len(labels))), average="macro", zero_division=0),
        }
    if task == 3:

        def mapping(x, y):
            try:
                return float(x)
            except ValueError:
                y = float(y)
                return 1.0 if abs(1 - y) > abs(5 - y) else 5.0

        p = [mapping(x, y) for x, y in zip(preds, golds, strict=True)]
        g = [mapping(x, x) for x in golds]
        return {
            "MAE": mean_absolute_error(g, p),
            "RMSE": math.sqrt(mean_squared_error(g, p)),
        }
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
    scores = [scorer.score(g, p) for p, g in zip(preds, golds, strict=True)]
    return {
        "rouge-1": sum(s["rouge1"].fmeasure for s in scores) / len(scores),
        "rouge-L": sum(s["rougeL"].fmeasure for s in scores) / len(scores),
    }


def _case(task: int, n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    if task == 1:
        golds = [rng.choice(["[1]", "[2]"]) for _ in range(n)]
        preds = [rng.choice(["[1]", "[2]", " [2] ", "[3]", "", "1", *ODD]) for _ in range(n)]
    elif task == 2:
        golds = [rng.choice(LABELS2[:6]) for _ in range(n)]  # some labels never true
        preds = [rng.choice(LABELS2[:4] + ODD) for _ in range(n)]  # some never predicted
    elif task == 3:
        golds = [rng.choice(["1", "2", "3", "4", "5"]) for _ in range(n)]
        preds = [
            rng.choice(["1", "2", " 3 ", "4", "5", "3.0", "4 stars", "0", "7", "", "x"])
            for _ in range(n)
        ]
    else:
        words = ["market", "falls", "rate", "news", "кот", "猫", "the", "a", "on", "rise"]
        golds = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 8))) for _ in range(n)]
        preds = [
            " ".join(rng.choice(words) for _ in range(rng.randint(0, 8)))
            + rng.choice(["", "  ", "!"])
            for _ in range(n)
        ]
    return preds, golds


@pytest.mark.parametrize("task", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_the_official_definitions(task, seed):
    preds, golds = _case(task, 300, seed)
    spec = REGISTRY.task(str(task)).evaluation
    ours = aggregate(score(spec, preds, golds))
    theirs = official(task, preds, golds)
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert abs(ours[name] - theirs[name]) <= 1e-12, (name, ours[name], theirs[name])


def test_macro_f1_edge_cases_equal_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(200):
        labels = int(rng.integers(1, 6))
        n = int(rng.integers(1, 12))
        gold = rng.integers(-1, labels, n)
        pred = rng.integers(-1, labels, n)
        theirs = f1_score(gold, pred, labels=list(range(labels)), average="macro", zero_division=0)
        assert abs(macro_f1(pred, gold, labels) - theirs) <= 1e-12


def test_bootstrap_is_deterministic_and_brackets_the_mean():
    spec = REGISTRY.task("4").evaluation
    scored = score(spec, *_case(4, 200, 3))
    first = bootstrap(scored, 300, seed=7)
    assert first == bootstrap(scored, 300, seed=7)
    assert first != bootstrap(scored, 300, seed=8)
    mean = aggregate(scored)
    for name, b in first.items():
        assert b["low"] <= mean[name] <= b["high"] and b["low"] <= b["median"] <= b["high"]


def _write_outputs(path: Path, task: int, outputs: dict[str, str]) -> Path:
    path.write_text(
        json.dumps(
            {"task": f"LaMP_{task}", "golds": [{"id": k, "output": v} for k, v in outputs.items()]}
        )
    )
    return path


def test_cli_single_task_formats_agree(cli, tmp_path):
    preds, golds = _case(3, 50, 4)
    ids = [f"{i:03d}" for i in range(50)]
    gold_file = _write_outputs(tmp_path / "golds.json", 3, dict(zip(ids, golds, strict=True)))
    official_file = _write_outputs(tmp_path / "p.json", 3, dict(zip(ids, preds, strict=True)))
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        "".join(
            json.dumps({"id": i, "output": p}) + "\n"
            for i, p in zip(reversed(ids), reversed(preds), strict=True)
        )
    )
    mapping = tmp_path / "p_map.json"
    mapping.write_text(json.dumps(dict(zip(ids, preds, strict=True))))
    results = [
        cli.json("evaluate", "-t", "3", "-p", f, "--golds", gold_file)
        for f in (official_file, jsonl, mapping)
    ]
    expected = official(3, preds, golds)
    for result in results:
        assert result["count"] == 50 and result["MAE"] == pytest.approx(expected["MAE"], abs=1e-12)
        assert result["metrics"] == results[0]["metrics"]
    assert results[0]["outside_labels"] == sum(not _parses(p) for p in preds)
    human = cli("evaluate", "-t", "3", "-p", official_file, "--golds", gold_file)
    assert human.exit_code == 0 and "MAE" in human.out and "lower" in human.out


def _parses(x: str) -> bool:
    try:
        float(x.strip())
    except ValueError:
        return False
    return True


def test_cli_golds_from_the_data_dir(cli, tree):
    golds = json.loads((tree / "time/LaMP_7/dev_outputs.json").read_text())
    preds = {g["id"]: g["output"] for g in golds["golds"]}
    path = tree.parent / "p.json"
    path.write_text(json.dumps(preds))
    result = cli.json("evaluate", "-t", "7", "-p", path, "--split", "time", "--data-dir", tree)
    assert result["rouge-1"] == pytest.approx(1.0) or result["rouge-1"] <= 1.0
    expected = official(7, list(preds.values()), [g["output"] for g in golds["golds"]])
    assert result["rouge-L"] == pytest.approx(expected["rouge-L"], abs=1e-12)


@pytest.mark.parametrize("as_zip", [True, False])
def test_all_tasks_from_a_zip_or_folder(cli, tmp_path, as_zip):
    bundle = tmp_path / "preds"
    bundle.mkdir()
    golds = tmp_path / "golds"
    golds.mkdir()
    expected = {}
    for task in range(1, 8):
        preds, refs = _case(task, 40, task)
        ids = [f"{task}{i:03d}" for i in range(40)]
        _write_outputs(bundle / f"LaMP_{task}.json", task, dict(zip(ids, preds, strict=True)))
        _write_outputs(golds / f"LaMP_{task}.json", task, dict(zip(ids, refs, strict=True)))
        expected[f"LaMP-{task}"] = official(task, preds, refs)
    source = bundle
    if as_zip:
        source = tmp_path / "submission.zip"
        with zipfile.ZipFile(source, "w") as archive:
            for member in bundle.iterdir():
                archive.write(member, f"out/{member.name}")
    result = cli.json("evaluate", "-p", source, "--golds", golds)
    assert set(result["tasks"]) == set(expected)
    for name, metrics in expected.items():
        for key, value in metrics.items():
            assert result["tasks"][name][key] == pytest.approx(value, abs=1e-12)
    assert result["tasks"]["LaMP-3"]["higher_is_better"] is False
    assert not list(tmp_path.glob("tmp*"))  # nothing extracted
    human = cli("evaluate", "-p", source, "--golds", golds)
    assert human.exit_code == 0 and human.out.count("LaMP-") >= 14


def test_by_user_and_compare(cli, tree):
    folder = tree / "time/LaMP_5"
    golds = json.loads((folder / "dev_outputs.json").read_text())["golds"]
    questions = json.loads((folder / "dev_questions.json").read_text())
    same = tree.parent / "same.json"
    same.write_text(json.dumps({g["id"]: g["output"] for g in golds}))
    worse = tree.parent / "worse.json"
    worse.write_text(json.dumps({g["id"]: g["output"].split(" ")[0] for g in golds}))
    args = ("-t", "5", "--split", "time", "--data-dir", tree)
    result = cli.json("evaluate", *args, "-p", same, "--compare", same, "--by-user")
    for name in ("rouge-1", "rouge-L"):
        assert result["compare"][name]["difference"] == 0
        assert result["compare"][name]["p_value"] == 1
    users = {q["user_id"] for q in questions}
    assert result["by_user"]["users"] == len(users)
    assert result["by_user"]["rouge-1"]["mean"] == pytest.approx(1.0)
    result = cli.json("evaluate", *args, "-p", same, "--compare", worse, "--seed", "3")
    assert result["compare"]["rouge-1"]["difference"] > 0
    again = cli.json("evaluate", *args, "-p", same, "--compare", worse, "--seed", "3")
    assert again["compare"] == result["compare"]


def test_user_split_each_question_is_its_own_user(cli, tree):
    folder = tree / "user/LaMP_3"
    ids = [q["id"] for q in json.loads((folder / "dev_questions.json").read_text())]
    golds = [{"id": i, "output": str(1 + n % 5)} for n, i in enumerate(ids)]
    gold_file = _write_outputs(tree.parent / "g.json", 3, {g["id"]: g["output"] for g in golds})
    preds = tree.parent / "p.json"
    preds.write_text(json.dumps({g["id"]: "3" for g in golds}))
    result = cli.json(
        "evaluate", "-t", "3", "-p", preds, "--golds", gold_file, "--data-dir", tree, "--by-user"
    )
    assert result["by_user"]["users"] == len(golds)
    errors = [abs(3 - float(g["output"])) for g in golds]
    assert result["by_user"]["MAE"]["mean"] == pytest.approx(sum(errors) / len(errors))


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("", "file is empty"),
        ('{"1": "a", "1": "b"}', "id '1' appears twice"),
        ('{"1": 5}', "output of '1' is an int, not a string"),
        ('{"task": "LaMP_3", "golds": [{"id": "1", "output": "5"}]}', "is for LaMP_3, not LaMP-4"),
        ('{"1": "a", "zz": "b"}', "1 predictions have no gold (first: 'zz')"),
        ('{"zz": "b"}', "gold ids have no prediction (first: '1', '2'"),
    ],
)
def test_bad_predictions_are_one_line_errors(cli, tmp_path, content, needle):
    golds = _write_outputs(tmp_path / "g.json", 4, {"1": "a b", "2": "c"})
    preds = tmp_path / "p.json"
    preds.write_text(content)
    result = cli("evaluate", "-t", "4", "-p", preds, "--golds", golds)
    assert result.exit_code == 1, result.out
    assert needle in result.err and len(result.err.strip().splitlines()) == 1
    assert "Traceback" not in result.err


def test_partial_scores_the_predicted_questions_and_says_how_many(cli, tree):
    folder = tree / "time/LaMP_7"
    golds = json.loads((folder / "dev_outputs.json").read_text())["golds"]
    questions = json.loads((folder / "dev_questions.json").read_text())
    user_of = {str(q["id"]): q["user_id"] for q in questions}
    kept = golds[: len(golds) // 2]
    pilot = tree.parent / "pilot.json"
    pilot.write_text(json.dumps({g["id"]: g["output"].split(" ")[0] for g in kept}))
    args = ("evaluate", "-t", "7", "-p", pilot, "--split", "time", "--data-dir", tree)
    line = cli.error(*args)
    assert f"{len(golds) - len(kept)} gold ids have no prediction" in line and "--partial" in line
    result = cli.json(*args, "--partial")
    expected = official(7, [g["output"].split(" ")[0] for g in kept], [g["output"] for g in kept])
    assert result["rouge-L"] == pytest.approx(expected["rouge-L"], abs=1e-12)
    assert result["count"] == len(kept)
    assert result["coverage"] == {
        "partial": True, "questions": len(kept), "of": len(golds),
        "users": len({user_of[g["id"]] for g in kept}), "of_users": len(set(user_of.values())),
    }  # fmt: skip
    human = cli(*args, "--partial")
    assert f"PARTIAL: {len(kept)} of {len(golds)} questions" in human.out
    full = cli.json("evaluate", "-t", "7", "-p", folder / "dev_outputs.json", "--split", "time",
                    "--data-dir", tree)  # fmt: skip
    assert full["coverage"] is None
    extra = tree.parent / "extra.json"
    extra.write_text(json.dumps({**{g["id"]: "x" for g in kept}, "no-such-id": "x"}))
    line = cli.error("evaluate", "-t", "7", "-p", extra, "--split", "time", "--data-dir", tree,
                     "--partial")  # fmt: skip
    assert "1 predictions have no gold (first: 'no-such-id')" in line
