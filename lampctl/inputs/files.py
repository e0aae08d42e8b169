"""One set's model-input file and its record: skipped when up to date, else built and written."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lampctl.catalog.tasks import TaskSpec
from lampctl.inputs.builder import PromptStats, read_golds
from lampctl.inputs.tokenizer import ModelTokenizer
from lampctl.inputs.workers import FileBuild, WorkerBuild


@dataclass(frozen=True)
class PromptResult:
    task: str
    set: str
    output: str
    status: str  # written | up to date
    stats: PromptStats | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "set": self.set,
            "output": self.output,
            "status": self.status,
            "seconds": self.seconds,
            **(self.stats.as_dict() if self.stats else {}),
        }


def prompts_file(
    task: TaskSpec,
    set_name: str,
    questions_path: Path,
    ranking_path: Path | None,
    outputs_path: Path | None,
    output_path: Path,
    *,
    k: int,
    max_length: int,
    tokenizer: ModelTokenizer | Future[ModelTokenizer] | None,
    tokenizer_id: str | None,
    revision: str | None,
    force: bool = False,
    jobs: int = 1,
    progress: Callable[[int], None] | None = None,
) -> PromptResult:
    """Build one set's JSONL and its record; skipped when the record says it is up to date.
    ``tokenizer`` may still be loading (a future): the file is read meanwhile. A big file is
    built by ``jobs`` worker processes."""
    from lampctl import __version__
    from lampctl.io.data import atomic_writer, gc_paused
    from lampctl.ledger import DerivedOutput, source_fingerprints, sources_of

    started = time.perf_counter()
    sources = sources_of(questions=questions_path, ranking=ranking_path, outputs=outputs_path)
    parameters = {
        "k": k if tokenizer is not None else 0,
        "max_length": max_length if tokenizer is not None else None,
        "tokenizer": tokenizer_id,
        "revision": revision,
        "profile": tokenizer is not None,
    }
    if task.prompt is not None and task.prompt.style != "budget":  # LongLaMP's ranked prompts
        parameters["style"] = task.prompt.style  # (LaMP's records stay as they were)
        parameters["max_length"] = None  # no budget: --max-length does not change them
    derived = DerivedOutput(output_path, sources, parameters)
    record = derived.up_to_date(force)
    if record is not None:
        stats = record.get("stats")
        return PromptResult(
            task.name,
            set_name,
            str(output_path),
            "up to date",
            PromptStats(**stats) if isinstance(stats, dict) else None,
            round(time.perf_counter() - started, 3),
        )
    job = FileBuild(
        task,
        questions_path,
        ranking_path,
        k if tokenizer is not None else 0,
        max_length,
        read_golds(outputs_path, task),
        str(outputs_path),
    )
    # Worker processes are forked first, before this process starts its hashing thread; none
    # while transformers (and torch) load on a thread.
    workers = None if isinstance(tokenizer, Future) else WorkerBuild.start(job, tokenizer, jobs)
    try:
        # The inputs are hashed for the record on a thread meanwhile (hashlib lets go of the GIL).
        with derived.held_still(), ThreadPoolExecutor(max_workers=1) as hasher, gc_paused():
            fingerprints = hasher.submit(source_fingerprints, output_path, sources)
            if workers is not None:
                text, stats = workers.gather(progress)
            else:
                text, stats = job.here(tokenizer, progress)
            with atomic_writer(output_path) as handle:
                handle.write(text)
            known = fingerprints.result()
    finally:
        if workers is not None:
            workers.close()
    derived.write_record({"lampctl": __version__, "stats": stats.as_dict()}, fingerprints=known)
    return PromptResult(
        task.name,
        set_name,
        str(output_path),
        "written",
        stats,
        round(time.perf_counter() - started, 3),
    )
