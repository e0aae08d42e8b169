"""Downloading the LaMP files: resumable, retried, verified, and never half-written.

Bytes stream into ``<file>.part``; an interrupted transfer continues with an HTTP Range request
(on a retry or on the next run). A file is renamed into place only after its size, its kind
(JSON, not an HTML error page) and its shape are checked; its sha256 then goes into
``MANIFEST.json`` so later runs can skip it, and ``--verify`` can re-check it.

The rooms: ``registry`` (the bundled file list and the plan), ``manifest`` (``MANIFEST.json``
and the lock), ``checks`` (a file's kind and shape, the fixes) and ``transfer`` (HTTP and
local copies). Names are imported on first use.
"""

from __future__ import annotations

from lampctl._lazy import lazy_names

_WHERE = {
    "DataFix": ".registry",
    "DownloadRegistry": ".registry",
    "PlannedFile": ".registry",
    "RemoteFile": ".registry",
    "load_download_registry": ".registry",
    "local_name": ".registry",
    "plan_downloads": ".registry",
    "LOCK_NAME": ".manifest",
    "MANIFEST_NAME": ".manifest",
    "Manifest": ".manifest",
    "acquire_lock": ".manifest",
    "check_file": ".checks",
    "check_shape": ".checks",
    "DownloadOptions": ".transfer",
    "Downloader": ".transfer",
    "FileOutcome": ".transfer",
    "TransferObserver": ".transfer",
}

__all__ = sorted(_WHERE)


__getattr__ = lazy_names(__name__, _WHERE)
