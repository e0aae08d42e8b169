"""Dropout keyed by row, for packed training (``lampctl.model.packing``).

A mask element is a counter-based hash (lowbias32, on int32 with wrapping products) of its
row's key, the dropout call's number in the forward and the element's coordinates; a row's
key hashes its user's seed, the user's step and the row's place in that step's batch. So the
mask a row gets does not depend on the other rows of the batch, nor on how far the batch is
padded (rows are padded on the right, so a real element's coordinates never move).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from lampctl.errors import ModelLoadError

_MASK32 = 0xFFFFFFFF
# odd multipliers that spread a coordinate over 32 bits, one per dimension (cycled)
_SPREAD = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1)


def _signed(value: int) -> int:
    value &= _MASK32
    return value - (1 << 32) if value >= 1 << 31 else value


def _shift(x: torch.Tensor, bits: int) -> torch.Tensor:
    """A logical right shift of int32 values (torch's ``>>`` keeps the sign)."""
    return (x >> bits).bitwise_and_((1 << (32 - bits)) - 1)


def mix(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (lowbias32) of each int32 element; multiplication wraps."""
    x = x ^ _shift(x, 16)
    x = x * _signed(0x7FEB352D)
    x = x ^ _shift(x, 15)
    x = x * _signed(0x846CA68B)
    return x ^ _shift(x, 16)


def mix_int(value: int) -> int:
    """``mix`` on one Python int (the same bits)."""
    x = value & _MASK32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK32
    return x ^ (x >> 16)


def row_key(seed: int, step: int, row: int) -> int:
    """The key of one row of one user's step (signed int32, as tensors hold it)."""
    key = mix_int(seed & _MASK32)
    key = mix_int(key ^ (seed >> 32))
    key = mix_int(key ^ step)
    return _signed(mix_int(key ^ (row * 0x9E3779B1)))


def keyed_mask(keys: torch.Tensor, call: int, shape: Sequence[int], p: float) -> torch.Tensor:
    """Dropout's keep mask (bool) for an input of ``shape`` whose rows have ``keys``: element
    (b, i, ..., j) is a hash of its row's key, the call number and its coordinates. Each
    coordinate but the last is hashed in (on tensors without the last dimension, so cheap);
    the last is spread by an odd constant and finished with two multiplications and a
    shift, the only work done on every element; the top bits then decide."""
    rank = len(shape)
    key = mix(keys ^ _signed(call * 0x632BE5AB)).view(-1, *([1] * (rank - 1)))
    for dim in range(1, rank):
        view = [1] * rank
        view[dim] = shape[dim]
        coordinate = torch.arange(shape[dim], dtype=torch.int32, device=keys.device).view(view)
        coordinate = coordinate * _signed(_SPREAD[(dim - 1) % len(_SPREAD)])
        if dim < rank - 1:
            key = mix(key ^ coordinate)
            continue
        key = key ^ coordinate  # the first full-size tensor: the rest works on it in place
        key.mul_(_signed(0x7FEB352D))
        key ^= _shift(key, 15)
        key.mul_(_signed(0x846CA68B))
    # a uniform int32 is at least this with probability 1 - p
    return key >= round(p * (1 << 32)) - (1 << 31)


class PackRows:
    """The batch being stepped: each row's slot and dropout key, and the dropout calls so far."""

    def __init__(self) -> None:
        self.slots: torch.Tensor | None = None
        self.keys: torch.Tensor | None = None
        self.calls = 0

    def dropout(self, x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
        if not training or p == 0.0:
            return x
        if self.keys is None or x.dim() < 2 or x.shape[0] != self.keys.numel():
            rows = "no pack step" if self.keys is None else f"a batch of {self.keys.numel()}"
            raise ModelLoadError(
                f"the model applies dropout to an input of shape {tuple(x.shape)} in {rows}; "
                "packed training needs each row to stay one training row (rows first)"
            )
        self.calls += 1
        if p >= 1.0:
            return torch.zeros_like(x)
        keep = keyed_mask(self.keys, self.calls, x.shape, p)
        return x.mul(keep).mul_(1.0 / (1.0 - p))  # in place on the new product: same bits

    @contextlib.contextmanager
    def step(self, slots: Sequence[int], keys: Sequence[int], device: str) -> Iterator[None]:
        """Within: the rows' slots are set and every dropout of the model is keyed by row."""
        import torch.nn.functional as functional

        self.slots = torch.tensor(list(slots), device=device)
        self.keys = torch.tensor(list(keys), dtype=torch.int32, device=device)
        self.calls = 0
        saved = {name: getattr(functional, name) for name in _REFUSED + ("dropout",)}
        saved_torch = torch.dropout, functional.scaled_dot_product_attention

        def dropout(input, p=0.5, training=True, inplace=False):  # noqa: A002 (torch's names)
            return self.dropout(input, p, training)

        def attention(*args: Any, **kwargs: Any) -> torch.Tensor:
            if kwargs.get("dropout_p", args[4] if len(args) > 4 else 0.0):
                _refuse("scaled_dot_product_attention with dropout_p")
            return saved_torch[1](*args, **kwargs)

        functional.dropout = dropout
        for name in _REFUSED:
            setattr(functional, name, _refuser(name))
        torch.dropout = _refuser("torch.dropout")
        functional.scaled_dot_product_attention = attention
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(functional, name, value)
            torch.dropout, functional.scaled_dot_product_attention = saved_torch
            self.slots = self.keys = None


_REFUSED = ("dropout1d", "dropout2d", "dropout3d", "alpha_dropout", "feature_alpha_dropout")


def _refuse(what: str) -> None:
    raise ModelLoadError(
        f"the model draws dropout through {what}, which packed training cannot key per user; "
        "train this model with --dropout 0 and its own dropout off in its config"
    )


def _refuser(name: str) -> Any:
    def refuse(input: torch.Tensor, p: float = 0.5, train: bool = True, *args: Any, **kw: Any):  # noqa: A002
        training = kw.get("training", train)
        if training and p:
            _refuse(name)
        return input

    return refuse
