"""The project's settings file (lampctl.yaml), ``lampctl config`` and ``lampctl env``: one
choice (a local checkpoint) holds for every command, below the options and the environment."""

from __future__ import annotations

import json

import pytest
import yaml

from lampctl import settings


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder with no settings file yet, the working folder of the test."""
    monkeypatch.delenv("LAMPCTL_SETTINGS", raising=False)
    folder = tmp_path / "project"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_config_set_is_read_by_every_command_and_status_agrees(cli, tree, tiny_bert, project):
    # A newcomer with only a local checkpoint: set it once, then rank-all and status agree.
    result = cli("config", "set", "checkpoint", tiny_bert)
    assert result.exit_code == 0, result.err
    written = yaml.safe_load((project / "lampctl.yaml").read_text())
    assert (project / written["checkpoint"]).resolve() == tiny_bert.resolve()
    cli("config", "set", "data_dir", tree)
    assert cli("rank-all", "-t", "7", "--device", "cpu").exit_code == 0
    status = cli.json("status", "-t", "7", "--check")
    assert status["problems"] == 0
    assert {r["ranking"] for r in status["rows"]} == {"up to date"}
    assert cli("--json", "rank-all", "-t", "7", "--dry-run").exit_code == 0
    # From a folder below, the same file holds (its relative paths are the file's).
    below = project / "a" / "b"
    below.mkdir(parents=True)
    shown = {s["key"]: s for s in cli.json("config", "show")["settings"]}
    assert shown["checkpoint"]["source"] == str(project / "lampctl.yaml")
    assert shown["precision"] == {
        "key": "precision",
        "variable": "LAMPCTL_PRECISION",
        "value": "fp32",
        "source": "default",
    }


def test_precedence_option_then_environment_then_file(cli, tree, project, monkeypatch):
    (project / "lampctl.yaml").write_text(f"data_dir: {tree}\nprecision: bf16\n")
    assert settings.get("LAMPCTL_PRECISION") == "bf16"
    assert settings.source("LAMPCTL_PRECISION") == str(project / "lampctl.yaml")
    monkeypatch.setenv("LAMPCTL_PRECISION", "fp16")
    assert settings.get("LAMPCTL_PRECISION") == "fp16"
    assert settings.source("LAMPCTL_PRECISION") == "environment"
    # A Typer option read from a variable takes the file's value below the variable.
    rows = cli.json("stats", "-t", "3", "-s", "time")["rows"]
    assert rows and rows[0]["task"] == "LaMP-3"
    elsewhere = project / "elsewhere"
    monkeypatch.setenv("LAMPCTL_DATA_DIR", str(elsewhere))
    assert str(elsewhere) in cli("stats", "-t", "3").err
    assert "holds" not in cli("stats", "-t", "3", "--data-dir", tree).err


def test_unset_and_bad_files_are_one_line_errors(cli, project):
    cli("config", "set", "device", "cpu")
    assert settings.get("LAMPCTL_DEVICE") == "cpu"
    assert cli("config", "unset", "device").exit_code == 0
    assert settings.get("LAMPCTL_DEVICE") is None
    result = cli("config", "set", "colour", "blue")
    assert result.exit_code == 2 and "unknown setting 'colour'" in result.err
    (project / "lampctl.yaml").write_text("chekpoint: x\n")
    line = cli.error("config", "show")
    assert "lampctl.yaml: unknown setting 'chekpoint'" in line
    (project / "lampctl.yaml").write_text("checkpoint: [a, b]\n")
    assert "checkpoint must be one value" in cli.error("stats")
    before = (project / "lampctl.yaml").read_bytes()
    cli("config", "set", "device", "cpu")  # refuses to replace a broken file
    assert (project / "lampctl.yaml").read_bytes() == before


def test_settings_variable_names_the_file_or_none(cli, tmp_path, monkeypatch):
    chosen = tmp_path / "mine.yaml"
    chosen.write_text("device: cuda:3\n")
    monkeypatch.setenv("LAMPCTL_SETTINGS", str(chosen))
    assert settings.get("LAMPCTL_DEVICE") == "cuda:3"
    monkeypatch.setenv("LAMPCTL_SETTINGS", "none")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lampctl.yaml").write_text("device: mps\n")
    assert settings.get("LAMPCTL_DEVICE") is None
    monkeypatch.setenv("LAMPCTL_SETTINGS", str(tmp_path / "gone.yaml"))
    assert "gone.yaml: no such settings file" in cli.error("config", "show")


def test_env_reports_versions_settings_and_the_encoder(cli, tiny_bert, project):
    cli("config", "set", "checkpoint", tiny_bert)
    report = cli.json("env")
    assert report["packages"]["torch"] and report["devices"][0] == "cpu"
    assert report["encoder"]["available"] is True and report["encoder"]["where"] == "folder"
    assert report["hub_offline"] is True
    human = cli("env")
    assert human.exit_code == 0 and "encoder" in human.out and "lampctl" in human.out
    cli("config", "set", "checkpoint", "nobody/no-such-model")
    missing = cli.json("env")["encoder"]
    assert missing == {
        "checkpoint": "nobody/no-such-model",
        "where": "hub",
        "available": False,
        "why": missing["why"],
    }
    assert json.dumps(missing)
