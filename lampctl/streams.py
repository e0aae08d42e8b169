"""Writing a big output while hashing it, off the thread that builds it."""

from __future__ import annotations

import hashlib
import threading
from typing import IO, Any


class HashingWriter:
    """Writes byte chunks to an open file from a background thread, hashing them (sha256) on
    the way: the file's write and the hash both release the GIL, so the caller builds the next
    chunk meanwhile instead of reading the file back to hash it. A write error is raised on
    the caller's next ``write`` or at the end of the ``with`` block.

        with HashingWriter(handle) as out:
            out.write(chunk)
        out.sha256  # of everything written
    """

    block = 4 << 20

    def __init__(self, handle: IO[bytes], ahead: int = 4) -> None:
        import queue

        self._handle = handle
        self._digest = hashlib.sha256()
        self._queue: queue.Queue[bytes | memoryview | None] = queue.Queue(maxsize=ahead)
        self._pieces: list[bytes | memoryview] = []
        self._gathered = 0
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="lampctl-writer", daemon=True)
        self.sha256 = ""

    def __enter__(self) -> HashingWriter:
        self._thread.start()
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is None:
            self._flush()
        self._queue.put(None)
        self._thread.join()
        if kind is None and self._error is not None:
            raise self._error
        self.sha256 = self._digest.hexdigest()

    def write(self, data: bytes | memoryview) -> None:
        """Queue ``data``; small pieces are gathered into blocks first, so the thread takes
        the GIL once a block, not once a piece."""
        if self._error is not None:
            raise self._error
        self._pieces.append(data)
        self._gathered += len(data)
        if self._gathered >= self.block:
            self._flush()

    def _flush(self) -> None:
        if self._pieces:
            block = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
            self._queue.put(block)
            self._pieces, self._gathered = [], 0

    def _drain(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is not None:
                continue  # keep taking chunks so the caller never blocks; report at the end
            try:
                self._handle.write(data)
                self._digest.update(data)
            except BaseException as exc:  # raised again in the caller's thread
                self._error = exc
