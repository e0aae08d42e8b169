"""The rankers: one interface (``base.Ranker``), one ordering rule (``base.order_by_scores``)
and this registry, the one place that maps a ranker's name to its class.

Each ranker states the parameters that decide its rankings (``record_parameters``), which the
records beside ranking files carry. Ranker modules are imported on first use, so naming a
ranker (``status``, ``rank-all --dry-run``) loads no model code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lampctl.errors import ConfigError

if TYPE_CHECKING:
    from lampctl.retrieval.encoder import EncoderConfig, LogFn
    from lampctl.retrieval.rankers.base import Ranker

# name -> (module, class); CPU rankers first (rank-all runs them in this process).
RANKERS: dict[str, tuple[str, str]] = {
    "bm25": ("lampctl.retrieval.rankers.bm25", "BM25Ranker"),
    "recency": ("lampctl.retrieval.rankers.recency", "RecencyRanker"),
    "contriever": ("lampctl.retrieval.rankers.contriever", "ContrieverRanker"),
}
CPU_RANKERS = ("bm25", "recency")


def check_ranker_name(name: str) -> str:
    if name not in RANKERS:
        raise ConfigError(f"unknown ranker {name!r} (known: {', '.join(RANKERS)})")
    return name


def ranker_class(name: str) -> type[Ranker]:
    module, cls = RANKERS[check_ranker_name(name)]
    found: type[Ranker] = getattr(importlib.import_module(module), cls)
    return found


def make_ranker(
    name: str, encoder: EncoderConfig | None = None, log: LogFn | None = None, jobs: int = 1
) -> Ranker:
    """A ranker by name: BM25 with ``jobs`` worker processes, the encoder ranker with
    ``encoder``'s settings (default: the bundled checkpoint)."""
    from lampctl.retrieval.encoder import EncoderConfig

    options: dict[str, Any] = {"jobs": jobs, "encoder": encoder or EncoderConfig(), "log": log}
    return ranker_class(name).create(**options)


def ranker_parameters(name: str, encoder: EncoderConfig) -> dict[str, Any]:
    """What decides ``name``'s rankings, as its class states it."""
    return ranker_class(name).record_parameters(encoder)
