"""Unit tests of the small core modules, one section each (records, shards, settings,
taskfile, data), on real files in tmp_path; the commands' tests cover them end to end."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lampctl import settings
from lampctl.errors import ConfigError, OptionError, OutputError
from lampctl.io.data import Question, as_path, atomic_writer, leftover_temp_files
from lampctl.ledger import DerivedOutput, read_record, record_path, sources_of
from lampctl.retrieval.shards import Shard, assign_shards, find_shards, missing_shards, parse_shard

# --------------------------------------------------------------------------- records


def _derived(tmp_path: Path, **parameters) -> tuple[DerivedOutput, Path, Path]:
    source = tmp_path / "in.json"
    if not source.exists():
        source.write_text("[1, 2, 3]")
    output = tmp_path / "out.json"
    return DerivedOutput(output, sources_of(questions=source), parameters), source, output


def test_derived_output_skips_only_what_its_record_vouches_for(tmp_path):
    derived, source, output = _derived(tmp_path, k=1)
    assert derived.up_to_date() is None  # new: no output yet
    output.write_text("made")
    derived.write_record({"count": 3})
    record = derived.up_to_date()
    assert record is not None and record["count"] == 3 and record["parameters"] == {"k": 1}
    assert derived.up_to_date(force=True) is None
    assert _derived(tmp_path, k=2)[0].up_to_date() is None  # other parameters
    source.write_text("[1, 2, 4]")  # same size, other bytes, new mtime
    assert derived.up_to_date() is None
    derived.write_record()
    output.write_text("edit")  # a hand edit of the output that keeps its size
    assert derived.up_to_date() is None


def test_derived_output_refuses_to_overwrite_its_input(tmp_path):
    source = tmp_path / "in.json"
    source.write_text("[]")
    with pytest.raises(OutputError, match="in.json"):
        DerivedOutput(source, {"questions": source}, {})
    link = tmp_path / "link.json"
    link.symlink_to(source)
    with pytest.raises(OutputError):
        DerivedOutput(tmp_path / "out.json", {"questions": source}, {}, also={"eval": link})
    with pytest.raises(OptionError, match=r"\(eval\) is also .*\(output\)"):  # two outputs
        DerivedOutput(tmp_path / "out.json", {"questions": source}, {},
                      also={"eval": tmp_path / "./out.json"})  # fmt: skip
    with pytest.raises(OptionError, match=r"\(record of output\)"):  # onto the record
        DerivedOutput(tmp_path / "out.json", {"questions": source}, {},
                      also={"eval": tmp_path / "out.meta.json"})  # fmt: skip


def test_a_record_keeps_relative_paths_and_input_fingerprints(tmp_path):
    derived, source, output = _derived(tmp_path)
    output.write_text("x")
    derived.write_record()
    record = read_record(record_path(output))
    assert record_path(output).name == "out.meta.json"
    entry = record["sources"]["questions"]
    assert entry["path"] == "in.json" and entry["input_size"] == source.stat().st_size


def test_held_still_refuses_an_input_replaced_while_read(tmp_path):
    derived, source, _ = _derived(tmp_path)
    with pytest.raises(Exception, match="changed while it was being read"):
        with derived.held_still():
            source.write_text("[9, 9, 9, 9]")


# --------------------------------------------------------------------------- shards


def test_parse_shard_from_the_option_or_slurm():
    assert parse_shard("2/5") == Shard(2, 5)
    assert parse_shard(None, {}) is None
    env = {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}
    assert parse_shard(None, env) == Shard(3, 4)  # --array=1-4: task 4 is the last shard
    for bad in ("5/5", "1-2", "a/b", "-1/3"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_shards_balance_profile_items_and_cover_every_question():
    sizes = [30, 1, 1, 1, 10, 10, 9, 0, 2, 5]
    questions = [Question(f"q{i}", "x", [{}] * n, {}) for i, n in enumerate(sizes)]
    assignment = assign_shards(questions, 3)
    assert sorted(set(assignment)) == [0, 1, 2] and len(assignment) == len(questions)
    loads = [sum(n + 1 for n, s in zip(sizes, assignment, strict=True) if s == k) for k in range(3)]
    assert max(loads) - min(loads) <= 31  # at most the largest question apart
    assert assign_shards(questions, 3) == assignment  # stable


def test_find_and_missing_shards(tmp_path):
    final = tmp_path / "dev_questions_rank.json"
    for index in (0, 2):
        Shard(index, 3).path(final).write_text("{}")
    (tmp_path / "dev_questions_rank.shard-0-of-2.json").write_text("{}")
    found = find_shards(final)
    assert sorted(found) == [2, 3] and len(found[3]) == 2
    assert missing_shards(final) == {2: [1], 3: [1]}


# --------------------------------------------------------------------------- settings


def test_settings_environment_then_file_then_default(tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    (project / "lampctl.yaml").write_text("data_dir: shared/data\nprecision: bf16\n")
    monkeypatch.chdir(project)
    monkeypatch.delenv("LAMPCTL_SETTINGS", raising=False)
    assert settings.data_dir() == (project / "shared/data").resolve()
    assert settings.source("LAMPCTL_DATA_DIR") == str((project / "lampctl.yaml").resolve())
    monkeypatch.setenv("LAMPCTL_DATA_DIR", "elsewhere")
    assert settings.data_dir() == Path("elsewhere") and settings.data_dir("given") == Path("given")
    assert settings.source("LAMPCTL_DATA_DIR") == "environment"
    assert settings.get("LAMPCTL_PRECISION") == "bf16"
    with pytest.raises(KeyError):
        settings.get("LAMPCTL_NOT_A_SETTING")


@pytest.mark.parametrize("value", ["abc", "-1", "nan"])
def test_progress_seconds_refuses_what_is_not_seconds(monkeypatch, value):
    monkeypatch.setenv("LAMPCTL_PROGRESS_SECONDS", value)
    with pytest.raises(ConfigError, match="LAMPCTL_PROGRESS_SECONDS"):
        settings.progress_seconds()


def test_true_values_as_huggingface_hub_reads_them():
    assert all(settings.is_true(v) for v in ("1", "true", "YES", " on "))
    assert not any(settings.is_true(v) for v in (None, "", "0", "no", "off"))


# --------------------------------------------------------------------------- taskfile


def test_a_config_layered_over_the_registry_names_the_key_at_fault(tmp_path):
    from lampctl.catalog.bundled import load_registry

    good = tmp_path / "good.yaml"
    good.write_text("tasks:\n  LaMP-4:\n    default_ranker: {user: bm25, time: bm25}\n")
    registry = load_registry(good)
    assert registry.task("4").default_ranker["user"] == "bm25"
    assert registry.task("5").default_ranker["user"] == "bm25"  # untouched tasks stay
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  LaMP-4:\n    default_rankr: {user: bm25}\n")
    with pytest.raises(ConfigError, match="default_rankr"):
        load_registry(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("tasks: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_registry(broken)


# --------------------------------------------------------------------------- data


def test_atomic_writer_leaves_the_old_file_on_failure_and_nothing_behind(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_writer(target) as handle:
            handle.write("new, half")
            raise RuntimeError("killed")
    assert target.read_text() == "old" and not leftover_temp_files(target)
    with atomic_writer(target) as handle:
        handle.write(json.dumps({"a": 1}))
    assert json.loads(target.read_text()) == {"a": 1}
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def test_as_path():
    assert as_path(None) is None and as_path("a/b") == Path("a/b")


def test_explicit_files_or_a_data_dir_selection_one_rule():
    from lampctl.catalog.datadir import explicit_files
    from lampctl.errors import OptionError

    sel = {"task": ["3"], "split": [], "set": []}
    assert explicit_files({"questions": None}, {"questions": None}, selection=sel) is False
    need = {"questions": "q", "output": "o"}
    assert explicit_files({"questions": "q"}, need, task="one", selection=sel) is True

    def refused(*args, **kwargs) -> tuple[str, str]:
        with pytest.raises(OptionError) as caught:
            explicit_files(*args, **kwargs)
        return caught.value.option, str(caught.value)

    option, text = refused({"questions": "q"}, {**need, "output": None}, task="one",
                           selection=sel)  # fmt: skip
    assert option == "output" and "explicit files need one --task, --questions and --output" in text
    option, _ = refused({"questions": "q"}, {"questions": "q"}, task="one", selection={})
    assert option == "task"
    option, text = refused({"questions": "q"}, need, selection=sel)
    assert option == "task" and "--task picks data-dir sets" in text  # "none": no --task
    option, _ = refused({"questions": "q"}, need, task="one", selection={**sel, "set": ["dev"]})
    assert option == "set"
    option, text = refused({"questions": None}, need, data_dir_only={"outputs": "g"})
    assert option == "outputs" and "--outputs goes with --questions" in text
    # "any": the task is the command's own (rank), explicit files or not
    assert explicit_files({"input": "q"}, task="any", selection=sel) is True
