"""Benchmark `lampctl peft-data` against the reference's way of building per-user data.

Data: a generated LaMP-4 time split, about 1,000 users whose questions share one growing history
(profiles of about 120 items, a few hundred MB). Timed in the same run, as whole processes:
  (a) reference - the LaMP authors' scripts' data part, as they run it: the training script
      (create_per_user_dataset: json.load, then per user the rows of the first question's
      profile and one Hugging Face `datasets.Dataset`) and, in its own process, the
      evaluation script (create_per_user_dataset_test: json.load again, one Dataset of
      evaluation rows per user). Their times add up; the peak is the larger one's.
  (a') the same two sides in one process after one json.load (no reference script does this;
      it was this benchmark's baseline before, and is printed so the two can be compared);
  (b) lampctl   - `lampctl peft-data -t 4 --questions ... --output ...` (rows, evaluation rows,
      user list and record written to disk): a first run on a file lampctl has not seen (no
      record: the questions file is hashed as well), a rerun with --force (the record's sha256
      of it is reused), and a first run on the same file as `lampctl download` left it in a
      data dir (`peft-data --data-dir D -t 4 -s time --set dev`: the download manifest's
      sha256 is reused; the download itself, once before the rounds, is not timed).
Prints wall seconds, the ratios, and each process tree's peak memory (the sum of the resident
sets of the process and its children) against the file's size. Each timed process, on either
side, starts after --settle seconds of idle (default 1): on the 2-core VM this was written on,
a short run right after the reference's 15 s of full load took about 7% longer than after a
pause; --settle 0 measures them back to back.

`datasets` is needed here only (pip install datasets); lampctl does not depend on it.

Usage: python benchmarks/bench_peft.py [--users 1000] [--items 120] [--repeats 3] [--settle 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test data
from synth import SynthSpec, time_split  # noqa: E402

# The reference's way, written plainly from its description (LaMP-Benchmark/LaMP, PEFT/): the
# training script (train_peft.py -> create_per_user_dataset) and the evaluation script
# (evaluate_llm.py -> create_per_user_dataset_test) each json.load the questions file and build
# one datasets.Dataset per user by a generator over a small Dataset class that renames
# input/output to source/target, with a cache folder (an Arrow file per user). The argument
# "train" or "eval" runs one script's data part; "both" does both sides after one json.load,
# which no reference script does (the figure earlier versions of this benchmark printed).
# The reference module also imports torch at its top; that is left out here (a training script
# imports torch anyway), so the reference times are on the low side.
REFERENCE = r"""
import json, sys
import datasets

datasets.disable_progress_bars()
side, questions_path, outputs_path, cache = sys.argv[1:5]


class Seq2Seq:  # PEFT/data/datasets.py GeneralSeq2SeqDataset
    def __init__(self, rows):
        self.rows = rows

    def __getitem__(self, index):
        row = self.rows[index]
        return {"id": row["id"], "source": row["input"], "target": row["output"]}

    def __len__(self):
        return len(self.rows)


def as_dataset(rows):
    def gen():
        for index in range(len(rows)):
            yield rows[index]
    return datasets.Dataset.from_generator(gen, cache_dir=cache)


questions = json.load(open(questions_path))
built = 0
if side in ("train", "both"):
    seen = set()
    for q in questions:
        user = str(q["user_id"])
        if user in seen:
            continue
        seen.add(user)
        rows = []
        for i, item in enumerate(q["profile"]):
            rows.append({"id": f"{user}-{q['id']}-{i}",
                         "input": f"Generate a headline for the following article: {item['text']}",
                         "output": f"{item['title']}"})
        built += len(as_dataset(Seq2Seq(rows)))
if side in ("eval", "both"):
    golds = {g["id"]: g["output"] for g in json.load(open(outputs_path))["golds"]}
    grouped = {}
    for q in questions:
        grouped.setdefault(str(q["user_id"]), []).append(
            {"id": q["id"], "input": q["input"], "output": golds[q["id"]]})
    built += sum(len(as_dataset(Seq2Seq(rows))) for rows in grouped.values())
print(built)
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


def measure(command: list[str], sample: bool = False, settle: float = 0.0) -> dict:
    """Wall time, in a fresh parent each time; with ``sample``, the process tree's peak
    resident memory (the sum over its processes, sampled every 10 ms) instead. ``settle``
    seconds of idle first, so a run does not start on cores still hot from the one before."""
    time.sleep(settle)
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
    parser.add_argument(
        "--settle",
        type=float,
        default=1.0,
        help="idle seconds before each timed process, both sides (0: back to back)",
    )
    args = parser.parse_args()
    # lampctl's bytecode, as an installed package has it (pip compiles it at install, and an
    # editable checkout writes it on its first run, unless PYTHONDONTWRITEBYTECODE is set, as
    # on some machines): without it every run compiles lampctl's modules again (about 40 ms).
    # The reference's modules are in site-packages, compiled by pip.
    import compileall

    import lampctl

    compileall.compile_dir(Path(lampctl.__file__).parent, quiet=1)
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
        # the same bytes as the server lays them out, imported with `lampctl download`
        server = folder / "server/time/LaMP_4/dev"
        server.mkdir(parents=True)
        (server / "dev_questions.json").hardlink_to(path)
        (server / "dev_outputs.json").hardlink_to(golds)
        data = folder / "data"
        subprocess.run(
            [sys.executable, "-m", "lampctl", "download", "--base-url", str(folder / "server"),
             "--data-dir", str(data), "-t", "4", "-s", "time", "--set", "dev"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
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
        downloaded_cmd = [sys.executable, "-m", "lampctl", "peft-data", "--data-dir", str(data),
                          "-t", "4", "-s", "time", "--set", "dev"]  # fmt: skip
        ref, one, fresh, rerun, downloaded = [], [], [], [], []
        for repeat in range(args.repeats + 1):  # the last round samples memory
            sample = repeat == args.repeats
            sides = []
            for side in ("train", "eval", "both"):
                cache = folder / f"hf-cache-{side}-{repeat}"  # a fresh cache, as for a new file
                command = [sys.executable, "-c", REFERENCE, side, str(path), str(golds), str(cache)]
                sides.append(measure(command, sample, args.settle))
            ref.append(
                {
                    "seconds": sides[0]["seconds"] + sides[1]["seconds"],
                    "peak": max(sides[0]["peak"], sides[1]["peak"]),
                }
            )
            one.append(sides[2])
            for old in folder.glob("train*"):
                old.unlink()  # a first run: no record, so the questions file is hashed too
            fresh.append(measure(ours_cmd, sample, args.settle))
            # --force again: the record's sha is reused
            rerun.append(measure(ours_cmd, sample, args.settle))
            for old in data.glob("time/LaMP_4/dev_peft_*"):
                old.unlink()  # a first run, on the downloaded file: the manifest's sha is reused
            downloaded.append(measure(downloaded_cmd, sample, args.settle))
        baselines = []
        for label, runs in (
            ("(a)  reference, its two scripts   ", ref),
            ("(a') both sides in one process    ", one),
        ):
            seconds = statistics.median(r["seconds"] for r in runs[:-1])
            baselines.append(seconds)
            peak = runs[-1]["peak"]
            print(
                f"{label}: {seconds:6.2f} s, peak {peak / 1e6:,.0f} MB "
                f"({peak / size:.2f}x the file)"
            )
        print("(b)  lampctl peft-data        seconds  vs (a) vs (a')  peak")
        for label, runs in (
            ("first run", fresh),
            ("rerun, --force", rerun),
            ("first run after download", downloaded),
        ):
            seconds = statistics.median(r["seconds"] for r in runs[:-1])
            peak = runs[-1]["peak"]
            print(
                f"     {label:<25} {seconds:6.2f} {baselines[0] / seconds:6.1f}x "
                f"{baselines[1] / seconds:6.1f}x  {peak / 1e6:,.0f} MB ({peak / size:.2f}x)"
            )
        print(f"median of {args.repeats}, whole processes, {args.settle:g} s idle before each")


if __name__ == "__main__":
    main()
