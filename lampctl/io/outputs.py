"""What every writer checks before any work: where its outputs go.

A command never writes over a file it reads, never into a folder it reads (a model's folder,
an adapters folder, a tokenizer's folder), and never sends two of its outputs to one file
(``--output same.jsonl --eval-output same.jsonl`` would silently keep one of the two). Paths
are compared as the atomic writer will write them: links followed, relative paths resolved,
and, for files that exist, by device and inode (a hard link, a bind mount).

Each path comes with its role, the name of the argument that gave it (``output``,
``eval_output``, ``questions``, ``model``): the error names the arguments at fault, and the
CLI shows them as its options (``--eval-output``).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lampctl.errors import OptionError, OutputError


def identities(path: Path) -> set[tuple[Any, ...]]:
    """What makes two paths the same file: the path with links resolved and, for a file that
    exists, its device and inode."""
    keys: set[tuple[Any, ...]] = {("path", os.path.realpath(path))}
    try:
        info = os.stat(path)
    except OSError:
        return keys
    if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
        keys.add(("inode", info.st_dev, info.st_ino))
    return keys


def _is_stream(path: Path) -> bool:
    """An existing output that is not a file or folder (``/dev/null``, a FIFO): written
    through, never replaced, so several outputs may share it."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies below it, links resolved."""
    inner, outer = os.path.realpath(path), os.path.realpath(folder)
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def local_folder(name: str | Path | None) -> Path | None:
    """A model or tokenizer argument that names a folder here (not a hub id): an input
    folder of the command."""
    if name is None:
        return None
    path = Path(name).expanduser()
    return path if path.is_dir() else None


def check_outputs(
    outputs: Mapping[str, Path | None],
    inputs: Mapping[str, Path | None] | None = None,
    *,
    input_folders: Mapping[str, Path | None] | None = None,
    output_folders: Mapping[str, Path | None] | None = None,
) -> None:
    """Refuse, before any work, outputs that would destroy an input or each other.

    ``outputs``: role -> file the command writes; ``inputs``: role -> file it reads;
    ``input_folders``: folders it reads whole (no output may lie inside one);
    ``output_folders``: folders it fills (no input, nor another output, inside one).
    An output onto an input is an ``OutputError`` (exit 1); two outputs onto one file an
    ``OptionError`` naming both arguments (a usage error, exit 2)."""
    inputs = {r: p for r, p in (inputs or {}).items() if p is not None}
    folders_in = {r: p for r, p in (input_folders or {}).items() if p is not None}
    folders_out = {r: p for r, p in (output_folders or {}).items() if p is not None}
    files_out = {r: p for r, p in outputs.items() if p is not None}
    known: dict[tuple[Any, ...], tuple[str, Path]] = {}
    for role, path in inputs.items():
        for key in identities(path):
            known.setdefault(key, (role, path))
    for output in {**files_out, **folders_out}.values():
        for key in identities(output):
            if key in known:
                source_role, source = known[key]
                same = "" if str(source) == str(output) else f" ({source})"
                raise OutputError(
                    f"{output}: is this command's {source_role} file{same}; writing there "
                    "would replace an input: choose another output"
                )
        for folder_role, folder in folders_in.items():
            if _within(output, folder):
                raise OutputError(
                    f"{output}: lies inside the {folder_role} folder ({folder}), which this "
                    "command reads; writing there would change an input: choose another output"
                )
    for folder_role, folder in folders_out.items():
        for role, path in {**inputs, **folders_in}.items():
            if _within(path, folder):
                raise OutputError(
                    f"{folder}: the {folder_role} folder holds this command's {role} "
                    f"({path}); writing there could replace it: choose another folder"
                )
    _refuse_shared_outputs(files_out, folders_out)


def check_writable(paths: Sequence[Path]) -> None:
    """An ``OutputError`` naming the output, before any work, when its folder cannot be
    written: a file stands where a folder should, or the nearest folder that exists refuses a
    new file (tried with a probe file, removed at once: permissions alone do not tell for
    root, nor on a read-only mount)."""
    import tempfile

    for path in paths:
        if _is_stream(path):
            continue
        target = Path(os.path.realpath(path))
        folder = next((p for p in target.parents if p.exists()), None)
        if folder is None:
            continue
        if not folder.is_dir():
            raise OutputError(f"{path}: cannot write: {folder} is a file, not a folder")
        try:
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".lampctl-probe-"):
                pass
        except OSError as exc:
            raise OutputError(f"{path}: cannot write: {folder}: {exc.strerror or exc}") from None


def _refuse_shared_outputs(files: dict[str, Path], folders: dict[str, Path]) -> None:
    seen: dict[tuple[Any, ...], tuple[str, Path]] = {}
    for role, path in files.items():
        if _is_stream(path):
            continue
        keys = identities(path)
        for key in keys:
            if key in seen:
                _clash(seen[key], (role, path))
        for key in keys:
            seen.setdefault(key, (role, path))
        for folder_role, folder in folders.items():
            if _within(path, folder):
                _clash((folder_role, folder), (role, path), inside=True)
    for first, (role, folder) in enumerate(folders.items()):
        for other_role, other in list(folders.items())[first + 1 :]:
            if _within(folder, other) or _within(other, folder):
                _clash((role, folder), (other_role, other), inside=True)


def _clash(first: tuple[str, Path], second: tuple[str, Path], inside: bool = False) -> None:
    (role_a, path_a), (role_b, path_b) = first, second
    option = role_b.split(" ")[-1]
    where = "lies inside" if inside else "is also"
    raise OptionError(
        option,
        f"{path_b} ({role_b}) {where} {path_a} ({role_a}): each output needs "
        "a place of its own, or one would be lost",
        mentions=(role_a.split(" ")[-1], option),
    )
