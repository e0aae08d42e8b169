"""`lampctl rank-all`: planning, skipping, resume, workers, cache, failures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import PAPER_DEFAULTS, reference_scores
from synth import SynthSpec, time_split

from lampctl.catalog.bundled import load_registry
from lampctl.retrieval.encoder import Encoder, EncoderConfig
from lampctl.retrieval.jobs import plan_rank_all, run_rank_all
from lampctl.retrieval.rankers.base import PreparedQuestion
from lampctl.retrieval.rankers.contriever import ContrieverRanker

DEFAULTS = PAPER_DEFAULTS


def _rankings(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*_questions_rank.json"))
    }


def test_plan_uses_the_paper_defaults_and_skips_up_to_date(cli, tree, tiny_bert):
    plan = cli.json("rank-all", "--dry-run", "--data-dir", tree)
    assert len(plan["jobs"]) == 42
    for job in plan["jobs"]:
        number = int(job["task"].split("-")[1])
        assert job["ranker"] == DEFAULTS[number][0 if job["split"] == "user" else 1]
        questions = json.loads(
            (tree / job["split"] / f"LaMP_{number}" / f"{job['set']}_questions.json").read_text()
        )
        assert job["state"] == "new" and job["questions"] == len(questions)
        assert job["texts"] == sum(1 + len(q["profile"]) for q in questions)  # encoder work
        assert job["output"].endswith(f"{job['set']}_questions_rank.json")
    human = cli("rank-all", "--dry-run", "--data-dir", tree)
    texts = sum(j["texts"] for j in plan["jobs"] if j["ranker"] == "contriever")
    assert f"encoder job(s) to run: {texts:,} texts" in human.err
    first = cli.json("rank-all", "--data-dir", tree, "--checkpoint", tiny_bert)
    assert (first["done"], first["failed"]) == (42, 0)
    assert all((tree / j["output"].split(str(tree) + "/")[1]).exists() for j in first["jobs"])
    second = cli.json("rank-all", "--data-dir", tree, "--checkpoint", tiny_bert)
    assert (second["done"], second["skipped"]) == (0, 42)
    plan = cli.json("rank-all", "--dry-run", "--data-dir", tree, "--checkpoint", tiny_bert)
    assert {j["state"] for j in plan["jobs"]} == {"up to date"}
    plan = cli.json("rank-all", "--dry-run", "--data-dir", tree, "-t", "7")
    assert {j["state"] for j in plan["jobs"]} == {  # other checkpoint, named with both values
        f"stale: other parameters (checkpoint: {str(tiny_bert.resolve())!r} recorded, "
        "'facebook/contriever' now)"
    }

    source = tree / "user/LaMP_5/dev_questions.json"
    data = json.loads(source.read_text())
    source.write_text(json.dumps(data[:-1]))
    plan = cli.json("rank-all", "--dry-run", "--data-dir", tree, "-t", "5", "-s", "user")
    assert {j["set"]: j["state"] for j in plan["jobs"]} == {
        "train": "up to date",
        "dev": "stale: input changed",
        "test": "up to date",
    }
    plan = cli.json(
        "rank-all", "--dry-run", "--data-dir", tree, "-t", "5", "-s", "user", "--ranker", "recency"
    )
    assert {j["state"] for j in plan["jobs"]} == {
        "stale: other parameters (ranker: 'bm25' recorded, 'recency' now)"
    }
    third = cli.json("rank-all", "--data-dir", tree, "-t", "5", "--checkpoint", tiny_bert)
    assert (third["done"], third["skipped"]) == (1, 5)
    forced = cli.json("rank-all", "--data-dir", tree, "-t", "5", "-s", "user", "--force")
    assert forced["done"] == 3
    record = json.loads((tree / "user/LaMP_5/dev_questions_rank.meta.json").read_text())
    assert record["parameters"]["ranker"] == "bm25" and record["questions"] == len(data) - 1
    assert len(record["input_sha256"]) == 64 and record["lampctl"]


def test_unbuilt_lamp6_is_listed_not_ranked(cli, tmp_path):
    folder = tmp_path / "user/LaMP_6"
    folder.mkdir(parents=True)
    (folder / "dev_questions_ids.json").write_text(
        json.dumps([{"id": "1", "input": "1-000001-EM.txt", "profile": []}])
    )
    plan = cli.json("rank-all", "--dry-run", "--data-dir", tmp_path)
    assert [(j["task"], j["set"], j["state"]) for j in plan["jobs"]] == [
        ("LaMP-6", "dev", "needs avocado build")
    ]
    result = cli("rank-all", "--data-dir", tmp_path)
    assert result.exit_code == 0, result.err
    assert "1 need a build" in result.out
    assert not list(tmp_path.rglob("*_rank.json"))


def test_failing_job_leaves_the_others_done(cli, tree):
    (tree / "user/LaMP_5/dev_questions.json").write_text('[{"id": "1", "input": "broken')
    result = cli(
        "--json",
        "rank-all",
        "--data-dir",
        tree,
        "-t",
        "5",
        "-t",
        "3",
        "-s",
        "user",
        "-s",
        "time",
        "--ranker",
        "bm25",
    )
    assert result.exit_code == 1
    summary = json.loads(result.out)
    assert (summary["done"], summary["failed"]) == (11, 1)
    failed = [j for j in summary["jobs"] if j["status"] == "failed"]
    assert failed[0]["set"] == "dev" and "invalid JSON" in failed[0]["error"]
    # Progress lines (kept under --json, on stderr), then the one error line.
    errors = [line for line in result.err.strip().splitlines() if line.startswith("Error: ")]
    assert errors == [f"Error: LaMP-5 user dev: {failed[0]['error']}"]
    assert result.err.strip().splitlines()[-1] == errors[0]
    assert not (tree / "user/LaMP_5/dev_questions_rank.json").exists()


def test_interrupted_run_resumes_to_identical_files(tree, tiny_bert, tmp_path):
    registry = load_registry()
    config = EncoderConfig(checkpoint=str(tiny_bert), device="cpu")
    clean = tmp_path / "clean"
    shutil.copytree(tree, clean)
    run_rank_all(plan_rank_all(registry, clean, encoder=config), encoder=config, devices=["cpu"])
    expected = _rankings(clean)
    assert len(expected) == 42

    class StopAfter:
        def __init__(self, jobs: int) -> None:
            self.left = jobs

        def update(self, key, status, done=0, total=None):
            if status == "done":
                self.left -= 1
                if self.left == 0:
                    raise KeyboardInterrupt

    for stop_after in (5, 20):
        with pytest.raises(KeyboardInterrupt):
            run_rank_all(
                plan_rank_all(registry, tree, encoder=config),
                encoder=config,
                devices=["cpu"],
                observer=StopAfter(stop_after),
            )
    assert 0 < len(_rankings(tree)) < 42
    plans = plan_rank_all(registry, tree, encoder=config)
    outcomes = run_rank_all(plans, encoder=config, devices=["cpu"])
    assert {o.status for o in outcomes} == {"done", "skipped"}
    assert _rankings(tree) == expected


def test_killed_process_resumes_to_identical_files(tree, tiny_bert, tmp_path):
    clean = tmp_path / "clean"
    shutil.copytree(tree, clean)
    command = [
        sys.executable,
        "-m",
        "lampctl",
        "--quiet",
        "rank-all",
        "--checkpoint",
        str(tiny_bert),
        "--device",
        "cpu",
        "--data-dir",
    ]
    subprocess.run([*command, str(clean)], check=True, cwd=tmp_path)
    proc = subprocess.Popen([*command, str(tree)], cwd=tmp_path)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(tree.rglob("*.meta.json"))) < 3:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for ranking in tree.rglob("*_rank.json"):  # whatever exists is whole
        json.loads(ranking.read_text())
    subprocess.run([*command, str(tree)], check=True, cwd=tmp_path)
    assert _rankings(tree) == _rankings(clean)


def test_two_cpu_workers_match_one(cli, tree, tiny_bert, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(tree, other)
    one = cli.json(
        "rank-all",
        "--data-dir",
        tree,
        "--checkpoint",
        tiny_bert,
        "--ranker",
        "contriever",
        "-t",
        "1",
        "-t",
        "3",
        "-t",
        "7",
    )
    two = cli.json(
        "rank-all",
        "--data-dir",
        other,
        "--checkpoint",
        tiny_bert,
        "--ranker",
        "contriever",
        "-t",
        "1",
        "-t",
        "3",
        "-t",
        "7",
        "--devices",
        "cpu,cpu",
    )
    assert two["devices"] == ["cpu", "cpu"] and (one["done"], two["done"]) == (18, 18)
    assert _rankings(tree) == _rankings(other)


def _time_split_questions(task: int = 7) -> list[PreparedQuestion]:
    spec = SynthSpec(questions=12, profile_min=3, profile_max=15, words_max=60)
    out = []
    for questions in time_split(task, spec, users=3).values():
        for q in questions:
            out.append(
                PreparedQuestion(
                    q["id"],
                    q["input"].split(":", 1)[1].strip(),
                    [p["id"] for p in q["profile"]],
                    texts=[p["text"] for p in q["profile"]],
                )
            )
    return out


def test_cached_and_uncached_scores_are_equal(tiny_bert):
    questions = _time_split_questions()
    config = EncoderConfig(checkpoint=str(tiny_bert), device="cpu", max_tokens_per_batch=256)
    ranker = ContrieverRanker(config)
    cached = list(ranker.score(questions))
    stats = ranker.encoder.stats
    assert stats.encoded < stats.requested / 2  # the shared histories were encoded once
    for question, scores in zip(questions, cached, strict=True):
        fresh = Encoder(config)  # a new, empty cache for every question
        vectors = fresh.encode([question.query, *question.texts])
        np.testing.assert_array_equal(scores, vectors[1:] @ vectors[0])


def test_token_budget_batching_matches_per_question_pooling(tiny_bert):
    questions = _time_split_questions(task=7)
    for budget in (64, 200, 100_000):
        config = EncoderConfig(
            checkpoint=str(tiny_bert), device="cpu", max_tokens_per_batch=budget, batch_size=1000
        )
        for question, scores in zip(
            questions, ContrieverRanker(config).score(questions), strict=True
        ):
            expected = reference_scores(tiny_bert, question.query, question.texts)
            np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_disk_cache_is_reused_by_a_later_run(cli, tree, tiny_bert, tmp_path):
    cache = tmp_path / "emb-cache"
    args = (
        "rank-all",
        "--data-dir",
        tree,
        "--checkpoint",
        tiny_bert,
        "-t",
        "7",
        "--cache-dir",
        cache,
    )
    assert cli.json(*args)["done"] == 6
    before = _rankings(tree)
    assert list(cache.glob("embeddings-*.sqlite"))
    config = EncoderConfig(checkpoint=str(tiny_bert), device="cpu", cache_dir=cache)
    encoder = Encoder(config)
    questions = json.loads((tree / "user/LaMP_7/dev_questions.json").read_text())
    encoder.encode([p["text"] for q in questions for p in q["profile"]])
    assert encoder.stats.encoded == 0 and encoder.stats.disk_hits > 0
    assert cli.json(*args, "--force")["done"] == 6
    assert _rankings(tree) == before
