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
from lampctl.errors import InputError, OptionError


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
    source: Path | str | None = None,
    revision: str | None = None,
) -> DownloadRun:
    """The official LaMP files into the data dir's layout, resumable and verified, under a
    lock so two runs never write one file; ``display`` makes the observer of the transfers
    from the plan. LongLaMP tasks (``LongLaMP-2``, or ``LongLaMP`` for all) are read from
    their Hugging Face dataset at ``revision`` (default: the registry's), or from a local
    copy of the repo (``source``), and converted into the same layout
    (``lampctl.download.hub``)."""
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
    found = registry(config)
    names = found.expand(list(tasks))
    hub_tasks = [t for t in map(found.task, names) if t.hub is not None]
    lamp_names = [n for n in names if found.task(n).hub is None]
    _check_sources(hub_tasks, bool(tasks) and not lamp_names, source, revision, base_url)
    plan = []
    if lamp_names or not tasks:
        plan = plan_downloads(
            found, load_download_registry(), folder, base_url, lamp_names, list(splits),
            list(sets), apply_fixes=apply_fixes, manifest=manifest,
        )  # fmt: skip
    planned_tasks = {item.task.name for item in plan}
    for name in tasks:  # named by itself (a family takes what it can): nothing to download?
        spec = None if found.expand([name]) != [name] else found.task(name)
        if spec is not None and spec.hub is None and spec.name not in planned_tasks:
            raise InputError(
                f"{spec.name} has no files to download: it is built from the licensed Avocado "
                f"corpus and id files LongLaMP does not publish ('lampctl avocado build --task "
                f"{spec.name}')"
            )
    hub = _hub_plan(found, hub_tasks, list(splits), list(sets), folder, source, revision)
    if dry_run:
        return DownloadRun([*plan, *(f for work in hub for f in work.planned)])
    options = DownloadOptions(
        jobs=jobs, force=force, verify=verify, check_remote=check_remote, retries=retries,
        read_timeout=timeout, connect_timeout=min(15.0, timeout),
    )  # fmt: skip
    lock = acquire_lock(folder)
    started = time.perf_counter()
    outcomes = []
    try:
        if plan:
            with display(plan) if display else contextlib.nullcontext() as observer:
                outcomes = Downloader(folder, options, observer, manifest).run(plan)
        if hub:
            outcomes += _convert_all(hub, manifest, folder, force, verify)
    finally:
        lock.release()
    planned = [*plan, *(f for work in hub for f in work.planned)]
    return DownloadRun(planned, outcomes, time.perf_counter() - started)


def _check_sources(
    hub_tasks: list[Any],
    hub_only: bool,
    source: Path | str | None,
    revision: str | None,
    base_url: str | None,
) -> None:
    """``source`` and ``revision`` are for hub tasks; ``base_url`` for LaMP's server."""
    if (source is not None or revision is not None) and not hub_tasks:
        option = "source" if source is not None else "revision"
        raise OptionError(
            option,
            f"{option}= reads a Hugging Face dataset (LongLaMP): name a LongLaMP task too "
            "(task LongLaMP-2, or LongLaMP for all)",
            mentions=(option,),
        )
    if base_url is not None and hub_only:
        raise OptionError(
            "base_url",
            f"base_url= is LaMP's file server; {hub_tasks[0].name} comes from the Hugging Face "
            "dataset (source=DIR for a local copy of it)",
            mentions=("base_url", "source"),
        )
    if source is not None and revision is not None:
        raise OptionError(
            "revision",
            "revision= picks a hub revision; a local copy (source=DIR) is what it is",
            mentions=("revision", "source"),
        )


@dataclass
class _HubWork:
    """One hub task's conversions: the jobs, their source files (schemas checked) and where
    they come from."""

    jobs: list[Any]
    files: list[list[Path]]
    origin: str

    @property
    def planned(self) -> list[Any]:
        from lampctl.download.hub import PlannedHubFile

        return [
            PlannedHubFile(job, kind, f"{self.origin}/{job.label}")
            for job in self.jobs
            for kind in ("questions", "outputs")
        ]

    def run(self, manifest: Any, folder: Path, force: bool, verify: bool, stage: Any) -> list[Any]:
        from lampctl.download.hub import convert

        out = []
        for job, files in zip(self.jobs, self.files, strict=True):
            origin = f"{self.origin}/{job.label}"
            out += convert(job, files, origin, manifest, folder, stage, force, verify)
        return out


def _convert_all(
    hub: list[_HubWork], manifest: Any, folder: Path, force: bool, verify: bool
) -> list[Any]:
    """Every hub set converted into a staging folder, then all moved into place: a bad row
    anywhere leaves every file of the data dir as it was."""
    from lampctl.download.hub import Staging

    stage = Staging.beside(folder)
    try:
        outcomes = [o for work in hub for o in work.run(manifest, folder, force, verify, stage)]
        stage.commit(manifest)
        return outcomes
    finally:
        stage.discard()


def _hub_plan(
    found: Any,
    tasks: list[Any],
    splits: list[str],
    sets: list[str],
    folder: Path,
    source: Path | str | None,
    revision: str | None,
) -> list[_HubWork]:
    """Each hub task's jobs with their parquet files found and their schemas checked: any
    problem is raised here, before a file is written."""
    from lampctl.download.hub import (
        check_schema,
        fetch_snapshot,
        hub_jobs,
        resolved_revision,
        source_files,
    )

    work = []
    for task in tasks:
        jobs = hub_jobs(found, [task], splits, sets, folder)
        if source is not None:
            where, origin = Path(source), str(Path(source))
        else:
            configs = sorted({job.config for job in jobs})
            where = fetch_snapshot(task.hub, configs, revision)
            commit = resolved_revision(where, revision or task.hub.revision)
            origin = f"hf://{task.hub.repo}@{commit}"
        files = [source_files(where, job.config, job.hub_split) for job in jobs]
        for job, paths in zip(jobs, files, strict=True):
            check_schema(job, paths)
        work.append(_HubWork(jobs, files, origin))
    return work
