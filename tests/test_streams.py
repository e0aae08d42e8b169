"""Writing while hashing off-thread, and one forked child's result, on real files."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
from pathlib import Path

import pytest

from lampctl.errors import InputError, LampctlError
from lampctl.parallel import Forked
from lampctl.streams import HashingWriter


def test_hashing_writer_writes_and_hashes_every_piece_in_order(tmp_path: Path):
    pieces = [os.urandom(n) for n in (0, 1, 7, 5 << 20, 3, 9 << 20, 100)]
    path = tmp_path / "out.bin"
    with path.open("wb") as handle, HashingWriter(handle) as out:
        for piece in pieces:
            out.write(piece)
        out.write(memoryview(b"tail"))
    whole = b"".join(pieces) + b"tail"
    assert path.read_bytes() == whole
    assert out.sha256 == hashlib.sha256(whole).hexdigest()


def test_a_synced_writer_finishes_unwaited_and_leaves_everything_written(tmp_path: Path):
    import sys

    interval = sys.getswitchinterval()
    path = tmp_path / "out.bin"
    pieces = [os.urandom(n) for n in (3 << 20, 5 << 20, 11)]
    with path.open("wb") as handle, HashingWriter(handle, sync=True) as out:
        assert sys.getswitchinterval() <= HashingWriter.switch_interval
        for piece in pieces:
            out.write(piece)
        out.finish()  # the thread writes and syncs the rest while this one goes on
        with pytest.raises(RuntimeError, match="after finish"):
            out.write(b"late")
    assert sys.getswitchinterval() == interval
    assert path.read_bytes() == b"".join(pieces)
    assert out.sha256 == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_replacing_a_big_file_frees_the_old_one_off_the_callers_thread(tmp_path: Path):
    import threading

    from lampctl.data import CLOSER_THREAD, atomic_writer

    path = tmp_path / "big.bin"
    path.write_bytes(b"o" * (32 << 20))
    before = set(os.listdir("/proc/self/fd")) if Path("/proc/self/fd").exists() else None
    with atomic_writer(path, "wb") as handle:
        handle.write(b"new")
    assert path.read_bytes() == b"new"
    closers = [t for t in threading.enumerate() if t.name == CLOSER_THREAD]
    for thread in closers:  # the thread that closes the old file's fd
        thread.join(timeout=10)
    if before is not None:
        assert set(os.listdir("/proc/self/fd")) <= before  # nothing left open


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_hashing_writer_raises_a_write_error_in_the_callers_thread():
    with pytest.raises(OSError), open("/dev/full", "wb", buffering=0) as handle:
        with HashingWriter(handle) as out:
            for _ in range(8):
                out.write(b"x" * (HashingWriter.block + 1))


def _fails(message: str) -> None:
    raise InputError(message)


def _crashes() -> None:
    raise ValueError("a bug")


def _dies() -> None:
    os._exit(3)


@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork")
def test_forked_gives_back_the_result_or_the_childs_error():
    # The children here use nothing of torch's, so a loaded torch does not matter to them.
    data = list(range(100_000))  # shared with the child by the fork, not pickled
    assert Forked("summing", sum, data).result() == sum(data)
    with pytest.raises(InputError, match="^q.json: bad$"):
        Forked("reading", _fails, "q.json: bad").result()
    with pytest.raises(RuntimeError, match="ValueError: a bug"):
        Forked("crashing", _crashes).result()
    with pytest.raises(LampctlError, match=r"a process dying stopped \(exit code 3\)"):
        Forked("dying", _dies).result()
