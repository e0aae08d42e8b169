"""Many users' LoRA adapters trained at once over one base model (``peft train --pack K``).

Each LoRA target of the base model (a ``Linear`` such as T5's ``q``) is wrapped once in a
``PackLora`` holding K adapter slots as stacked, trainable tensors (``A [K, r, in]``, ``B [K,
out, r]``). A step feeds one batch made of every busy slot's next rows; each row adds its own
slot's update (``dropout(x) @ A[slot].T @ B[slot].T * alpha / r``, peft's LoRA forward row by
row), so one forward and one backward serve K users, and a slot's gradients come from its own
user's rows alone (the base model is frozen and rows never meet in it). Everything else a
user owns is kept per slot: the loss (the mean over its own target tokens), the gradient norm
it is clipped by, AdamW's moments and step count, and the learning rate of its own warmup and
linear decay. When a user's last step is done its adapter is saved and the slot is given to
the next user, so users of different sizes never wait for one another. ``--pack 1`` is the
same code with one slot.

**Randomness per user.** Nothing a user draws depends on which users share its pack:

- the initial adapter and the order of the rows come from a ``torch.Generator`` seeded with
  ``user_seed(seed, user)`` (the first 8 bytes of ``sha256("{seed}\\0{user}")``, little-endian,
  shifted right by one): for each target module in model order, ``A`` is drawn with
  ``kaiming_uniform_(a=sqrt(5))`` (peft's init) and ``B`` is zero; then each epoch draws a
  ``randperm`` of the user's rows;
- dropout (the LoRA input's and the base model's own, e.g. T5's ``dropout_rate``) is a
  counter-based hash of (the user's seed, the user's step, the row's place in that step's
  batch, the dropout call's number in the forward, the element's coordinates). Rows are
  padded on the right, so an element's coordinates are the same whatever the padded width, and
  a row's mask is the one it would get at its own length. Every dropout the model makes
  through ``torch.nn.functional.dropout`` (which ``nn.Dropout`` calls) is keyed this way while
  a pack steps; a model whose config asks for attention dropout runs its attention in eager
  mode so that it does too, and any other kind of dropout (a fused kernel's, ``torch.dropout``)
  is refused in one line rather than drawn from a shared generator.

What still differs between packings is floating-point rounding: the same row is padded to
another width and sits in a larger matrix product, so the base model's sums run in another
order. docs/peft.md gives the measured differences.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lampctl.errors import ModelLoadError, OptionError
from lampctl.model.dropout import PackRows, row_key
from lampctl.model.loading import IGNORE
from lampctl.model.options import schedule_steps

ADAM_BETAS = (0.9, 0.999)  # torch's AdamW defaults, which the Trainer keeps
ADAM_EPS = 1e-8
CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_'s
Encoded = tuple[list[int], list[int]]  # a row's input ids and label ids


def user_seed(seed: int, user: str) -> int:
    """The seed of one user's generator: a function of ``--seed`` and the user id only."""
    digest = hashlib.sha256(f"{seed}\0{user}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


# --------------------------------------------------------------------------- the layers


class PackLora(nn.Module):
    """A frozen ``Linear`` plus, per row, the LoRA update of the row's slot (trainable)."""

    def __init__(
        self, name: str, base: nn.Linear, slots: int, r: int, scaling: float, dropout: float,
        rows: PackRows,
    ) -> None:  # fmt: skip
        super().__init__()
        self.name, self.base_layer, self.scaling, self.p, self.rows = (
            name, base, scaling, dropout, rows,
        )  # fmt: skip
        device = base.weight.device
        # float32 whatever the model's dtype, as peft keeps LoRA weights
        self.lora_a = nn.Parameter(torch.zeros(slots, r, base.in_features, device=device))
        self.lora_b = nn.Parameter(torch.zeros(slots, base.out_features, r, device=device))
        self.moments = [torch.zeros_like(self.lora_a), torch.zeros_like(self.lora_a),
                        torch.zeros_like(self.lora_b), torch.zeros_like(self.lora_b)]  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        slots = self.rows.slots
        if slots is None:
            return result
        if x.dim() != 3 or x.shape[0] != len(slots):
            raise ModelLoadError(
                f"{self.name}: the model feeds this LoRA target an input of shape "
                f"{tuple(x.shape)} in a batch of {len(slots)} rows; packed training needs "
                "rows x positions x features"
            )
        h = self.rows.dropout(x.to(self.lora_a.dtype), self.p, self.training)
        update = torch.bmm(torch.bmm(h, self.lora_a[slots].transpose(1, 2)),
                           self.lora_b[slots].transpose(1, 2))  # fmt: skip
        return (result + update * self.scaling).to(result.dtype)


def target_modules(model: nn.Module, targets: Sequence[str]) -> list[tuple[str, nn.Module]]:
    """The modules peft's ``target_modules`` list names: a module's full name is a target or
    ends with ``.target``; in model order."""
    wanted = [re.escape(t) for t in targets]
    pattern = re.compile(rf"(?:.*\.)?(?:{'|'.join(wanted)})")
    return [(n, m) for n, m in model.named_modules() if n and pattern.fullmatch(n)]


def _put_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """``module`` in the place of ``model``'s submodule ``name``."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


# --------------------------------------------------------------------------- the trainer


@dataclass
class SlotState:
    """One slot's user: its rows (token ids), generator, place in its schedule and losses."""

    user: Any  # UserRows
    rows: list[Encoded]
    seed: int  # user_seed(--seed, the user id): its generator's and its dropout keys'
    generator: torch.Generator
    total: int
    warmup: int
    step: int = 0
    order: list[int] = field(default_factory=list)
    position: int = 0
    losses: list[float] = field(default_factory=list)  # this epoch's
    curve: list[float] = field(default_factory=list)  # every step's
    error: str | None = None

    @property
    def done(self) -> bool:
        return self.step >= self.total


# config keys of attention dropout (T5's dropout_rate is also its attention's)
ATTENTION_DROPOUT = (
    "dropout_rate", "attention_dropout", "attn_pdrop", "attention_probs_dropout_prob",
)  # fmt: skip


class PackedAdapters:
    """K adapter slots over one base model, stepped together (see the module's docstring)."""

    def __init__(self, base: Any, options: Any, slots: int, chunk: int | None = None) -> None:
        self.base, self.options, self.size = base, options, slots
        self.chunk = chunk or options.batch_size * slots  # rows per forward: the whole step
        self.rows = PackRows()
        model = base.model
        found = target_modules(model, options.targets or ())
        if not found:
            names = ",".join(options.targets or ())
            raise OptionError(
                "targets",
                f"the LoRA targets {names} are not modules of {base.name} ({base.kind}): name "
                "its attention projections with --targets",
            )
        for name, module in found:
            if not isinstance(module, nn.Linear):
                raise OptionError(
                    "targets", f"{name} of {base.name} is a {type(module).__name__}, not Linear"
                )
        self.layers: dict[str, PackLora] = {}
        scaling = options.alpha / options.r
        for name, module in found:
            layer = PackLora(name, module, slots, options.r, scaling, options.dropout, self.rows)
            _put_module(model, name, layer)
            self.layers[name] = layer
        self.attention = self._eager_attention_if_dropout(model)
        self.states: list[SlotState | None] = [None] * slots
        model.train()

    @staticmethod
    def _eager_attention_if_dropout(model: Any) -> str | None:
        config = model.config
        asks = any(float(getattr(config, key, 0) or 0) > 0 for key in ATTENTION_DROPOUT)
        current = getattr(config, "_attn_implementation", None)
        if asks and current not in (None, "eager") and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("eager")
            return current
        return None

    def close(self) -> None:
        """The LoRA layers taken off: the base model as it was loaded (in eval mode)."""
        model = self.base.model
        for name, layer in self.layers.items():
            _put_module(model, name, layer.base_layer)
        if self.attention is not None:
            model.set_attn_implementation(self.attention)
        model.eval()

    # ------------------------------------------------------------------- slots

    def fill(self, slot: int, user: Any, rows: list[Encoded]) -> SlotState:
        """``user`` into ``slot``: a fresh adapter from the user's generator, zero moments."""
        seed = user_seed(self.options.seed, user.user)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for layer in self.layers.values():
                start = torch.empty(layer.lora_a.shape[1:])
                nn.init.kaiming_uniform_(start, a=math.sqrt(5), generator=generator)
                layer.lora_a[slot].copy_(start)
                layer.lora_b[slot].zero_()
                for moment in layer.moments:
                    moment[slot].zero_()
        total, warmup = schedule_steps(len(rows), self.options)
        state = SlotState(user, rows, seed, generator, total, warmup)
        self.states[slot] = state
        return state

    def weights(self, slot: int) -> dict[str, torch.Tensor]:
        """One slot's adapter as peft names its tensors."""
        out = {}
        for name, layer in self.layers.items():
            out[f"base_model.model.{name}.lora_A.weight"] = layer.lora_a[slot].detach().cpu()
            out[f"base_model.model.{name}.lora_B.weight"] = layer.lora_b[slot].detach().cpu()
        return out

    def free(self, slot: int) -> None:
        self.states[slot] = None

    # ------------------------------------------------------------------- a step

    def _next_rows(self, state: SlotState) -> list[int]:
        size = self.options.batch_size
        if state.position >= len(state.rows) or not state.order:
            state.order = torch.randperm(len(state.rows), generator=state.generator).tolist()
            state.position = 0
            state.losses = []
        chosen = state.order[state.position : state.position + size]
        state.position += size
        return chosen

    def step(self) -> dict[int, float]:
        """One optimizer step of every busy slot; returns slot -> that step's loss. A slot
        whose loss is not finite gets its ``error`` set and no update.

        The step's rows (each busy user's next batch) are sorted by length and run in chunks
        of at most ``chunk`` rows (as many as memory holds), each chunk's forward and backward
        on its own, so a step's activations are a chunk's whatever K is. A row's loss is
        divided by its user's target tokens in the whole batch, so the gradients summed over
        the chunks are each user's mean loss's."""
        busy = [(k, s) for k, s in enumerate(self.states) if s is not None and not s.done]
        rows: list[tuple[Encoded, int, int]] = []  # (row, place in busy, key)
        tokens: list[int] = []
        for i, (_, state) in enumerate(busy):
            chosen = self._next_rows(state)
            first = len(rows)
            for place, index in enumerate(chosen):
                rows.append((state.rows[index], i, row_key(state.seed, state.step, place)))
            tokens.append(sum(target_tokens(row, self.base.kind) for row, _, _ in rows[first:]))
        order = sorted(range(len(rows)), key=lambda n: len(rows[n][0][0]) + len(rows[n][0][1]))
        values = [0.0] * len(busy)
        device = self.base.device
        for start in range(0, len(order), self.chunk):
            chunk = [rows[n] for n in order[start : start + self.chunk]]
            inputs, labels = padded_batch(self.base, [row for row, _, _ in chunk])
            slots = [busy[i][0] for _, i, _ in chunk]
            with self.rows.step(slots, [key for _, _, key in chunk], device):
                sums = self._row_losses(inputs, labels)
            weights = torch.tensor([1.0 / max(1, tokens[i]) for _, i, _ in chunk], device=device)
            weighted = sums * weights.to(sums.dtype)
            weighted.sum().backward()
            for (_, i, _), value in zip(chunk, weighted.detach().tolist(), strict=True):
                values[i] += value
        lrs = [0.0] * self.size
        counts = [1] * self.size
        out: dict[int, float] = {}
        for i, (k, state) in enumerate(busy):
            if not math.isfinite(values[i]):
                state.error = f"the loss is {values[i]} at step {state.step + 1}"
                continue
            state.step += 1
            counts[k] = state.step
            lrs[k] = self.options.learning_rate * linear_schedule(state.step - 1, state.warmup,
                                                                  state.total)  # fmt: skip
            state.losses.append(values[i])
            state.curve.append(values[i])
            out[k] = values[i]
        self._update(lrs, counts)
        return out

    def _row_losses(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        """Each row's loss summed over its target tokens."""
        model = self.base.model
        if self.base.kind == "seq2seq":
            decoder = model.prepare_decoder_input_ids_from_labels(labels=labels)
            logits = model(**inputs, decoder_input_ids=decoder).logits
        else:
            logits = model(**inputs).logits[:, :-1]
            labels = labels[:, 1:]
        if logits.dtype in (torch.float16, torch.bfloat16):  # the loss in float32 at least
            logits = logits.float()
        losses = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
            ignore_index=IGNORE, reduction="none",
        ).view(labels.shape)  # fmt: skip
        return losses.sum(dim=1)

    @torch.no_grad()
    def _update(self, lrs: list[float], counts: list[int]) -> None:
        """Per slot: clip by the slot's own gradient norm, then AdamW (torch's arithmetic)
        with the slot's learning rate and step count; a slot with rate 0 stays as it is."""
        options, device = self.options, self.base.device
        layers = list(self.layers.values())
        shape = (self.size, 1, 1)
        grads = []
        for layer in layers:
            for parameter in (layer.lora_a, layer.lora_b):
                if parameter.grad is None:
                    parameter.grad = torch.zeros_like(parameter)
                grads.append(parameter.grad)
        if options.max_grad_norm > 0:
            norms = torch.stack([torch.linalg.vector_norm(g, dim=(1, 2)) for g in grads])
            total = torch.linalg.vector_norm(norms, dim=0)
            coefficient = torch.clamp(options.max_grad_norm / (total + CLIP_EPS), max=1.0)
            for g in grads:
                g.mul_(coefficient.view(shape))
        beta1, beta2 = ADAM_BETAS
        decay = torch.tensor([1 - rate * options.weight_decay for rate in lrs], device=device)
        decay = decay.view(shape)
        step_size = torch.tensor(
            [rate / (1 - beta1**n) for rate, n in zip(lrs, counts, strict=True)], device=device
        ).view(shape)
        root = [(1 - beta2**n) ** 0.5 for n in counts]
        correction = torch.tensor(root, device=device).view(shape)
        for layer in layers:
            pairs = ((layer.lora_a, layer.moments[0], layer.moments[1]),
                     (layer.lora_b, layer.moments[2], layer.moments[3]))  # fmt: skip
            for parameter, first, second in pairs:
                grad = parameter.grad
                parameter.mul_(decay)
                first.lerp_(grad, 1 - beta1)
                second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denominator = (second.sqrt() / correction).add_(ADAM_EPS)
                parameter.sub_(step_size * (first / denominator))  # addcdiv_'s order
                parameter.grad = None

    # ------------------------------------------------------------------- memory

    def slot_bytes(self) -> int:
        """One slot's weights, gradients and two AdamW moments."""
        layers = self.layers.values()
        numbers = sum(layer.lora_a[0].numel() + layer.lora_b[0].numel() for layer in layers)
        return numbers * 4 * 4

    def row_activation_bytes(self, row: Encoded) -> int:
        """What one step keeps for the backward of one row like ``row`` (autograd's saved
        tensors, measured on a real forward), with the logits' loss."""
        seen: dict[tuple[int, int], int] = {}

        def keep(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            seen[(storage.data_ptr(), storage.nbytes())] = storage.nbytes()
            return tensor

        inputs, labels = padded_batch(self.base, [row])
        with self.rows.step([0], [0], self.base.device):
            with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
                loss = self._row_losses(inputs, labels)
        del loss
        for layer in self.layers.values():
            layer.lora_a.grad = layer.lora_b.grad = None
        return sum(seen.values())


def linear_schedule(step: int, warmup: int, total: int) -> float:
    """transformers' ``get_linear_schedule_with_warmup`` factor at optimizer step ``step``
    (counted from 0): up from 0 over ``warmup`` steps, then down to 0 at ``total``."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def target_tokens(row: Encoded, kind: str) -> int:
    """The tokens of a row its loss counts: its labels that are not ignored (a causal row's
    first label predicts nothing)."""
    labels = row[1] if kind == "seq2seq" else row[1][1:]
    return sum(label != IGNORE for label in labels)


def encode_rows(base: Any, pairs: Sequence[tuple[str, str]], max_length: int) -> list[Encoded]:
    """Each (source, target) as (input ids, label ids): seq2seq sources and targets truncated
    to ``max_length`` (the LaMP authors' PEFT code); causal rows are prompt then target then
    EOS in one sequence, the prompt's labels ignored (only the target and EOS in the loss)."""
    tokenizer = base.tokenizer
    if not pairs:
        return []
    if base.kind == "seq2seq":
        sources = tokenizer([s for s, _ in pairs], max_length=max_length, truncation=True)
        targets = tokenizer([t for _, t in pairs], max_length=max_length, truncation=True)
        return list(zip(sources["input_ids"], targets["input_ids"], strict=True))
    prompts = tokenizer([s for s, _ in pairs], max_length=max_length, truncation=True)
    answers = tokenizer([t for _, t in pairs], max_length=max_length, truncation=True,
                        add_special_tokens=False)  # fmt: skip
    eos = [base.eos_id] if base.eos_id is not None else []
    out = []
    for prompt, answer in zip(prompts["input_ids"], answers["input_ids"], strict=True):
        answer = [*answer, *eos]
        out.append((prompt + answer, [IGNORE] * len(prompt) + answer))
    return out


def padded_batch(
    base: Any, rows: Sequence[Encoded]
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Encoded rows padded on the right into (model inputs, labels) on the model's device."""
    pad = base.tokenizer.pad_token_id
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    if base.kind == "seq2seq":
        label_width = max(len(labels) for _, labels in rows)
    else:
        label_width = width
    labels = torch.full((len(rows), label_width), IGNORE, dtype=torch.long)
    for n, (sequence, label) in enumerate(rows):
        ids[n, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[n, : len(sequence)] = 1
        labels[n, : len(label)] = torch.tensor(label, dtype=torch.long)
    device = base.device
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}, labels.to(device)
