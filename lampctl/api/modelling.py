"""``lampctl.peft_train``, ``lampctl.peft_predict`` and ``lampctl.generate``: the model step
of both experiments, for the commands ``peft train``, ``peft predict`` and ``generate``.

Each takes either explicit files or one (task, split, set) of the data dir, where the files
stand beside the questions file under names that carry the choices:

    {set}_peft_{variant}.jsonl                      peft-data's training rows (default: the
                                                    name of its default options, file or
                                                    file_seed0)
    {set}_peft_{variant}_eval.jsonl                 its evaluation rows
    {set}_peft_{variant}_adapters/{model}/{user}/   one adapter per user (peft train)
    {set}_peft_{variant}_predictions_{model}_{decoding}.json   peft predict's predictions
    {prompts file stem}_predictions_{model}_{decoding}.json    generate's predictions

``{model}`` is the model's last path part and a hash of its identity, ``{decoding}`` the beams
and new tokens (``beams4_tokens128``), so runs with other base models or decoding never
overwrite each other. Each predictions file has a record beside it (``....meta.json``): a
rerun whose inputs, model and options are unchanged is skipped (``force`` redoes it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lampctl import settings
from lampctl.arguments import checked_arguments
from lampctl.catalog.bundled import cached_registry as registry
from lampctl.errors import InputError, OptionError
from lampctl.io.data import as_path
from lampctl.model.options import DecodeOptions, TrainOptions
from lampctl.reporting import Reporter


def model_slug(model: str, revision: str | None = None) -> str:
    """``google/flan-t5-base`` -> ``flan-t5-base-1a2b3c4d``."""
    from lampctl.model.loading import model_identity

    tail = re.sub(r"[^A-Za-z0-9._-]+", "-", model.rstrip("/").split("/")[-1]) or "model"
    digest = hashlib.sha256(model_identity(model, revision).encode()).hexdigest()[:8]
    return f"{tail}-{digest}"


@dataclass(frozen=True)
class PeftPaths:
    """Where one set's PEFT files stand in the data dir."""

    folder: Path
    stem: str  # {set}_peft_{variant}

    @classmethod
    def beside(cls, rows: Path, evaluation: bool) -> PeftPaths:
        """The files named after an explicit rows file (``X.jsonl``; ``X_eval.jsonl`` when
        ``evaluation``): ``X_adapters/``, ``X_predictions_...json``, ``X.jsonl``."""
        stem = rows.name.removesuffix(".jsonl")
        return cls(rows.parent, stem.removesuffix("_eval") if evaluation else stem)

    @property
    def rows(self) -> Path:
        return self.folder / f"{self.stem}.jsonl"

    @property
    def eval_rows(self) -> Path:
        return self.folder / f"{self.stem}_eval.jsonl"

    def adapters(self, slug: str) -> Path:
        return self.folder / f"{self.stem}_adapters" / slug

    def predictions(self, slug: str, decoding: str) -> Path:
        return self.folder / f"{self.stem}_predictions_{slug}_{decoding}.json"


def _selection(
    task: str | None,
    split: str | None,
    set: str | None,
    data_dir: Path | str | None,
    config: Path | str | None,
    explicit: str,
) -> tuple[Any, Path]:
    """(task spec, folder of the set) of a data-dir selection: all three must be given."""
    if task is None or split is None or set is None:
        missing = next(n for n, v in (("task", task), ("split", split), ("set", set)) if v is None)
        name = explicit.removeprefix("--")
        raise OptionError(
            missing, f"name one task, split and set, or pass {name}=PATH", mentions=(name,)
        )
    found = registry(config)
    spec = found.task(task)
    found.check_split(split)
    folder = found.path("questions", settings.data_dir(data_dir), spec, split, set).parent
    return spec, folder


def _stem(spec: Any, set_name: str, variant: str | None) -> str:
    """``{set}_peft_{variant}``; without a variant, the name ``peft-data`` gives its files
    with the default options (``dev_peft_file``; ``dev_peft_file_seed0`` for LaMP-7's cuts)."""
    if variant is not None:
        return f"{set_name}_peft_{variant}"
    from lampctl.peftdata.files import variant_name
    from lampctl.peftdata.rows import PeftOptions

    return variant_name(set_name, spec, PeftOptions(), None, None)


def _explicit(
    option: str,
    path: Path | None,
    task: str | None,
    split: str | None,
    set: str | None,
    task_rule: str,
) -> bool:
    """Explicit files (``option`` given) or a data-dir selection, by the shared rule."""
    from lampctl.catalog.datadir import explicit_files

    selection = {"task": [task] if task else [], "split": split, "set": set}
    return explicit_files({option: path}, task=task_rule, selection=selection)


def _with_task_defaults(
    task: str | None, config: Path | str | None, given: dict[str, Any], keys: Sequence[str]
) -> dict[str, Any]:
    """``given`` options with the task's own defaults (its registry ``model_defaults``) for
    those of ``keys`` not given: LongLaMP's long outputs need more new tokens than LaMP's."""
    if task is None:
        return given
    defaults = registry(config).task(task).model_defaults
    chosen = dict(given)
    for key in keys:
        if chosen.get(key) is None and key in defaults:
            chosen[key] = defaults[key]
    return chosen


def _task_name(task: str | None, config: Path | str | None) -> str:
    """The official ``task`` value (``LaMP_4``) of the predictions file."""
    assert task is not None  # explicit_files(task="one") checked it
    return registry(config).task(task).dir_name


def _shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``(i, n)`` as given, from ``"i/n"``, or (None) from the SLURM array's variables."""
    from lampctl.retrieval.shards import parse_shard

    if isinstance(shard, tuple):
        whole = all(isinstance(v, int) and not isinstance(v, bool) for v in shard)
        if len(shard) != 2 or not whole or not 0 <= shard[0] < shard[1]:
            raise OptionError("shard", f"bad shard {shard!r}: (i, n) with 0 <= i < n")
        return shard
    parsed = parse_shard(shard)
    return (parsed.index, parsed.count) if parsed else None


def _users(users: Sequence[str] | Path | str | None) -> list[str] | None:
    """``--users``: a JSON list file (peft-data's ``_users.json``) or a list of ids."""
    if users is None:
        return None
    if isinstance(users, (str, Path)):
        from lampctl.peftdata.files import read_users_file

        return read_users_file(Path(users))
    return [str(u) for u in users]


def _users_file(users: Sequence[str] | Path | str | None) -> Path | None:
    """The ``users`` file, when a file names them: an input no output may replace."""
    return Path(users) if isinstance(users, (str, Path)) else None


@checked_arguments(options=TrainOptions)
def peft_train(
    model: str,
    task: str | None = None,
    split: str | None = None,
    set: str | None = None,
    *,
    rows: Path | str | None = None,
    adapters: Path | str | None = None,
    variant: str | None = None,
    data_dir: Path | str | None = None,
    users: Sequence[str] | Path | str | None = None,
    shard: str | tuple[int, int] | None = None,
    revision: str | None = None,
    device: str = "auto",
    precision: str = "fp32",
    force: bool = False,
    pack: int | None = None,
    config: Path | str | None = None,
    reporter: Reporter | None = None,
    on_file: Callable[[str], None] | None = None,
    **hyperparameters: Any,
) -> Any:
    """Train one LoRA adapter per user of a ``peft-data`` rows file; returns a ``TrainRun``.

    ``pack`` users train at once over one base model (None: 32, or fewer
    when memory holds fewer); each user's adapter is the same whatever the packing.

    ``hyperparameters`` (r, alpha, dropout, targets, learning_rate, weight_decay, epochs,
    batch_size, warmup_ratio, max_grad_norm, max_length, seed) default to the LaMP authors'
    settings (``configs/training.yaml``). Users whose adapter is up to date are skipped.
    """
    from lampctl.model.options import default_train_options
    from lampctl.model.training import train_adapters

    hyperparameters = _with_task_defaults(task, config, hyperparameters, ("max_length",))
    options = default_train_options(**hyperparameters)
    rows_path = as_path(rows)
    if _explicit("rows", rows_path, task, split, set, task_rule="none"):
        paths = PeftPaths.beside(rows_path, evaluation=False)
    else:
        spec, folder = _selection(task, split, set, data_dir, config, "--rows")
        paths = PeftPaths(folder, _stem(spec, set, variant))
        rows_path = paths.rows
    adapters_path = as_path(adapters) or paths.adapters(model_slug(model, revision))
    if not rows_path.is_file():
        raise InputError(f"{rows_path}: no such peft-data file (run 'lampctl peft-data' first)")
    return train_adapters(
        rows_path, model, adapters_path, options, revision=revision, users=_users(users),
        shard=_shard(shard), device=device, precision=precision, force=force, pack=pack,
        reporter=reporter, on_file=on_file, users_file=_users_file(users),
    )  # fmt: skip


@checked_arguments(options=DecodeOptions)
def peft_predict(
    model: str,
    task: str | None = None,
    split: str | None = None,
    set: str | None = None,
    *,
    rows: Path | str | None = None,
    adapters: Path | str | None = None,
    output: Path | str | None = None,
    variant: str | None = None,
    data_dir: Path | str | None = None,
    users: Sequence[str] | Path | str | None = None,
    shard: str | tuple[int, int] | None = None,
    revision: str | None = None,
    device: str = "auto",
    precision: str = "fp32",
    force: bool = False,
    config: Path | str | None = None,
    reporter: Reporter | None = None,
    **decoding: Any,
) -> Any:
    """Answer each user's questions (``peft-data``'s evaluation rows) with that user's adapter;
    writes the official predictions file; returns a ``PredictRun``.

    ``decoding`` (num_beams, max_new_tokens, batch_size, max_length) defaults to the LaMP
    authors' (4 beams, 128 new tokens). With ``shard`` the output is one shard's file
    (``....shard-i-of-n.json``; its users are those ``peft_train`` gives the same shard, as
    the training rows beside ``rows`` balance them); ``lampctl gather --predictions`` joins
    them.
    """
    from lampctl.model.options import default_decode_options
    from lampctl.model.predicting import predict_users
    from lampctl.retrieval.shards import Shard

    decoding = _with_task_defaults(task, config, decoding, ("max_new_tokens", "max_length"))
    options = default_decode_options(**decoding)
    rows_path = as_path(rows)
    if _explicit("rows", rows_path, task, split, set, task_rule="one"):
        paths = PeftPaths.beside(rows_path, evaluation=True)
        task_name = _task_name(task, config)
    else:
        spec, folder = _selection(task, split, set, data_dir, config, "--rows")
        paths = PeftPaths(folder, _stem(spec, set, variant))
        rows_path = paths.eval_rows
        task_name = spec.dir_name
    slug = model_slug(model, revision)
    adapters_path = as_path(adapters) or paths.adapters(slug)
    output_path = as_path(output) or paths.predictions(slug, options.tag)
    parsed = _shard(shard)
    if parsed is not None:
        output_path = Shard(*parsed).path(output_path)
    if not rows_path.is_file():
        raise InputError(f"{rows_path}: no such peft-data file (run 'lampctl peft-data' first)")
    return predict_users(
        rows_path, model, adapters_path, output_path, task_name, options, revision=revision,
        users=_users(users), shard=parsed, device=device, precision=precision,
        training_rows=paths.rows, users_file=_users_file(users), force=force, reporter=reporter,
    )  # fmt: skip


@checked_arguments(options=DecodeOptions)
def generate(
    model: str,
    task: str | None = None,
    split: str | None = None,
    set: str | None = None,
    *,
    prompts: Path | str | None = None,
    output: Path | str | None = None,
    data_dir: Path | str | None = None,
    revision: str | None = None,
    device: str = "auto",
    precision: str = "fp32",
    force: bool = False,
    config: Path | str | None = None,
    reporter: Reporter | None = None,
    **decoding: Any,
) -> Any:
    """The retrieval path's model step: one model's output for every row of a ``prompts``
    file, written as the official predictions file; returns a ``GenerateRun``. In the data
    dir, the set must hold exactly one prompts file (else pass ``prompts``)."""
    from lampctl.model.options import default_decode_options
    from lampctl.model.predicting import generate_file

    decoding = _with_task_defaults(task, config, decoding, ("max_new_tokens", "max_length"))
    options = default_decode_options(**decoding)
    prompts_path, output_path = as_path(prompts), as_path(output)
    if _explicit("prompts", prompts_path, task, split, set, task_rule="one"):
        task_name = _task_name(task, config)
    else:
        spec, folder = _selection(task, split, set, data_dir, config, "--prompts")
        found = sorted(folder.glob(f"{set}_prompts_*.jsonl"))
        if not found:
            raise InputError(f"{folder}: no prompts file for the {set} set (run 'lampctl prompts')")
        if len(found) > 1:
            names = ", ".join(path.name for path in found[:3])
            raise InputError(
                f"{folder}: {len(found)} prompts files for the {set} set ({names}); pass one "
                "as prompts= (--prompts)"
            )
        prompts_path = found[0]
        task_name = spec.dir_name
    slug = model_slug(model, revision)
    output_path = output_path or prompts_path.with_name(
        f"{prompts_path.name.removesuffix('.jsonl')}_predictions_{slug}_{options.tag}.json"
    )
    return generate_file(
        prompts_path, model, output_path, task_name, options, revision=revision, device=device,
        precision=precision, force=force, reporter=reporter,
    )  # fmt: skip
