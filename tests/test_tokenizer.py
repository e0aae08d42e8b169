"""``lampctl.inputs.tokenizer``: the first load inspects the tokenizer with transformers and
keeps a verdict; later loads use the saved backend alone, and its answers equal transformers'
(checked here against ``AutoTokenizer`` itself), until a file or the cache changes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from lampctl.inputs.tokenizer import open_tokenizer, verdict_path

TEXTS = [
    "Hello , world . It 's a review of a paper on personalization",
    "café naïve über 東京 1,000.5 $x (y) [z] e-mail@x.org",
    "short",
    "",
]


@pytest.fixture
def folder(tiny_bert: Path, tmp_path: Path) -> Path:
    """A copy of the tiny BERT's tokenizer files, free to change."""
    copy = tmp_path / "tok"
    shutil.copytree(tiny_bert, copy)
    return copy


def test_the_second_load_is_the_saved_backend_alone_and_answers_the_same(folder):
    first = open_tokenizer(str(folder))
    assert first.transformers_loaded  # inspected once with transformers
    verdict_file = verdict_path(folder)
    assert verdict_file is not None and verdict_file.is_file()
    verdict = json.loads(verdict_file.read_text())
    assert verdict["backend"] is True
    second = open_tokenizer(str(folder))
    assert not second.transformers_loaded and second.verified
    reference = AutoTokenizer.from_pretrained(folder)
    backend = second.backend
    assert [e.ids for e in backend.encode_batch(TEXTS)] == reference(TEXTS)["input_ids"]
    backend.enable_truncation(5)  # truncation, as prompts asks for it: the first tokens kept
    try:
        truncated = [e.ids for e in backend.encode_batch(TEXTS)]
    finally:
        backend.no_truncation()
    assert truncated == reference(TEXTS, max_length=5, truncation=True)["input_ids"]
    ids = reference(TEXTS)["input_ids"]
    assert second.backend.decode_batch(ids, skip_special_tokens=True) == reference.batch_decode(
        ids, skip_special_tokens=True
    )
    assert second.special == reference.num_special_tokens_to_add(pair=False)


def test_a_damaged_saved_backend_falls_back_to_transformers_and_is_rewritten(folder):
    open_tokenizer(str(folder))
    verdict_file = verdict_path(folder)
    backend_file = verdict_file.with_name(verdict_file.stem + ".backend.json")
    backend_file.write_text(backend_file.read_text()[:-20])  # torn
    again = open_tokenizer(str(folder))
    assert again.transformers_loaded
    assert not open_tokenizer(str(folder)).transformers_loaded  # rewritten whole


def test_a_changed_tokenizer_file_gets_a_verdict_of_its_own(folder):
    before = verdict_path(folder)
    config = folder / "tokenizer_config.json"
    data = json.loads(config.read_text())
    data["model_max_length"] = 77
    config.write_text(json.dumps(data))
    after = verdict_path(folder)
    assert before is not None and after is not None and before != after
    assert open_tokenizer(str(folder)).transformers_loaded  # inspected afresh


def test_a_folder_without_tokenizer_json_keeps_no_verdict(tmp_path):
    assert verdict_path(tmp_path) is None


def test_a_verdict_edited_in_place_is_not_trusted(folder):
    open_tokenizer(str(folder))
    verdict_file = verdict_path(folder)
    verdict = json.loads(verdict_file.read_text())
    assert verdict["special"] == 2
    verdict_file.write_text(json.dumps({**verdict, "special": 0}))  # its checksum no longer fits
    again = open_tokenizer(str(folder))
    assert again.transformers_loaded and again.special == 2
    assert json.loads(verdict_file.read_text())["special"] == 2  # recorded whole again


def test_an_unwritable_cache_is_said_once_and_the_work_goes_on(folder, tmp_path, monkeypatch):
    from lampctl.reporting import LampctlNotice

    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("LAMPCTL_CACHE_DIR", str(blocker))
    with pytest.warns(LampctlNotice, match="cannot be written.*going on without it"):
        tokenizer = open_tokenizer(str(folder))
    assert tokenizer.transformers_loaded and tokenizer.special == 2


def test_prompts_with_an_unwritable_cache_note_it_once_on_stderr(cli, tree, tiny_bert, tmp_path):
    blocker = tmp_path / "cache-is-a-file"
    blocker.write_text("")
    assert cli("rank", "-t", "3", "-s", "time", "-r", "bm25", "--data-dir", tree).exit_code == 0
    result = cli("prompts", "-t", "3", "-s", "time", "--tokenizer", tiny_bert, "--data-dir", tree,
                 env={"LAMPCTL_CACHE_DIR": str(blocker)})  # fmt: skip
    assert result.exit_code == 0, result.err
    notes = [line for line in result.err.splitlines() if line.startswith("Note: ")]
    assert len(notes) == 1 and str(blocker) in notes[0], result.err
    again = cli("prompts", "-t", "3", "-s", "time", "--tokenizer", tiny_bert, "--force",
                "--data-dir", tree, env={"LAMPCTL_CACHE_DIR": str(blocker)})  # fmt: skip
    assert again.err.count("Note: ") == 1  # each invocation says it once
    quiet = cli("-q", "prompts", "-t", "3", "-s", "time", "--tokenizer", tiny_bert, "--force",
                "--data-dir", tree, env={"LAMPCTL_CACHE_DIR": str(blocker)})  # fmt: skip
    assert quiet.exit_code == 0 and "Note:" not in quiet.err
