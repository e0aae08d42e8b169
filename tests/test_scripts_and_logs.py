"""For scripts and logs: --json failures are JSON, progress reaches log files, nothing is
left out without a word, offline nodes still rank what needs no encoder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from synth import SynthSpec, write_tree


@pytest.mark.parametrize(
    "args",
    [
        ["--json", "prompts", "-t", "5"],  # no tokenizer: a usage error inside the command
        ["--json", "merge", "--questions", "q.json", "--no-ranking"],
        ["--json", "rank", "-t", "5", "--output", "x.json"],
        ["--json", "frobnicate"],  # an unknown command
        ["frobnicate", "--json"],
        ["prompts", "-t", "5", "--json"],  # --json after the command name
        ["--json", "rank"],  # a bare command that would print its help
        ["--json", "rank", "-t", "5", "--dry-run", "true"],
    ],
)
def test_every_failure_under_json_is_one_json_object(cli, args):
    result = cli(*args)
    assert result.exit_code == 2
    lines = result.out.strip().splitlines()
    assert len(lines) == 1, result.out
    payload = json.loads(lines[0])
    assert payload["exit_code"] == 2 and payload["error"]


def test_flags_show_no_value_in_help(cli):
    result = cli("rank-all", "--help")
    assert "<bool>" not in result.out and "--dry-run" in result.out


def test_bare_merge_merges_everything_ranked(cli, tree, monkeypatch):
    assert cli("rank", "-t", "5", "-s", "user", "--data-dir", tree).exit_code == 0
    monkeypatch.setenv("LAMPCTL_DATA_DIR", str(tree))
    result = cli("merge")
    assert result.exit_code == 0, result.err
    assert (tree / "user/LaMP_5/dev_questions_merged.json").exists()


def test_unranked_sets_left_out_are_named(cli, tree):
    assert cli("rank", "-t", "5", "-s", "user", "--data-dir", tree).exit_code == 0
    result = cli("merge", "-t", "5", "--data-dir", tree)
    assert result.exit_code == 0
    for set_name in ("train", "dev", "test"):
        assert (
            f"Left out: LaMP-5 time {set_name}: no ranking yet (run 'lampctl rank -t LaMP-5 "
            "-s time', or pass --no-ranking)"
        ) in result.err
    summary = cli.json("merge", "-t", "5", "--data-dir", tree)
    assert len(summary["left_out"]) == 3
    from test_prompts import MINILM

    prompts = cli.json("prompts", "-t", "5", "--data-dir", tree, "--tokenizer", MINILM)
    assert len(prompts["left_out"]) == 3 and "pass --no-profile" in prompts["left_out"][0]


def test_stats_before_avocado_build_says_why_it_has_nothing(cli, tmp_path):
    data = tmp_path / "data"
    (data / "user/LaMP_6").mkdir(parents=True)
    (data / "user/LaMP_6/dev_questions_ids.json").write_text("[]")  # as downloaded
    result = cli("stats", "-t", "6", "--data-dir", data)
    assert result.exit_code == 1
    assert "not built yet (run 'lampctl avocado build')" in result.err


def test_progress_lines_reach_a_log_file(tmp_path):
    data = write_tree(tmp_path / "data", tasks=(5,), spec=SynthSpec(questions=400, profile_max=30))
    log = tmp_path / "log.txt"
    with log.open("w") as err:
        done = subprocess.run(
            [sys.executable, "-m", "lampctl", "rank-all", "--data-dir", str(data), "-r", "bm25"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**_env(), "LAMPCTL_PROGRESS_SECONDS": "0"},
            timeout=120,
        )
    assert done.returncode == 0
    lines = log.read_text().splitlines()
    assert lines and all(line.startswith("rank-all: ") for line in lines)
    assert lines[0] == "rank-all: 6 jobs, 6 to run"  # at once, before any job advances
    assert any("/400 questions (" in line and "/s" in line for line in lines)
    assert "rank-all: 6/6 jobs finished" in lines[-1] or "ETA" in "".join(lines)


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("LAMPCTL_")}


def test_offline_rank_all_still_runs_the_jobs_that_need_no_encoder(cli, tree, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = cli("--json", "rank-all", "--data-dir", tree, "-t", "3", "-t", "5", "--device", "cpu")
    assert result.exit_code == 1
    summary = json.loads(result.out)
    by_ranker: dict[str, set[str]] = {}
    for job in summary["jobs"]:
        by_ranker.setdefault(job["ranker"], set()).add(job["status"])
    # LaMP-3 time: recency, LaMP-5 user: bm25 ran; the contriever jobs failed with the reason.
    assert by_ranker == {"recency": {"done"}, "bm25": {"done"}, "contriever": {"failed"}}
    assert (tree / "time/LaMP_3/dev_questions_rank.json").exists()
    assert summary["error"].startswith("6 encoder job(s) not run: cannot load checkpoint")
    plain = cli("rank-all", "--data-dir", tree, "-t", "3", "--device", "cpu")
    lines = plain.err.strip().splitlines()
    assert lines[0].startswith("rank-all: 6 jobs, 3 to run; encoder")  # a log hears it at once
    errors = [line for line in lines if line.startswith("Error:")]
    assert errors == [lines[-1]] and errors[0].startswith("Error: 3 encoder job(s) not run:")


def test_offline_hints_name_todays_tools(cli, tree, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = cli("rank", "-t", "7", "--set", "dev", "--data-dir", tree)
    message = result.err
    assert "hf download facebook/contriever" in message and "huggingface-cli" not in message
    assert "set HF_HUB_OFFLINE=1" not in message  # it is set already
    assert "LAMPCTL_CHECKPOINT" in message
    assert cli("rank", "-t", "7", "--data-dir", tree, "-r", "bm25").exit_code == 0
    result = cli("prompts", "-t", "7", "--data-dir", tree, "--tokenizer", "org/some-tokenizer")
    assert "LAMPCTL_TOKENIZER" in result.err and "hf download org/some-tokenizer" in result.err


@pytest.mark.parametrize("value", ["1", "ON", "yes", "True"])
def test_offline_is_read_as_huggingface_hub_reads_it(monkeypatch, value):
    from lampctl import settings

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", value)
    assert settings.hub_offline()
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "off")
    monkeypatch.setenv("HF_HUB_OFFLINE", "off")  # not offline, whatever it looks like
    assert not settings.hub_offline()


def test_a_template_field_that_is_not_text_is_refused(cli, tmp_path):
    from test_prompts import MINILM

    questions = tmp_path / "q.json"
    title = "Generate a title for the following abstract of a paper: some words"
    profile = [{"id": "a", "abstract": "some text", "title": ["a", "list"]}]
    questions.write_text(json.dumps([{"id": "1", "input": title, "profile": profile}]))
    ranking = tmp_path / "r.json"
    ranking.write_text(json.dumps({"1": ["a"]}))
    result = cli(
        "prompts", "-t", "5", "--questions", questions, "--ranking", ranking,
        "--output", tmp_path / "p.jsonl", "--tokenizer", MINILM,
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.err.strip() == (
        f"Error: {questions}: question '1', profile item 'a': 'title' is a list, not text"
    )
    assert not (tmp_path / "p.jsonl").exists()


def test_interrupt_message_reads_plainly():
    from lampctl.cli import _common

    _common.FINISHED[:] = ["a.json"]
    try:
        message = _common.interrupted_message()
    finally:
        _common.FINISHED.clear()
    assert message == (
        "Interrupted: 1 file(s) finished and kept (a.json); run the same command again to "
        "resume (files already up to date are skipped)."
    )


def test_status_in_80_columns_keeps_words_whole(tree, cli, tmp_path):
    assert cli("rank", "-t", "5", "-s", "user", "--data-dir", tree, "-r", "recency").exit_code == 0
    script = (
        "import sys\n"
        "from rich.console import Console\n"
        "from lampctl.cli.inventory import _status_lines\n"
        "from lampctl.inventory import status\n"
        "from lampctl.catalog.bundled import load_registry\n"
        f"rows = status(load_registry(), __import__('pathlib').Path({str(tree)!r}), ['5'])\n"
        "console = Console(width=80, file=sys.stdout, highlight=False)\n"
        "_status_lines(console, rows)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "…" not in out
    assert "ranking stale: other parameters (recency)" in " ".join(lines)
    assert any(
        "other parameters (ranker: 'recency' recorded, 'bm25' now)" in line for line in lines
    )


def test_progress_lines_say_one_user_not_one_users():
    from lampctl.cli._common import progress_line

    assert progress_line("LaMP-4 t.jsonl", 1, None, "users", 1.0).startswith(
        "LaMP-4 t.jsonl: 1 user,"
    )
    assert progress_line("LaMP-4 dev", 1, 5, "questions", 1.0).startswith(
        "LaMP-4 dev: 1/5 questions"
    )
    assert progress_line("x", 0, 1, "questions", 1.0) == "x: 0/1 question (0%)"


def test_a_slow_rate_reads_as_seconds_per_item():
    from lampctl.cli._common import progress_line, rate_words

    line = progress_line("LaMP-5 dev", 3, 100, "questions", 20.0)
    assert ", 6.7 s/question, ETA 10:46" in line and "0/s" not in line
    assert rate_words(0.25, "questions") == "4.0 s/question"
    assert rate_words(310, "questions") == "310 questions/s"


def test_the_eta_is_smoothed_over_bursts_of_progress():
    from lampctl.cli._common import SmoothedRate, progress_line

    smoothed = SmoothedRate(0.0)
    assert smoothed.update(10, 10.0) == 1.0  # the first reading: the mean so far
    burst = smoothed.update(110, 20.0)  # 100 done at once (a chunk finished): 10/s recent
    assert burst == 1.0 + (10.0 - 1.0) / 3  # moved a third of the way, not all of it
    assert smoothed.update(110, 30.0) == burst  # nothing new: the estimate stands
    line = progress_line("x", 110, 1110, "questions", 20.0, rate=burst)
    assert line.endswith(f"ETA {int(1000 / burst) // 60}:{int(1000 / burst) % 60:02d}")
