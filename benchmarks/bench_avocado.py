"""Benchmark `lampctl avocado build` against the floor: merely reading the needed members.

Generates an Avocado-like corpus (default 20,000 emails in 10 zip archives) and LaMP-6 id files
for both splits whose profiles reuse emails, then times in the same run:
  floor   - open each archive and read every needed member once, serially, no parsing;
  lampctl - the whole build (index, read, parse, write both splits) in a fresh process.

Usage: python benchmarks/bench_avocado.py [--archives 10] [--per-archive 2000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test data
from synth import write_avocado_corpus, write_lamp6_ids  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archives", type=int, default=10)
    parser.add_argument("--per-archive", type=int, default=2000)
    parser.add_argument("--questions", type=int, default=1500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        text = root / "avocado-1.0.2" / "data" / "text"
        truth = write_avocado_corpus(text, args.archives, args.per_archive)
        data = root / "data_raw"
        write_lamp6_ids(data, sorted(truth), questions=args.questions, profile_max=40)
        needed: set[str] = set()
        references = 0
        for path in data.rglob("*_questions_ids.json"):
            for q in json.loads(path.read_text()):
                needed |= {q["input"]} | {i["text"] for i in q["profile"]}
                references += 1 + len(q["profile"])
        print(
            f"corpus: {len(truth)} emails in {args.archives} archives; id files reference "
            f"{references} emails, {len(needed)} distinct"
        )

        start = time.perf_counter()
        read = 0
        for archive in sorted(text.glob("*.zip")):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    if Path(info.filename).name in needed:
                        read += len(zf.read(info))
        floor = time.perf_counter() - start

        before = set(root.rglob("*"))
        start = time.perf_counter()
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "lampctl",
                "--json",
                "avocado",
                "build",
                "--avocado-dir",
                str(text),
                "--data-dir",
                str(data),
            ],
            check=True,
            capture_output=True,
            text=True,
            cwd=tmp,
        )
        build = time.perf_counter() - start
        summary = json.loads(out.stdout)
        written = sorted(
            str(p.relative_to(root)) for p in set(root.rglob("*")) - before if p.is_file()
        )
        print(f"floor (read needed members once, serially): {floor:.2f} s, {read / 1e6:.1f} MB")
        print(
            f"lampctl avocado build (whole process)     : {build:.2f} s "
            f"= {build / floor:.2f}x the floor"
        )
        print(
            f"emails parsed {summary['emails_parsed']} = distinct needed {len(needed)}: "
            f"{summary['emails_parsed'] == len(needed)}; bytes read {summary['bytes_read']} "
            f"= floor's {read}: {summary['bytes_read'] == read}"
        )
        print(
            f"files written: {len(written)} ({', '.join(sorted({Path(w).name for w in written}))})"
        )


if __name__ == "__main__":
    main()
