"""No command replaces a file it reads: an output naming an input is refused before any work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def ranked(cli, tree) -> Path:
    """LaMP-3 time split, ranked with BM25; the folder of its files."""
    result = cli("rank", "-t", "3", "-s", "time", "-r", "bm25", "--data-dir", tree)
    assert result.exit_code == 0, result.err
    return tree / "time/LaMP_3"


def _refused(cli, folder: Path, *args, role: str) -> None:
    before = _snapshot(folder)
    assert f"is this command's {role} file" in cli.error(*args)
    assert _snapshot(folder) == before  # nothing replaced, nothing new (no record, no temp)


def test_rank_refuses_its_questions_as_output_by_name_link_or_inode(cli, ranked):
    questions = ranked / "dev_questions.json"
    (ranked / "link.json").symlink_to(questions.name)
    os.link(questions, ranked / "hard.json")
    for output in (questions, ranked / "link.json", ranked / "hard.json"):
        _refused(
            cli, ranked, "rank", "-t", "3", "-r", "bm25", "-i", questions, "-o", output,
            role="questions",
        )  # fmt: skip


def _inputs(ranked: Path) -> dict[str, Path]:
    return {
        "questions": ranked / "dev_questions.json",
        "ranking": ranked / "dev_questions_rank.json",
        "outputs": ranked / "dev_outputs.json",
    }


@pytest.mark.parametrize("role", ["questions", "ranking", "outputs"])
def test_merge_refuses_each_input_as_output(cli, ranked, role):
    files = _inputs(ranked)
    _refused(
        cli, ranked, "merge", "--questions", files["questions"], "--ranking", files["ranking"],
        "--outputs", files["outputs"], "--output", files[role], "--top-k", "1", role=role,
    )  # fmt: skip


@pytest.mark.parametrize("role", ["questions", "ranking", "outputs"])
def test_prompts_refuses_each_input_before_loading_a_tokenizer(cli, ranked, role):
    files = _inputs(ranked)
    # The tokenizer does not exist: the refusal comes before it is looked up.
    _refused(
        cli, ranked, "prompts", "-t", "3", "--questions", files["questions"], "--ranking",
        files["ranking"], "--outputs", files["outputs"], "--output", files[role],
        "--tokenizer", ranked / "no-such-tokenizer", role=role,
    )  # fmt: skip


@pytest.mark.parametrize("role", ["questions", "ranking", "outputs"])
@pytest.mark.parametrize("flag", ["--output", "--eval-output", "--users-output"])
def test_peft_data_refuses_each_input_as_each_of_its_outputs(cli, ranked, role, flag):
    files = _inputs(ranked)
    outputs = {"--output": ranked / "t.jsonl", "--eval-output": ranked / "t_eval.jsonl",
               "--users-output": ranked / "t_users.json", flag: files[role]}  # fmt: skip
    _refused(
        cli, ranked, "peft-data", "-t", "3", "--questions", files["questions"], "--ranking",
        files["ranking"], "--order", "ranked", "--outputs", files["outputs"],
        *(part for item in outputs.items() for part in item), role=role,
    )  # fmt: skip


def test_prompts_in_data_dir_mode_refuses_the_sets_own_files(cli, tree, ranked):
    for name, role in (("dev_questions.json", "questions"), ("dev_outputs.json", "outputs")):
        _refused(
            cli, ranked, "prompts", "-t", "3", "-s", "time", "--set", "dev", "--no-profile",
            "--data-dir", tree, "--output", ranked / name, role=role,
        )  # fmt: skip


def test_core_writers_refuse_too(ranked):
    from lampctl.errors import OutputError
    from lampctl.merge import merge_set

    questions = ranked / "dev_questions.json"
    before = questions.read_bytes()
    with pytest.raises(OutputError, match="questions file"):
        merge_set(questions, ranked / "dev_questions_rank.json", None, questions, top_k=1)
    assert questions.read_bytes() == before


def test_unwritable_output_names_the_output_not_a_temp_file(cli, ranked):
    questions = ranked / "dev_questions.json"
    blocked = questions / "m.json"  # a file stands where its folder should be
    result = cli("merge", "--questions", questions, "--no-ranking", "--output", blocked)
    assert result.exit_code == 1
    assert result.err.strip() == (
        f"Error: {blocked}: cannot write: {questions} is a file, not a folder"
    )
    if Path("/dev/full").exists():  # a full disk
        result = cli("merge", "--questions", questions, "--no-ranking", "--output", "/dev/full")
        assert result.exit_code == 1
        assert result.err.strip() == "Error: /dev/full: cannot write: No space left on device"
