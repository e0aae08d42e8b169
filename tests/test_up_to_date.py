"""Every "up to date" is true: records judged the same by every command, from any folder."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import pytest

ARGS = ("-t", "5", "-s", "user", "--set", "dev")


def _rank(cli, tree, *extra) -> None:
    result = cli("rank", *ARGS, "--data-dir", tree, *extra)
    assert result.exit_code == 0, result.err


@pytest.mark.parametrize("damage", ["deleted", "garbled"])
def test_a_ranking_without_a_valid_record_is_stale_for_status_and_rank_all(cli, tree, damage):
    _rank(cli, tree)
    record = tree / "user/LaMP_5/dev_questions_rank.meta.json"
    if damage == "deleted":
        record.unlink()
    else:
        record.write_text("{not json")
    result = cli("--json", "status", *ARGS, "--data-dir", tree, "--check")
    assert result.exit_code == 1
    row = json.loads(result.out)["rows"][0]
    assert row["ranking"] == "stale: no record"
    assert "ranking stale: no record" in row["problems"]
    plan = cli.json("rank-all", *ARGS, "--data-dir", tree, "--dry-run")
    assert plan["jobs"][0]["state"] == row["ranking"]


def test_records_are_judged_the_same_from_any_folder(cli, tree, monkeypatch, tmp_path):
    monkeypatch.chdir(tree.parent)
    relative = Path(tree.name)
    _rank(cli, relative)
    assert cli("merge", *ARGS, "--data-dir", relative, "--top-k", "2").exit_code == 0
    assert cli("prompts", *ARGS, "--data-dir", relative, "--no-profile").exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = cli("--json", "status", *ARGS, "--data-dir", tree.resolve(), "--check")
    assert result.exit_code == 0, result.out
    row = json.loads(result.out)["rows"][0]
    assert (row["ranking"], row["merged"], row["prompts"]) == (
        "up to date",
        "up to date",
        "1 up to date",
    )
    # The whole data dir moved (another mount point): still judged up to date.
    moved = tmp_path / "moved"
    shutil.move(tree, moved)
    assert cli("status", *ARGS, "--data-dir", moved, "--check").exit_code == 0


def test_a_local_checkpoint_is_one_checkpoint_however_it_is_spelled(
    cli, tree, tiny_bert, monkeypatch
):
    args = ("-t", "7", "-s", "user", "--set", "dev", "--data-dir", tree)
    result = cli("rank", *args, "--checkpoint", f"{tiny_bert}/")
    assert result.exit_code == 0, result.err
    monkeypatch.chdir(tiny_bert.parent)
    for spelling in (str(tiny_bert), f"./{tiny_bert.name}", tiny_bert.name):
        plan = cli.json("rank-all", *args, "--dry-run", "--checkpoint", spelling)
        assert plan["jobs"][0]["state"] == "up to date", spelling


def test_status_names_the_parameter_that_differs(cli, tree):
    _rank(cli, tree, "-r", "recency")
    row = cli.json("status", *ARGS, "--data-dir", tree)["rows"][0]
    assert row["ranking"] == "stale: other parameters (ranker: 'recency' recorded, 'bm25' now)"


def test_gather_refuses_a_shard_edited_by_hand(cli, tree):
    for shard in ("0/2", "1/2"):
        assert cli("rank", *ARGS, "--data-dir", tree, "--shard", shard).exit_code == 0
    shard = tree / "user/LaMP_5/dev_questions_rank.shard-0-of-2.json"
    ranking = json.loads(shard.read_text())
    ranking.pop(next(iter(ranking)))
    shard.write_text(json.dumps(ranking))
    result = cli("gather", *ARGS, "--data-dir", tree)
    assert result.exit_code == 1
    assert result.err.startswith(f"Error: {shard}: changed since it was written")
    assert not (tree / "user/LaMP_5/dev_questions_rank.json").exists()


def test_gather_clean_removes_the_shards(cli, tree):
    for shard in ("0/2", "1/2"):
        assert cli("rank", *ARGS, "--data-dir", tree, "--shard", shard).exit_code == 0
    assert cli("gather", *ARGS, "--data-dir", tree, "--clean").exit_code == 0
    folder = tree / "user/LaMP_5"
    assert not list(folder.glob("dev_questions_rank.shard-*"))
    assert (folder / "dev_questions_rank.json").exists()
    assert cli("status", *ARGS, "--data-dir", tree, "--check").exit_code == 0


def test_merge_refuses_a_ranking_made_from_other_questions(cli, tree):
    _rank(cli, tree)
    questions = tree / "user/LaMP_5/dev_questions.json"
    data = json.loads(questions.read_text())
    data[0]["input"] += " (edited)"  # same ids: only the record can tell
    questions.write_text(json.dumps(data))
    result = cli("merge", *ARGS, "--data-dir", tree)
    assert result.exit_code == 1
    ranking = tree / "user/LaMP_5/dev_questions_rank.json"
    assert result.err.strip() == (
        f"Error: {ranking}: stale: made from another version of {questions} (its record's "
        "sha256 differs); rank again, or pass allow_stale=True (--allow-stale) to use it anyway"
    )
    assert not (tree / "user/LaMP_5/dev_questions_merged.json").exists()
    assert cli("merge", *ARGS, "--data-dir", tree, "--allow-stale").exit_code == 0


def test_merge_records_what_it_read_not_what_is_there_after(cli, tree, monkeypatch):
    import lampctl.merge

    _rank(cli, tree)
    ranking = tree / "user/LaMP_5/dev_questions_rank.json"
    read = lampctl.merge.load_ranking

    def read_then_replace(path: Path) -> dict:
        order = read(path)
        ranking.write_text(json.dumps({q: list(reversed(ids)) for q, ids in order.items()}))
        return order

    monkeypatch.setattr(lampctl.merge, "load_ranking", read_then_replace)
    result = cli("merge", *ARGS, "--data-dir", tree)
    assert result.exit_code == 1
    assert "the ranking file changed while it was being read" in result.err
    assert not (tree / "user/LaMP_5/dev_questions_merged.json").exists()


def test_status_verify_sees_a_same_size_copy_that_kept_the_mtime(cli, tree):
    _rank(cli, tree)
    questions = tree / "user/LaMP_5/dev_questions.json"
    text = questions.read_text()
    stamp = questions.stat()
    start = text.index('"input": "') + len('"input": "')
    swapped = text[:start] + ("Q" if text[start] != "Q" else "R") + text[start + 1 :]
    questions.write_text(swapped)
    os.utime(questions, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # as cp -p would
    assert cli("status", *ARGS, "--data-dir", tree, "--check").exit_code == 0  # the quick check
    result = cli("--json", "status", *ARGS, "--data-dir", tree, "--check", "--verify")
    assert result.exit_code == 1
    assert json.loads(result.out)["rows"][0]["ranking"] == "stale: input changed"


def test_status_verify_catches_a_record_that_claims_another_input(cli, tree):
    # A record whose input sha256 was edited while size and mtime still match: the quick
    # check trusts the stamp, --verify hashes the input and sees the claim is false.
    _rank(cli, tree)
    meta = tree / "user/LaMP_5/dev_questions_rank.meta.json"
    record = json.loads(meta.read_text())
    record["input_sha256"] = "0" * 64
    meta.write_text(json.dumps(record))
    assert cli("status", *ARGS, "--data-dir", tree, "--check").exit_code == 0
    result = cli("--json", "status", *ARGS, "--data-dir", tree, "--check", "--verify")
    assert result.exit_code == 1
    assert json.loads(result.out)["rows"][0]["ranking"] == "stale: input changed"


@pytest.mark.parametrize("command", ["rank", "merge", "rank-all"])
def test_a_dead_writers_temp_file_is_removed_when_the_output_is_skipped(cli, tree, command):
    _rank(cli, tree)
    if command == "merge":
        assert cli("merge", *ARGS, "--data-dir", tree).exit_code == 0
    name = "dev_questions_merged.json" if command == "merge" else "dev_questions_rank.json"
    host = socket.gethostname().split(".")[0].replace("-", "_") or "host"
    planted = tree / "user/LaMP_5" / f".{name}.{host}-4000000-abcd.tmp"  # no such pid
    planted.write_text("half")
    result = cli.json(command, *ARGS, "--data-dir", tree)
    assert "up to date" in json.dumps(result) or result.get("skipped") == 1
    assert not planted.exists()
