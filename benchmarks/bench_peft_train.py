"""Benchmark `lampctl peft train` and `lampctl peft predict` against the reference loop of the
LaMP authors' PEFT scripts, rebuilt with the same tiny model, in the same run.

Data: a generated LaMP-3 time split (--users users, profiles of up to --items items); its dev
set's peft-data rows. Model: a tiny random T5 built offline (tests/synth.py), so the figures
show what each side does around the model (loading, wrapping, Trainer set-up, checkpoints,
batching), which is what differs; on a real model the forward and backward passes dominate
both sides alike.

  training  (a) reference: per user, what PEFT/train_peft.py does: the base model loaded,
                wrapped with get_peft_model, a Seq2SeqTrainer built with the reference's
                arguments (save each epoch, keep 1, log every 10 steps) and trained; the
                adapter saved. (The reference loads the model once and wraps it again for each
                user, stacking adapters; a fresh load per user is the faithful fix of that.)
            (b) lampctl peft train: one process, the model loaded once, one fresh adapter per
                user, no Trainer.
  predicting (a) reference: per user, what PEFT/evaluate_llm.py does: the base model loaded,
                the user's adapter put on it, a Seq2SeqTrainer with predict_with_generate,
                trainer.predict on that user's questions;
            (a') the same without the Trainer (no script does this; lighter, printed beside):
                the adapter on a fresh base model, that user's questions in one generate call.
            (b) lampctl peft predict: adapters of 16 users at once in slots of one base model
                (no peft), each row of a batch with its own adapter, batches across users.
Both sides use the same hyperparameters (--epochs, batch 16, lr 5e-5) and decoding: 4 beams
and --max-new-tokens, by default 128 as in PEFT/evaluate_llm.py and lampctl (the tiny random
model never stops early, so every question takes all of them; --max-new-tokens 32 shows a
run where each side's fixed cost weighs more). Each side is a whole process, timed
wall-clock; the peak resident memory of lampctl's process is sampled at --users and at half as
many users, to show it does not grow with the number of users. Prediction is also run for one
user on both sides: a process's fixed cost (importing torch and transformers, loading the
model), and what each further user costs; and, for each --pack, what a whole-process
10x would leave each further user once the one-user run's cost is paid. Prints seconds
and ratios.

Needs the train extra and `datasets` and `accelerate` for the reference's Trainer (pip install
datasets accelerate); lampctl does not depend on them.

Usage: python benchmarks/bench_peft_train.py [--users 100] [--epochs 2] [--max-new-tokens 128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test data
from synth import SynthSpec, time_split, write_tiny_t5  # noqa: E402

REFERENCE_TRAIN = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
from collections import defaultdict
import torch
from datasets import Dataset
from peft import LoraConfig, TaskType, get_peft_model
from transformers import (AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq,
                          Seq2SeqTrainer, Seq2SeqTrainingArguments)
from transformers.utils import logging
logging.set_verbosity_error()
logging.disable_progress_bar()

model_dir, rows_path, out, epochs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
users = defaultdict(list)
for line in open(rows_path):
    row = json.loads(line)
    users[row["user_id"]].append(row)
tokenizer = AutoTokenizer.from_pretrained(model_dir)
def tokenize(batch):
    enc = tokenizer(batch["source"], max_length=512, truncation=True)
    enc["labels"] = tokenizer(batch["target"], max_length=512, truncation=True)["input_ids"]
    return enc
import dataclasses
# transformers 5 folds warmup_ratio into warmup_steps (a float below 1 is a ratio)
fields = {f.name for f in dataclasses.fields(Seq2SeqTrainingArguments)}
warmup = {"warmup_ratio": 0.05} if "warmup_ratio" in fields else {"warmup_steps": 0.05}
for user, rows in users.items():
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir)
    config = LoraConfig(task_type=TaskType.SEQ_2_SEQ_LM, r=8, lora_alpha=32, lora_dropout=0.1,
                        target_modules=["q", "v", "k"])
    model = get_peft_model(model, config)
    data = Dataset.from_list([{"source": r["source"], "target": r["target"]} for r in rows])
    data = data.map(tokenize, batched=True, remove_columns=["source", "target"])
    args = Seq2SeqTrainingArguments(
        output_dir=f"{out}/{user}", per_device_train_batch_size=16, learning_rate=5e-5,
        weight_decay=1e-4, num_train_epochs=epochs, lr_scheduler_type="linear", **warmup,
        save_strategy="epoch", save_total_limit=1, save_only_model=True,
        logging_steps=10, report_to=[], disable_tqdm=True, use_cpu=True,
    )
    trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=data,
                             data_collator=DataCollatorForSeq2Seq(tokenizer, model=model))
    trainer.train()
    model.save_pretrained(f"{out}/{user}/final")
"""

REFERENCE_PREDICT = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
from collections import defaultdict
from pathlib import Path
import torch
from peft import PeftModel
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.utils import logging
logging.set_verbosity_error()
logging.disable_progress_bar()

model_dir, rows_path, adapters, out, new_tokens = sys.argv[1:6]
users = defaultdict(list)
for line in open(rows_path):
    row = json.loads(line)
    users[row["user_id"]].append(row)
tokenizer = AutoTokenizer.from_pretrained(model_dir)
golds = []
for user, rows in users.items():
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir)
    if (Path(adapters) / user).is_dir():
        model = PeftModel.from_pretrained(model, str(Path(adapters) / user))
    model.eval()
    enc = tokenizer([r["source"] for r in rows], max_length=512, truncation=True, padding=True,
                    return_tensors="pt", return_token_type_ids=False)
    with torch.inference_mode():
        ids = model.generate(**enc, num_beams=4, max_new_tokens=int(new_tokens))
    for row, text in zip(rows, tokenizer.batch_decode(ids, skip_special_tokens=True)):
        golds.append({"id": row["id"], "output": text.strip()})
json.dump({"task": "LaMP_3", "golds": golds}, open(out, "w"))
"""

# What PEFT/evaluate_llm.py does per user: the user's adapter on the base model (a fresh load,
# the fix of its stacking), a Seq2SeqTrainer with predict_with_generate, trainer.predict on
# that user's questions (4 beams), the label-free outputs decoded.
REFERENCE_PREDICT_TRAINER = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
from collections import defaultdict
from pathlib import Path
import numpy as np
from datasets import Dataset
from peft import PeftModel
from transformers import (AutoModelForSeq2SeqLM, AutoTokenizer, DataCollatorForSeq2Seq,
                          Seq2SeqTrainer, Seq2SeqTrainingArguments)
from transformers.utils import logging
logging.set_verbosity_error()
logging.disable_progress_bar()

model_dir, rows_path, adapters, out, new_tokens = sys.argv[1:6]
users = defaultdict(list)
for line in open(rows_path):
    row = json.loads(line)
    users[row["user_id"]].append(row)
tokenizer = AutoTokenizer.from_pretrained(model_dir)
def tokenize(batch):  # the script's dataset carries the golds as labels too
    enc = tokenizer(batch["source"], max_length=512, truncation=True, return_token_type_ids=False)
    enc["labels"] = tokenizer(batch["target"], max_length=512, truncation=True)["input_ids"]
    return enc
golds = []
for user, rows in users.items():
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir)
    if (Path(adapters) / user).is_dir():
        model = PeftModel.from_pretrained(model, str(Path(adapters) / user))
    data = Dataset.from_list([{"source": r["source"], "target": r.get("target") or ""}
                              for r in rows])
    data = data.map(tokenize, batched=True, remove_columns=["source", "target"])
    args = Seq2SeqTrainingArguments(
        output_dir=f"{out}.work/{user}", per_device_eval_batch_size=16, predict_with_generate=True,
        generation_num_beams=4, remove_unused_columns=False, report_to=[], disable_tqdm=True,
        use_cpu=True,
    )
    trainer = Seq2SeqTrainer(model=model, args=args,
                             data_collator=DataCollatorForSeq2Seq(tokenizer, model=model))
    ids = trainer.predict(data, max_new_tokens=int(new_tokens)).predictions
    ids = np.where(ids != -100, ids, tokenizer.pad_token_id)
    for row, text in zip(rows, tokenizer.batch_decode(ids, skip_special_tokens=True)):
        golds.append({"id": row["id"], "output": text.strip()})
json.dump({"task": "LaMP_3", "golds": golds}, open(out, "w"))
"""

PEAK = r"""
import subprocess, sys, time, json
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
peak = 0
while child.poll() is None:
    try:
        for line in open(f"/proc/{child.pid}/status"):
            if line.startswith("VmRSS:"):
                peak = max(peak, int(line.split()[1]) * 1024)
    except OSError:
        pass
    time.sleep(0.02)
print(json.dumps({"rc": child.returncode, "peak": peak}))
"""


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{command[:4]} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def peak_memory(command: list[str]) -> int:
    out = subprocess.run([sys.executable, "-c", PEAK, *command], capture_output=True, text=True)
    result = json.loads(out.stdout)
    if result["rc"] != 0:
        raise SystemExit(f"{command[:4]} failed while sampled")
    return result["peak"]


def build(folder: Path, users: int, items: int) -> tuple[Path, Path, Path]:
    """A LaMP-3 time split's dev set and its peft-data rows (training and evaluation)."""
    import lampctl

    sets = time_split(3, SynthSpec(questions=users * 2, profile_min=4, profile_max=items), users)
    task_dir = folder / "data" / "time" / "LaMP_3"
    task_dir.mkdir(parents=True)
    (task_dir / "dev_questions.json").write_text(json.dumps(sets["dev"]))
    golds = [{"id": q["id"], "output": "3"} for q in sets["dev"]]
    (task_dir / "dev_outputs.json").write_text(json.dumps({"task": "LaMP_3", "golds": golds}))
    lampctl.peft_data(["3"], ["time"], ["dev"], data_dir=folder / "data")
    return task_dir / "dev_peft_file.jsonl", task_dir / "dev_peft_file_eval.jsonl", task_dir


def subset(rows: Path, users: int, out: Path) -> Path:
    kept, seen = [], []
    for line in rows.read_text().splitlines():
        user = json.loads(line)["user_id"]
        if user not in seen:
            seen.append(user)
        if len(seen) <= users:
            kept.append(line)
    out.write_text("\n".join(kept) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--items", type=int, default=24, help="most profile items of a user")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=128, help="the reference's: 128")
    parser.add_argument("--packs", default="1,8,32", help="--pack values to train with")
    parser.add_argument("--train-only", action="store_true", help="skip the prediction runs")
    args = parser.parse_args()
    packs = [int(k) for k in args.packs.split(",")]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="bench-peft-train-") as scratch:
        work = Path(scratch)
        model = write_tiny_t5(work / "t5")
        rows, eval_rows, _ = build(work, args.users, args.items)
        count = sum(1 for _ in rows.open())
        print(
            f"{args.users} users, {count} training rows, epochs {args.epochs}; tiny T5; "
            f"4 beams, {args.max_new_tokens} new tokens"
        )
        lamp = [sys.executable, "-m", "lampctl", "--quiet"]

        def train(rows_file: Path, adapters: Path, *extra: str) -> list[str]:
            return [*lamp, "peft", "train", "-m", str(model), "--rows", str(rows_file),
                    "--adapters", str(adapters), "--device", "cpu", "--epochs",
                    str(args.epochs), *extra]  # fmt: skip

        def predict(rows_file: Path, output: Path) -> list[str]:
            return [*lamp, "peft", "predict", "-m", str(model), "-t", "3", "--rows",
                    str(rows_file), "--adapters", str(work / "ad"), "-o", str(output),
                    "--device", "cpu", "--max-new-tokens", str(args.max_new_tokens)]  # fmt: skip

        ref_train = timed([sys.executable, "-c", REFERENCE_TRAIN, str(model), str(rows),
                           str(work / "ref_adapters"), str(args.epochs)])  # fmt: skip
        one = subset(rows, 1, work / "one.jsonl")
        ref_train_one = timed([sys.executable, "-c", REFERENCE_TRAIN, str(model), str(one),
                               str(work / "ref_one_adapters"), str(args.epochs)])  # fmt: skip
        packed = {}
        for k in packs:  # whole runs, then one user: the fixed cost and each further user's
            packed[k] = (timed(train(rows, work / f"ad{k}", "--pack", str(k))),
                         timed(train(one, work / f"one{k}", "--pack", str(k))))  # fmt: skip
        (work / "ad").symlink_to(work / f"ad{packs[0]}")
        ours_train = packed[packs[0]][0]
        differences = {k: adapter_difference(work / f"ad{packs[0]}", work / f"ad{k}")
                       for k in packs[1:]}  # fmt: skip
        half = subset(rows, args.users // 2, work / "half.jsonl")
        train_peaks = {
            (k, n): peak_memory(train(part, work / f"peak{k}_{n}", "--pack", str(k)))
            for k in packs[-1:] for n, part in ((args.users, rows), (args.users // 2, half))
        }  # fmt: skip
        print_training(args, packs, ref_train, ref_train_one, packed, differences, train_peaks)
        if args.train_only:
            return
        ref_predict = timed([sys.executable, "-c", REFERENCE_PREDICT, str(model), str(eval_rows),
                             str(work / "ad"), str(work / "ref_preds.json"),
                             str(args.max_new_tokens)])  # fmt: skip
        ref_trainer = timed([sys.executable, "-c", REFERENCE_PREDICT_TRAINER, str(model),
                             str(eval_rows), str(work / "ad"), str(work / "ref_trainer.json"),
                             str(args.max_new_tokens)])  # fmt: skip
        ours_predict = timed(predict(eval_rows, work / "preds.json"))
        one_eval = subset(eval_rows, 1, work / "one_eval.jsonl")
        ref_one = timed([sys.executable, "-c", REFERENCE_PREDICT_TRAINER, str(model),
                         str(one_eval), str(work / "ad"), str(work / "ref_one.json"),
                         str(args.max_new_tokens)])  # fmt: skip
        ours_one = timed(predict(one_eval, work / "one.json"))
        half_eval = subset(eval_rows, args.users // 2, work / "half_eval.jsonl")
        peaks = {
            f"predict, {args.users} users": peak_memory(predict(eval_rows, work / "q1.json")),
            f"predict, {args.users // 2} users": peak_memory(predict(half_eval, work / "q2.json")),
        }
        ours = {
            g["id"]: g["output"] for g in json.loads((work / "preds.json").read_text())["golds"]
        }
        ref = {
            g["id"]: g["output"] for g in json.loads((work / "ref_preds.json").read_text())["golds"]
        }
        same = sum(ours.get(qid) == text for qid, text in ref.items())
        trainer_out = json.loads((work / "ref_trainer.json").read_text())["golds"]
        same_trainer = sum(ours.get(g["id"]) == g["output"] for g in trainer_out)
    rows = [
        (f"train (a) Trainer per user, --pack {packs[0]}", ref_train, ours_train),
        ("predict (a) Trainer.predict per user", ref_trainer, ours_predict),
        ("predict (a') generate per user", ref_predict, ours_predict),
    ]
    print(f"{'step, reference':<40}{'reference':>10}{'lampctl':>9}{'ratio':>7}")
    for name, theirs, mine in rows:
        print(f"{name:<40}{theirs:>9.1f}s{mine:>8.1f}s{theirs / mine:>6.1f}x")
    print(f"predict (a), one user: {ref_one:.1f}s, lampctl {ours_one:.1f}s (fixed cost)")
    users = args.users - 1
    theirs, mine = (ref_trainer - ref_one) / users, (ours_predict - ours_one) / users
    # lampctl's difference can be below the runs' noise (or negative): no ratio then
    ratio = f"{theirs / mine:.1f}x" if mine > 0 else "lampctl's within the noise of one run"
    print(f"predict (a), each further user: {theirs:.3f}s, lampctl {mine:.3f}s, {ratio}")
    print(f"predictions equal to (a'): {same} of {len(ref)}; to (a): {same_trainer} of "
          f"{len(trainer_out)}")  # fmt: skip
    for name, peak in peaks.items():
        print(f"peak memory, lampctl {name:<20} {peak / 2**20:7.0f} MB")


def adapter_difference(alone: Path, packed: Path) -> float:
    """The largest difference of any user's packed adapter from its lone one, over the
    largest weight of that adapter."""
    from safetensors.torch import load_file

    worst = 0.0
    for folder in alone.iterdir():
        if folder.name.startswith("."):
            continue
        want = load_file(str(folder / "adapter_model.safetensors"))
        got = load_file(str(packed / folder.name / "adapter_model.safetensors"))
        scale = max(float(t.abs().max()) for t in want.values())
        worst = max(worst, max(float((got[k] - t).abs().max()) for k, t in want.items()) / scale)
    return worst


def print_training(args, packs, ref_train, ref_one, packed, differences, peaks) -> None:
    further = args.users - 1
    ref_each = (ref_train - ref_one) / further
    print(f"train (a) reference, Trainer per user: {ref_train:.1f}s; one user {ref_one:.1f}s; "
          f"each further user {ref_each:.3f}s")  # fmt: skip
    print(f"{'lampctl peft train':<24}{'seconds':>9}{'ratio':>8}{'one user':>10}"
          f"{'further user':>14}{'ratio':>8}")  # fmt: skip
    for k in packs:
        whole, one = packed[k]
        each = (whole - one) / further
        each_ratio = f"{ref_each / each:.1f}x" if each > 0 else "noise"
        print(f"{'--pack ' + str(k):<24}{whole:>8.1f}s{ref_train / whole:>7.1f}x{one:>9.1f}s"
              f"{each:>13.3f}s{each_ratio:>8}")  # fmt: skip
    target = ref_train / 10
    for k in packs:  # what a whole-process 10x leaves each further user, after the fixed cost
        whole, one = packed[k]
        room = (target - one) / further
        print(f"--pack {k}: 10x needs the run in {target:.1f}s; after its one-user run "
              f"({one:.1f}s) that leaves {1000 * room:.0f} ms per further user, which cost "
              f"{1000 * (whole - one) / further:.0f} ms")  # fmt: skip
    for k, difference in differences.items():
        print(f"adapters of --pack {k} vs --pack {packs[0]}: largest difference "
              f"{difference:.2e} of the adapter's largest weight")  # fmt: skip
    for (k, users), peak in peaks.items():
        print(f"peak memory, lampctl train --pack {k}, {users} users: {peak / 2**20:.0f} MB")


if __name__ == "__main__":
    main()
