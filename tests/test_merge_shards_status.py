"""merge, sharded ranking + gather, status and stats."""

from __future__ import annotations

import json
import shutil

import pytest

from lampctl.io.data import load_questions
from lampctl.retrieval.shards import Shard, assign_shards, parse_shard


def naive_merge(questions, ranking, outputs, top_k=None):
    """The reference's way: nested loops, written plainly."""
    merged = []
    for question in questions:
        profile = []
        for pid in ranking[question["id"]][:top_k]:
            for item in question["profile"]:
                if item["id"] == pid:
                    profile.append(item)
                    break
        record = dict(question)
        record["profile"] = profile
        if outputs is not None:
            for gold in outputs["golds"]:
                if gold["id"] == question["id"]:
                    record["output"] = gold["output"]
        merged.append(record)
    return merged


def _read(path):
    return json.loads(path.read_text())


def test_merge_equals_naive_merge_and_handles_test_sets(cli, tree):
    assert cli("rank", "-t", "3", "-s", "time", "--data-dir", tree).exit_code == 0
    summary = cli.json("merge", "-t", "3", "-s", "time", "--data-dir", tree)
    assert [f["with_outputs"] for f in summary["files"]] == [True, True, False]
    folder = tree / "time/LaMP_3"
    for set_name in ("train", "dev", "test"):
        outputs = folder / f"{set_name}_outputs.json"
        expected = naive_merge(
            _read(folder / f"{set_name}_questions.json"),
            _read(folder / f"{set_name}_questions_rank.json"),
            _read(outputs) if outputs.exists() else None,
        )
        assert _read(folder / f"{set_name}_questions_merged.json") == expected
    assert all("output" not in q for q in _read(folder / "test_questions_merged.json"))
    assert (
        cli(
            "merge",
            "-t",
            "3",
            "-s",
            "time",
            "--data-dir",
            tree,
            "--set",
            "dev",
            "--top-k",
            "2",
            "--format",
            "jsonl",
        ).exit_code
        == 0
    )
    lines = (folder / "dev_questions_merged_top2.jsonl").read_text().splitlines()
    expected = naive_merge(
        _read(folder / "dev_questions.json"),
        _read(folder / "dev_questions_rank.json"),
        _read(folder / "dev_outputs.json"),
        top_k=2,
    )
    assert [json.loads(line) for line in lines] == expected


@pytest.mark.parametrize("damage", ["drop question", "unknown item", "drop gold"])
def test_merge_errors_name_the_culprit(cli, tree, damage):
    assert cli("rank", "-t", "5", "--set", "dev", "--data-dir", tree).exit_code == 0
    folder = tree / "user/LaMP_5"
    ranking = _read(folder / "dev_questions_rank.json")
    outputs = _read(folder / "dev_outputs.json")
    first = next(iter(ranking))
    if damage == "drop question":
        del ranking[first]
        needle = f"no ranking for question '{first}'"
    elif damage == "unknown item":
        ranking[first] = ["no-such-item"]
        needle = f"question '{first}' ranks profile id 'no-such-item'"
    else:
        outputs["golds"] = outputs["golds"][1:]
        needle = f"no gold output for question '{first}'"
    (folder / "dev_questions_rank.json").write_text(json.dumps(ranking))
    (folder / "dev_outputs.json").write_text(json.dumps(outputs))
    result = cli("merge", "-t", "5", "-s", "user", "--set", "dev", "--data-dir", tree)
    assert result.exit_code == 1
    assert needle in result.err and len(result.err.strip().splitlines()) == 1
    assert not (folder / "dev_questions_merged.json").exists()


@pytest.mark.parametrize("count", [1, 3, 7])
def test_gathered_shards_equal_the_unsharded_file(cli, tree, tmp_path, count):
    sharded = tmp_path / "sharded"
    shutil.copytree(tree, sharded)
    assert cli("rank", "-t", "5", "-s", "user", "--data-dir", tree).exit_code == 0
    for index in range(count):
        result = cli(
            "rank", "-t", "5", "-s", "user", "--data-dir", sharded, "--shard", f"{index}/{count}"
        )
        assert result.exit_code == 0, result.err
    folder = sharded / "user/LaMP_5"
    shards = [p for p in folder.glob("dev_questions_rank.shard-*") if ".meta." not in p.name]
    assert len(shards) == count
    assert not (folder / "dev_questions_rank.json").exists()
    summary = cli.json("gather", "-t", "5", "--data-dir", sharded)
    assert {f["shards"] for f in summary["files"]} == {count}
    for set_name in ("train", "dev", "test"):
        name = f"user/LaMP_5/{set_name}_questions_rank.json"
        assert (sharded / name).read_bytes() == (tree / name).read_bytes()
    plan = cli.json("rank-all", "--dry-run", "-t", "5", "-s", "user", "--data-dir", sharded)
    assert {j["state"] for j in plan["jobs"]} == {"up to date"}


def test_rank_all_shards_with_the_encoder_gather_identically(cli, tree, tiny_bert, tmp_path):
    sharded = tmp_path / "sharded"
    shutil.copytree(tree, sharded)
    common = ("--checkpoint", tiny_bert, "-t", "7", "-t", "3")
    assert cli.json("rank-all", "--data-dir", tree, *common)["done"] == 12
    for index in range(4):
        env = {
            "SLURM_ARRAY_TASK_ID": str(index + 1),
            "SLURM_ARRAY_TASK_COUNT": "4",
            "SLURM_ARRAY_TASK_MIN": "1",
        }
        result = cli("--json", "rank-all", "--data-dir", sharded, *common, env=env)
        assert result.exit_code == 0, result.err
    result = cli("gather", "--data-dir", sharded)
    assert result.exit_code == 0, result.err
    for path in tree.rglob("*_questions_rank.json"):
        assert (sharded / path.relative_to(tree)).read_bytes() == path.read_bytes()


def test_missing_and_mismatched_shards_are_errors(cli, tree):
    args = ("-t", "5", "-s", "user", "--set", "dev", "--data-dir", tree)
    for index in (0, 2):
        assert cli("rank", *args, "--shard", f"{index}/3").exit_code == 0
    result = cli("gather", *args)
    assert result.exit_code == 1
    assert "1 of 3 shards missing (dev_questions_rank.shard-1-of-3.json)" in result.err
    status = cli.json("status", *args)
    assert status["rows"][0]["shards"] == "missing 1/3"
    assert cli("rank", *args, "--shard", "1/3", "--ranker", "recency").exit_code == 0
    result = cli("gather", *args)
    assert result.exit_code == 1 and "made with other parameters" in result.err
    assert not (tree / "user/LaMP_5/dev_questions_rank.json").exists()


def test_shard_specs_and_slurm_defaults():
    assert parse_shard("2/5", env={}) == Shard(2, 5)
    assert parse_shard(None, env={}) is None
    env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"}
    assert parse_shard(None, env=env) == Shard(0, 3)
    env = {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3"}
    assert parse_shard(None, env=env) == Shard(2, 3)
    for bad in ("3/3", "a/b", "1"):
        with pytest.raises(Exception, match="bad shard"):
            parse_shard(bad, env={})


def test_shards_are_balanced_by_profile_size(tree):
    questions = load_questions(tree / "user/LaMP_4/train_questions.json") * 20
    questions = [
        q.__class__(f"{q.id}-{i}", q.input, q.profile, q.raw) for i, q in enumerate(questions)
    ]
    assignment = assign_shards(questions, 4)
    loads = [
        sum(len(q.profile) + 1 for q, s in zip(questions, assignment, strict=True) if s == shard)
        for shard in range(4)
    ]
    assert max(loads) - min(loads) <= max(len(q.profile) for q in questions) + 1
    assert assignment == assign_shards(questions, 4)


def test_status_and_check(cli, tree):
    result = cli("status", "-t", "3", "--data-dir", tree, "--check")
    assert result.exit_code == 1 and "ranking missing" in result.out
    assert cli("rank", "-t", "3", "-s", "time", "--data-dir", tree).exit_code == 0
    assert cli("rank", "-t", "3", "-s", "user", "-r", "bm25", "--data-dir", tree).exit_code == 0
    # Not the split's default ranker (contriever): stale, for status as for rank-all --dry-run.
    status = cli.json("status", "-t", "3", "-s", "user", "--data-dir", tree)
    other = "stale: other parameters (ranker: 'bm25' recorded, 'contriever' now)"
    assert {r["ranking"] for r in status["rows"]} == {other}
    assert {r["ranked_by"] for r in status["rows"]} == {"bm25"}
    plan = cli.json("rank-all", "-t", "3", "-s", "user", "--data-dir", tree, "--dry-run")
    assert {j["state"] for j in plan["jobs"]} == {other}
    # Judged against bm25 (as a config making bm25 the default would), they are up to date.
    config = tree.parent / "bm25.yaml"
    config.write_text("tasks:\n  LaMP-3:\n    default_ranker: {user: bm25, time: recency}\n")
    result = cli("--config", config, "status", "-t", "3", "--data-dir", tree, "--check")
    assert result.exit_code == 0, result.out
    status = cli.json("--config", config, "status", "-t", "3", "--data-dir", tree)
    assert status["problems"] == 0 and len(status["rows"]) == 6
    row = status["rows"][0]
    assert (row["questions"], row["outputs"], row["ranking"], row["verified"]) == (
        "present",
        "present",
        "up to date",
        "unverified",
    )
    (tree / "time/LaMP_3/dev_questions.json").write_text(
        json.dumps(_read(tree / "time/LaMP_3/dev_questions.json")[:2])
    )
    (tree / "user/LaMP_3/train_outputs.json").unlink()
    status = cli.json("--config", config, "status", "-t", "3", "--data-dir", tree)
    problems = {(r["split"], r["set"]): r["problems"] for r in status["rows"] if r["problems"]}
    assert problems == {
        ("user", "train"): ["outputs missing"],
        ("time", "dev"): ["ranking stale: input changed"],
    }
    assert (
        cli("--config", config, "status", "-t", "3", "--data-dir", tree, "--check").exit_code == 1
    )


def test_status_knows_downloads_and_unbuilt_lamp6(cli, tmp_path):
    from lampserver import LampServer, official_mirror

    server = LampServer(official_mirror()).start()
    try:
        assert (
            cli(
                "download", "--base-url", server.url, "--data-dir", tmp_path, "-t", "6", "-t", "7"
            ).exit_code
            == 0
        )
    finally:
        server.stop()
    status = cli.json("status", "-t", "6", "-t", "7", "--data-dir", tmp_path)
    lamp6 = [r for r in status["rows"] if r["task"] == "LaMP-6"]
    assert {r["questions"] for r in lamp6} == {"ids only"}
    assert all("needs avocado build" in r["problems"] for r in lamp6)
    lamp7 = [r for r in status["rows"] if r["task"] == "LaMP-7"]
    assert {r["verified"] for r in lamp7} == {"verified"}
    # Not asked for by name, an unbuilt LaMP-6 is a note, not a problem: `status --check`
    # on a data dir without the licensed corpus fails only for what is really missing.
    unasked = cli.json("status", "--data-dir", tmp_path)
    lamp6 = [r for r in unasked["rows"] if r["task"] == "LaMP-6"]
    assert lamp6 and all(r["notes"] == ["needs avocado build"] for r in lamp6)
    assert all(not r["problems"] for r in lamp6) and unasked["not_built"] == len(lamp6)
    assert "LaMP-6" not in {r["task"] for r in unasked["rows"] if r["problems"]}
    human = cli("status", "--data-dir", tmp_path)
    assert "not counted unless asked for with --task" in human.out
    assert cli("status", "--data-dir", tmp_path, "-t", "6", "--check").exit_code == 1


def test_stats_on_a_fixture_tree(cli, tree):
    rows = cli.json("stats", "-t", "3", "-s", "time", "--data-dir", tree)["rows"]
    assert [r["set"] for r in rows] == ["train", "dev", "test"]
    for row in rows:
        questions = _read(tree / f"time/LaMP_3/{row['set']}_questions.json")
        sizes = sorted(len(q["profile"]) for q in questions)
        assert row["questions"] == len(questions)
        assert row["users"] == len({q["user_id"] for q in questions})
        assert row["profile_max"] == sizes[-1]
        assert row["profile_mean"] == round(sum(sizes) / len(sizes), 2)
    golds = _read(tree / "time/LaMP_3/train_outputs.json")["golds"]
    tokens = [len(g["output"].split()) for g in golds]
    assert rows[0]["output_tokens_mean"] == round(sum(tokens) / len(tokens), 2)
    assert rows[2]["output_tokens_mean"] is None  # the test set has no golds
