"""Benchmark lampctl's encoder path on a LaMP-shaped time split, against two baselines.

Data: a generated time split (train/dev/test whose users share one growing history) and a
small random BERT (or BERT-base shapes with --bert-base). Timed in the same run:
  (a) seed pattern  - model loaded per question, batches of 16 in file order, no inference mode;
  (b) fair baseline - model loaded once, inference mode, batches of 16 per question;
  (c) lampctl       - ContrieverRanker over train, dev and test with one encoder (as rank-all).
Prints ratios, the largest relative score difference to (b), the fraction of encoder calls the
cache saved, and tokens/s.

Usage: python benchmarks/bench_encoder.py [--users 30] [--device cpu] [--bert-base]
       [--precision fp32] [--seed-questions 0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from lampctl.retrieval.encoder import EncoderConfig, mean_pool
from lampctl.retrieval.rankers.base import PreparedQuestion
from lampctl.retrieval.rankers.contriever import ContrieverRanker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test data
from synth import SynthSpec, time_split, user_split, write_tiny_bert  # noqa: E402


def questions_of(users: int, per_user: int, split: str = "time") -> list[PreparedQuestion]:
    spec = SynthSpec(
        questions=users * per_user,
        profile_min=20,
        profile_max=80,
        words_min=20,
        words_max=100,
        seed=11,
    )
    if split == "time":
        sets = time_split(7, spec, users=users)
    else:  # every question its own user: nothing shared, so no cache hits
        sets = {"train": user_split(7, replace(spec, questions=users * (per_user + 2)))}
    out = []
    for set_name, questions in sets.items():
        for q in questions:
            out.append(
                PreparedQuestion(
                    f"{set_name}-{q['id']}",
                    q["input"].split(":", 1)[1].strip(),
                    [p["id"] for p in q["profile"]],
                    texts=[p["text"] for p in q["profile"]],
                )
            )
    return out


def baseline(
    checkpoint: Path, questions: list[PreparedQuestion], device: str, reload: bool
) -> tuple[list[np.ndarray], float]:
    """(a) with reload=True (grad on, model per question); (b) with reload=False."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    start = time.perf_counter()
    tokenizer = model = None
    results = []
    for q in questions:
        if reload or model is None:
            tokenizer = AutoTokenizer.from_pretrained(checkpoint)
            model = AutoModel.from_pretrained(checkpoint).to(device).eval()
        limit = min(tokenizer.model_max_length, model.config.max_position_embeddings)

        def embed(batch: list[str], tokenizer=tokenizer, model=model, limit=limit):
            tokens = tokenizer(
                batch, padding=True, truncation=True, max_length=limit, return_tensors="pt"
            ).to(device)
            hidden = model(**tokens).last_hidden_state
            return mean_pool(hidden, tokens["attention_mask"])

        context = torch.enable_grad() if reload else torch.inference_mode()
        with context:
            query = embed([q.query])
            scores: list[float] = []
            for begin in range(0, len(q.texts), 16):
                scores.extend((query.squeeze() @ embed(q.texts[begin : begin + 16]).T).tolist())
        results.append(np.array(scores))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return results, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument(
        "--split",
        choices=("time", "user"),
        default="time",
        help="user: no shared histories, so the gain is batching alone",
    )
    parser.add_argument("--per-user", type=int, default=8)
    parser.add_argument(
        "--seed-questions",
        type=int,
        default=0,
        help="time (a) on this many questions and scale by texts (0: all of them)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--bert-base", action="store_true", help="768 hidden, 12 layers")
    args = parser.parse_args()

    import torch

    with tempfile.TemporaryDirectory() as tmp:
        if args.bert_base:
            checkpoint = write_tiny_bert(
                Path(tmp) / "bert", hidden=768, layers=12, heads=12, max_positions=512
            )
        else:
            checkpoint = write_tiny_bert(
                Path(tmp) / "bert", hidden=128, layers=2, heads=2, max_positions=512
            )
        questions = questions_of(args.users, args.per_user, args.split)
        items = sum(len(q.texts) for q in questions)
        print(
            f"{args.split} split: {len(questions)} questions, {items} profile items; "
            f"model {'BERT-base shapes' if args.bert_base else 'small BERT (128x2)'}, "
            f"device {args.device}, torch threads {torch.get_num_threads()}"
        )

        fair_scores, fair = baseline(checkpoint, questions, args.device, reload=False)
        sample = (
            questions[: args.seed_questions]
            if args.seed_questions
            else questions
            if args.seed_questions
            else questions
        )
        _, seed_sample = baseline(checkpoint, sample, args.device, reload=True)
        sample_items = sum(len(q.texts) + 1 for q in sample)
        seed = seed_sample * (items + len(questions)) / sample_items
        config = EncoderConfig(
            checkpoint=str(checkpoint), device=args.device, precision=args.precision
        )
        start = time.perf_counter()
        ranker = ContrieverRanker(config)
        got = list(ranker.score(questions))
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        lampctl = time.perf_counter() - start

        worst = max(
            float(np.max(np.abs(g - e) / np.maximum(np.abs(e), 1e-6)))
            for g, e in zip(got, fair_scores, strict=True)
            if len(e)
        )
        stats = ranker.encoder.stats
        scaled = "" if sample is questions else f" (timed on {len(sample)} questions, scaled)"
        print(f"(a) seed pattern : {seed:8.2f} s{scaled}")
        print(f"(b) fair baseline: {fair:8.2f} s")
        print(f"(c) lampctl      : {lampctl:8.2f} s  (includes its one model load)")
        print(
            f"speed-up: {seed / lampctl:.1f}x vs seed pattern, {fair / lampctl:.2f}x vs fair "
            "baseline"
        )
        print(f"largest relative score difference vs (b): {worst:.2e}")
        print(
            f"encoder calls: {stats.requested} texts requested, {stats.encoded} encoded: "
            f"cache saved {1 - stats.encoded / stats.requested:.1%}"
        )
        print(
            f"tokens encoded: {stats.tokens} real, {stats.padded_tokens} padded "
            f"({stats.padded_tokens / max(stats.tokens, 1) - 1:.1%} padding), "
            f"{stats.tokens / lampctl:,.0f} tokens/s"
        )


if __name__ == "__main__":
    main()
