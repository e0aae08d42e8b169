"""Process pools that are safe to start from lampctl's processes, and that die with it."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import multiprocessing as mp
import os
import signal
import sys
from multiprocessing.context import BaseContext

_PR_SET_PDEATHSIG = 1


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


def worker_setup(parent_pid: int) -> None:
    """Run first in every worker process.

    - The kernel kills the worker when its parent dies, even by SIGKILL (Linux), so no worker
      is left blocked on a pipe to a dead parent.
    - Ctrl-C goes to the whole process group; the parent handles it and stops the workers,
      so they ignore it rather than print tracebacks of their own.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the request was in place
        os._exit(1)


def usable_cpus() -> int:
    """The cores this process may use (``sched_getaffinity``: SLURM's limits count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
