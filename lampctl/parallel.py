"""Process pools that are safe to start from lampctl's processes, and that die with it."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import multiprocessing as mp
import os
import pickle
import signal
import sys
from collections.abc import Callable
from multiprocessing.context import BaseContext
from typing import Any

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


class Forked:
    """``function(*args)`` run in one forked child process (the child shares this process's
    data, read-only, without pickling it): start it, do other work here, then ``result()``.

    The child ignores Ctrl-C, dies with this process, and runs without the cyclic collector (a
    collection would touch, and so copy, every page of the parent's heap). An ``InputError``
    in the child is raised again here with its message; a child that dies is a
    ``LampctlError`` naming ``what`` it was doing. Use only where ``fork_is_safe()``.
    """

    def __init__(self, what: str, function: Callable[..., Any], *args: Any) -> None:
        context = mp.get_context("fork")
        self.what = what
        self._receiver, sender = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_run_forked, args=(sender, os.getpid(), function, args), daemon=True
        )
        self._process.start()
        sender.close()

    def result(self) -> Any:
        """The child's return value (waiting for it); the child is gone afterwards."""
        from lampctl.errors import InputError, LampctlError

        try:
            kind, payload = pickle.loads(self._receiver.recv_bytes())
        except EOFError:
            self._process.join()
            kind, payload = "died", self._process.exitcode
        finally:
            self.close()
        if kind == "done":
            return payload
        if kind == "error":
            raise InputError(payload)
        if kind == "died":
            raise LampctlError(f"a process {self.what} stopped (exit code {payload})")
        raise RuntimeError(f"{self.what} failed in a child process:\n{payload}")

    def close(self) -> None:
        """Stop the child if it still runs (this process has an error of its own to report)."""
        if self._process.is_alive():
            self._process.kill()
        self._process.join()
        self._receiver.close()


def _run_forked(sender: Any, parent: int, function: Callable[..., Any], args: Any) -> None:
    import traceback

    from lampctl.errors import InputError

    gc.disable()
    worker_setup(parent)
    try:
        message: tuple[str, Any] = ("done", function(*args))
    except InputError as exc:
        message = ("error", str(exc))
    except BaseException:
        message = ("crash", traceback.format_exc())
    try:
        sender.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
    except (BrokenPipeError, OSError):
        pass  # the parent stopped listening: it has an error of its own to report
