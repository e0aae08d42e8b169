"""One fresh LoRA adapter per user, trained on that user's ``peft-data`` rows.

What the LaMP authors' ``PEFT/train_peft.py`` does, without its defects: the base model is
loaded once per process and the LoRA injected once; each user starts from the same seeded
adapter (``FreshAdapters``: the same seed gives the same adapter bytes on a CPU), so adapters
never stack, and the LoRA is taken off the model at the end (``unload``); an adapter folder
appears whole or not at all (written beside it, then renamed), with a record of what made it,
so a rerun skips the users that are done and up to date and retrains a half-finished one. The
loop is the Trainer's for these settings: AdamW (weight decay on the LoRA matrices), linear
warmup then linear decay, gradient clipping, shuffled batches, without a Trainer built per
user.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lampctl.errors import InputError, ModelLoadError, OptionError, OutputError
from lampctl.model.adapter_files import (
    adapter_record,
    adapter_state,
    remove_dead_temp_folders,
    save_adapter,
)
from lampctl.model.loading import BaseModel, quiet_libraries
from lampctl.model.options import TrainOptions, schedule_steps
from lampctl.reporting import Reporter

Pairs = list[tuple[str, str]]


@dataclass(frozen=True)
class UserRows:
    user: str
    pairs: Pairs
    ids: tuple[str, ...] = ()  # each row's id, as the file gives it
    problem: str | None = None  # why this user cannot be trained (read with per_user=True)

    @functools.cached_property
    def sha256(self) -> str:
        """The user's training pairs, hashed: a change to any row retrains this user only."""
        return hashlib.sha256(json.dumps(self.pairs, ensure_ascii=False).encode()).hexdigest()


def read_user_rows(path: Path, need_target: bool = True, per_user: bool = False) -> list[UserRows]:
    """Every user's (source, target) pairs from a ``peft-data`` file, in file order; a row
    without a string source (or target, when ``need_target``) is an ``InputError``, or with
    ``per_user`` that user's ``problem`` (the others are read on)."""
    from lampctl.peftdata.rows import read_users

    users: list[UserRows] = []
    seen: set[str] = set()
    for user, rows in read_users(path):
        if user in seen:
            raise InputError(f"{path}: user {user!r} appears in two places (not grouped by user)")
        seen.add(user)
        check_user_id(path, user)
        pairs, problem = [], None
        for row in rows:
            source, target = row.get("source"), row.get("target")
            if not isinstance(source, str) or (need_target and not isinstance(target, str)):
                what = "source" if not isinstance(source, str) else "target"
                problem = f"{path}: row {row.get('id')!r} of user {user!r} has no {what}"
                if not per_user:
                    raise InputError(problem)
                break
            pairs.append((source, target if isinstance(target, str) else ""))
        ids = tuple(str(row.get("id")) for row in rows)
        users.append(UserRows(user, pairs, ids, problem))
    return users


def check_user_id(path: Path, user: str) -> None:
    """A user id names a folder: no separators, no leading dot."""
    if not user or user.startswith(".") or "/" in user or "\\" in user or "\0" in user:
        raise InputError(f"{path}: user id {user!r} cannot name an adapter folder")


def choose(
    users: list[UserRows],
    wanted: Sequence[str] | None,
    shard: tuple[int, int] | None,
    path: Path,
    weight: Callable[[UserRows], int] | None = None,
) -> list[UserRows]:
    """``--users`` (each must be in the file), then shard i of n balanced by rows (largest
    users first onto the least-loaded shard; a user is never split), in file order."""
    from lampctl.peftdata.rows import User, shard_users

    if wanted is not None:
        if not wanted:
            raise InputError(f"{path}: the users asked for are none (an empty users list)")
        known = {u.user for u in users}
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise InputError(f"{path}: has no user {unknown[0]!r} (of {len(unknown)} asked for)")
        chosen = set(wanted)
        users = [u for u in users if u.user in chosen]
    if shard is None:
        return users
    load = weight or (lambda u: len(u.pairs))
    ids = [User(u.user, n, []) for n, u in enumerate(users)]
    keep = {u.id for u in shard_users(ids, {u.user: load(u) for u in users}, *shard)}
    return [u for u in users if u.user in keep]


def adapter_config(options: TrainOptions, kind: str, base_name: str | None = None) -> dict:
    """The ``adapter_config.json`` of a plain LoRA adapter, with the keys and values peft's
    ``LoraConfig.save_pretrained`` writes for one (peft fills any key it adds later with its
    default), so ``PeftModel.from_pretrained`` loads the adapter as it loads its own."""
    return {
        "peft_type": "LORA",
        "task_type": "SEQ_2_SEQ_LM" if kind == "seq2seq" else "CAUSAL_LM",
        "base_model_name_or_path": base_name,
        "revision": None,
        "inference_mode": True,
        "r": options.r,
        "lora_alpha": options.alpha,
        "lora_dropout": options.dropout,
        "target_modules": sorted(options.targets or ()),
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "use_rslora": False,
        "use_dora": False,
        "modules_to_save": None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
    }


@dataclass(frozen=True)
class TrainResult:
    user_id: str
    rows: int
    status: str  # trained | up to date | failed
    adapter: str
    steps: int = 0
    loss: float | None = None
    seconds: float = 0.0
    error: str | None = None  # why a failed user failed

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_adapters_dir(adapters: Path) -> None:
    if adapters.exists() and not adapters.is_dir():
        raise OutputError(f"{adapters}: is a file; the adapters go in a folder")


@dataclass(frozen=True)
class TrainRun:
    rows: str
    adapters: str
    base_model: str
    device: str | None
    results: list[TrainResult]
    pack: int = 0  # users trained at once (0: none trained)

    @property
    def trained(self) -> int:
        return sum(r.status == "trained" for r in self.results)

    @property
    def up_to_date(self) -> int:
        return sum(r.status == "up to date" for r in self.results)

    @property
    def failed(self) -> list[TrainResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def errors(self) -> list[str]:
        """Each failed user's one line."""
        return [r.error for r in self.failed if r.error]

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "adapters": self.adapters,
            "base_model": self.base_model,
            "device": self.device,
            "pack": self.pack,
            "trained": self.trained,
            "up_to_date": self.up_to_date,
            "failed": len(self.failed),
            "users": [r.as_dict() for r in self.results],
        }


DEFAULT_PACK = 32  # users at once when --pack is not given (fewer when memory holds fewer)
MEMORY_MARGIN = 1.25  # what a step holds beyond autograd's saved tensors (gradients, temps)


def train_adapters(
    rows: Path,
    model: str,
    adapters: Path,
    options: TrainOptions,
    *,
    revision: str | None = None,
    users: Sequence[str] | None = None,
    shard: tuple[int, int] | None = None,
    device: str = "auto",
    precision: str = "fp32",
    force: bool = False,
    pack: int | None = None,
    reporter: Reporter | None = None,
    on_file: Callable[[str], None] | None = None,
    users_file: Path | None = None,
) -> TrainRun:
    """One adapter per user of ``rows`` in ``adapters/{user_id}/``, ``pack`` users at a time
    (None: chosen from the device and its free memory); users whose adapter is complete and
    up to date (same rows, base model and options) are skipped, and the base model is not
    loaded at all when every user is. A user whose rows are broken, or whose loss stops being
    finite, fails alone: it is in the results as failed, with why."""
    from lampctl.io.outputs import check_outputs, check_writable, local_folder
    from lampctl.model.loading import load_base_model, model_identity
    from lampctl.reporting import SilentReporter

    reporter = reporter or SilentReporter()
    if pack is not None and (isinstance(pack, bool) or not isinstance(pack, int) or pack < 1):
        raise OptionError("pack", f"must be a whole number of at least 1, not {pack!r}")
    check_adapters_dir(adapters)
    check_outputs(
        {}, {"rows": rows, "users": users_file},
        input_folders={"model": local_folder(model)}, output_folders={"adapters": adapters},
    )  # fmt: skip
    check_writable([adapters / "user"])  # a file of the folder to fill
    every = read_user_rows(rows, per_user=True)
    if not every:
        raise InputError(f"{rows}: holds no training rows (an empty peft-data file)")
    chosen = choose(every, users, shard, rows)
    empty = [u.user for u in chosen if not u.pairs and u.problem is None]
    if empty:
        raise InputError(f"{rows}: user {empty[0]!r} has no training rows")
    identity = model_identity(model, revision)
    remove_dead_temp_folders(adapters)

    def wanted(user: UserRows) -> Callable[[str], dict[str, Any]]:
        # The model's kind is known once it is loaded; before, the record says which it was.
        return lambda kind: adapter_record(identity, kind, options.with_targets(kind), user)

    todo, results = [], {}
    for user in chosen:
        folder = adapters / user.user
        if user.problem is not None:
            results[user.user] = TrainResult(
                user.user, len(user.ids), "failed", str(folder), error=user.problem
            )
        elif not force and adapter_state(folder, wanted(user)) == "up to date":
            results[user.user] = TrainResult(user.user, len(user.pairs), "up to date", str(folder))
        else:
            todo.append(user)
    base, size = None, 0
    if todo:
        base = load_base_model(model, revision, device, precision)
        trained = options.with_targets(base.kind)
        with quiet_libraries():  # checks the targets before the first line
            packed, size = _packed_adapters(base, trained, todo, pack, reporter)
        reporter.log(
            f"training {len(todo)} adapter(s) on {base.name} ({base.kind}, {base.device}), "
            f"{size} at a time"
        )
        try:
            _train_packed(packed, todo, adapters, wanted, force, reporter, results, on_file)
        finally:
            packed.close()
    return TrainRun(
        str(rows),
        str(adapters),
        identity,
        base.device if base is not None else None,
        [results[u.user] for u in chosen],
        size,
    )


def free_memory(device: str) -> int:
    """Bytes free for a pack on ``device``: CUDA's free memory, or the system's available
    memory (``MemAvailable``, within a cgroup's limit when one is set)."""
    import torch

    if device.startswith("cuda"):
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            left = int(limit) - used
            available = left if available is None else min(available, left)
    except (OSError, ValueError):
        pass
    if available is None:
        import os

        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return available


def _size(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def _longest_row(base: BaseModel, users: Sequence[UserRows], max_length: int) -> tuple:
    """An encoded row as long as the longest of ``users`` (sources and targets apart): the
    step a pack's memory is planned for."""
    from lampctl.model.packing import encode_rows

    pairs = [pair for user in users for pair in user.pairs]
    longest = sorted(pairs, key=lambda p: len(p[0]) + len(p[1]), reverse=True)[:16]
    longest += sorted(pairs, key=lambda p: len(p[1]), reverse=True)[:8]
    encoded = encode_rows(base, longest, max_length)
    if base.kind == "causal":  # one sequence: the longest whole
        return max(encoded, key=lambda e: len(e[0]))
    return max((e[0] for e in encoded), key=len), max((e[1] for e in encoded), key=len)


def _packed_adapters(
    base: BaseModel,
    options: TrainOptions,
    users: Sequence[UserRows],
    requested: int | None,
    reporter: Reporter,
) -> tuple[Any, int]:
    """The pack for ``users``: ``requested`` slots (a one-line ``OptionError`` naming the
    memory when that many do not fit), or the device's default backed off to what fits; each
    step runs in chunks of as many rows as the memory left holds (at least one batch)."""
    from lampctl.model.packing import PackedAdapters

    size = requested or DEFAULT_PACK
    if len(users) < size:
        if requested is not None:
            reporter.log(f"--pack {requested} is more than the {len(users)} users to train: "
                         f"training all {len(users)} at once")  # fmt: skip
        size = len(users)
    packed = PackedAdapters(base, options, 1)  # one slot, to measure a user's share
    if size == 1:
        return packed, size
    row = _longest_row(base, users, options.max_length)
    state = MEMORY_MARGIN * packed.slot_bytes()
    activations = MEMORY_MARGIN * packed.row_activation_bytes(row)
    packed.close()
    free = free_memory(base.device)
    batch = options.batch_size

    def need(k: int) -> float:  # k slots, and a forward of one user's batch
        return k * state + batch * activations

    fits = max([k for k in range(1, size + 1) if need(k) <= free] or [1])
    if fits < size and requested is not None:
        tokens = len(row[0]) + (len(row[1]) if base.kind == "seq2seq" else 0)
        raise OptionError(
            "pack",
            f"{size} users at once need about {_size(need(size))} on {base.device} (their "
            f"adapters, gradients and AdamW moments, and a forward of {batch} rows of up to "
            f"{tokens} tokens), but {_size(free)} is free; --pack {fits} fits",
        )
    if fits < size:
        reporter.log(f"{base.device} has room for {fits} users at once ({_size(free)} free)")
        size = fits
    rows = int((free - size * state) // activations) if activations else size * batch
    chunk = max(batch, min(size * batch, rows))
    if chunk < size * batch:
        reporter.log(f"each step runs in forwards of {chunk} rows ({_size(free)} free)")
    return PackedAdapters(base, options, size, chunk), size


def _out_of_memory(exc: BaseException) -> bool:
    """torch's out-of-memory errors: CUDA's own class, and the CPU allocator's RuntimeError."""
    import torch

    text = str(exc)
    return (
        isinstance(exc, torch.OutOfMemoryError)
        or "can't allocate memory" in text
        or ("out of memory" in text.lower())
    )


def _train_packed(
    packed: Any,
    users: list[UserRows],
    adapters: Path,
    wanted: Callable[[UserRows], Callable[[str], dict[str, Any]]],
    force: bool,
    reporter: Reporter,
    results: dict[str, TrainResult],
    on_file: Callable[[str], None] | None = None,
) -> None:
    """Every user trained in the pack's slots: a slot whose user is done is saved and given
    to the next user at once."""
    from lampctl.model.packing import encode_rows

    options, base = packed.options, packed.base
    queue = list(reversed(users))
    steps = sum(schedule_steps(len(u.pairs), options)[0] for u in users)
    started: dict[int, float] = {}
    records: dict[int, dict[str, Any]] = {}
    reporter.start(f"{len(users)} users, {packed.size} at a time", steps, unit="steps")
    config = adapter_config(options, base.kind, getattr(base.model, "name_or_path", None))

    def fill(slot: int) -> None:
        while queue:
            user = queue.pop()
            loaded = wanted(user)(base.kind)
            folder = adapters / user.user
            if not force and (  # a twin run may have finished it meanwhile
                adapter_state(folder, lambda _kind, loaded=loaded: loaded) == "up to date"
            ):
                results[user.user] = TrainResult(
                    user.user, len(user.pairs), "up to date", str(folder)
                )
                reporter.advance(schedule_steps(len(user.pairs), options)[0])
                continue
            packed.fill(slot, user, encode_rows(base, user.pairs, options.max_length))
            started[slot], records[slot] = time.perf_counter(), loaded
            return

    for slot in range(packed.size):
        fill(slot)
    while any(state is not None for state in packed.states):
        with quiet_libraries():
            try:
                done = packed.step()
            except RuntimeError as exc:  # torch.OutOfMemoryError is one
                if not _out_of_memory(exc):
                    raise
                busy = sum(state is not None for state in packed.states)
                raise ModelLoadError(
                    f"out of memory on {base.device} in a step of {busy} users' rows "
                    f"({' '.join(str(exc).split())[:160]}); the adapters saved so far are "
                    f"kept: rerun with --pack {max(1, busy // 2)}"
                ) from None
        reporter.advance(len(done))
        for slot, state in enumerate(packed.states):
            if state is None or not (state.done or state.error):
                continue
            user, folder = state.user, adapters / state.user.user
            seconds = round(time.perf_counter() - started[slot], 3)
            if state.error is not None:
                error = f"user {user.user!r}: {state.error}; its adapter is not saved"
                results[user.user] = TrainResult(
                    user.user, len(user.pairs), "failed", str(folder), state.step, None,
                    seconds, error,
                )  # fmt: skip
                reporter.advance(state.total - state.step)
                reporter.log(f"Error: {error}")
            else:
                record = {**records[slot], "losses": list(state.curve)}
                save_adapter(folder, record, packed.weights(slot), config)
                if on_file is not None:  # an interrupted run says what it kept
                    on_file(str(folder))
                loss = sum(state.losses) / len(state.losses) if state.losses else None
                results[user.user] = TrainResult(
                    user.user, len(user.pairs), "trained", str(folder), state.total,
                    None if loss is None else round(loss, 6), seconds,
                )  # fmt: skip
            packed.free(slot)
            fill(slot)
