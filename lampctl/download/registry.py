"""The download registry (``configs/downloads.yaml``: every file's URL, kind and fixes) and
the plan of which files a run fetches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lampctl.catalog.bundled import bundled_text
from lampctl.catalog.tasks import Registry, TaskSpec
from lampctl.download.manifest import Manifest
from lampctl.errors import ConfigError, DownloadError
from lampctl.io.yamlfile import safe_load

# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class RemoteFile:
    task: str  # as the registry resolves it: "3", "2N"
    split: str
    set: str
    kind: str  # "questions" or "outputs"
    path: str  # relative to the base url


@dataclass(frozen=True)
class DataFix:
    task: str
    split: str
    set: str
    drop_first: bool
    why: str

    @property
    def name(self) -> str:
        return f"drop-first-sample (LaMP-{self.task} {self.split} {self.set})"


@dataclass(frozen=True)
class DownloadRegistry:
    base_url: str
    files: tuple[RemoteFile, ...]
    fixes: tuple[DataFix, ...]


def load_download_registry() -> DownloadRegistry:
    origin = "bundled downloads.yaml"
    try:
        data = safe_load(bundled_text("downloads.yaml"))
        files = tuple(
            RemoteFile(str(f["task"]), f["split"], f["set"], f["kind"], f["path"])
            for f in data["files"]
        )
        fixes = tuple(
            DataFix(str(f["task"]), f["split"], f["set"], bool(f["drop_first"]), f["why"])
            for f in data.get("fixes", [])
        )
        return DownloadRegistry(str(data["base_url"]), files, fixes)
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{origin}: malformed ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class PlannedFile:
    task: TaskSpec
    remote: RemoteFile
    url: str
    dest: Path
    rel: str  # path relative to the data dir, as recorded in the manifest
    fix: DataFix | None
    state: str  # missing | partial | present (not in manifest) | verified | changed

    @property
    def part(self) -> Path:
        return self.dest.with_name(self.dest.name + ".part")

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task.name,
            "split": self.remote.split,
            "set": self.remote.set,
            "kind": self.remote.kind,
            "url": self.url,
            "path": str(self.dest),
            "state": self.state,
            "fix": self.fix.name if self.fix else None,
        }


def local_name(registry: Registry, task: TaskSpec, remote: RemoteFile) -> str:
    """Files that need a build step (LaMP-6 ids) keep an ``_ids`` name of their own."""
    if task.needs_build:
        kind = "id_questions" if remote.kind == "questions" else "id_outputs"
    else:
        kind = remote.kind
    return registry.path(kind, Path(), task, remote.split, remote.set).as_posix()


def plan_downloads(
    registry: Registry,
    downloads: DownloadRegistry,
    data_dir: Path,
    base_url: str | None = None,
    tasks: Sequence[str] = (),
    splits: Sequence[str] = (),
    sets: Sequence[str] = (),
    apply_fixes: bool = True,
    manifest: Manifest | None = None,
) -> list[PlannedFile]:
    base = (base_url or downloads.base_url).rstrip("/") + "/"
    if "://" not in base:  # a local copy of the server's layout (e.g. fetched on a login node)
        folder = Path(base).expanduser()
        if not folder.is_dir():
            raise DownloadError(f"--base-url {base_url}: not a URL, and no such folder")
        if (folder / "MANIFEST.json").is_file() or (folder / "user").is_dir():
            raise DownloadError(
                f"--base-url {base_url}: is a lampctl data dir (user/, time/, MANIFEST.json), "
                "not a copy of the LaMP server's layout; use it as the data dir (--data-dir, "
                "or LAMPCTL_DATA_DIR) instead"
            )
        base = folder.resolve().as_uri() + "/"
    wanted_tasks = {registry.task(t).name for t in tasks}
    wanted_splits = {registry.check_split(s) for s in splits}
    wanted_sets = {registry.check_set(s) for s in sets}
    manifest = manifest if manifest is not None else Manifest.load(data_dir)
    plan = []
    for remote in downloads.files:
        task = registry.task(remote.task)
        if wanted_tasks and task.name not in wanted_tasks:
            continue
        if not wanted_tasks and task.opt_in:  # LaMP-2N: only when asked for by --task
            continue
        if (wanted_splits and remote.split not in wanted_splits) or (
            wanted_sets and remote.set not in wanted_sets
        ):
            continue
        rel = local_name(registry, task, remote)
        fix = None
        if apply_fixes:
            fix = next(
                (
                    f
                    for f in downloads.fixes
                    if (f.task, f.split, f.set) == (remote.task, remote.split, remote.set)
                ),
                None,
            )
        dest = data_dir / rel
        planned = PlannedFile(task, remote, base + remote.path, dest, rel, fix, "missing")
        plan.append(_with_state(planned, manifest))
    return plan


def _with_state(item: PlannedFile, manifest: Manifest) -> PlannedFile:
    entry = manifest.get(item.rel)
    if item.dest.exists():
        if entry is None:
            state = "present"
        elif entry.get("size") == item.dest.stat().st_size:
            state = "verified"
        else:
            state = "changed"
    elif item.part.exists():
        state = "partial"
    else:
        state = "missing"
    return PlannedFile(item.task, item.remote, item.url, item.dest, item.rel, item.fix, state)
