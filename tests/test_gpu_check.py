"""The prepared GPU check runs end to end in its CPU smoke mode, so a device run cannot fail
on a typo: every step runs and reports its figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_smoke_runs_every_step(tmp_path):
    report_path = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMPCTL_")}
    done = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--smoke", "--out", str(report_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,  # a hang guard, not a time limit: a busy machine takes minutes
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(report_path.read_text())
    steps = (
        "encoder_tests",
        "forward_limit",
        "encoder",
        "agreement",
        "rank_all",
        "workers",
        "peft",
        "peft_pack",
    )
    for step in steps:
        assert isinstance(report[step], dict), step
        assert report[step].get("error") is None, report[step]
        assert "skipped" not in report[step], report[step]
    assert report["encoder_tests"]["exit_code"] == 0
    for precision in ("fp32", "fp16", "bf16"):
        assert report["forward_limit"][precision]["tokens_per_s"] > 0
        encoder = report["encoder"][precision]
        assert encoder["tokens_per_s"] > 0 and encoder["share_of_forward_limit"] > 0
        assert 0 <= encoder["padding_share"] < 1
    assert 0.9 < report["agreement"]["fp16"]["mean_kendall_tau"] <= 1
    assert report["rank_all"]["exit_code"] == 0 and report["rank_all"]["done"] == 4
    assert report["rank_all"]["extrapolated_seconds"]
    assert report["workers"]["one_worker"]["exit_code"] == 0
    assert report["workers"]["two_workers"]["exit_code"] == 0
    peft = report["peft"]
    assert peft["train_trained"] == peft["users"] == 3 and peft["predict_without_adapter"] == 0
    assert peft["predict_seconds"] > 0 and peft["per_user_loop_seconds"] > 0
    pack = report["peft_pack"]
    assert [pack[f"pack{k}"]["pack"] for k in (1, 2, 3)] == [1, 2, 3]
    assert all(pack[f"pack{k}"]["trained"] == 3 for k in (1, 2, 3))
    assert pack["pack3"]["largest_difference_from_pack1"] < 1e-4
    assert "precision" in done.stdout and "forward limit" in done.stdout
