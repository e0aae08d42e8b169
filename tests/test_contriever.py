"""The encoder ranker on a tiny BERT saved to disk, against a plain mean-pooling loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import reference_scores
from synth import WORDS

from lampctl.errors import ModelLoadError
from lampctl.retrieval import encoder as encoder_module
from lampctl.retrieval.encoder import Encoder, EncoderConfig, resolve_device
from lampctl.retrieval.rankers.base import PreparedQuestion
from lampctl.retrieval.rankers.contriever import ContrieverRanker


def _questions(rng, count=12):
    questions = []
    for q in range(count):
        texts = [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 90)))
            for _ in range(rng.randint(0, 20))
        ]
        query = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30)))
        questions.append(
            PreparedQuestion(str(q), query, [str(i) for i in range(len(texts))], texts=texts)
        )
    return questions


def test_scores_match_reference_pooling(tiny_bert, encoder_device):
    import random

    questions = _questions(random.Random(0))
    ranker = ContrieverRanker(
        EncoderConfig(
            checkpoint=str(tiny_bert),
            device=encoder_device,
            batch_size=7,
            max_tokens_per_batch=300,
        )
    )
    for question, scores in zip(questions, ranker.score(questions), strict=True):
        expected = reference_scores(tiny_bert, question.query, question.texts)
        np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-5)


def test_texts_longer_than_the_model_are_truncated(tiny_bert, encoder_device):
    encoder = Encoder(EncoderConfig(checkpoint=str(tiny_bert), device=encoder_device))
    assert encoder.max_length == 64  # the model's position limit, below the tokenizer's
    long_text = " ".join(["model"] * 500)
    vectors = encoder.encode([long_text, "model"])
    assert vectors.shape == (2, 32) and np.isfinite(vectors).all()


def test_model_is_loaded_once_per_process(tiny_bert, monkeypatch):
    Encoder(EncoderConfig(checkpoint=str(tiny_bert), device="cpu"))
    calls = []
    from transformers import AutoModel

    monkeypatch.setattr(AutoModel, "from_pretrained", lambda *a, **k: calls.append(a))
    Encoder(EncoderConfig(checkpoint=str(tiny_bert), device="cpu"))
    assert calls == []


def test_each_distinct_text_is_encoded_once(tiny_bert, encoder_device):
    encoder = Encoder(EncoderConfig(checkpoint=str(tiny_bert), device=encoder_device))
    first = encoder.encode(["a b", "c d", "a b"])
    again = encoder.encode(["c d", "a b"])
    assert encoder.stats.encoded == 2
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(again[0], first[1])


def test_offline_without_cache_says_how_to_pass_a_checkpoint(monkeypatch):
    monkeypatch.setattr(encoder_module, "_LOADED", {})
    with pytest.raises(ModelLoadError) as err:
        Encoder(EncoderConfig(checkpoint="facebook/contriever", device="cpu"))
    message = str(err.value)
    assert "facebook/contriever" in message and "--checkpoint PATH" in message
    assert "HF_HUB_OFFLINE" in message


def test_missing_local_checkpoint_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        Encoder(EncoderConfig(checkpoint=str(tmp_path / "nope" / "model"), device="cpu"))


def test_device_choice():
    import torch

    assert resolve_device("CPU") == "cpu"
    if torch.cuda.is_available():  # a GPU machine (LAMPCTL_TEST_DEVICE=cuda)
        assert resolve_device("auto") == "cuda"
        with pytest.raises(ModelLoadError, match="does not exist"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        assert resolve_device("auto") == "cpu"
        with pytest.raises(ModelLoadError, match="CUDA is not available"):
            resolve_device("cuda:0")
    with pytest.raises(ModelLoadError, match="unknown device"):
        resolve_device("tpu")


def test_rank_cli_with_contriever(cli, tree, tiny_bert, encoder_device):
    result = cli(
        "--json",
        "rank",
        "-t",
        "7",
        "--set",
        "dev",
        "--data-dir",
        tree,
        "--checkpoint",
        tiny_bert,
        "--device",
        encoder_device,
        "--format",
        "trec",
        "--top-k",
        "3",
    )
    assert result.exit_code == 0, result.err
    payload = json.loads(result.out)
    assert payload["ranker"] == "contriever"
    lines = (tree / "user/LaMP_7/dev_questions_rank.trec").read_text().splitlines()
    questions = json.loads((tree / "user/LaMP_7/dev_questions.json").read_text())
    assert len(lines) == sum(min(3, len(q["profile"])) for q in questions)
    first = next(q for q in questions if len(q["profile"]) >= 4)
    query = first["input"].split(":", 1)[1].strip()
    texts = [item["text"] for item in first["profile"]]
    expected = reference_scores(tiny_bert, query, texts)
    best = sorted(range(len(texts)), key=lambda i: expected[i])[::-1][:3]
    mine = [line.split() for line in lines if line.split()[0] == first["id"]]
    assert [row[2] for row in mine] == [first["profile"][i]["id"] for i in best]
    assert [row[3] for row in mine] == ["1", "2", "3"]
    assert all(row[1] == "Q0" and row[5] == "lampctl-contriever" for row in mine)
    np.testing.assert_allclose([float(r[4]) for r in mine], [expected[i] for i in best], rtol=1e-5)


def test_tiny_bert_tokenizer_knows_its_words(tiny_bert):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    assert tokenizer.tokenize("Model data") == ["model", "data"]


def test_encoder_progress_counts_texts_not_questions(cli, tree, tiny_bert, encoder_device):
    questions = json.loads((tree / "user/LaMP_7/dev_questions.json").read_text())
    texts = sum(1 + len(q["profile"]) for q in questions)  # a query and each item, encoded
    env = {"LAMPCTL_PROGRESS_SECONDS": "0"}  # a log line on every step
    args = ("rank", "-t", "7", "--set", "dev", "--data-dir", tree, "--checkpoint", tiny_bert,
            "--device", encoder_device, "--force")  # fmt: skip
    result = cli(*args, env=env)
    assert result.exit_code == 0, result.err
    lines = [line for line in result.err.splitlines() if "dev_questions.json:" in line]
    assert lines and all(f"/{texts:,} texts" in line for line in lines)
    assert f"{texts:,}/{texts:,} texts (100%)" in lines[-1]
    bm25 = cli(*args[:-5], "-r", "bm25", "--force", env=env)  # other rankers count questions
    assert f"{len(questions)}/{len(questions)} questions (100%)" in bm25.err
