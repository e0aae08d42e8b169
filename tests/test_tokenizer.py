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
