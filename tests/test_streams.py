"""Writing while hashing off-thread, and one forked child's result, on real files."""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
from pathlib import Path

import pytest

from lampctl.errors import InputError, LampctlError
from lampctl.io.streams import HashingWriter
from lampctl.parallel import Forked


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


class _SlowFile:
    """A handle that takes its time and keeps what it was given, copied when written."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    def write(self, data) -> int:
        import time

        time.sleep(0.0005)  # a block handed back before its write ends would be refilled now
        self.chunks.append(bytes(data))
        return len(data)


def test_the_reused_blocks_never_change_before_they_are_written(monkeypatch):
    import random

    monkeypatch.setattr(HashingWriter, "block", 1000)
    draw = random.Random(5)
    sizes = [0, 999, 1, 1000, 1001, 1, 998, 2, 2500] + [draw.randrange(0, 700) for _ in range(3000)]
    pieces = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    handle = _SlowFile()
    with HashingWriter(handle, ahead=2) as out:
        for piece in pieces:
            out.write(piece)
    whole = b"".join(pieces)
    assert b"".join(handle.chunks) == whole
    assert out.sha256 == hashlib.sha256(whole).hexdigest()
    assert all(len(chunk) <= 1000 or len(chunk) in sizes for chunk in handle.chunks)
    assert len(handle.chunks) > 2 + 2  # more blocks than buffers: they were reused


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

    from lampctl.io.data import CLOSER_THREAD, atomic_writer

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
@pytest.mark.parametrize("piece", [HashingWriter.block + 1, 1000])
def test_hashing_writer_raises_a_write_error_in_the_callers_thread(piece):
    with pytest.raises(OSError), open("/dev/full", "wb", buffering=0) as handle:
        with HashingWriter(handle) as out:
            for _ in range(8 * HashingWriter.block // piece):
                out.write(b"x" * piece)  # never blocks for good after the thread's error


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
