"""Benchmark `lampctl merge` on a 10,000-question file against the naive nested-loop merge,
and show a 4-shard `rank` + `gather` reproducing the unsharded ranking byte for byte.

Usage: python benchmarks/bench_merge.py [--questions 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lampctl.io.data import load_outputs, load_questions
from lampctl.merge import merge_questions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test data
from synth import SynthSpec, outputs_for, user_split  # noqa: E402


def naive_merge(questions: list, ranking: dict, outputs: dict) -> list:
    """The reference pattern: a scan of the golds for every question, of the profile for
    every ranked id."""
    merged = []
    for question in questions:
        profile = []
        for pid in ranking[question["id"]]:
            for item in question["profile"]:
                if item["id"] == pid:
                    profile.append(item)
                    break
        record = dict(question, profile=profile)
        for gold in outputs["golds"]:
            if gold["id"] == question["id"]:
                record["output"] = gold["output"]
        merged.append(record)
    return merged


def lampctl(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lampctl", "--quiet", *args], check=True)
    return time.perf_counter() - start


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data_raw"
        folder = data / "user" / "LaMP_5"
        folder.mkdir(parents=True)
        spec = SynthSpec(questions=args.questions, profile_min=10, profile_max=120, seed=9)
        questions = user_split(5, spec)
        (folder / "dev_questions.json").write_text(json.dumps(questions))
        (folder / "dev_outputs.json").write_text(json.dumps(outputs_for(5, questions)))
        items = sum(len(q["profile"]) for q in questions)
        print(f"LaMP-5-shaped dev set: {len(questions)} questions, {items} profile items")

        whole = Path(tmp) / "whole"
        shutil.copytree(data, whole)
        t_rank = lampctl("rank", "-t", "5", "--data-dir", str(whole))
        t_shards = [
            lampctl("rank", "-t", "5", "--data-dir", str(data), "--shard", f"{i}/4")
            for i in range(4)
        ]
        t_gather = lampctl("gather", "-t", "5", "--data-dir", str(data))
        final = folder / "dev_questions_rank.json"
        reference = whole / "user/LaMP_5/dev_questions_rank.json"
        print(
            f"unsharded rank: {t_rank:.2f} s; 4 shards: "
            f"{', '.join(f'{t:.2f}' for t in t_shards)} s; gather: {t_gather:.2f} s"
        )
        print(
            f"gathered sha256 {sha(final)}..., unsharded {sha(reference)}...: byte-identical "
            f"{final.read_bytes() == reference.read_bytes()}"
        )

        t_merge = lampctl("merge", "-t", "5", "--data-dir", str(data))
        ranking = json.loads(final.read_text())
        outputs = json.loads((folder / "dev_outputs.json").read_text())
        start = time.perf_counter()
        expected = naive_merge(questions, ranking, outputs)
        t_naive = time.perf_counter() - start
        merged = json.loads((folder / "dev_questions_merged.json").read_text())
        loaded = load_questions(folder / "dev_questions.json")
        golds = load_outputs(folder / "dev_outputs.json")
        start = time.perf_counter()
        merge_questions(loaded, ranking, golds, "ranking", "outputs")
        t_core = time.perf_counter() - start
        size = (folder / "dev_questions.json").stat().st_size / 1e6
        print(
            f"merge step in memory: lampctl {t_core:.2f} s, naive nested loops {t_naive:.2f} s "
            f"({t_naive / t_core:.1f}x)"
        )
        print(f"lampctl merge, whole process (read {size:.0f} MB, merge, write): {t_merge:.2f} s")
        print(f"same merged data: {merged == expected}")


if __name__ == "__main__":
    main()
