"""``--json`` on every path: a command that refuses or fails prints one JSON object with
``error`` on stdout and nothing else there, with the exit code of the failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

MISSING = "no-such-file.json"

# Each command, with arguments that fail in its core (a missing input file: exit 1).
FAILING = {
    "download": ("download", "-t", "3", "--base-url", "{tmp}/no-such-mirror", "--data-dir",
                 "{tmp}/d"),
    "avocado build": ("avocado", "build", "--corpus", "{tmp}/no-corpus", "--data-dir", "{tmp}/d"),
    "rank": ("rank", "-t", "3", "-r", "bm25", "-i", "{tmp}/" + MISSING, "-o", "{tmp}/r.json"),
    "rank-all": ("rank-all", "--data-dir", "{tmp}/empty"),
    "gather": ("gather", "{tmp}/x.shard-0-of-2.json"),
    "merge": ("merge", "--questions", "{tmp}/" + MISSING, "--no-ranking", "--output",
              "{tmp}/m.json"),
    "status": ("status", "--data-dir", "{tmp}/empty"),
    "stats": ("stats", "--data-dir", "{tmp}/empty"),
    "prompts": ("prompts", "-t", "3", "--questions", "{tmp}/" + MISSING, "--no-profile",
                "--output", "{tmp}/p.jsonl"),
    "generate": ("generate", "-m", "{tmp}/no-model", "-t", "4", "--prompts", "{tmp}/" + MISSING,
                 "-o", "{tmp}/g.json"),
    "peft-data": ("peft-data", "-t", "3", "--questions", "{tmp}/" + MISSING, "--output",
                  "{tmp}/t.jsonl"),
    "peft train": ("peft", "train", "-m", "{tmp}/no-model", "--rows", "{tmp}/" + MISSING,
                   "--adapters", "{tmp}/ad"),
    "peft predict": ("peft", "predict", "-m", "{tmp}/no-model", "-t", "4", "--rows",
                     "{tmp}/" + MISSING, "-o", "{tmp}/p.json"),
    "evaluate": ("evaluate", "-t", "3", "-p", "{tmp}/" + MISSING),
    "config": ("config", "get", "no_such_setting"),
}  # fmt: skip


def _args(args: tuple[str, ...], tmp: Path) -> list[str]:
    (tmp / "empty").mkdir(exist_ok=True)
    return [a.replace("{tmp}", str(tmp)) for a in args]


def _one_json_error(result, code: int | tuple[int, ...]) -> dict:
    codes = code if isinstance(code, tuple) else (code,)
    assert result.exit_code in codes, result.output
    lines = result.out.strip().splitlines()
    assert len(lines) == 1, result.out  # one object, nothing else on stdout
    payload = json.loads(lines[0])
    assert payload["error"] and payload["exit_code"] == result.exit_code
    return payload


@pytest.mark.parametrize("command", sorted(FAILING))
def test_a_failing_command_prints_one_json_error(cli, tmp_path, command):
    result = cli("--json", *_args(FAILING[command], tmp_path))
    _one_json_error(result, (1, 2))
    assert "Traceback" not in result.err


@pytest.mark.parametrize("command", sorted(FAILING))
def test_an_unknown_option_is_one_json_error(cli, tmp_path, command):
    words = command.split()
    result = cli("--json", *words, "--no-such-option")
    payload = _one_json_error(result, 2)
    assert "--no-such-option" in payload["error"]


@pytest.mark.parametrize("command", sorted(FAILING))
def test_without_json_the_failure_is_one_line_on_stderr(cli, tmp_path, command):
    result = cli(*_args(FAILING[command], tmp_path))
    assert result.exit_code in (1, 2), result.output
    assert result.out.strip() == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.err


def test_refusals_of_the_core_are_json_errors_too(cli, tree, tmp_path):
    folder = tree / "time/LaMP_3"
    questions = folder / "dev_questions.json"
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"id": "q", "source": "x"}\n')
    before = questions.read_bytes()
    for args, code in (
        (("rank", "-t", "3", "-r", "bm25", "-i", questions, "-o", questions), 1),
        (("merge", "--questions", questions, "--no-ranking", "--output", questions), 1),
        (("prompts", "-t", "3", "--questions", questions, "--no-profile", "--output",
          questions), 1),
        (("peft-data", "-t", "3", "--questions", questions, "--output", tmp_path / "t.jsonl",
          "--eval-output", tmp_path / "t.jsonl"), 2),
        (("generate", "-m", tmp_path / "m", "-t", "4", "--prompts", prompts, "-o", prompts), 1),
        (("evaluate", "-t", "3", "-p", questions, "--bootstrap", "-1"), 2),
    ):  # fmt: skip
        _one_json_error(cli("--json", *args), code)
    assert questions.read_bytes() == before


def _command_paths() -> list[tuple[list[str], object]]:
    import typer

    from lampctl.cli import app

    found = []

    def walk(command, path):
        found.append((path, command))
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def test_every_help_page_shows_its_brackets(cli):
    """Rich markup is escaped in every help text: ``'lampctl[train]'`` keeps its ``[train]``."""
    import re

    checked = 0
    for path, command in _command_paths():
        raw = [getattr(command, "help", None) or ""]
        raw += [getattr(p, "help", None) or "" for p in getattr(command, "params", [])]
        result = cli(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        shown = " ".join(result.out.replace("│", " ").split())
        for text in raw:
            for token in re.findall(r"\[[A-Za-z_][\w ,.-]*\]", text):
                assert token in shown, (path, token)
                checked += 1
    assert checked >= 1  # peft's "lampctl[train]" at least


def test_download_from_a_data_dir_says_to_use_it_as_the_data_dir(cli, tree, tmp_path):
    line = cli.error("download", "-t", "3", "--base-url", tree, "--data-dir", tmp_path / "d")
    assert "is a lampctl data dir" in line and "--data-dir" in line, line
    assert not (tmp_path / "d").exists()
