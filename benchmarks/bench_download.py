"""Benchmark `lampctl download` against a local mirror of the official layout.

Measures (1) throughput of a full download over loopback, (2) a run killed half-way through a
large file, then re-run: how many bytes were fetched again, and whether hashes match a clean run.

Usage: python benchmarks/bench_download.py [--mb-per-file 8]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from lampserver import LampServer, official_mirror  # noqa: E402


def _inflate(files: dict[str, bytes], mb: float) -> dict[str, bytes]:
    """Repeat each questions file's first question until the file is about ``mb`` MB."""
    out = {}
    for path, body in files.items():
        data = json.loads(body)
        if isinstance(data, list) and data:
            copies = max(1, int(mb * 1e6 / len(json.dumps(data[0]))))
            body = json.dumps([dict(data[0], id=f"{data[0]['id']}-{i}") for i in range(copies)])
            body = body.encode()
        out[path] = body
    return out


def _run(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb-per-file", type=float, default=8.0)
    args = parser.parse_args()
    files = _inflate(official_mirror(), args.mb_per_file)
    total = sum(len(b) for b in files.values())
    server = LampServer(files).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = [
                sys.executable,
                "-m",
                "lampctl",
                "--quiet",
                "download",
                "--base-url",
                server.url,
            ]
            clean = Path(tmp) / "clean"
            seconds = _run([*base, "--data-dir", str(clean), "--no-fixes"])
            print(
                f"full download: {len(files)} files, {total / 1e6:.1f} MB in {seconds:.2f} s "
                f"= {total / 1e6 / seconds:.1f} MB/s over loopback (4 files at once)"
            )
            again = _run([*base, "--data-dir", str(clean), "--no-fixes"])
            print(
                f"re-run (all verified, skipped): {again:.2f} s, "
                f"{len(server.requests) - len(files)} extra requests"
            )

            path = "LaMP_4/train/train_questions.json"
            server.modes[path] = "slow"
            server.slow_rate = len(files[path]) // 4
            killed = Path(tmp) / "killed"
            command = [
                *base,
                "--data-dir",
                str(killed),
                "--no-fixes",
                "-t",
                "4",
                "-s",
                "user",
                "--set",
                "train",
            ]
            proc = subprocess.Popen(command, cwd=tmp)
            part = killed / "user/LaMP_4/train_questions.json.part"
            while not part.exists() or part.stat().st_size < len(files[path]) // 2:
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            time.sleep(0.5)
            kept = part.stat().st_size
            served = server.served[path]
            server.modes[path] = ""
            _run(command)
            refetched = server.served[path] - served
            final = (killed / "user/LaMP_4/train_questions.json").read_bytes()
            reference = (clean / "user/LaMP_4/train_questions.json").read_bytes()
            same = hashlib.sha256(final).hexdigest() == hashlib.sha256(reference).hexdigest()
            print(
                f"killed at {kept:,} of {len(files[path]):,} bytes; re-run fetched "
                f"{refetched:,} bytes again (the remainder exactly: "
                f"{refetched == len(files[path]) - kept}); "
                f"sha256 identical to the clean run: {same}"
            )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
