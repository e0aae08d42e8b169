"""Benchmark `lampctl peft-data` against the reference's way of building per-user data.

Data: a generated LaMP-4 time split, about 1,000 users whose questions share one growing history
(profiles of about 120 items, a few hundred MB). Timed in the same run, as whole processes:
  (a) reference - json.load the file, then per user the rows of the first question's profile
      and one Hugging Face `datasets.Dataset` built from them (the LaMP authors'
      create_per_user_dataset), plus the evaluation rows per user;
  (b) lampctl   - `lampctl peft-data -t 4 --questions ... --output ...` (rows, evaluation rows,
      user list and record written to disk).
Prints wall seconds, the ratio, and each process tree's peak memory against the file's size.

`datasets` is needed here only (pip install datasets); lampctl does not depend on it.

Usage: python benchmarks/bench_peft.py [--users 1000] [--items 120] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test data
from synth import SynthSpec, time_split  # noqa: E402

# The reference's pattern, written plainly: rows per user from the first question's profile,
# each user's rows (and evaluation rows) turned into a datasets.Dataset by a generator with a
# cache folder, which writes an Arrow file per user.
REFERENCE = r"""
import json, sys
import datasets

datasets.disable_progress_bars()
questions = json.load(open(sys.argv[1]))
golds = {g["id"]: g["output"] for g in json.load(open(sys.argv[2]))["golds"]}
cache = sys.argv[3]


def as_dataset(rows):
    def gen():
        for row in rows:
            yield row
    return datasets.Dataset.from_generator(gen, cache_dir=cache)


seen, train = set(), {}
for q in questions:
    user = str(q["user_id"])
    if user in seen:
        continue
    seen.add(user)
    rows = []
    for i, item in enumerate(q["profile"]):
        rows.append({"id": f"{user}-{q['id']}-{i}",
                     "source": f"Generate a headline for the following article: {item['text']}",
                     "target": f"{item['title']}"})
    train[user] = as_dataset(rows)
grouped = {}
for q in questions:
    grouped.setdefault(str(q["user_id"]), []).append(
        {"id": q["id"], "source": q["input"], "target": golds[q["id"]]})
test = {user: as_dataset(rows) for user, rows in grouped.items()}
print(sum(len(d) for d in train.values()))
"""

MEASURE = r"""
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"rc": done.returncode, "seconds": seconds, "peak": peak}))
"""


def measure(command: list[str]) -> dict:
    """Wall time and the process tree's peak resident memory, in a fresh parent each time."""
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *command], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = SynthSpec(
            questions=args.users * 3,
            profile_min=args.items - 20,
            profile_max=args.items + 20,
            words_min=60,
            words_max=120,
            seed=8,
        )
        sets = time_split(4, spec, users=args.users)
        questions = sets["train"] + sets["dev"]  # one file with each user's several questions
        path = folder / "questions.json"
        path.write_text(json.dumps(questions))
        golds = folder / "outputs.json"
        golds.write_text(
            json.dumps(
                {"task": "LaMP_4", "golds": [{"id": q["id"], "output": "t"} for q in questions]}
            )
        )
        size = path.stat().st_size
        users = len({q["user_id"] for q in questions})
        items = sum(len(q["profile"]) for q in questions)
        print(
            f"LaMP-4 time split: {len(questions)} questions, {users} users, {items} profile items, "
            f"{size / 1e6:.0f} MB"
        )
        ours_cmd = [sys.executable, "-m", "lampctl", "peft-data", "-t", "4", "--questions",
                    str(path), "--outputs", str(golds), "--output", str(folder / "train.jsonl"),
                    "--force"]  # fmt: skip
        ours, ref = [], []
        for repeat in range(args.repeats):
            cache = folder / f"hf-cache-{repeat}"  # a fresh cache, as for a new file
            ref.append(
                measure([sys.executable, "-c", REFERENCE, str(path), str(golds), str(cache)])
            )
            ours.append(measure(ours_cmd))
        ref_s = statistics.median(r["seconds"] for r in ref)
        ours_s = statistics.median(r["seconds"] for r in ours)
        ref_peak = max(r["peak"] for r in ref)
        ours_peak = max(r["peak"] for r in ours)
        print(f"(a) reference (datasets per user): {ref_s:7.2f} s, peak {ref_peak / 1e6:,.0f} MB")
        print(f"(b) lampctl peft-data            : {ours_s:7.2f} s, peak {ours_peak / 1e6:,.0f} MB")
        print(f"speed-up: {ref_s / ours_s:.1f}x (median of {args.repeats}, whole processes)")
        print(
            f"peak memory / file size: lampctl {ours_peak / size:.2f}x, reference "
            f"{ref_peak / size:.2f}x"
        )


if __name__ == "__main__":
    main()
