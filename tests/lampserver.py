"""A real HTTP server on 127.0.0.1 that serves a LaMP-shaped tree, with failure modes."""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from synth import SynthSpec, outputs_for, user_split

from lampctl.download import load_download_registry

HTML = b"<!DOCTYPE html><html><head><title>LaMP</title></head><body>Not here</body></html>"


class LampServer:
    """``files``: url path -> bytes. ``modes``: url path -> failure mode.

    Modes: ``drop_once`` (first full GET sends half, then drops), ``fail503:N`` (N answers 503
    with Retry-After 0), ``truncate`` (declares the full length, always stops half-way),
    ``html`` (200 with an HTML page), ``missing`` (404), ``ignore_range`` (always 200),
    ``slow`` (throttled to ``slow_rate`` bytes/s), ``gzip`` (compressed on the fly whatever the
    client asks, as some proxies do; Range ignored), ``stall`` (sends half, then nothing for
    ``stall_seconds``). Every answer carries an ETag of the body.
    Unknown paths get 200 and HTML, like the real LaMP server.
    """

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)
        self.modes: dict[str, str] = {}
        self.served: Counter[str] = Counter()
        self.requests: list[tuple[str, str | None]] = []
        self.slow_rate = 200_000
        self.stall_seconds = 3.0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server._get(self)

            def do_HEAD(self) -> None:  # noqa: N802
                server._head(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        # A client that drops or is killed mid-body is what the tests do on purpose.
        self.httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/"

    def start(self) -> LampServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _send(self, handler: BaseHTTPRequestHandler, path: str, body: bytes) -> None:
        mode = self.modes.get(path, "")
        step = 8192
        if mode == "slow":
            for start in range(0, len(body), step):
                handler.wfile.write(body[start : start + step])
                with self._lock:
                    self.served[path] += len(body[start : start + step])
                time.sleep(step / self.slow_rate)
            return
        handler.wfile.write(body)
        with self._lock:
            self.served[path] += len(body)

    def _head(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.lstrip("/")
        body = self.files.get(path)
        if body is None:
            self._reply(handler, 404, b"", {})
            return
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("ETag", etag(body))
        handler.end_headers()

    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        path = handler.path.lstrip("/")
        range_header = handler.headers.get("Range")
        with self._lock:
            self.requests.append((path, range_header))
            mode = self.modes.get(path, "")
        if mode.startswith("fail503:"):
            left = int(mode.split(":")[1])
            with self._lock:
                self.modes[path] = f"fail503:{left - 1}" if left > 1 else ""
            self._reply(handler, 503, b"busy", {"Retry-After": "0"})
            return
        if mode == "missing":
            self._reply(handler, 404, b"not found", {})
            return
        body = self.files.get(path)
        if body is None or mode == "html":
            self._reply(handler, 200, HTML, {"Content-Type": "text/html"})
            return
        if mode == "gzip":
            packed = gzip.compress(body)
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Encoding", "gzip")
            handler.send_header("Content-Length", str(len(packed)))
            handler.end_headers()
            self._send(handler, path, packed)
            return
        start = 0
        if range_header and mode != "ignore_range" and range_header.startswith("bytes="):
            start = int(range_header[6:].split("-")[0])
        if start >= len(body) and start:
            self._reply(handler, 416, b"", {"Content-Range": f"bytes */{len(body)}"})
            return
        rest = body[start:]
        handler.send_response(206 if start else 200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(rest)))
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("ETag", etag(body))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        handler.end_headers()
        if mode == "stall":
            handler.wfile.write(rest[: len(rest) // 2])
            handler.wfile.flush()
            time.sleep(self.stall_seconds)
            return
        if mode in ("drop_once", "truncate") and not start or mode == "truncate":
            cut = len(body) // 2 - start
            if mode == "drop_once":
                with self._lock:
                    self.modes[path] = ""
            if cut > 0:
                self._send(handler, path, rest[:cut])
            handler.wfile.flush()
            handler.close_connection = True
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(handler, path, rest)

    def _reply(
        self, handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


def official_mirror(questions: int = 4, profile_max: int = 6) -> dict[str, bytes]:
    """Every official path (relative to the base url) with LaMP-shaped content."""
    spec = SynthSpec(questions=questions, profile_max=profile_max, words_max=12)
    files: dict[str, bytes] = {}
    for remote in load_download_registry().files:
        offset = {"train": 0, "dev": 100, "test": 200}[remote.set]
        offset += 500 if remote.split == "time" else 0
        task = int(remote.task) if remote.task.isdigit() else remote.task  # 3, or "2N"
        data = user_split(task if task != 6 else 7, spec, id_offset=offset)
        if remote.kind == "questions":
            files[remote.path] = json.dumps(data).encode()
        else:
            files[remote.path] = json.dumps(outputs_for(task, data)).encode()
    return files


def write_mirror(root: Path, files: dict[str, bytes]) -> None:
    for rel, body in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(body)
