"""Benchmark `lampctl peft-data` against the reference's way of building per-user data.

Data: a generated LaMP-4 time split, about 1,000 users whose questions share one growing history
(profiles of about 120 items, a few hundred MB). Timed in the same run, as whole processes:
  (a) reference - json.load the file, then per user the rows of the first question's profile
      and one Hugging Face `datasets.Dataset` built from them (the LaMP authors'
      create_per_user_dataset), plus the evaluation rows per user;
  (b) lampctl   - `lampctl peft-data -t 4 --questions ... --output ...` (rows, evaluation rows,
      user list and record written to disk): a first run (no record: the questions file is
      hashed as well) and a rerun with --force (the record's sha256 of it is reused).
Prints wall seconds, the ratios, and each process tree's peak memory (the sum of the resident
sets of the process and its children) against the file's size.

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
import json, os, subprocess, sys, time


def tree_rss(root):
    # resident bytes of root and every process below it (lampctl forks a hasher)
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as handle:
                    parents[int(name)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/status") as handle:
                for line in handle:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


sample = sys.argv[1] == "sample"  # sampling costs CPU: timed runs do not sample
started = time.perf_counter()
child = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL)
peak = 0
while sample and child.poll() is None:
    peak = max(peak, tree_rss(child.pid))
    time.sleep(0.01)
child.wait()
seconds = time.perf_counter() - started
print(json.dumps({"rc": child.returncode, "seconds": seconds, "peak": peak}))
"""


def measure(command: list[str], sample: bool = False) -> dict:
    """Wall time, in a fresh parent each time; with ``sample``, the process tree's peak
    resident memory (the sum over its processes, sampled every 10 ms) instead."""
    mode = "sample" if sample else "time"
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, mode, *command], capture_output=True, text=True, check=True
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
        train = folder / "train.jsonl"
        ours_cmd = [sys.executable, "-m", "lampctl", "peft-data", "-t", "4", "--questions",
                    str(path), "--outputs", str(golds), "--output", str(train),
                    "--force"]  # fmt: skip
        ref, fresh, rerun = [], [], []
        for repeat in range(args.repeats + 1):  # the last round samples memory
            sample = repeat == args.repeats
            cache = folder / f"hf-cache-{repeat}"  # a fresh cache, as for a new file
            reference = [sys.executable, "-c", REFERENCE, str(path), str(golds), str(cache)]
            ref.append(measure(reference, sample))
            for old in folder.glob("train*"):
                old.unlink()  # a first run: no record, so the questions file is hashed too
            fresh.append(measure(ours_cmd, sample))
            rerun.append(measure(ours_cmd, sample))  # --force again: the record's sha is reused
        ref_s = statistics.median(r["seconds"] for r in ref[:-1])
        ref_peak = ref[-1]["peak"]
        print(f"(a) reference (datasets per user)  : {ref_s:6.2f} s, peak {ref_peak / 1e6:,.0f} MB")
        for label, runs in (("first run", fresh), ("rerun, --force", rerun)):
            seconds = statistics.median(r["seconds"] for r in runs[:-1])
            peak = runs[-1]["peak"]
            print(
                f"(b) lampctl peft-data, {label:<14}: {seconds:6.2f} s, peak {peak / 1e6:,.0f} MB"
                f"  ->  {ref_s / seconds:.1f}x, memory {peak / size:.2f}x the file"
            )
        print(
            f"median of {args.repeats}, whole processes; reference memory {ref_peak / size:.2f}x "
            "the file"
        )


if __name__ == "__main__":
    main()
