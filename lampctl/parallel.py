"""Process pools that are safe to start from lampctl's processes."""

from __future__ import annotations

import gc
import multiprocessing as mp
import sys
from multiprocessing.context import BaseContext


def fork_is_safe() -> bool:
    """Fork is cheap (workers share the parent's data) but unsafe once torch has started
    threads, and missing on some platforms."""
    return "fork" in mp.get_all_start_methods() and "torch" not in sys.modules


def pool_context() -> BaseContext:
    """Fork where safe, after freezing the collector: a forked child that runs the cyclic GC
    over the parent's heap touches every object and copies every page."""
    if fork_is_safe():
        gc.freeze()
        return mp.get_context("fork")
    return mp.get_context("spawn")
