"""Every code block of README.md and of the manual's pages in ``docs/`` runs, as written, in
reading order (README first, then the pages in ``PAGES`` order), offline.

The blocks run one after another in one project folder, as a reader would paste them: bash
blocks with ``bash -euo pipefail``, python blocks with this Python. What the machine lacks is
stood in for, and only that:

- the LaMP server: a real HTTP server on 127.0.0.1, serving LaMP-shaped files at the official
  paths (``LAMPCTL_BASE_URL``; the README's placeholder mirror address is mapped to it);
- the Hugging Face hub: a cache (``HF_HOME``, ``HF_HUB_OFFLINE=1``) holding tiny models under
  the ids the pages name (a BERT as ``facebook/contriever``, a T5 with the same tokenizer as
  ``google/flan-t5-base``), as a compute node with a pre-filled cache has them;
- the licensed Avocado corpus: zip files of RFC-822 emails at the README's path, with the
  served LaMP-6 id files pointing into them;
- the LongLaMP dataset repo: a local copy in the hub's layout (parquet files and a README
  with a ``configs:`` block) at ``~/LongLaMP``, as ``hf download --local-dir`` leaves it;
- commands that are not lampctl's: ``pip`` and ``pytest`` (the suite is already installed and
  running), and ``sbatch``, which runs each task of the array in turn with SLURM's variables.

A block marked ``<!-- file: NAME -->`` is a file the reader saves (a SLURM script): it is
written to NAME, and a later block runs it. A block that cannot run here says why in a
``<!-- not run: ... -->`` line just above it; the test checks that each such block has a
reason and that no more than a few are skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from lampserver import LampServer, official_mirror
from synth import (
    write_avocado_corpus,
    write_lamp6_ids,
    write_longlamp_repo,
    write_tiny_bert,
    write_tiny_t5,
)

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# The manual, in reading order: each page's blocks may use what the earlier ones made.
PAGES = [
    README,
    *(
        ROOT / "docs" / f"{name}.md"
        for name in (
            "data", "ranking", "inspecting", "prompts", "evaluate", "peft", "longlamp", "api",
            "clusters",
            "layout", "development", "benchmarks", "reference",
        )
    ),
]  # fmt: skip
FENCE = re.compile(r"^```(\w*)\s*$")
MARK = re.compile(r"^<!-- (not run|file): (.+) -->$")
PLACEHOLDERS = {"http://mirror.example/LaMP/": "{mirror}"}  # README's mirror -> the test's


def readme_blocks(text: str) -> list[tuple[int, str, str, tuple[str, str] | None]]:
    """(line, language, code, mark) for each fenced block; the mark is ("not run", why),
    ("file", name) or None."""
    blocks = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opened = FENCE.match(lines[index])
        if opened is None or not opened.group(1):
            index += 1
            continue
        start = index
        index += 1
        body = []
        while not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        previous = lines[start - 1] if start else ""
        mark = MARK.match(previous)
        blocks.append((start + 1, opened.group(1), "\n".join(body) + "\n", mark and mark.groups()))
        index += 1
    return blocks


SHIMS = {
    # The package is installed: pip only says what it was asked.
    "pip": '#!/bin/sh\necho "pip $*: already installed here" >&2\n',
    # The suite is running this very test: pytest says so instead of running it again.
    "pytest": '#!/bin/sh\necho "pytest $*: this suite" >&2\n',
    # sbatch runs every task of the script's --array in turn, with SLURM's variables.
    "sbatch": """#!/bin/bash
set -euo pipefail
range=$(sed -n 's/^#SBATCH --array=\\([0-9]*\\)-\\([0-9]*\\).*/\\1 \\2/p' "$1")
read -r low high <<<"$range"
for ((i = low; i <= high; i++)); do
    SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_COUNT=$((high - low + 1)) \\
        SLURM_ARRAY_TASK_MIN=$low bash "$1"
done
""",
}


def _hub_cache(hub: Path, model: Path, *names: str) -> None:
    """``model``'s files in a Hugging Face cache under each hub id, as a download leaves them."""
    for name in names:
        folder = hub / f"models--{name.replace('/', '--')}"
        commit = "0" * 40
        (folder / "refs").mkdir(parents=True)
        (folder / "refs" / "main").write_text(commit)
        shutil.copytree(model, folder / "snapshots" / commit)


def _lamp6_ids(files: dict[str, bytes], emails: list[str], scratch: Path) -> None:
    """LaMP-6's served id files, pointing into the test's Avocado corpus."""
    from lampctl.download.registry import load_download_registry

    write_lamp6_ids(scratch, emails, questions=3, profile_max=4, seed=1)
    for remote in load_download_registry().files:
        if remote.task == "6":
            kind = "questions" if remote.kind == "questions" else "outputs"
            made = scratch / remote.split / "LaMP_6" / f"{remote.set}_{kind}_ids.json"
            files[remote.path] = made.read_bytes()


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The reader's folder, the stand-ins, and the environment the blocks run in."""
    base = tmp_path_factory.mktemp("readme")
    work = base / "project"
    work.mkdir()
    bin_dir = base / "bin"
    bin_dir.mkdir()
    for name, script in SHIMS.items():
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    _hub_cache(base / "hf" / "hub", write_tiny_bert(base / "tiny-bert"), "facebook/contriever")
    _hub_cache(base / "hf" / "hub", write_tiny_t5(base / "tiny-t5"), "google/flan-t5-base")
    home = base / "home"
    emails = write_avocado_corpus(home / "corpora/avocado-1.0.2/data/text", 2, 20, seed=4)
    write_longlamp_repo(home / "LongLaMP", rows=3)  # as 'hf download ... --local-dir' leaves it
    files = official_mirror(questions=3, profile_max=4)
    _lamp6_ids(files, sorted(emails), base / "ids")
    server = LampServer(files).start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAMPCTL_", "SLURM_"))}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}",
        HOME=str(home),
        HF_HOME=str(base / "hf"),
        HF_HUB_OFFLINE="1",
        LAMPCTL_BASE_URL=server.url,
        LAMPCTL_SETTINGS="none",
        LAMPCTL_CACHE_DIR=str(base / "cache"),
        SCRATCH=str(work),
        NO_COLOR="1",
        COLUMNS="100",
        PYTHONUNBUFFERED="1",
    )
    yield work, env, server.url
    server.stop()


def manual_blocks() -> list[tuple[str, int, str, str, tuple[str, str] | None]]:
    """(page, line, language, code, mark) of every block, in reading order."""
    return [
        (page.relative_to(ROOT).as_posix(), *block)
        for page in PAGES
        for block in readme_blocks(page.read_text())
    ]


def test_every_page_is_read_and_every_block_is_run_or_says_why_not():
    assert set(PAGES) == {README, *(ROOT / "docs").glob("*.md")}  # a new page joins PAGES
    blocks = manual_blocks()
    assert readme_blocks(README.read_text()), "README has no code blocks"
    assert {lang for _, _, lang, _, _ in blocks} <= {"bash", "python"}
    skipped = [(page, line, mark[1]) for page, line, _, _, mark in blocks
               if mark and mark[0] == "not run"]  # fmt: skip
    assert all(len(reason) > 10 for _, _, reason in skipped)
    assert len(skipped) <= 3, skipped  # a manual of examples that do not run is no manual


def test_readme_blocks_run_as_written(project):
    work, env, mirror = project
    ran = 0
    for page, line, lang, code, mark in manual_blocks():
        if mark and mark[0] == "not run":
            continue
        if mark and mark[0] == "file":
            (work / mark[1]).write_text(code)
            continue
        for placeholder, value in PLACEHOLDERS.items():
            code = code.replace(placeholder, value.format(mirror=mirror))
        if lang == "bash":
            command = ["bash", "-euo", "pipefail", "-c", code]
        else:
            command = [sys.executable, "-c", code]
        done = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, (
            f"{page} line {line} ({lang}) failed with exit code {done.returncode}:\n"
            f"{code}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
        )
        ran += 1
    assert ran >= 20
    # What the blocks promise is there: rankings, prompts, training rows, adapters and
    # predictions from both experiments.
    data = work / "data_raw"
    assert list(data.glob("*/LaMP_*/*_questions_rank.json"))
    assert list(data.glob("user/LaMP_4/dev_prompts_k4_len512_flan-t5-base-*.jsonl"))
    assert (data / "time/LaMP_4/dev_peft_file.jsonl").is_file()
    assert json.loads((data / "time/LaMP_6/dev_outputs.json").read_text())["task"] == "LaMP_6"
    assert stat.S_ISREG((work / "preds.json").stat().st_mode)
    assert list(data.glob("user/LaMP_4/dev_prompts_*_predictions_flan-t5-base-*_tokens*.json"))
    assert list(
        data.glob("time/LaMP_3/dev_peft_file_adapters/flan-t5-base-*/*/lampctl_adapter.json")
    )
    gathered = list(
        data.glob("time/LaMP_7/dev_peft_file_seed0_predictions_flan-t5-base-*_tokens128.json")
    )
    assert len(gathered) == 1 and "shard" not in gathered[0].name
