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
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lampctl.errors import InputError, OptionError, OutputError
from lampctl.model.adapter_files import (
    adapter_record,
    adapter_state,
    remove_dead_temp_folders,
    save_adapter,
)
from lampctl.model.loading import BaseModel, quiet_libraries, training_batch
from lampctl.model.options import TrainOptions
from lampctl.reporting import Reporter

Pairs = list[tuple[str, str]]


@dataclass(frozen=True)
class UserRows:
    user: str
    pairs: Pairs
    ids: tuple[str, ...] = ()  # each row's id, as the file gives it

    @functools.cached_property
    def sha256(self) -> str:
        """The user's training pairs, hashed: a change to any row retrains this user only."""
        return hashlib.sha256(json.dumps(self.pairs, ensure_ascii=False).encode()).hexdigest()


def read_user_rows(path: Path, need_target: bool = True) -> list[UserRows]:
    """Every user's (source, target) pairs from a ``peft-data`` file, in file order; a row
    without a string source (or target, when ``need_target``) is an ``InputError``."""
    from lampctl.peftdata.rows import read_users

    users: list[UserRows] = []
    seen: set[str] = set()
    for user, rows in read_users(path):
        if user in seen:
            raise InputError(f"{path}: user {user!r} appears in two places (not grouped by user)")
        seen.add(user)
        check_user_id(path, user)
        pairs = []
        for row in rows:
            source, target = row.get("source"), row.get("target")
            if not isinstance(source, str) or (need_target and not isinstance(target, str)):
                what = "source" if not isinstance(source, str) else "target"
                raise InputError(f"{path}: row {row.get('id')!r} of user {user!r} has no {what}")
            pairs.append((source, target if isinstance(target, str) else ""))
        users.append(UserRows(user, pairs, tuple(str(row.get("id")) for row in rows)))
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


# --------------------------------------------------------------------------- the adapters


# --------------------------------------------------------------------------- training


def lora_config(options: TrainOptions, kind: str) -> Any:
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.SEQ_2_SEQ_LM if kind == "seq2seq" else TaskType.CAUSAL_LM,
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=list(options.targets or ()),
    )


@dataclass(frozen=True)
class UserTraining:
    steps: int
    loss: float | None  # the mean loss of the last epoch


def schedule_steps(rows: int, options: TrainOptions) -> tuple[int, int]:
    """(optimizer steps, warmup steps): the Trainer's ``ceil(total * warmup_ratio)``."""
    total = math.ceil(rows / options.batch_size) * options.epochs
    return total, math.ceil(total * options.warmup_ratio)


class FreshAdapters:
    """One LoRA injected into the base model once, set back to its seeded start for each user.

    A fresh ``get_peft_model`` per user (the reference's way, fixed) walks and rewraps the
    whole model each time; its result depends only on the seed, so the start is made once and
    copied back before each user, with the random generators' state as it was right after it
    (the dropout masks): each user's adapter is the one a fresh ``get_peft_model`` after
    ``torch.manual_seed(seed)`` would train (tested against such a loop)."""

    def __init__(self, base: BaseModel, options: TrainOptions) -> None:
        import torch
        from peft import get_peft_model

        self.base, self.options = base, options
        torch.manual_seed(options.seed)  # the adapter's initial weights and the dropout masks
        try:
            self.model = get_peft_model(base.model, lora_config(options, base.kind))
        except ValueError as exc:  # peft: no module of the model matches the targets
            names = ",".join(options.targets or ())
            raise OptionError(
                "targets",
                f"the LoRA targets {names} are not modules of {base.name} ({base.kind}): name "
                f"its attention projections with --targets ({' '.join(str(exc).split())[:120]})",
            ) from None
        self.trainable = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.start = {n: p.detach().clone() for n, p in self.trainable}
        self.rng = torch.get_rng_state()
        cuda = base.device.startswith("cuda")
        self.cuda_rng = torch.cuda.get_rng_state(base.device) if cuda else None
        self.weights = live_adapter_weights(self.model, self.trainable)
        # Training mode for the whole run (dropout), set once: transformers' train() and eval()
        # walk every module (and run kernelize) on each call, a cost to pay once per run
        # rather than twice per user (about a tenth of a small user's time on a tiny model).
        self.model.train()

    def train(self, pairs: Pairs, step: Callable[[], None] | None = None) -> UserTraining:
        """A fresh adapter trained on ``pairs``: AdamW, linear warmup and decay, clipping,
        each epoch's rows in a permutation from a generator seeded with the seed."""
        import torch
        from transformers import get_linear_schedule_with_warmup

        options, model = self.options, self.model
        with torch.no_grad():
            for name, parameter in self.trainable:
                parameter.copy_(self.start[name])
        torch.set_rng_state(self.rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state(self.cuda_rng, self.base.device)
        params = [p for _, p in self.trainable]
        optimizer = torch.optim.AdamW(
            params, lr=options.learning_rate, weight_decay=options.weight_decay
        )
        total, warmup = schedule_steps(len(pairs), options)
        scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
        order = torch.Generator().manual_seed(options.seed)
        losses: list[float] = []
        for _ in range(options.epochs):
            losses = []
            permutation = torch.randperm(len(pairs), generator=order).tolist()
            for start in range(0, len(pairs), options.batch_size):
                chosen = [pairs[i] for i in permutation[start : start + options.batch_size]]
                loss = model(**training_batch(self.base, chosen, options.max_length)).loss
                loss.backward()
                if options.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, options.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                if step is not None:
                    step()
        return UserTraining(total, sum(losses) / len(losses) if losses else None)

    def save(self, folder: Path, record: dict[str, Any]) -> None:
        save_adapter(self.model, folder, record, self.weights)

    def close(self) -> None:
        """Take the adapter off: the base model is as it was loaded (in eval mode)."""
        self.model.eval()
        self.base.model = self.model.unload()


def live_adapter_weights(model: Any, trainable: Sequence[tuple[str, Any]]) -> dict | None:
    """peft's saved state dict of ``model``'s adapter, taken once, when each of its tensors is
    a view of a trainable parameter (plain LoRA): training updates those in place, so the dict
    always holds the current weights and saving each user skips peft's walk of the model.
    None when peft's dict holds anything else; each save then asks peft again."""
    from peft import get_peft_model_state_dict

    weights = get_peft_model_state_dict(model)
    live = {(p.data_ptr(), p.shape) for _, p in trainable}
    if all((t.data_ptr(), t.shape) in live for t in weights.values()):
        return weights
    return None


@dataclass(frozen=True)
class TrainResult:
    user_id: str
    rows: int
    status: str  # trained | up to date
    adapter: str
    steps: int = 0
    loss: float | None = None
    seconds: float = 0.0

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

    @property
    def trained(self) -> int:
        return sum(r.status == "trained" for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "adapters": self.adapters,
            "base_model": self.base_model,
            "device": self.device,
            "trained": self.trained,
            "up_to_date": len(self.results) - self.trained,
            "users": [r.as_dict() for r in self.results],
        }


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
    reporter: Reporter | None = None,
    on_file: Callable[[str], None] | None = None,
    users_file: Path | None = None,
) -> TrainRun:
    """One adapter per user of ``rows`` in ``adapters/{user_id}/``; users whose adapter is
    complete and up to date (same rows, base model and options) are skipped, and the base
    model is not loaded at all when every user is."""
    from lampctl.io.outputs import check_outputs, check_writable, local_folder
    from lampctl.model.loading import load_base_model, model_identity, require_peft
    from lampctl.reporting import SilentReporter

    reporter = reporter or SilentReporter()
    require_peft()
    check_adapters_dir(adapters)
    check_outputs(
        {}, {"rows": rows, "users": users_file},
        input_folders={"model": local_folder(model)}, output_folders={"adapters": adapters},
    )  # fmt: skip
    check_writable([adapters / "user"])  # a file of the folder to fill
    every = read_user_rows(rows)
    if not every:
        raise InputError(f"{rows}: holds no training rows (an empty peft-data file)")
    chosen = choose(every, users, shard, rows)
    empty = [u.user for u in chosen if not u.pairs]
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
        if not force and adapter_state(folder, wanted(user)) == "up to date":
            results[user.user] = TrainResult(user.user, len(user.pairs), "up to date", str(folder))
        else:
            todo.append(user)
    base = None
    if todo:
        base = load_base_model(model, revision, device, precision)
        with quiet_libraries():  # checks the targets before the first line
            fresh = FreshAdapters(base, options.with_targets(base.kind))
        reporter.log(f"training {len(todo)} adapter(s) on {base.name} ({base.kind}, {base.device})")
        _train_users(fresh, todo, adapters, wanted, force, reporter, results, on_file)
    return TrainRun(
        str(rows),
        str(adapters),
        identity,
        base.device if base is not None else None,
        [results[u.user] for u in chosen],
    )


def _train_users(
    fresh: FreshAdapters,
    users: list[UserRows],
    adapters: Path,
    wanted: Callable[[UserRows], Callable[[str], dict[str, Any]]],
    force: bool,
    reporter: Reporter,
    results: dict[str, TrainResult],
    on_file: Callable[[str], None] | None = None,
) -> None:
    """Each user's adapter trained and saved, one after another, on one injected LoRA."""
    try:
        for number, user in enumerate(users, 1):
            folder = adapters / user.user
            loaded = wanted(user)(fresh.base.kind)  # the kind is known now
            if not force and (  # a twin run may have finished it meanwhile
                adapter_state(folder, lambda _kind, loaded=loaded: loaded) == "up to date"
            ):
                results[user.user] = TrainResult(
                    user.user, len(user.pairs), "up to date", str(folder)
                )
                continue
            started = time.perf_counter()
            steps, _ = schedule_steps(len(user.pairs), fresh.options)
            reporter.start(f"user {user.user} ({number}/{len(users)})", steps, unit="steps")
            with quiet_libraries():
                done = fresh.train(user.pairs, reporter.advance)
                fresh.save(folder, loaded)
            if on_file is not None:  # an interrupted run says what it kept
                on_file(str(folder))
            results[user.user] = TrainResult(
                user.user, len(user.pairs), "trained", str(folder), done.steps,
                None if done.loss is None else round(done.loss, 6),
                round(time.perf_counter() - started, 3),
            )  # fmt: skip
    finally:
        with quiet_libraries():
            fresh.close()
