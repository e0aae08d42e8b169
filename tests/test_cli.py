"""CLI wiring: exit codes, stdout versus stderr, --json, help, lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import typer

from lampctl import __version__
from lampctl.cli import app
from lampctl.errors import LampctlError


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0
    assert result.out.strip() == f"lampctl {__version__}"


def test_python_dash_m_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lampctl", "--version"], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"lampctl {__version__}"


def _commands(group: typer.Typer, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [(*prefix, c.name or c.callback.__name__) for c in group.registered_commands]
    for sub in group.registered_groups:
        found += _commands(sub.typer_instance, (*prefix, sub.name))
    return found


def test_every_command_has_help_with_an_example(cli):
    commands = _commands(app)
    assert ("rank",) in commands
    for command in commands:
        result = cli(*command, "--help")
        assert result.exit_code == 0, command
        assert "Examples" in result.out, command
        assert f"lampctl {' '.join(command)}" in result.out, command


def test_rank_success_writes_ranking_and_table(cli, tree):
    result = cli("rank", "--task", "LaMP-3", "--split", "time", "--data-dir", tree)
    assert result.exit_code == 0, result.err
    assert "recency" in result.out
    ranking = json.loads((tree / "time/LaMP_3/dev_questions_rank.json").read_text())
    questions = json.loads((tree / "time/LaMP_3/dev_questions.json").read_text())
    assert list(ranking) == [q["id"] for q in questions]


def test_json_output_is_one_object_and_stderr_is_quiet(cli, tree):
    for args in (("--json", "rank"), ("rank", "--json")):
        result = cli(*args, "-t", "5", "--data-dir", tree)
        assert result.exit_code == 0, result.err
        payload = json.loads(result.out)
        assert payload["command"] == "rank" and payload["ranker"] == "bm25"
        assert [Path(f["output"]).name for f in payload["files"]] == [
            "train_questions_rank.json",
            "dev_questions_rank.json",
            "test_questions_rank.json",
        ]
        assert all(f["questions"] == 6 for f in payload["files"])
        assert result.err == ""


def test_lampctl_error_is_one_line_exit_1(cli, tree):
    result = cli("rank", "-t", "LaMP-9", "--data-dir", tree)
    assert result.exit_code == 1
    assert result.out == ""
    assert result.err.strip().splitlines() == [
        "Error: unknown task 'LaMP-9' (known: LaMP-1, LaMP-2, LaMP-3, LaMP-4, LaMP-5, LaMP-6, "
        "LaMP-7, LaMP-2N, LongLaMP-1, LongLaMP-2, LongLaMP-3, LongLaMP-4)"
    ]


def test_usage_error_exits_2(cli, tree):
    assert cli("rank", "-t", "3", "--no-such-flag").exit_code == 2
    assert cli("rank").exit_code == 2  # no --task: shows help, which is a usage error
    result = cli("rank", "-t", "3", "--output", "x.json")
    assert result.exit_code == 2 and "--input" in result.err


def test_debug_env_shows_the_exception(cli, tree):
    result = cli("rank", "-t", "LaMP-9", env={"LAMPCTL_DEBUG": "1"})
    assert result.exit_code == 1
    assert isinstance(result.exception, LampctlError)


def test_bm25_run_never_imports_torch(tree):
    code = (
        "import sys\n"
        "from lampctl.cli import main\n"
        f"sys.argv = ['lampctl', '--quiet', 'rank', '-t', '5', '--data-dir', {str(tree)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tree.parent
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_usage_errors_are_one_line_with_exit_2(cli):
    for args, words in [
        (("rank", "-t", "3", "--bogus"), "No such option: --bogus"),
        (("rank", "-t", "3", "--top-k", "0"), "Invalid value for '--top-k'"),
        (("frob",), "No such command 'frob'"),
        (("--bogus", "status"), "No such option: --bogus"),
    ]:
        result = cli(*args)
        assert result.exit_code == 2, args
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], lines
        assert "--help" in lines[0] and "╭" not in result.err


def test_rank_skips_what_is_up_to_date_unless_forced(cli, tree):
    args = ("rank", "-t", "5", "--set", "dev", "--ranker", "bm25", "--data-dir", tree)
    first = cli.json(*args)["files"][0]
    ranking = tree / "user/LaMP_5/dev_questions_rank.json"
    written = ranking.stat().st_mtime_ns
    again = cli.json(*args)["files"][0]
    assert first["state"] == "ranked" and again["state"] == "up to date"
    assert again["questions"] == first["questions"] and ranking.stat().st_mtime_ns == written
    assert "up to date" in cli(*args).out
    forced = cli.json(*args, "--force")["files"][0]
    assert forced["state"] == "ranked"
    # Other parameters are not up to date: --top-k changes what the ranking holds.
    assert cli.json(*args, "--top-k", "2")["files"][0]["state"] == "ranked"


def test_help_examples_fit_an_80_column_terminal():
    """Typer wraps a long example line back to column 0, where it reads as a new command:
    every example in every command's help fits 80 columns as it is shown (one more space)."""
    from lampctl.cli import _help

    long = []
    for command in _registered(app):
        for line in _help(command.callback).splitlines():
            if line.lstrip().startswith("lampctl") and len(line) + 1 > 79:
                long.append(f"{command.name}: {line.strip()}")
    assert long == []


def _registered(group: typer.Typer) -> list:
    found = list(group.registered_commands)
    for sub in group.registered_groups:
        found += _registered(sub.typer_instance)
    return found


def test_rank_all_folds_errors_that_several_jobs_share():
    from lampctl.retrieval.jobs import fold_errors

    failures = [("a", "disk full"), ("b", "bad file"), ("c", "disk full"), ("d", "disk full")]
    assert fold_errors(failures) == ["3 jobs (a, c, ...): disk full", "b: bad file"]
    assert fold_errors([("a", "x"), ("b", "x")]) == ["2 jobs (a, b): x"]


def test_explicit_files_refuse_data_dir_options_in_every_command(cli, tmp_path):
    """One rule (catalog.datadir.explicit_files): an option that would pick data-dir sets is
    refused beside explicit files, and one that needs them is refused without, naming it."""
    q, o = tmp_path / "q.json", tmp_path / "o.jsonl"
    cases = [
        (("prompts", "-t", "3", "--questions", q, "--no-profile", "--output", o, "-s", "time"),
         "--split"),
        (("prompts", "-t", "3", "--no-profile", "--outputs", q), "--outputs"),
        (("peft-data", "-t", "3", "--questions", q, "--output", o, "--set", "dev"), "--set"),
        (("peft-data", "-t", "3", "--outputs", q), "--outputs"),
        (("merge", "--questions", q, "--no-ranking", "--output", o, "-t", "3"), "--task"),
        (("merge", "--questions", q, "--no-ranking"), "--output"),
        (("rank", "-t", "3", "--input", q, "--set", "dev"), "--set"),
        (("rank", "-t", "3", "--output", o), "--output"),
        (("peft", "train", "-m", "x", "--rows", q, "-s", "time"), "--split"),
        (("peft", "predict", "-m", "x", "--rows", q), "--task"),
        (("generate", "-m", "x", "--prompts", q, "-t", "3", "--set", "dev"), "--set"),
    ]  # fmt: skip
    for args, option in cases:
        result = cli(*args)
        assert result.exit_code == 2, (args, result.out, result.err)
        assert f"Invalid value for {option}" in result.err or option in result.err, result.err
        assert not o.exists()
