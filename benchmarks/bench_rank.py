"""Benchmark `lampctl rank` against the LaMP reference patterns, measured in the same run.

1. BM25 on a generated LaMP-4-shaped file (default 1,000 questions): the reference process
   (load JSON, one rank_bm25.BM25Okapi per question, argsort, write) against the
   `lampctl rank` process, both as whole processes; scores are checked bit for bit.
2. Contriever on a tiny BERT: the seed pattern (model loaded per question, batch 16, no
   inference mode) against lampctl's encoder ranker.

Usage: python benchmarks/bench_rank.py [--questions 1000] [--encoder-questions 60]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lampctl.synth import SynthSpec, user_split, write_tiny_bert

REFERENCE_BM25 = r"""
import json, sys
import numpy as np
from rank_bm25 import BM25Okapi
questions = json.load(open(sys.argv[1]))
out = {}
for q in questions:
    corpus = [f"{p['title']} {p['text']}" for p in q["profile"]]
    query = q["input"][q["input"].find("article:") + len("article:"):].strip()
    bm25 = BM25Okapi([c.split() for c in corpus])
    scores = bm25.get_scores(query.split())
    order = np.argsort(scores)[::-1]
    out[q["id"]] = [q["profile"][i]["id"] for i in order]
json.dump(out, open(sys.argv[2], "w"))
"""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def bench_bm25(folder: Path, questions: int, repeats: int) -> None:
    from rank_bm25 import BM25Okapi

    from lampctl.rankers.bm25 import BM25Ranker

    spec = SynthSpec(
        questions=questions, profile_min=50, profile_max=350, words_min=20, words_max=60, seed=4
    )
    data = user_split(4, spec)
    source = folder / "lamp4_questions.json"
    source.write_text(json.dumps(data))
    items = sum(len(q["profile"]) for q in data)
    print(
        f"BM25: LaMP-4-shaped file, {questions} questions, {items} profile items, "
        f"{source.stat().st_size / 1e6:.1f} MB"
    )

    # The LaMP reference script imports torch and transformers at its top for every ranker;
    # the lean variant leaves them out, to show the ranking loop alone.
    as_written = "import torch, transformers\n" + REFERENCE_BM25
    lampctl_cmd = [sys.executable, "-m", "lampctl", "--quiet", "rank", "-t", "4"]
    lampctl_cmd += ["-r", "bm25", "-i", str(source), "-o", str(folder / "l.json")]
    runs: dict[str, list[float]] = {"as_written": [], "lean": [], "lampctl": []}
    for _ in range(repeats):
        runs["as_written"].append(
            timed([sys.executable, "-c", as_written, str(source), str(folder / "r.json")])
        )
        runs["lean"].append(
            timed([sys.executable, "-c", REFERENCE_BM25, str(source), str(folder / "r.json")])
        )
        runs["lampctl"].append(timed(lampctl_cmd))
    best = {name: min(times) for name, times in runs.items()}
    print(f"  (best of {repeats} runs each)")
    print(f"  reference process, as written (imports torch) : {best['as_written']:6.2f} s")
    print(f"  reference process, lean (rank_bm25 only)      : {best['lean']:6.2f} s")
    print(f"  lampctl rank process                          : {best['lampctl']:6.2f} s")
    print(
        f"  speed-up vs as written {best['as_written'] / best['lampctl']:.2f}x, "
        f"vs lean {best['lean'] / best['lampctl']:.2f}x"
    )
    reference_ranking = json.loads((folder / "r.json").read_text())
    lampctl_ranking = json.loads((folder / "l.json").read_text())
    same = sum(reference_ranking[k] == lampctl_ranking[k] for k in reference_ranking)
    print(f"  identical rankings: {same}/{len(reference_ranking)}")

    ranker = BM25Ranker()
    identical = 0
    start = time.perf_counter()
    for q in data:
        texts = [f"{p['title']} {p['text']}" for p in q["profile"]]
        query = q["input"].split("article:", 1)[1].strip()
        expected = BM25Okapi([t.split() for t in texts]).get_scores(query.split())
        identical += ranker.scores_for(query, texts).tobytes() == expected.tobytes()
    print(
        f"  bit-identical scores: {identical}/{len(data)} questions "
        f"(check took {time.perf_counter() - start:.1f} s)"
    )


def bench_encoder(folder: Path, questions: int) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from lampctl.encoder import EncoderConfig
    from lampctl.rankers.base import PreparedQuestion
    from lampctl.rankers.contriever import ContrieverRanker

    checkpoint = write_tiny_bert(folder / "bert", hidden=128, layers=2, heads=2, max_positions=512)
    spec = SynthSpec(
        questions=questions, profile_min=20, profile_max=120, words_min=10, words_max=80, seed=5
    )
    data = [
        PreparedQuestion(
            q["id"],
            q["input"].split(":", 1)[1].strip(),
            [p["id"] for p in q["profile"]],
            texts=[p["text"] for p in q["profile"]],
        )
        for q in user_split(7, spec)
    ]
    items = sum(len(q.texts) for q in data)
    print(f"Contriever: tiny BERT (128 hidden, 2 layers), {questions} questions, {items} items")

    def seed_pattern() -> list[np.ndarray]:
        results = []
        for q in data:
            tokenizer = AutoTokenizer.from_pretrained(checkpoint)
            model = AutoModel.from_pretrained(checkpoint)

            def embed(batch: list[str], tokenizer=tokenizer, model=model) -> torch.Tensor:
                tokens = tokenizer(batch, padding=True, truncation=True, return_tensors="pt")
                hidden = model(**tokens).last_hidden_state
                mask = tokens["attention_mask"]
                hidden = hidden.masked_fill(~mask[..., None].bool(), 0.0)
                return hidden.sum(1) / mask.sum(1)[..., None]

            query = embed([q.query])
            scores: list[float] = []
            for start in range(0, len(q.texts), 16):
                scores.extend((query.squeeze() @ embed(q.texts[start : start + 16]).T).tolist())
            results.append(np.array(scores))
        return results

    start = time.perf_counter()
    expected = seed_pattern()
    seed_time = time.perf_counter() - start

    start = time.perf_counter()
    ranker = ContrieverRanker(EncoderConfig(checkpoint=str(checkpoint), device="cpu"))
    got = list(ranker.score(data))
    lampctl_time = time.perf_counter() - start
    worst = max(
        float(np.max(np.abs(g - e) / np.maximum(np.abs(e), 1e-6)))
        for g, e in zip(got, expected, strict=True)
        if len(e)
    )
    print(f"  seed pattern      : {seed_time:7.2f} s")
    print(
        f"  lampctl           : {lampctl_time:7.2f} s   speed-up {seed_time / lampctl_time:5.2f}x"
        f"   (includes its one model load)"
    )
    print(f"  largest relative score difference: {worst:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--encoder-questions", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_bm25(Path(tmp), args.questions, args.repeats)
        bench_encoder(Path(tmp), args.encoder_questions)


if __name__ == "__main__":
    main()
