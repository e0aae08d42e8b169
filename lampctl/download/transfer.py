"""HTTP (and local-copy) transfer: resumable, retried, checked, renamed into place."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from lampctl import __version__
from lampctl.download.checks import apply_drop_first, check_file
from lampctl.download.manifest import Manifest
from lampctl.download.registry import PlannedFile
from lampctl.errors import DownloadError, InputError
from lampctl.io.data import parse_json_bytes, sha256_file, write_json

USER_AGENT = f"lampctl/{__version__} (LaMP benchmark downloader; python-httpx)"


# --------------------------------------------------------------------------- transfer


@dataclass(frozen=True)
class DownloadOptions:
    jobs: int = 4
    force: bool = False
    verify: bool = False
    check_remote: bool = False
    retries: int = 5
    backoff: float = 0.5
    connect_timeout: float = 15.0
    read_timeout: float = 60.0


@dataclass(frozen=True)
class FileOutcome:
    rel: str
    url: str
    status: str  # downloaded | skipped | verified | changed | failed
    bytes_fetched: int = 0
    size: int | None = None
    sha256: str | None = None
    seconds: float = 0.0
    fixes: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class TransferObserver(Protocol):
    def begin(self, item: PlannedFile, total: int | None, already: int) -> None: ...

    def advance(self, item: PlannedFile, amount: int) -> None: ...

    def end(self, item: PlannedFile, outcome: FileOutcome) -> None: ...


class SilentTransferObserver:
    def begin(self, item: PlannedFile, total: int | None, already: int) -> None:
        pass

    def advance(self, item: PlannedFile, amount: int) -> None:
        pass

    def end(self, item: PlannedFile, outcome: FileOutcome) -> None:
        pass


class _RetryableStatus(Exception):
    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class _Stopped(Exception):
    """The user interrupted the run; the ``.part`` file stays for the next one."""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (moment - datetime.now(timezone.utc)).total_seconds())


def _content_range_start_total(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/200`` -> (100, 200)."""
    if not value or not value.startswith("bytes "):
        return None, None
    span, _, total = value[6:].partition("/")
    start = span.partition("-")[0]
    return (
        int(start) if start.isdigit() else None,
        int(total) if total.isdigit() else None,
    )


def _stamp(path: Path) -> tuple[int, int]:
    """(size, mtime in ns): what the manifest pairs with a file's sha256."""
    info = path.stat()
    return info.st_size, info.st_mtime_ns


class Downloader:
    def __init__(
        self,
        data_dir: Path,
        options: DownloadOptions,
        observer: TransferObserver | None = None,
        manifest: Manifest | None = None,
    ) -> None:
        self.options = options
        self.observer = observer or SilentTransferObserver()
        self.manifest = manifest if manifest is not None else Manifest.load(data_dir)
        self._stop = threading.Event()
        self._down: dict[str, str] = {}  # host -> the one message for every file from it
        self._down_lock = threading.Lock()
        self._etags: dict[str, str | None] = {}
        self._parse_gate = threading.Semaphore(1)  # one big JSON parse at a time (memory)

    # ---- one file

    def run_one(self, client: Any, item: PlannedFile) -> FileOutcome:
        started = time.perf_counter()
        entry = self.manifest.get(item.rel)
        if not self.options.force and item.dest.exists() and entry is not None:
            return self._check_present(client, item, entry)
        if self.options.force:
            item.part.unlink(missing_ok=True)
        try:
            if item.url.startswith("file://"):
                fetched, total = self._copy_local(item)
            else:
                fetched, total = self._fetch(client, item)
            return self._finish(item, fetched, total, started)
        except _Stopped:
            raise
        except DownloadError as exc:
            return FileOutcome(item.rel, item.url, "failed", error=str(exc))
        except OSError as exc:
            why = "disk full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            return FileOutcome(item.rel, item.url, "failed", error=f"{item.dest}: {why}")

    def _check_present(self, client: Any, item: PlannedFile, entry: dict[str, Any]) -> FileOutcome:
        """A file already downloaded: skipped, or with --verify re-hashed (verified/changed),
        or with --check-remote compared with what the server has now."""
        known = {"size": entry.get("size"), "sha256": entry.get("sha256")}
        if self.options.verify:
            before = _stamp(item.dest)
            if sha256_file(item.dest) != entry.get("sha256"):
                return FileOutcome(
                    item.rel,
                    item.url,
                    "changed",
                    **known,
                    error=f"{item.dest}: sha256 differs from the manifest: the file changed since "
                    "it was downloaded (--force fetches it again)",
                )
            if entry.get("mtime_ns") != before[1] and _stamp(item.dest) == before:
                # the same bytes with another mtime (copied without -p): later commands may
                # reuse the manifest's sha256 again instead of hashing the file
                self.manifest.record(item.rel, {**entry, "mtime_ns": before[1]})
        elif entry.get("size") != item.dest.stat().st_size:
            return FileOutcome(
                item.rel,
                item.url,
                "changed",
                **known,
                error=f"{item.dest}: size differs from the manifest: the file changed since "
                "it was downloaded (--force fetches it again)",
            )
        if self.options.check_remote and not item.url.startswith("file://"):
            problem = self._remote_change(client, item, entry)
            if problem:
                return FileOutcome(item.rel, item.url, "changed", **known, error=problem)
        status = "verified" if (self.options.verify or self.options.check_remote) else "skipped"
        return FileOutcome(item.rel, item.url, status, **known)

    def _remote_change(self, client: Any, item: PlannedFile, entry: dict[str, Any]) -> str | None:
        """Why the server's copy differs from the one downloaded (ETag, else size), or None."""
        import httpx

        try:
            response = client.head(item.url)
        except httpx.HTTPError as exc:
            raise DownloadError(f"{item.url}: cannot check the server: {exc}") from None
        if response.status_code >= 400:
            return f"{item.url}: HTTP {response.status_code} when checking the server"
        etag = response.headers.get("etag")
        if etag and entry.get("etag") and etag != entry["etag"]:
            return (
                f"{item.url}: changed on the server since it was downloaded (ETag {etag} was "
                f"{entry['etag']}); --force fetches it again"
            )
        length = response.headers.get("content-length")
        encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
        source = entry.get("source_size")
        if length and length.isdigit() and not encoded and source and int(length) != source:
            return (
                f"{item.url}: changed on the server since it was downloaded (size {int(length)}, "
                f"was {source}); --force fetches it again"
            )
        return None

    def _copy_local(self, item: PlannedFile) -> tuple[int, int | None]:
        """Import from a local copy of the server's layout (``--base-url FOLDER``)."""
        from urllib.parse import unquote, urlparse

        source = Path(unquote(urlparse(item.url).path))
        if not source.is_file():
            raise DownloadError(f"{source}: not found in the local copy")
        item.dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, item.part)
        size = item.part.stat().st_size
        return size, size

    def _fetch(self, client: Any, item: PlannedFile) -> tuple[int, int | None]:
        import httpx
        from tenacity import (
            RetryError,
            Retrying,
            retry_if_exception_type,
            retry_if_not_exception_type,
            stop_after_attempt,
            wait_exponential,
            wait_random,
        )

        step = self.options.backoff
        backoff = wait_exponential(multiplier=step, max=30.0) + wait_random(0, step)

        def wait_for(state: Any) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _RetryableStatus) and exc.retry_after is not None:
                return min(exc.retry_after, 120.0)
            return float(backoff(state))

        received = [0]  # bytes over the wire, failed attempts included
        total: int | None = None
        host = urlsplit(item.url).netloc
        if host in self._down:
            raise DownloadError(self._down[host])
        retrying = Retrying(
            stop=stop_after_attempt(self.options.retries + 1),
            wait=wait_for,
            retry=retry_if_exception_type((httpx.TransportError, _RetryableStatus))
            & retry_if_not_exception_type(httpx.ConnectError),
            reraise=False,
        )
        try:
            for attempt in retrying:
                with attempt:
                    total = self._attempt(client, item, received)
        except httpx.ConnectError as exc:
            raise self._host_down(item, exc) from None
        except RetryError as exc:
            last = exc.last_attempt.exception()
            raise DownloadError(self._describe_failure(item, last)) from None
        except httpx.HTTPError as exc:  # non-retryable transport problems (bad URL, ...)
            raise DownloadError(f"{item.url}: {type(exc).__name__}: {exc}") from None
        return received[0], total

    def _describe_failure(self, item: PlannedFile, exc: BaseException | None) -> str:
        import httpx

        tries = self.options.retries + 1
        have = item.part.stat().st_size if item.part.exists() else 0
        if isinstance(exc, _RetryableStatus):
            return f"{item.url}: HTTP {exc.status} (server error) after {tries} attempts"
        if isinstance(exc, httpx.TimeoutException):
            what = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for data"
            return (
                f"{item.url}: timed out {what} ({tries} attempts; {have} bytes kept); "
                "run again to resume"
            )
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
            return (
                f"{item.url}: truncated body: the connection dropped after {have} bytes, "
                f"{tries} attempts; run again to resume"
            )
        return f"{item.url}: {type(exc).__name__}: {exc}"

    def _host_down(self, item: PlannedFile, exc: BaseException) -> DownloadError:
        """Connection refused or no DNS: the host is down for every file; say so once."""
        host = urlsplit(item.url).netloc
        text = str(exc).lower()
        if "refused" in text:
            why = "connection refused"
        elif any(k in text for k in ("name or service", "nodename", "name resolution", "getaddr")):
            why = "host name not found (DNS)"
        else:
            why = str(exc) or type(exc).__name__
        with self._down_lock:
            self._down.setdefault(
                host,
                f"cannot reach {host} ({why}); files from it were not downloaded. Check the "
                "network or proxy, or use a mirror with --base-url (or LAMPCTL_BASE_URL)",
            )
            return DownloadError(self._down[host])

    def _attempt(self, client: Any, item: PlannedFile, received: list[int]) -> int | None:
        """One GET, resuming from ``.part``; returns the expected total size if known."""
        item.dest.parent.mkdir(parents=True, exist_ok=True)
        have = item.part.stat().st_size if item.part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with client.stream("GET", item.url, headers=headers) as response:
            status = response.status_code
            if status == 416 and have:  # our .part is not a prefix the server knows: restart
                item.part.unlink()
                raise _RetryableStatus(416, 0.0)
            if status == 429 or status >= 500:
                raise _RetryableStatus(status, _retry_after(response.headers.get("retry-after")))
            if status >= 400:
                raise DownloadError(f"{item.url}: HTTP {status}")
            length = response.headers.get("content-length")
            encoded = response.headers.get("content-encoding", "identity").lower() != "identity"
            self._etags[item.rel] = response.headers.get("etag")
            if encoded and status == 206:
                # A proxy compressing on the fly: a range of compressed bytes cannot be spliced
                # onto the decoded bytes we hold, so start this file over.
                item.part.unlink(missing_ok=True)
                raise _RetryableStatus(206, 0.0)
            if status == 206 and have:
                start, total = _content_range_start_total(response.headers.get("content-range"))
                if start != have:
                    raise DownloadError(f"{item.url}: server resumed at {start}, not at {have}")
                mode = "ab"
            else:  # 200: the server ignored Range, or this is a fresh start
                have, mode = 0, "wb"
                total = int(length) if length and length.isdigit() else None
            if encoded:
                # Content-Length counts the compressed bytes: check those as they arrive, and
                # store the decoded file (its size is then checked by parsing it).
                self.observer.begin(item, None, 0)
            else:
                self.observer.begin(item, total, have)
            with item.part.open(mode) as handle:
                for chunk in response.iter_bytes():  # as received: a drop keeps what came
                    if self._stop.is_set():
                        raise _Stopped()
                    handle.write(chunk)
                    received[0] += len(chunk)
                    self.observer.advance(item, len(chunk))
                handle.flush()
                os.fsync(handle.fileno())
            if encoded:
                wire = response.num_bytes_downloaded
                if total is not None and wire != total:
                    raise DownloadError(
                        f"{item.url}: truncated body: got {wire} of {total} compressed bytes"
                    )
                total = None
        return total

    def _finish(
        self, item: PlannedFile, fetched: int, total: int | None, started: float
    ) -> FileOutcome:
        size = item.part.stat().st_size
        if total is not None and size != total:
            raise DownloadError(f"{item.url}: truncated body: got {size} of {total} bytes")
        with self._parse_gate:
            try:
                source_sha = check_file(item.part, item.remote.kind, item.url)
            except InputError as exc:
                item.part.unlink(missing_ok=True)  # not resumable: it is the wrong content
                raise DownloadError(str(exc)) from None
            fixes = []
            if item.fix is not None and item.fix.drop_first:  # small files (LaMP-2 dev)
                data = parse_json_bytes(item.part.read_bytes(), item.url)
                write_json(item.dest, apply_drop_first(data, item.remote.kind))
                del data
                fixes.append(item.fix.name)
                item.part.unlink()
            else:
                os.replace(item.part, item.dest)
        digest = sha256_file(item.dest) if fixes else source_sha
        final_size, mtime_ns = _stamp(item.dest)
        self.manifest.record(
            item.rel,
            {
                "url": item.url,
                "size": final_size,
                "mtime_ns": mtime_ns,  # size and mtime unchanged: commands reuse the sha256
                "sha256": digest,
                "source_size": size,
                "source_sha256": source_sha,
                "etag": self._etags.get(item.rel),
                "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "fixes": fixes,
            },
        )
        return FileOutcome(
            item.rel,
            item.url,
            "downloaded",
            bytes_fetched=fetched,
            size=final_size,
            sha256=digest,
            seconds=round(time.perf_counter() - started, 3),
            fixes=fixes,
        )

    # ---- many files

    def run(self, plan: Sequence[PlannedFile]) -> list[FileOutcome]:
        import httpx

        timeout = httpx.Timeout(self.options.read_timeout, connect=self.options.connect_timeout)
        outcomes: dict[str, FileOutcome] = {}
        with (
            httpx.Client(
                timeout=timeout,
                # Ask for the bytes as stored, so sizes and Range offsets mean the file's bytes.
                headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
                follow_redirects=True,
                trust_env=True,
            ) as client,
            ThreadPoolExecutor(max_workers=max(1, self.options.jobs)) as pool,
        ):
            futures: dict[Future[FileOutcome], PlannedFile] = {
                pool.submit(self.run_one, client, item): item for item in plan
            }
            pending = set(futures)
            try:
                while pending:
                    done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
                    for future in done:
                        item = futures[future]
                        outcome = future.result()
                        outcomes[item.rel] = outcome
                        self.observer.end(item, outcome)
            except (KeyboardInterrupt, _Stopped):
                self._stop.set()
                for future in pending:
                    future.cancel()
                raise KeyboardInterrupt from None
        return [outcomes[item.rel] for item in plan]
