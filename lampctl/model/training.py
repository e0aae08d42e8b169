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
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lampctl import __version__
from lampctl.errors import InputError, OptionError, OutputError
from lampctl.io.data import sha256_file
from lampctl.model.loading import BaseModel, quiet_libraries, training_batch
from lampctl.model.options import TrainOptions
from lampctl.reporting import Reporter

RECORD = "lampctl_adapter.json"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")

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


def adapter_record(base: str, kind: str, options: TrainOptions, user: UserRows) -> dict[str, Any]:
    return {
        "user_id": user.user,
        "rows": len(user.pairs),
        "rows_sha256": user.sha256,
        "base_model": base,
        "kind": kind,
        "options": options.as_record(),
    }


def read_adapter_record(folder: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def adapter_state(folder: Path, wanted: Callable[[str], dict[str, Any]]) -> str:
    """ "up to date", "new" or "stale: why" for one user's adapter folder; ``wanted`` gives
    the record wanted, given the model kind the folder's record names (before the model is
    loaded, that is the only word on its kind)."""
    if not folder.is_dir():
        return "new"
    record = read_adapter_record(folder)
    if record is None or not isinstance(record.get("kind"), str):
        return "stale: no record"
    for key, value in wanted(record["kind"]).items():
        if record.get(key) != value:
            return f"stale: other {key.replace('_', ' ')}"
    written = record.get("files") or {}
    for name in ADAPTER_FILES:
        path = folder / name
        if not path.is_file() or sha256_file(path) != written.get(name):
            return f"stale: {name} changed"
    return "up to date"


def save_adapter(
    model: Any, folder: Path, record: dict[str, Any], weights: dict | None = None
) -> None:
    """``model``'s adapter (``weights``: its peft state dict, if already known) and its record
    into ``folder``, whole or not at all: written to a temp folder beside it, synced, then
    renamed into place (an older folder is moved aside first and removed after)."""
    from lampctl.io.data import owner_tag, process_umask

    parent = folder.parent
    tag = f"{owner_tag()}adapter"  # HOST-PID-adapter: what remove_dead_temp_folders reads
    temp = parent / f".{folder.name}.{tag}.tmp"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if temp.exists():
            shutil.rmtree(temp)
        _write_adapter(model, temp, weights)
        files = {name: sha256_file(temp / name) for name in ADAPTER_FILES}
        (temp / RECORD).write_text(
            json.dumps({"lampctl": __version__, **record, "files": files}, indent=1) + "\n",
            encoding="utf-8",
        )
        for path in temp.iterdir():
            path.chmod(0o666 & ~process_umask())
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        old = parent / f".{folder.name}.{tag}.old"
        if folder.exists():
            os.replace(folder, old)
        os.replace(temp, folder)
        shutil.rmtree(old, ignore_errors=True)
        descriptor = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as exc:
        shutil.rmtree(temp, ignore_errors=True)
        raise OutputError(f"{folder}: cannot write the adapter: {exc.strerror or exc}") from None


def _write_adapter(model: Any, folder: Path, weights: dict | None = None) -> None:
    """The two files ``PeftModel.save_pretrained`` writes that loading needs: the adapter's
    weights (safetensors, as peft names them) and its config (in inference mode); without
    the model card peft also writes, which costs more than the weights on small models."""
    import copy

    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    if weights is None:
        weights = get_peft_model_state_dict(model)
    save_file(
        {name: tensor.detach().contiguous() for name, tensor in weights.items()},
        str(folder / "adapter_model.safetensors"),
        metadata={"format": "pt"},
    )
    config = copy.copy(model.peft_config["default"])
    config.inference_mode = True
    if isinstance(config.target_modules, (set, frozenset)):  # a set's order varies by process
        config.target_modules = sorted(config.target_modules)
    config.save_pretrained(str(folder))


def remove_dead_temp_folders(parent: Path) -> None:
    """Temp adapter folders (``.USER.HOST-PID-adapter.tmp`` or ``.old``) of killed runs on this
    host, judged as the atomic writer judges its temp files."""
    from lampctl.io.data import left_by_dead_writer

    if not parent.is_dir():
        return
    for path in parent.iterdir():
        name = path.name
        if name.startswith(".") and name.endswith((".tmp", ".old")) and path.is_dir():
            tag = name[1:-4].rpartition(".")[2]  # a host name has no dot in the tag
            if left_by_dead_writer(tag):
                shutil.rmtree(path, ignore_errors=True)


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
    chosen = choose(read_user_rows(rows), users, shard, rows)
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
