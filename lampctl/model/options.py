"""Options of training and decoding, with the bundled defaults (``configs/training.yaml``)."""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from lampctl.errors import ConfigError, OptionError


@dataclass(frozen=True)
class TrainOptions:
    """One user's LoRA training (the reference's ``LoraConfig`` and training arguments)."""

    r: int
    alpha: int
    dropout: float
    targets: tuple[str, ...] | None  # None: the model kind's default (training.yaml)
    learning_rate: float
    weight_decay: float
    epochs: int
    batch_size: int
    warmup_ratio: float
    max_grad_norm: float
    max_length: int
    seed: int = 0

    def with_targets(self, kind: str) -> TrainOptions:
        """The options with the model kind's default targets filled in."""
        if self.targets is not None:
            return self
        return replace(self, targets=tuple(bundled()["lora"]["targets"][kind]))

    def as_record(self) -> dict[str, Any]:
        out = asdict(self)
        out["targets"] = list(self.targets) if self.targets is not None else None
        return out

    def check(self) -> None:
        for name, low in (("r", 1), ("alpha", 1), ("epochs", 1), ("batch_size", 1)):
            if getattr(self, name) < low:
                raise OptionError(name, f"must be at least {low}")
        if not 0 <= self.dropout < 1:
            raise OptionError("dropout", "must be in [0, 1)")
        if not 0 <= self.warmup_ratio <= 1:
            raise OptionError("warmup_ratio", "must be in [0, 1]")
        if self.learning_rate <= 0:
            raise OptionError("learning_rate", "must be above 0")


def schedule_steps(rows: int, options: TrainOptions) -> tuple[int, int]:
    """(optimizer steps, warmup steps) of a user with ``rows`` training rows: the Trainer's
    ``ceil(rows / batch_size) * epochs`` and ``ceil(total * warmup_ratio)``."""
    total = math.ceil(rows / options.batch_size) * options.epochs
    return total, math.ceil(total * options.warmup_ratio)


@dataclass(frozen=True)
class DecodeOptions:
    """Generation: beam search (``num_beams`` 1 is greedy), new tokens, batch size."""

    num_beams: int
    max_new_tokens: int
    batch_size: int
    max_length: int

    def as_record(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def tag(self) -> str:
        """What a predictions file's name carries of the decoding: ``beams4_tokens128``."""
        return f"beams{self.num_beams}_tokens{self.max_new_tokens}"

    def check(self) -> None:
        for name in ("num_beams", "max_new_tokens", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise OptionError(name, "must be at least 1")


@functools.cache
def bundled() -> dict[str, Any]:
    """``configs/training.yaml``, checked: its three sections and no unknown key (the values
    are checked where options are made, by ``TrainOptions.check`` and ``DecodeOptions.check``)."""
    from lampctl.catalog.bundled import bundled_text
    from lampctl.io.yamlfile import read_yaml

    data = read_yaml(bundled_text("training.yaml"), "bundled training.yaml")
    known = {
        "lora": {"r", "alpha", "dropout", "targets"},
        "train": {f.name for f in fields(TrainOptions)} - {"r", "alpha", "dropout", "targets"},
        "generation": {"num_beams", "max_new_tokens", "batch_size"},
    }
    if not isinstance(data, dict) or set(data) != set(known):
        raise ConfigError(f"training.yaml: expected the sections {', '.join(sorted(known))}")
    for section, keys in known.items():
        extra = set(data[section]) - keys
        if extra:
            raise ConfigError(f"training.yaml: unknown key {section}.{sorted(extra)[0]}")
    return data


def checked_options(cls: type, given: dict[str, Any]) -> dict[str, Any]:
    """``given`` (those not None) checked as the CLI checks them, each fault an
    ``OptionError`` naming the argument: an unknown name (with the nearest known one), or a
    value of the wrong type (``epochs="2"``; a bool is not a number)."""
    import difflib

    kinds = {f.name: f.type for f in fields(cls)}
    checked: dict[str, Any] = {}
    for name, value in given.items():
        if value is None:
            continue
        if name not in kinds:
            near = difflib.get_close_matches(name, list(kinds), n=1)
            hint = f"; did you mean {near[0]}?" if near else f" (known: {', '.join(kinds)})"
            raise OptionError(name, f"unknown option {name!r}{hint}")
        kind = str(kinds[name])
        if kind == "int" and (not isinstance(value, int) or isinstance(value, bool)):
            raise OptionError(name, f"must be a whole number, not {value!r}")
        if kind == "float":
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise OptionError(name, f"must be a number, not {value!r}")
            value = float(value)
        if name == "targets":
            if isinstance(value, str) or not all(isinstance(t, str) and t for t in value):
                raise OptionError(name, f"must be a list of module names, not {value!r}")
            value = tuple(value)
        checked[name] = value
    return checked


def default_train_options(**given: Any) -> TrainOptions:
    """The bundled defaults, with every option in ``given`` that is not None over them."""
    given = checked_options(TrainOptions, given)
    data = bundled()
    values = {**{k: v for k, v in data["lora"].items() if k != "targets"}, **data["train"]}
    values["targets"] = None
    values["seed"] = 0
    values.update({k: v for k, v in given.items() if v is not None})
    if values["targets"] is not None:
        values["targets"] = tuple(values["targets"])
    options = TrainOptions(**values)
    options.check()
    return options


def default_decode_options(**given: Any) -> DecodeOptions:
    given = checked_options(DecodeOptions, given)
    data = bundled()
    values = {**data["generation"], "max_length": data["train"]["max_length"]}
    values.update({k: v for k, v in given.items() if v is not None})
    options = DecodeOptions(**values)
    options.check()
    return options
