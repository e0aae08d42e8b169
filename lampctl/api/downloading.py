"""``lampctl.download``: what ``lampctl download`` does."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lampctl import settings
from lampctl.arguments import checked_arguments
from lampctl.catalog.bundled import cached_registry as registry


@dataclass
class DownloadRun:
    """The plan (every file asked for, with what is already there), each file's outcome (none
    on a dry run) and the wall time."""

    plan: list[Any]  # download.PlannedFile
    outcomes: list[Any] = field(default_factory=list)  # download.FileOutcome
    seconds: float = 0.0

    @property
    def errors(self) -> list[str]:
        return [str(o.error) for o in self.outcomes if o.status in ("failed", "changed")]


@checked_arguments
def download(
    tasks: Sequence[str] = (),
    splits: Sequence[str] = (),
    sets: Sequence[str] = (),
    *,
    data_dir: Path | str | None = None,
    base_url: str | None = None,
    apply_fixes: bool = True,
    dry_run: bool = False,
    jobs: int = 4,
    force: bool = False,
    verify: bool = False,
    check_remote: bool = False,
    retries: int = 5,
    timeout: float = 60.0,
    config: Path | str | None = None,
    display: Callable[[list[Any]], AbstractContextManager[Any]] | None = None,
) -> DownloadRun:
    """The official LaMP files into the data dir's layout, resumable and verified, under a
    lock so two runs never write one file; ``display`` makes the observer of the transfers
    from the plan."""
    from lampctl.download import (
        Downloader,
        DownloadOptions,
        Manifest,
        acquire_lock,
        load_download_registry,
        plan_downloads,
    )

    folder = settings.data_dir(data_dir)
    manifest = Manifest.load(folder)
    plan = plan_downloads(
        registry(config), load_download_registry(), folder, base_url, list(tasks), list(splits),
        list(sets), apply_fixes=apply_fixes, manifest=manifest,
    )  # fmt: skip
    if dry_run:
        return DownloadRun(plan)
    options = DownloadOptions(
        jobs=jobs, force=force, verify=verify, check_remote=check_remote, retries=retries,
        read_timeout=timeout, connect_timeout=min(15.0, timeout),
    )  # fmt: skip
    lock = acquire_lock(folder)
    started = time.perf_counter()
    try:
        with display(plan) if display else contextlib.nullcontext() as observer:
            outcomes = Downloader(folder, options, observer, manifest).run(plan)
    finally:
        lock.release()
    return DownloadRun(plan, outcomes, time.perf_counter() - started)
