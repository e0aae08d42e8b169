"""Benchmark `lampctl evaluate` on dev-sized predictions for all seven tasks.

The baseline is the official scorer's arithmetic done plainly in the same process (scikit-learn
for LaMP-1 to 3, rouge_score per pair for LaMP-4 to 7; the official script also fetches metric
code from the hub and extracts zips, which cannot be timed offline). lampctl is timed as a whole
process over a zip of the seven prediction files, with and without a 1,000-sample bootstrap.

Usage: python benchmarks/bench_evaluate.py
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

# Dev-set sizes (user split) and typical output lengths in words.
TASKS = {
    1: (2500, 1),
    2: (1410, 2),
    3: (2500, 1),
    4: (1925, 10),
    5: (2500, 10),
    6: (1353, 6),
    7: (1500, 18),
}
WORDS = (
    "model data learning the of a in for news market rate study new deep neural "
    "results paper users email meeting tweet today great"
).split()


def make(task: int, n: int, length: int, rng: random.Random) -> tuple[dict, dict]:
    from lampctl.catalog.bundled import load_registry

    spec = load_registry().task(str(task)).evaluation
    ids = [f"{task}{i:05d}" for i in range(n)]
    if spec.metric == "classification":
        golds = [rng.choice(spec.labels) for _ in ids]
        preds = [rng.choice([*spec.labels, "none"]) for _ in ids]
    elif spec.metric == "rating":
        golds = [str(rng.randint(1, 5)) for _ in ids]
        preds = [rng.choice(["1", "2", "3", "4", "5", "3.5", "four"]) for _ in ids]
    else:
        golds = [" ".join(rng.choices(WORDS, k=length)) for _ in ids]
        preds = [" ".join(rng.choices(WORDS, k=length)) for _ in ids]

    def wrap(values: list[str]) -> dict:
        rows = [{"id": i, "output": v} for i, v in zip(ids, values, strict=True)]
        return {"task": f"LaMP_{task}", "golds": rows}

    return wrap(preds), wrap(golds)


def baseline(pairs: dict[int, tuple[dict, dict]]) -> float:
    from rouge_score import rouge_scorer
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error

    from lampctl.catalog.bundled import load_registry

    registry = load_registry()
    started = time.perf_counter()
    for task, (preds, golds) in pairs.items():
        p = [str(g["output"]).strip() for g in preds["golds"]]
        g = [str(x["output"]).strip() for x in golds["golds"]]
        spec = registry.task(str(task)).evaluation
        if spec.metric == "classification":
            labels = list(spec.labels)
            pi = [labels.index(x) if x in labels else -1 for x in p]
            gi = [labels.index(x) if x in labels else -1 for x in g]
            accuracy_score(gi, pi)
            f1_score(gi, pi, labels=list(range(len(labels))), average="macro", zero_division=0)
        elif spec.metric == "rating":

            def m(x, y):
                try:
                    return float(x)
                except ValueError:
                    return 1.0 if abs(1 - float(y)) > abs(5 - float(y)) else 5.0

            pv = [m(x, y) for x, y in zip(p, g, strict=True)]
            gv = [float(y) for y in g]
            mean_absolute_error(gv, pv)
            math.sqrt(mean_squared_error(gv, pv))
        else:
            scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=False)
            [scorer.score(y, x) for x, y in zip(p, g, strict=True)]
    return time.perf_counter() - started


def main() -> None:
    rng = random.Random(0)
    pairs = {t: make(t, n, length, rng) for t, (n, length) in TASKS.items()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        preds_zip = root / "preds.zip"
        golds = root / "golds"
        golds.mkdir()
        with zipfile.ZipFile(preds_zip, "w") as archive:
            for task, (preds, gold) in pairs.items():
                archive.writestr(f"LaMP_{task}.json", json.dumps(preds))
                (golds / f"LaMP_{task}.json").write_text(json.dumps(gold))
        base = min(baseline(pairs) for _ in range(3))
        runs = {}
        for label, extra in (
            ("lampctl evaluate", []),
            ("with --bootstrap 1000", ["--bootstrap", "1000"]),
        ):
            times = []
            for _ in range(3):
                started = time.perf_counter()
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "lampctl",
                        "--json",
                        "evaluate",
                        "-p",
                        str(preds_zip),
                        "--golds",
                        str(golds),
                        *extra,
                    ],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                times.append(time.perf_counter() - started)
            runs[label] = sorted(times)[1]
    total = sum(n for n, _ in TASKS.values())
    print(f"{total} dev predictions over 7 tasks")
    print(f"official arithmetic in-process (no hub fetch, no zip extraction): {base:.2f} s")
    for label, seconds in runs.items():
        print(
            f"{label} (whole process, median of 3): {seconds:.2f} s "
            f"(ratio to the in-process arithmetic {seconds / base:.2f}: start-up, imports, reading "
            "and checking the files included)"
        )


if __name__ == "__main__":
    main()
