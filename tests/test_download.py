"""`lampctl download` against a real HTTP server on 127.0.0.1 with failure modes."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lampserver import LampServer, official_mirror

from lampctl.catalog.bundled import load_registry
from lampctl.download import (
    Downloader,
    DownloadOptions,
    Manifest,
    load_download_registry,
    plan_downloads,
)

DEV2 = "LaMP_2/new/dev/dev_questions.json"
DEV2_OUT = "LaMP_2/new/dev/dev_outputs.json"


@pytest.fixture
def mirror():
    server = LampServer(official_mirror()).start()
    yield server
    server.stop()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.json") if p.name != "MANIFEST.json")


def test_registry_lists_every_official_file():
    downloads = load_download_registry()
    # All 80 official URLs: 7 tasks x 2 splits x (4 train/dev + 1 test), and the 10 files of
    # the deprecated news categorization (LaMP-2N), which is opt-in.
    assert len(downloads.files) == 80
    paths = {f.path for f in downloads.files}
    assert "LaMP_2/new/dev/dev_outputs.json" in paths
    assert "time/LaMP_6/test/test_questions.json" in paths
    deprecated = {f.path for f in downloads.files if f.task == "2N"}
    assert len(deprecated) == 10 and "time/LaMP_2/dev/dev_outputs.json" in deprecated
    assert all(p.startswith(("LaMP_2/", "time/LaMP_2/")) and "/new/" not in p for p in deprecated)
    assert not any("test_outputs" in p for p in paths)
    plan = plan_downloads(load_registry(), downloads, Path("d"), "http://x/")
    assert len(plan) == 70  # the default plan is the current benchmark


def test_full_download_layout_manifest_and_fix(cli, mirror, tmp_path):
    data = tmp_path / "data_raw"
    result = cli("--json", "download", "--base-url", mirror.url, "--data-dir", data)
    assert result.exit_code == 0, result.err
    summary = json.loads(result.out)
    assert (summary["downloaded"], summary["failed"], summary["fixed"]) == (70, 0, 2)
    assert (data / "user/LaMP_3/train_questions.json").exists()
    assert (data / "time/LaMP_7/test_questions.json").exists()
    assert (data / "user/LaMP_6/dev_questions_ids.json").exists()
    assert not (data / "user/LaMP_6/dev_questions.json").exists()
    manifest = json.loads((data / "MANIFEST.json").read_text())["files"]
    assert len(manifest) == 70 == len(_json_files(data))
    for rel, entry in manifest.items():
        body = (data / rel).read_bytes()
        assert entry["sha256"] == _sha(body) and entry["size"] == len(body)
        assert entry["url"].startswith(mirror.url)
    # The known LaMP-2 fix: first question and first gold of the user dev set are dropped.
    raw_q = json.loads(mirror.files[DEV2])
    raw_o = json.loads(mirror.files[DEV2_OUT])
    assert json.loads((data / "user/LaMP_2/dev_questions.json").read_text()) == raw_q[1:]
    assert (
        json.loads((data / "user/LaMP_2/dev_outputs.json").read_text())["golds"]
        == raw_o["golds"][1:]
    )
    assert manifest["user/LaMP_2/dev_questions.json"]["fixes"]
    assert manifest["user/LaMP_2/dev_questions.json"]["source_sha256"] == _sha(mirror.files[DEV2])
    assert manifest["time/LaMP_2/dev_questions.json"]["fixes"] == []
    assert not list(data.rglob("*.part")) and not list(data.rglob("*.tmp"))


def test_no_fixes_keeps_raw_files(cli, mirror, tmp_path):
    data = tmp_path / "d"
    result = cli(
        "download",
        "--base-url",
        mirror.url,
        "--data-dir",
        data,
        "--task",
        "2",
        "--split",
        "user",
        "--set",
        "dev",
        "--no-fixes",
    )
    assert result.exit_code == 0, result.err
    assert (data / "user/LaMP_2/dev_questions.json").read_bytes() == mirror.files[DEV2]
    assert sorted(p.name for p in _json_files(data)) == ["dev_outputs.json", "dev_questions.json"]


def test_rerun_is_a_no_op_and_dry_run_shows_verified(cli, mirror, tmp_path):
    data = tmp_path / "d"
    args = ("--base-url", mirror.url, "--data-dir", data, "--task", "3")
    assert cli("download", *args).exit_code == 0
    before = len(mirror.requests)
    summary = cli.json("download", *args)
    assert summary["skipped"] == 10 and summary["downloaded"] == 0
    assert len(mirror.requests) == before
    plan = cli.json("download", *args, "--dry-run")
    assert {f["state"] for f in plan["files"]} == {"verified"}
    result = cli("download", *args, "--dry-run")
    assert f"{mirror.url}LaMP_3/dev/dev_questions.json -> " in result.out


def test_resume_after_dropped_connection_fetches_only_the_rest(cli, mirror, tmp_path):
    path = "LaMP_3/train/train_questions.json"
    mirror.modes[path] = "drop_once"
    data = tmp_path / "d"
    result = cli(
        "download",
        "--base-url",
        mirror.url,
        "--data-dir",
        data,
        "-t",
        "3",
        "-s",
        "user",
        "--set",
        "train",
    )
    assert result.exit_code == 0, result.err
    body = mirror.files[path]
    assert (data / "user/LaMP_3/train_questions.json").read_bytes() == body
    assert mirror.served[path] == len(body)  # half, then the remainder: nothing twice
    ranges = [r for p, r in mirror.requests if p == path]
    assert ranges == [None, f"bytes={len(body) // 2}-"]


def test_server_ignoring_range_restarts_cleanly(cli, mirror, tmp_path):
    path = "LaMP_7/dev/dev_outputs.json"
    mirror.modes[path] = "ignore_range"
    data = tmp_path / "d"
    part = data / "user/LaMP_7/dev_outputs.json.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b'{"garbage": "from an old run"')
    result = cli(
        "download",
        "--base-url",
        mirror.url,
        "--data-dir",
        data,
        "-t",
        "7",
        "-s",
        "user",
        "--set",
        "dev",
    )
    assert result.exit_code == 0, result.err
    assert (data / "user/LaMP_7/dev_outputs.json").read_bytes() == mirror.files[path]


def test_503_twice_then_success(cli, mirror, tmp_path):
    path = "LaMP_1/dev/dev_outputs.json"
    mirror.modes[path] = "fail503:2"
    data = tmp_path / "d"
    result = cli(
        "download",
        "--base-url",
        mirror.url,
        "--data-dir",
        data,
        "-t",
        "1",
        "-s",
        "user",
        "--set",
        "dev",
    )
    assert result.exit_code == 0, result.err
    assert [p for p, _ in mirror.requests].count(path) == 3
    assert (data / "user/LaMP_1/dev_outputs.json").read_bytes() == mirror.files[path]


def test_bad_cases_fail_alone_and_never_leave_a_json(cli, mirror, tmp_path):
    data = tmp_path / "d"
    mirror.modes["LaMP_5/train/train_questions.json"] = "html"
    mirror.modes["LaMP_5/train/train_outputs.json"] = "missing"
    mirror.modes["LaMP_5/dev/dev_questions.json"] = "truncate"
    mirror.modes["LaMP_5/dev/dev_outputs.json"] = "fail503:99"
    result = cli(
        "--json",
        "download",
        "--base-url",
        mirror.url,
        "--data-dir",
        data,
        "-t",
        "5",
        "-s",
        "user",
        "--retries",
        "1",
    )
    assert result.exit_code == 1
    summary = json.loads(result.out)
    assert (summary["downloaded"], summary["failed"]) == (1, 4)
    errors = result.err.strip().splitlines()
    assert len(errors) == 4 and all(e.startswith("Error: ") for e in errors)
    joined = "\n".join(errors)
    assert "train_questions.json: is an HTML page" in joined
    assert "train_outputs.json: HTTP 404" in joined
    assert "dev_questions.json: truncated body" in joined
    assert "dev_outputs.json: HTTP 503" in joined
    folder = data / "user/LaMP_5"
    assert sorted(p.name for p in folder.glob("*.json")) == ["test_questions.json"]
    assert sorted(p.name for p in folder.glob("*.part")) == ["dev_questions.json.part"]
    json.loads((folder / "test_questions.json").read_text())


def test_unreachable_host(cli, tmp_path):
    result = cli(
        "download",
        "--base-url",
        "http://127.0.0.1:9/",
        "--data-dir",
        tmp_path,
        "-t",
        "1",
        "-s",
        "user",
        "--set",
        "dev",
        "--retries",
        "0",
    )
    assert result.exit_code == 1
    assert "cannot reach 127.0.0.1:9 (connection refused)" in result.err
    assert len(result.err.strip().splitlines()) == 1  # once, not once per file
    assert not list(tmp_path.rglob("*.json"))


def test_verify_catches_a_modified_file(cli, mirror, tmp_path):
    data = tmp_path / "d"
    args = ("--base-url", mirror.url, "--data-dir", data, "-t", "4", "-s", "time")
    assert cli("download", *args).exit_code == 0
    assert cli("download", *args, "--verify").exit_code == 0
    target = data / "time/LaMP_4/dev_questions.json"
    body = bytearray(target.read_bytes())
    body[10] = ord("X") if body[10] != ord("X") else ord("Y")
    target.write_bytes(bytes(body))
    assert cli("download", *args).exit_code == 0  # same size: only --verify re-hashes
    result = cli("download", *args, "--verify")
    assert result.exit_code == 1
    assert f"{target}: sha256 differs from the manifest" in result.err
    assert target.read_bytes() == bytes(body)  # reported, not overwritten
    assert cli("download", *args, "--force").exit_code == 0
    assert target.read_bytes() == mirror.files["time/LaMP_4/dev/dev_questions.json"]


def test_lock_stops_a_second_download(cli, mirror, tmp_path):
    from filelock import FileLock

    data = tmp_path / "d"
    data.mkdir()
    with FileLock(str(data / ".lampctl-download.lock")):
        result = cli("download", "--base-url", mirror.url, "--data-dir", data, "-t", "1")
    assert result.exit_code == 1
    assert "another lampctl download is running" in result.err
    assert not _json_files(data)


def test_disk_full_is_reported_per_file(mirror, tmp_path, monkeypatch):
    import lampctl.download.transfer as module

    data = tmp_path / "d"
    plan = plan_downloads(
        load_registry(),
        load_download_registry(),
        data,
        mirror.url,
        tasks=["1"],
        splits=["user"],
        sets=["dev"],
    )

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(module.os, "fsync", full)
    outcomes = Downloader(data, DownloadOptions(retries=0), manifest=Manifest.load(data)).run(plan)
    assert {o.status for o in outcomes} == {"failed"}
    assert all(o.error and o.error.endswith("disk full") for o in outcomes)
    assert not _json_files(data)


def test_kill_mid_download_then_rerun_gives_identical_hashes(mirror, tmp_path):
    path = "LaMP_4/train/train_questions.json"
    big = json.dumps([json.loads(mirror.files[path])[0]] * 400).encode()
    mirror.files[path] = big
    mirror.modes[path] = "slow"
    mirror.slow_rate = len(big) // 2  # about two seconds for the whole file
    data = tmp_path / "d"
    command = [
        sys.executable,
        "-m",
        "lampctl",
        "--quiet",
        "download",
        "--base-url",
        mirror.url,
        "--data-dir",
        str(data),
        "-t",
        "4",
        "-s",
        "user",
        "--set",
        "train",
    ]
    proc = subprocess.Popen(command, cwd=tmp_path)
    part = data / "user/LaMP_4/train_questions.json.part"
    deadline = time.time() + 30
    while time.time() < deadline and (not part.exists() or part.stat().st_size < len(big) // 4):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (data / "user/LaMP_4/train_questions.json").exists()
    kept = part.stat().st_size
    assert 0 < kept < len(big)
    time.sleep(0.5)  # let the server notice the broken connection before counting
    served_before = mirror.served[path]
    mirror.modes[path] = ""
    subprocess.run(command, cwd=tmp_path, check=True)
    assert (data / "user/LaMP_4/train_questions.json").read_bytes() == big
    manifest = json.loads((data / "MANIFEST.json").read_text())["files"]
    assert manifest["user/LaMP_4/train_questions.json"]["sha256"] == _sha(big)
    assert mirror.requests[-1] == (path, f"bytes={kept}-")
    assert mirror.served[path] - served_before == len(big) - kept


@pytest.mark.parametrize("block", [7, 64, 1 << 20])
def test_streamed_shape_check_matches_the_whole_file_check(tmp_path, block):
    """Big question files are checked a block at a time (bounded memory): same verdicts and
    the same sha256 as checking the whole file."""
    from lampctl.download.checks import check_shape, scan_questions
    from lampctl.errors import InputError

    good = json.dumps(
        [
            {"id": str(i), "input": "caf\u00e9 \u6771\u4eac " * i, "profile": [{"id": "x"}] * i}
            for i in range(40)
        ]
    ).encode()
    cases = {
        "good": good,
        "bom and spaces": b"\xef\xbb\xbf \n" + good + b"\n ",
        "empty list": b"[ ]",
        "html": b"<!DOCTYPE html><html>no</html>",
        "not a list": b'{"task": "LaMP_1"}',
        "missing key": b'[{"id": "1", "input": "x"}]',
        "truncated": good[: len(good) // 2],
        "garbage inside": good[:100] + b"@@" + good[100:],
        "extra data": good + b" []",
        "not utf-8": b'[{"id": "1", "input": "caf\xe9", "profile": []}]',
    }
    for label, body in cases.items():
        path = tmp_path / f"{label}.json"
        path.write_bytes(body)
        try:
            check_shape(json.loads(body.decode("utf-8-sig")), "questions", "f")
            expected_ok = True
        except (InputError, ValueError):
            expected_ok = False
        try:
            digest = scan_questions(path, "f", block)
            ok = True
        except InputError:
            ok = False
        assert ok == expected_ok, label
        if ok:
            assert digest == _sha(body), label


def test_commands_reuse_the_downloaded_sha256_while_the_file_is_unchanged(
    cli, mirror, tmp_path, monkeypatch
):
    import lampctl.ledger

    data = tmp_path / "d"
    args = ("--base-url", mirror.url, "--data-dir", data, "-t", "4", "-s", "time")
    assert cli("download", *args).exit_code == 0
    questions = data / "time/LaMP_4/dev_questions.json"
    entry = json.loads((data / "MANIFEST.json").read_text())["files"][
        "time/LaMP_4/dev_questions.json"
    ]
    assert entry["mtime_ns"] == questions.stat().st_mtime_ns
    hashed: list[Path] = []
    real = lampctl.ledger.sha256_file

    def spy(path: Path) -> str:
        hashed.append(Path(path))
        return real(path)

    monkeypatch.setattr(lampctl.ledger, "sha256_file", spy)
    peft = ("peft-data", "--data-dir", data, "-t", "4", "-s", "time", "--set", "dev", "--force")

    def recorded() -> dict:
        record = json.loads((data / "time/LaMP_4/dev_peft_file.meta.json").read_text())
        return record["sources"]["questions"]

    assert cli(*peft).exit_code == 0
    assert questions not in hashed  # the manifest's sha256, not a second pass over the file
    assert recorded()["input_sha256"] == _sha(questions.read_bytes()) == entry["sha256"]
    rank = ("rank", "-t", "4", "-s", "time", "--set", "dev", "--data-dir", data, "-r", "bm25")
    assert cli(*rank).exit_code == 0
    assert questions not in hashed
    ranking = json.loads((data / "time/LaMP_4/dev_questions_rank.meta.json").read_text())
    assert ranking["input_sha256"] == entry["sha256"]

    later = questions.stat().st_mtime_ns + 2_000_000_000
    os.utime(questions, ns=(later, later))  # touched (or copied without -p): hashed again
    (data / "time/LaMP_4/dev_peft_file.meta.json").unlink()
    assert cli(*peft).exit_code == 0
    assert questions in hashed
    assert recorded()["input_sha256"] == entry["sha256"]

    assert cli("download", *args, "--verify").exit_code == 0  # same bytes: the new mtime is kept
    manifest = json.loads((data / "MANIFEST.json").read_text())
    assert manifest["files"]["time/LaMP_4/dev_questions.json"]["mtime_ns"] == later
    hashed.clear()
    (data / "time/LaMP_4/dev_peft_file.meta.json").unlink()
    assert cli(*peft).exit_code == 0
    assert questions not in hashed


def test_downloaded_sha256_only_for_the_file_the_manifest_describes(tmp_path):
    from lampctl.download.manifest import MANIFEST_DEPTH, downloaded_sha256

    data = tmp_path / "data"
    target = data / "time/LaMP_4/dev_questions.json"
    target.parent.mkdir(parents=True)
    target.write_text("[]")
    info = target.stat()
    entry = {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "sha256": "ab" * 32}

    def manifest(files: object, where: Path = data) -> None:
        (where / "MANIFEST.json").write_text(json.dumps({"lampctl": "0", "files": files}))

    manifest({"time/LaMP_4/dev_questions.json": entry})
    assert downloaded_sha256(target, info) == "ab" * 32
    assert downloaded_sha256(target.parent / "." / target.name, info) == "ab" * 32
    other = target.with_name("dev_outputs.json")
    other.write_text("[]")
    assert downloaded_sha256(other, other.stat()) is None  # not in the manifest
    for changed in ({"size": info.st_size + 1}, {"mtime_ns": info.st_mtime_ns + 1}):
        manifest({"time/LaMP_4/dev_questions.json": {**entry, **changed}})
        assert downloaded_sha256(target, info) is None
    old = {key: value for key, value in entry.items() if key != "mtime_ns"}
    manifest({"time/LaMP_4/dev_questions.json": old})  # written before mtimes were recorded
    assert downloaded_sha256(target, info) is None
    for broken in ("not json", json.dumps([1]), json.dumps({"files": [1]})):
        (data / "MANIFEST.json").write_text(broken)
        assert downloaded_sha256(target, info) is None
    # the nearest manifest is the file's data dir; one further up is not consulted
    manifest({"LaMP_4/dev_questions.json": {"size": 1}}, data / "time")
    manifest({"time/LaMP_4/dev_questions.json": entry})
    assert downloaded_sha256(target, info) is None
    (data / "time/MANIFEST.json").unlink()
    deep = data.joinpath(*["x"] * MANIFEST_DEPTH, "q.json")
    deep.parent.mkdir(parents=True)
    deep.write_text("[]")
    rel = deep.relative_to(data).as_posix()
    manifest({rel: {**entry, "size": deep.stat().st_size, "mtime_ns": deep.stat().st_mtime_ns}})
    assert downloaded_sha256(deep, deep.stat()) is None  # deeper than any LaMP file sits
