"""Many users' LoRA adapters on one base model at once, each row of a batch with its own.

``peft predict`` answers a group of users in shared batches. Each LoRA target of the base
model (a ``Linear`` such as T5's ``q``) is wrapped once in a ``RowLora`` holding a stack of
adapter slots; slot 0 stays zero (a user without an adapter: the base model). A batch names a
slot per row, and every wrapped layer adds, per row, that slot's update with two batched
matrix products::

    out[i] = base(x[i]) + (x[i] @ A[slot[i]].T @ B[slot[i]].T) * alpha / r

which is peft's LoRA forward (``lora_B(lora_A(x)) * scaling``) row by row, in the same order
of operations and dtypes (adapter weights in fp32, as peft keeps them over a bf16 or fp16
model). Beam search repeats each row ``num_beams`` times in place (``repeat_interleave``), so
a layer that sees ``n * rows`` rows repeats the slots the same way.

Why not peft's own mixed-adapter batches: peft runs each layer's LoRA once per adapter present
in a batch (a Python loop per layer per adapter) and injects each adapter by walking the whole
model; here a layer costs two products whatever the number of users, an adapter is loaded by
copying its tensors into a slot, and peft is not imported at all.

Adapters are peft's files (``adapter_config.json`` and ``adapter_model.safetensors``, what
``peft train`` and ``PeftModel.save_pretrained`` write). Plain LoRA only: a config that asks
for a variant (DoRA, a LoRA bias, per-module ranks, modules to save...) is refused with its
folder named. Every adapter of a run must have the first one's rank, alpha and modules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lampctl.errors import InputError, ModelLoadError
from lampctl.model.adapter_files import ADAPTER_FILES

CONFIG_FILE, WEIGHTS_FILE = ADAPTER_FILES  # what peft train (peft's save_pretrained) writes
PREFIX = "base_model.model."  # peft's name for the wrapped model in saved tensor names
# adapter_config.json keys that ask for something beyond plain LoRA; each must be empty/false
VARIANTS = (
    "use_dora", "lora_bias", "fan_in_fan_out", "modules_to_save", "rank_pattern",
    "alpha_pattern", "trainable_token_indices", "layer_replication", "target_parameters",
    "use_qalora", "alora_invocation_tokens", "arrow_config", "use_bdlora",
)  # fmt: skip


@dataclass(frozen=True)
class AdapterShape:
    """What every adapter of one run shares: rank, scaling and the modules it changes."""

    r: int
    scaling: float
    modules: tuple[str, ...]


@dataclass(frozen=True)
class Adapter:
    shape: AdapterShape
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]]  # module -> (A [r, in], B [out, r])


def read_adapter(folder: Path) -> Adapter:
    """A peft LoRA adapter folder; an ``InputError`` naming the folder when it is not one
    this module computes exactly."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(folder / WEIGHTS_FILE))
    except (OSError, ValueError, SafetensorError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{folder}: cannot load the adapter: {first}") from None
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise InputError(f"{folder}: not a LoRA adapter ({CONFIG_FILE} has no peft_type LORA)")
    asked = [key for key in VARIANTS if config.get(key)]
    if config.get("bias", "none") != "none":
        asked.append("bias")
    if asked:
        raise InputError(f"{folder}: a LoRA variant ({', '.join(asked)}) is not supported")
    r, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(r, int) or r < 1 or not isinstance(alpha, int | float):
        raise InputError(f"{folder}: {CONFIG_FILE} has no valid r and lora_alpha")
    scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        for half in ("lora_A", "lora_B"):
            suffix = f".{half}.weight"
            if name.startswith(PREFIX) and name.endswith(suffix):
                halves.setdefault(name[len(PREFIX) : -len(suffix)], {})[half] = tensor
                break
        else:
            raise InputError(f"{folder}: adapter tensor {name} is not a plain LoRA weight")
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for module, pair in sorted(halves.items()):
        a, b = pair.get("lora_A"), pair.get("lora_B")
        fits = a is not None and b is not None and a.dim() == b.dim() == 2
        if not fits or (a.shape[0], b.shape[1]) != (r, r):
            raise InputError(f"{folder}: the LoRA weights of {module} are not of rank {r}")
        weights[module] = (a, b)
    if not weights:
        raise InputError(f"{folder}: the adapter holds no LoRA weights")
    return Adapter(AdapterShape(r, scaling, tuple(weights)), weights)


class RowSlots:
    """The slot of each row of the batch being generated, shared by every ``RowLora``."""

    def __init__(self) -> None:
        self.slots: torch.Tensor | None = None
        self._repeated: dict[int, torch.Tensor] = {}

    def for_rows(self, rows: int, layer: str) -> torch.Tensor:
        """Slots for an input of ``rows`` rows to ``layer``: the batch's, or each repeated in
        place (beam search). Call only while a batch with adapters is set."""
        slots = self.slots
        assert slots is not None
        if rows == len(slots):
            return slots
        if rows % len(slots):
            raise ModelLoadError(
                f"{layer}: the model feeds this LoRA target {rows} rows in a batch of "
                f"{len(slots)}; per-user adapters need each row to stay one question's"
            )
        times = rows // len(slots)
        if times not in self._repeated:
            self._repeated[times] = slots.repeat_interleave(times)
        return self._repeated[times]

    @contextmanager
    def batch(self, slots: Sequence[int], device: str) -> Iterator[None]:
        self.slots = torch.tensor(list(slots), device=device) if any(slots) else None
        self._repeated = {}
        try:
            yield
        finally:
            self.slots, self._repeated = None, {}


class RowLora(nn.Module):
    """A ``Linear`` plus, for each row, the LoRA update of that row's slot."""

    def __init__(
        self, name: str, base: nn.Linear, slots: int, r: int, scaling: float, rows: RowSlots
    ) -> None:
        super().__init__()
        self.name = name
        self.base_layer = base
        self.scaling = scaling
        self.rows = rows
        device = base.weight.device
        # float32 whatever the model's dtype, as peft keeps LoRA weights (autocast_adapter_dtype)
        self.register_buffer("lora_a", torch.zeros(slots + 1, r, base.in_features, device=device))
        self.register_buffer("lora_b", torch.zeros(slots + 1, base.out_features, r, device=device))

    @property
    def weight(self) -> torch.Tensor:  # code that reads the wrapped layer's weight still can
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base_layer.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        if self.rows.slots is None:  # no row of this batch has an adapter
            return result
        if x.dim() != 3:  # rows, positions, features: rows flattened cannot be told apart
            raise ModelLoadError(
                f"{self.name}: the model feeds this LoRA target {x.dim()}-d inputs; per-user "
                "adapters need rows x positions x features"
            )
        slots = self.rows.for_rows(x.shape[0], self.name)
        h = x.to(self.lora_a.dtype)
        update = torch.bmm(torch.bmm(h, self.lora_a[slots].transpose(1, 2)),
                           self.lora_b[slots].transpose(1, 2))  # fmt: skip
        return (result + update * self.scaling).to(result.dtype)


class GatheredAdapters:
    """Slots for ``slots`` users' adapters in the base model, wrapped once (on the first
    adapter read, whose shape every later one must have), refilled group after group."""

    def __init__(self, model: Any, adapters: Path, slots: int) -> None:
        self.model, self.adapters, self.slots = model, adapters, slots
        self.rows = RowSlots()
        self.shape: AdapterShape | None = None
        self.first: Path | None = None
        self.layers: dict[str, RowLora] = {}

    def load(self, users: Sequence[str]) -> dict[str, int]:
        """Each user's adapter in a slot (1, 2, ...); returns user -> slot."""
        if len(users) > self.slots:
            raise ValueError(f"{len(users)} users for {self.slots} slots")
        placed: dict[str, int] = {}
        for slot, user in enumerate(users, 1):
            folder = self.adapters / user
            adapter = read_adapter(folder)
            if self.shape is None:
                self._wrap(folder, adapter.shape)
            elif adapter.shape != self.shape:
                raise InputError(
                    f"{folder}: adapter (rank {adapter.shape.r}, scaling {adapter.shape.scaling}, "
                    f"{len(adapter.shape.modules)} modules) differs from {self.first}'s; "
                    "predict them in separate runs"
                )
            for module, (a, b) in adapter.weights.items():
                layer = self.layers[module]
                if a.shape != layer.lora_a.shape[1:] or b.shape != layer.lora_b.shape[1:]:
                    raise InputError(f"{folder}: adapter tensors of {module} do not fit the model")
                layer.lora_a[slot].copy_(a)
                layer.lora_b[slot].copy_(b)
            placed[user] = slot
        return placed  # slots past these keep an earlier group's weights: no row names them

    def _wrap(self, folder: Path, shape: AdapterShape) -> None:
        for module in shape.modules:
            parent_name, _, child = module.rpartition(".")
            try:
                parent = self.model.get_submodule(parent_name)
                target = getattr(parent, child)
            except AttributeError:
                raise InputError(f"{folder}: the model has no module {module}") from None
            if not isinstance(target, nn.Linear):
                raise InputError(f"{folder}: {module} is a {type(target).__name__}, not Linear")
            layer = RowLora(module, target, self.slots, shape.r, shape.scaling, self.rows)
            setattr(parent, child, layer)
            self.layers[module] = layer
        self.shape, self.first = shape, folder
