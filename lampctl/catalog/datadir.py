"""Is this folder a LaMP data dir? One check, with a message that says what was expected."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lampctl.catalog.tasks import Registry, TaskSpec
from lampctl.errors import InputError, OptionError

# The LaMP server's own layout: LaMP_7/dev/dev_questions.json, time/LaMP_7/dev/...,
# LaMP_2/new/dev/... (what a wget mirror of the download page gives).
_SERVER_PATTERNS = (
    "LaMP_*/*/*_questions.json",
    "LaMP_*/new/*/*_questions.json",
    "time/LaMP_*/*/*_questions.json",
    "time/LaMP_*/new/*/*_questions.json",
)


def has_lamp_files(registry: Registry, data_dir: Path) -> bool:
    for task, split, set_name in registry.combinations(data_dir=data_dir):
        for kind in ("questions", "id_questions"):
            if registry.path(kind, data_dir, task, split, set_name).is_file():
                return True
    return False


def check_data_dir(registry: Registry, data_dir: Path) -> None:
    """An ``InputError`` when ``data_dir`` holds no LaMP files in lampctl's layout."""
    layout = f"{registry.layout.task_dir}/{registry.layout.questions}".format(
        split="{user|time}", number="N", folder="LaMP_N", set="{train|dev|test}"
    )
    if not data_dir.exists():
        raise InputError(
            f"{data_dir}: no such folder (expected {layout}); run "
            f"'lampctl download --data-dir {data_dir}', or point --data-dir (or "
            "LAMPCTL_DATA_DIR) at the folder that holds the files"
        )
    if not data_dir.is_dir():
        raise InputError(f"{data_dir}: is a file (expected {layout})")
    if has_lamp_files(registry, data_dir):
        return
    for pattern in _SERVER_PATTERNS:
        found = sorted(data_dir.glob(pattern))
        if found:
            example = found[0].relative_to(data_dir).as_posix()
            raise InputError(
                f"{data_dir}: laid out like the LaMP server ({example}), not as lampctl expects "
                f"({layout}); import it with 'lampctl download --base-url {data_dir} "
                "--data-dir data_raw', which checks and records every file"
            )
    what = "is empty" if not any(data_dir.iterdir()) else "holds no LaMP files"
    raise InputError(
        f"{data_dir}: {what} (expected {layout}); run 'lampctl download --data-dir {data_dir}', "
        "or point --data-dir (or LAMPCTL_DATA_DIR) at the folder that holds the files"
    )


def unbuilt(registry: Registry, data_dir: Path, task: TaskSpec, split: str, set_name: str) -> bool:
    """The set has only its id files: its questions come from a build (LaMP-6, Avocado)."""
    return (
        bool(task.needs_build)
        and registry.path("id_questions", data_dir, task, split, set_name).exists()
    )


@dataclass(frozen=True)
class RankedSet:
    """One (task, split, set) with its files, for the commands that build on rankings."""

    task: TaskSpec
    split: str
    set: str
    questions: Path
    ranking: Path | None  # None when the command is asked to do without one
    outputs: Path | None  # None for test sets (no golds published)


def ranked_sets(
    registry: Registry,
    data_dir: Path,
    tasks: Sequence[str] = (),
    splits: Sequence[str] = (),
    sets: Sequence[str] = (),
    need_ranking: bool = True,
    without: str = "--no-ranking",
    left_out: list[str] | None = None,
) -> list[RankedSet]:
    """Every set asked for that has questions (and, when ``need_ranking``, a ranking). A split
    named with ``--split`` must have its rankings; with no filters, unranked sets are left out,
    each named with the reason in ``left_out`` (when given). ``without`` names the option that
    does without rankings, for the message."""
    left_out = [] if left_out is None else left_out
    check_data_dir(registry, data_dir)
    found: list[RankedSet] = []
    for task, split, set_name in registry.combinations(tasks, splits, sets, data_dir):
        questions = registry.path("questions", data_dir, task, split, set_name)
        ranking = registry.path("ranking", data_dir, task, split, set_name)
        outputs = registry.path("outputs", data_dir, task, split, set_name)
        where = f"{task.name} {split} {set_name}"
        if not questions.exists():
            if splits and sets and unbuilt(registry, data_dir, task, split, set_name):
                raise InputError(
                    f"{questions}: not built yet (run 'lampctl {task.needs_build} build')"
                )
            if splits and sets:
                raise InputError(f"{questions}: questions file not found")
            if unbuilt(registry, data_dir, task, split, set_name):
                left_out.append(f"{where}: not built yet (run 'lampctl {task.needs_build} build')")
            continue
        if need_ranking and not ranking.exists():
            if splits:
                raise InputError(
                    f"{ranking}: no ranking; run 'lampctl rank -t {task.name} -s {split}' first"
                )
            left_out.append(
                f"{where}: no ranking yet (run 'lampctl rank -t {task.name} -s {split}', "
                f"or pass {without})"
            )
            continue
        if not outputs.exists() and (set_name != "test" or task.test_outputs):
            raise InputError(f"{outputs}: outputs file not found")
        found.append(
            RankedSet(
                task,
                split,
                set_name,
                questions,
                ranking if need_ranking else None,
                outputs if outputs.exists() else None,
            )
        )
    if not found:
        raise InputError(
            f"{data_dir}: nothing to do for the chosen tasks (no rankings yet: run "
            f"'lampctl rank-all' first, or pass {without})"
        )
    return found


def explicit_files(
    files: Mapping[str, Any],
    need: Mapping[str, Any] | None = None,
    *,
    task: str = "none",
    selection: Mapping[str, Any] | None = None,
    data_dir_only: Mapping[str, Any] | None = None,
) -> bool:
    """The one rule every command shares for "explicit files or a data-dir selection":
    True when some option of ``files`` (option name -> value) is given.

    With explicit files, every option of ``need`` (option name -> value) must be given;
    ``task`` says what the command needs of ``--task`` then (``"one"``: exactly one,
    ``"none"``: none, ``"any"``: as given); and no option of ``selection`` (``--split``,
    ``--set``...: option name -> value) may be given, for it would pick nothing. Without
    them, no option of ``data_dir_only`` (those that only go with explicit files) may be
    given. Each conflict is an ``OptionError`` naming its option."""
    given = [name for name, value in files.items() if value is not None]
    if not given:
        for name, value in (data_dir_only or {}).items():
            if value is not None:
                first = next(iter(files))
                raise OptionError(name, f"--{name.replace('_', '-')} goes with --{first}")
        return False
    parts = ["one --task"] if task == "one" else []
    need = need or {}
    parts += [f"--{name.replace('_', '-')}" for name in need]
    missing = [name for name, value in need.items() if value is None]
    tasks = (selection or {}).get("task")
    if task == "one" and (not tasks or len(tasks) != 1):
        missing.insert(0, "task")
    if missing:
        listed = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
        raise OptionError(missing[0], f"explicit files need {listed}")
    for name, value in (selection or {}).items():
        if name == "task" and task != "none":
            continue
        if value:
            flag = f"--{name.replace('_', '-')}"
            raise OptionError(name, f"{flag} picks data-dir sets; explicit files do without it")
    return True
