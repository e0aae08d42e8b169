"""Shared fixtures: an isolated environment, LaMP-shaped trees and a tiny BERT."""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from synth import SynthSpec, write_tiny_bert, write_tree
from typer.testing import CliRunner

from lampctl import settings
from lampctl.cli import app

# Set before transformers / huggingface_hub are imported anywhere: they read these at import.
# The folder goes when the test run ends.
os.environ["HF_HUB_OFFLINE"] = "1"
# Test modules read the registry at import, before any fixture: the user's settings go now.
for _name in settings.VARIABLES:
    if _name != "LAMPCTL_TEST_DEVICE":
        os.environ.pop(_name, None)
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="lampctl-test-hf-")
atexit.register(shutil.rmtree, os.environ["HF_HOME"], ignore_errors=True)

# The LaMP paper's best retriever per task, (user split, time split): tables 6 and 8.
PAPER_DEFAULTS = {
    1: ("contriever", "contriever"),
    2: ("contriever", "contriever"),
    3: ("contriever", "recency"),
    4: ("contriever", "recency"),
    5: ("bm25", "contriever"),
    6: ("bm25", "contriever"),
    7: ("contriever", "contriever"),
}

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the user's config, data, cache or the network: every variable the
    settings module knows is cleared (a user's shell never changes what the suite sees), but
    the suite's own LAMPCTL_TEST_DEVICE."""
    for name in settings.VARIABLES:
        if name != "LAMPCTL_TEST_DEVICE":
            monkeypatch.delenv(name, raising=False)
    for name in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("LAMPCTL_CACHE_DIR", str(tmp_path / "lampctl-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # No lampctl.yaml of the developer's (in the checkout or above it) is read by the suite;
    # the settings file's own tests unset this.
    monkeypatch.setenv("LAMPCTL_SETTINGS", "none")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    from lampctl.reporting import forget_notices, set_notice_sink

    forget_notices()  # each test hears every notice once
    set_notice_sink(None)


class Cli:
    """Runs lampctl in-process and keeps stdout and stderr apart."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: Any, env: dict[str, str] | None = None) -> Any:
        result = self.runner.invoke(app, [str(a) for a in args], env=env)
        result.out = ANSI.sub("", result.stdout)
        result.err = ANSI.sub("", result.stderr)
        return result

    def json(self, *args: Any) -> dict[str, Any]:
        result = self("--json", *args)
        assert result.exit_code == 0, result.err
        return json.loads(result.out)

    def error(self, *args: Any, env: dict[str, str] | None = None) -> str:
        """Runs lampctl expecting it to fail as every command should: exit 1 and one line,
        ``Error: ...``, on stderr (no traceback). Gives that line."""
        result = self(*args, env=env)
        assert result.exit_code == 1, result.out + result.err
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), result.err
        return lines[0]


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A small LaMP-shaped data_raw tree: all 7 tasks, both splits, train/dev/test."""
    return write_tree(tmp_path / "data_raw", spec=SynthSpec(questions=6, profile_max=12))


@pytest.fixture(scope="session")
def encoder_device() -> str:
    """Where the encoder tests run: cpu, or e.g. LAMPCTL_TEST_DEVICE=cuda on a GPU machine
    (the same tests then check the CUDA path against the CPU reference pooling)."""
    return os.environ.get("LAMPCTL_TEST_DEVICE", "cpu")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def reference_scores(checkpoint: Path, query: str, texts: list[str]) -> list[float]:
    """The LaMP reference's pattern, written plainly: pad per batch of 16, mean-pool, dot."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModel.from_pretrained(checkpoint).eval()
    limit = min(tokenizer.model_max_length, model.config.max_position_embeddings)

    def embed(batch: list[str]) -> torch.Tensor:
        tokens = tokenizer(
            batch, padding=True, truncation=True, max_length=limit, return_tensors="pt"
        )
        with torch.no_grad():
            hidden = model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).float()
        return (hidden * mask).sum(1) / mask.sum(1)

    q = embed([query])[0]
    scores: list[float] = []
    for start in range(0, len(texts), 16):
        scores.extend((embed(texts[start : start + 16]) @ q).tolist())
    return scores
