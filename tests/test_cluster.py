"""The first hour on a real cluster: shared scratch, offline nodes, kills, wrong folders."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from lampserver import LampServer, official_mirror, write_mirror
from synth import SynthSpec, write_tree

from lampctl.io.data import atomic_writer, write_json

DEV4 = "time/LaMP_4/dev/dev_questions.json"


def _read(path: Path):
    return json.loads(path.read_text())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def mirror():
    server = LampServer(official_mirror()).start()
    yield server
    server.stop()


# --------------------------------------------------------------------------- never harm


def test_device_output_is_written_through_not_replaced(cli, tree):
    questions = tree / "user/LaMP_5/dev_questions.json"
    result = cli("rank", "-t", "5", "--input", questions, "--output", "/dev/null", "-r", "bm25")
    assert result.exit_code == 0, result.err
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not Path("/dev/null.meta.json").exists()


def test_fifo_output_is_written_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    write_json(fifo, {"a": 1})
    out, _ = reader.communicate(timeout=10)
    assert json.loads(out) == {"a": 1}
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_symlinked_output_is_followed(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_json(link, [1, 2])
    assert link.is_symlink() and _read(target) == [1, 2]


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_files_follow_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = tmp_path / "out.json"
        write_json(path, {})
    finally:
        os.umask(previous)
    assert _mode(path) == 0o666 & ~umask


def test_every_written_file_is_readable_by_the_group(cli, tree, mirror, tmp_path):
    previous = os.umask(0o022)
    try:
        assert cli("rank", "-t", "5", "-s", "user", "--data-dir", tree).exit_code == 0
        assert cli("merge", "-t", "5", "-s", "user", "--data-dir", tree).exit_code == 0
        data = tmp_path / "d"
        args = ("--base-url", mirror.url, "--data-dir", data, "-t", "7", "-s", "user")
        assert cli("download", *args).exit_code == 0
    finally:
        os.umask(previous)
    written = [
        *(tree / "user/LaMP_5").glob("*_rank*.json"),
        *(tree / "user/LaMP_5").glob("*_merged*.json"),
        data / "MANIFEST.json",
        *(data / "user/LaMP_7").glob("*.json"),
    ]
    assert len(written) >= 10
    assert {p.name: _mode(p) for p in written} == {p.name: 0o644 for p in written}


def test_repeated_profile_id_is_refused_naming_question_and_id(cli, tree):
    path = tree / "user/LaMP_5/dev_questions.json"
    data = _read(path)
    data[1]["profile"].append(dict(data[1]["profile"][0]))
    path.write_text(json.dumps(data))
    result = cli("rank", "-t", "5", "--set", "dev", "--data-dir", tree)
    assert result.exit_code == 1
    qid, iid = data[1]["id"], data[1]["profile"][0]["id"]
    assert f"question {qid!r} repeats profile item id {iid!r}" in result.err
    assert not (tree / "user/LaMP_5/dev_questions_rank.json").exists()


@pytest.mark.parametrize("damage", ["repeat", "unknown", "left out"])
def test_merge_checks_each_ranking_against_its_question(cli, tree, damage):
    assert cli("rank", "-t", "5", "-s", "user", "--set", "dev", "--data-dir", tree).exit_code == 0
    folder = tree / "user/LaMP_5"
    ranking = _read(folder / "dev_questions_rank.json")
    qid = next(q for q, ids in ranking.items() if len(ids) >= 2)
    if damage == "repeat":
        ranking[qid][1] = ranking[qid][0]
        needle = f"question {qid!r} ranks {ranking[qid][0]!r} twice"
    elif damage == "unknown":
        ranking[qid][0] = "nope"
        needle = f"question {qid!r} ranks profile id 'nope'"
    else:
        ranking[qid] = ranking[qid][:-1]
        needle = f"question {qid!r} leaves out 1 of"
    (folder / "dev_questions_rank.json").write_text(json.dumps(ranking))
    result = cli("merge", "-t", "5", "-s", "user", "--set", "dev", "--data-dir", tree)
    assert result.exit_code == 1 and needle in result.err, result.err
    assert not list(folder.glob("*merged*"))


def test_merge_accepts_a_ranking_cut_by_its_record(cli, tree):
    args = ("-t", "5", "-s", "user", "--set", "dev", "--data-dir", tree)
    assert cli("rank", *args, "--top-k", "2").exit_code == 0
    assert cli("merge", *args).exit_code == 0
    merged = _read(tree / "user/LaMP_5/dev_questions_merged.json")
    assert all(len(q["profile"]) <= 2 for q in merged)


def test_status_catches_a_same_size_hand_edit(cli, tree):
    args = ("-t", "5", "-s", "user", "--set", "dev", "--data-dir", tree)
    assert cli("rank", *args).exit_code == 0
    path = tree / "user/LaMP_5/dev_questions_rank.json"
    ranking = _read(path)
    qid = next(q for q, ids in ranking.items() if len(ids) >= 2)
    ranking[qid][0], ranking[qid][1] = ranking[qid][1], ranking[qid][0]
    before = path.stat().st_size
    path.write_text(json.dumps(ranking))
    assert path.stat().st_size == before
    rows = cli.json("status", *args)["rows"]
    assert rows[0]["ranking"] == "stale: ranking changed"


def test_interrupted_write_leaves_a_temp_file_that_the_next_run_removes(tmp_path, cli, tree):
    target = tree / "user/LaMP_5/dev_questions_rank.json"
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from lampctl.io.data import atomic_writer\n"
        "with atomic_writer(Path(sys.argv[1])) as h:\n"
        "    h.write('x' * 1000); h.flush()\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    subprocess.run([sys.executable, "-c", script, str(target)], check=False)
    leftovers = list(target.parent.glob(".dev_questions_rank.json.*.tmp"))
    assert len(leftovers) == 1
    status = cli.json("status", "-t", "5", "-s", "user", "--set", "dev", "--data-dir", tree)
    assert any("leftover temp file" in p for p in status["rows"][0]["problems"])
    assert cli("rank", "-t", "5", "-s", "user", "--set", "dev", "--data-dir", tree).exit_code == 0
    assert not leftovers[0].exists()


def test_live_writer_temp_file_is_kept(tmp_path):
    target = tmp_path / "out.json"
    with atomic_writer(target) as handle:
        handle.write("1")
        ours = list(tmp_path.glob(".out.json.*.tmp"))
        write_json(target, 2)  # a second writer in the same (live) process
        assert all(p.exists() for p in ours)
    assert _read(target) == 1


def _avocado(tmp_path: Path, emails: int) -> tuple[Path, Path]:
    text = tmp_path / "avocado"
    text.mkdir()
    ids = [f"{n:03d}-{i:06d}-EM.txt" for n in range(4) for i in range(emails // 4)]
    for n in range(4):
        with zipfile.ZipFile(text / f"{n:03d}.zip", "w") as archive:
            for email_id in ids[n * (emails // 4) : (n + 1) * (emails // 4)]:
                body = f"Subject: s {email_id}\n\n" + "word " * 2000
                archive.writestr(email_id, body)
    data = tmp_path / "data"
    folder = data / "user/LaMP_6"
    folder.mkdir(parents=True)
    questions = [
        {
            "id": str(q),
            "input": ids[q],
            "profile": [{"id": f"{q}-{j}", "text": i} for j, i in enumerate(ids[q + 1 : q + 40])],
        }
        for q in range(0, len(ids) - 40, 7)
    ]
    (folder / "train_questions_ids.json").write_text(json.dumps(questions))
    return text, data


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_sigkill_of_avocado_build_leaves_no_worker(tmp_path):
    text, data = _avocado(tmp_path, 4000)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lampctl",
            "avocado",
            "build",
            "--avocado-dir",
            str(text),
            "--data-dir",
            str(data),
            "--workers",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(workers) < 2 and process.poll() is None:
        workers = _children(process.pid)
        time.sleep(0.02)
    if process.poll() is not None:
        pytest.skip("the build finished before workers could be seen")
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(Path(f"/proc/{w}").exists() for w in workers):
        for w in workers:  # reap zombies re-parented to us, if any
            try:
                os.waitpid(w, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.05)
    alive = [
        w
        for w in workers
        if Path(f"/proc/{w}").exists()
        and "Z" not in (Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[:1])
    ]
    assert workers and not alive


def test_bad_config_files_are_one_line_errors(cli, tree, tmp_path):
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    result = cli("--config", binary, "stats", "--data-dir", tree)
    assert result.exit_code == 1 and "not a UTF-8 text file" in result.err
    assert len(result.err.strip().splitlines()) == 1
    negative = tmp_path / "neg.yaml"
    negative.write_text("encoder:\n  batch_size: -5\n")
    result = cli("--config", negative, "stats", "--data-dir", tree)
    assert result.exit_code == 1 and "encoder.batch_size must be at least 1" in result.err
    device = tmp_path / "dev.yaml"
    device.write_text("encoder:\n  device: gpu7\n")
    result = cli("--config", device, "stats", "--data-dir", tree)
    assert result.exit_code == 1 and "encoder.device 'gpu7'" in result.err


# --------------------------------------------------------------------------- downloads


def test_gzip_on_the_fly_downloads_correctly(cli, mirror, tmp_path):
    mirror.modes[DEV4] = "gzip"
    data = tmp_path / "d"
    args = ("--base-url", mirror.url, "--data-dir", data, "-t", "4", "-s", "time")
    result = cli("download", *args, "--set", "dev")
    assert result.exit_code == 0, result.err
    assert (data / "time/LaMP_4/dev_questions.json").read_bytes() == mirror.files[DEV4]
    # A half-written .part then meets a compressing proxy: the file restarts, still correct.
    (data / "time/LaMP_4/dev_questions.json").unlink()
    (data / "time/LaMP_4/dev_questions.json.part").write_bytes(mirror.files[DEV4][:100])
    assert cli("download", *args, "--set", "dev", "--force").exit_code == 0
    assert (data / "time/LaMP_4/dev_questions.json").read_bytes() == mirror.files[DEV4]


def _record_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every sleep the run asks for. "Fails fast" means no retry waits, whatever the
    machine's speed: the test counts waits instead of timing the run."""
    waits: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        real_sleep(min(seconds, 0.01))

    monkeypatch.setattr(time, "sleep", sleep)
    return waits


def test_refused_host_fails_fast_in_one_line(cli, tmp_path, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits = _record_waits(monkeypatch)
    result = cli(
        "--json",
        "download",
        "--base-url",
        f"http://127.0.0.1:{port}/",
        "--data-dir",
        tmp_path / "d",
    )
    assert sum(waits) < 1, waits  # no backoff before giving up on a refused host
    assert result.exit_code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and f"cannot reach 127.0.0.1:{port} (connection refused)" in lines[0]
    summary = json.loads(result.out)
    assert summary["failed"] == 70 and "connection refused" in summary["error"]
    human = cli("download", "--base-url", f"http://127.0.0.1:{port}/", "--data-dir", tmp_path / "d")
    assert human.out.count("connection refused") == 1 and "(70 files)" in human.out


def test_stalled_host_times_out_and_says_so(cli, mirror, tmp_path):
    mirror.modes[DEV4] = "stall"
    mirror.stall_seconds = 3
    result = cli(
        "download",
        "--base-url",
        mirror.url,
        "--data-dir",
        tmp_path / "d",
        "-t",
        "4",
        "-s",
        "time",
        "--set",
        "dev",
        "--timeout",
        "0.5",
        "--retries",
        "0",
    )
    assert result.exit_code == 1
    assert "timed out waiting for data" in result.err and "truncated" not in result.err


def test_check_remote_notices_a_file_changed_on_the_server(cli, mirror, tmp_path):
    data = tmp_path / "d"
    args = ("--base-url", mirror.url, "--data-dir", data, "-t", "4", "-s", "time")
    assert cli("download", *args).exit_code == 0
    summary = cli.json("download", *args, "--check-remote")
    assert summary["verified"] == 5 and summary["skipped"] == 0
    mirror.files[DEV4] = mirror.files[DEV4].replace(b'"id"', b'"id" ', 1)
    result = cli("--json", "download", *args, "--check-remote")
    assert result.exit_code == 1
    summary = json.loads(result.out)
    assert summary["changed"] == 1 and "changed on the server" in summary["error"]


def test_verify_labels_files_verified(cli, mirror, tmp_path):
    args = ("--base-url", mirror.url, "--data-dir", tmp_path / "d", "-t", "7", "-s", "user")
    assert cli("download", *args).exit_code == 0
    summary = cli.json("download", *args, "--verify")
    assert summary["verified"] == 5 and summary["skipped"] == 0
    assert {f["status"] for f in summary["files"]} == {"verified"}


def test_partial_download_shows_in_status(cli, tree):
    questions = tree / "user/LaMP_7/dev_questions.json"
    questions.rename(questions.with_name("dev_questions.json.part"))
    rows = cli.json("status", "-t", "7", "-s", "user", "--set", "dev", "--data-dir", tree)["rows"]
    size = questions.with_name("dev_questions.json.part").stat().st_size
    assert rows[0]["questions"] == f"partial download ({size:,} bytes)"


# --------------------------------------------------------------------------- offline nodes


def test_offline_hub_fails_fast_once_and_the_other_jobs_still_run(cli, tree, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    waits = _record_waits(monkeypatch)
    result = cli("rank-all", "--data-dir", tree, "--device", "cpu")
    assert sum(waits) < 1, waits  # the hub is not retried with backoff, job after job
    assert result.exit_code == 1
    lines = [line for line in result.err.strip().splitlines() if not line.startswith("rank-all:")]
    assert len(lines) == 1 and lines[0].startswith("Error: 30 encoder job(s) not run: cannot load")
    assert "--checkpoint PATH" in lines[0] and "HF_HUB_OFFLINE=1" in lines[0]
    assert "cannot load" not in result.out  # the table says "see below", not 30 copies
    assert result.out.count("failed (see below)") == 30
    # The BM25 and recency jobs ran (LaMP-5, LaMP-6 user; LaMP-3, LaMP-4 time); no encoder job.
    ranked = {p.relative_to(tree).parent.as_posix() for p in tree.rglob("*_rank.json")}
    assert ranked == {"user/LaMP_5", "user/LaMP_6", "time/LaMP_3", "time/LaMP_4"}


def test_hub_offline_and_bad_folders_have_their_own_messages(cli, tree, tmp_path):
    result = cli("rank", "-t", "7", "--set", "dev", "--data-dir", tree)
    assert result.exit_code == 1 and "the hub is off (HF_HUB_OFFLINE)" in result.err
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    result = cli("rank", "-t", "7", "--set", "dev", "--data-dir", tree, "--checkpoint", empty)
    assert result.exit_code == 1 and "holds no model (no config.json)" in result.err
    result = cli(
        "rank", "-t", "7", "--set", "dev", "--data-dir", tree, "--checkpoint", tmp_path / "nowhere"
    )
    assert result.exit_code == 1 and "does not exist" in result.err


def test_encoder_settings_from_environment_and_config(cli, tree, tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setenv("LAMPCTL_CHECKPOINT", str(tiny_bert))
    monkeypatch.setenv("LAMPCTL_DEVICE", "cpu")
    summary = cli.json("rank-all", "-t", "7", "-s", "user", "--set", "dev", "--data-dir", tree)
    assert summary["done"] == 1 and summary["devices"] == ["cpu"]
    record = _read(tree / "user/LaMP_7/dev_questions_rank.meta.json")
    assert record["parameters"]["checkpoint"] == str(tiny_bert)
    status = cli.json("status", "-t", "7", "-s", "user", "--set", "dev", "--data-dir", tree)
    assert status["rows"][0]["ranking"] == "up to date"
    assert status["rows"][0]["ranked_by"] == f"contriever {tiny_bert} fp32"
    monkeypatch.delenv("LAMPCTL_CHECKPOINT")
    config = tmp_path / "enc.yaml"
    config.write_text(f"encoder:\n  checkpoint: {tiny_bert}\n  precision: fp32\n")

    def dry_run() -> dict:
        return cli.json(
            "--config", config, "rank-all", "-t", "7", "-s", "user", "--set", "dev",
            "--data-dir", tree, "--dry-run",
        )  # fmt: skip

    plan = dry_run()
    assert plan["jobs"][0]["state"] == "up to date"
    monkeypatch.setenv("LAMPCTL_PRECISION", "bf16")
    plan = dry_run()
    assert plan["jobs"][0]["state"] == (
        "stale: other parameters (precision: 'fp32' recorded, 'bf16' now)"
    )


# --------------------------------------------------------------------------- wrong folders


@pytest.mark.parametrize("command", ["rank-all", "rank", "stats", "status", "merge"])
@pytest.mark.parametrize("where", ["missing", "empty", "repo root", "server layout"])
def test_data_dir_without_lamp_files_is_an_error(cli, tmp_path, command, where):
    data = tmp_path / "data"
    if where == "empty":
        data.mkdir()
    elif where == "repo root":
        data = Path(__file__).resolve().parent.parent
    elif where == "server layout":
        write_mirror(data, {"LaMP_7/dev/dev_questions.json": b"[]"})
    args = [command, "--data-dir", data] + (["-t", "7"] if command == "rank" else [])
    result = cli(*args)
    assert result.exit_code == 1, result.out
    assert "lampctl download" in result.err
    if where == "server layout":
        assert "laid out like the LaMP server (LaMP_7/dev/dev_questions.json)" in result.err
    else:
        assert "expected {user|time}/LaMP_N/{train|dev|test}_questions.json" in result.err


def test_server_layout_copy_imports_through_download(cli, tmp_path):
    server_copy = tmp_path / "wget-copy"
    write_mirror(server_copy, official_mirror())
    data = tmp_path / "data_raw"
    summary = cli.json("download", "--base-url", server_copy, "--data-dir", data)
    assert summary["downloaded"] == 70 and summary["failed"] == 0
    assert (data / "time/LaMP_4/dev_questions.json").read_bytes() == (
        server_copy / DEV4
    ).read_bytes()
    manifest = _read(data / "MANIFEST.json")
    assert manifest["files"]["time/LaMP_4/dev_questions.json"]["url"].startswith("file://")


@pytest.mark.parametrize(
    "args",
    [
        ["rank", "-t", "3", "-t", "7"],
        ["rank", "--task", "3", "--task=7"],
        ["rank", "-t", "3", "--split", "user", "-s", "time"],
        ["merge", "--format", "json", "-f", "jsonl"],
        ["download", "--jobs", "2", "-j", "3"],
    ],
)
def test_repeated_single_value_option_is_a_usage_error(cli, tree, args):
    result = cli(*args, "--data-dir", tree)
    assert result.exit_code == 2
    assert "given twice" in result.err


def test_merge_everything_ranked_in_one_command(cli, tree):
    assert cli("rank", "-t", "5", "-s", "user", "--data-dir", tree).exit_code == 0
    assert cli("rank", "-t", "3", "-s", "time", "--data-dir", tree).exit_code == 0
    summary = cli.json("merge", "--data-dir", tree)
    assert len(summary["files"]) == 6
    assert {f["status"] for f in summary["files"]} == {"merged"}
    again = cli.json("merge", "--data-dir", tree)
    assert {f["status"] for f in again["files"]} == {"up to date"}


def test_merged_file_records_top_k_names_and_staleness(cli, tree):
    args = ("-t", "5", "-s", "user", "--set", "dev", "--data-dir", tree)
    assert cli("rank", *args).exit_code == 0
    assert cli("merge", *args).exit_code == 0
    assert cli("merge", *args, "--top-k", "2").exit_code == 0
    assert cli("merge", *args, "--no-ranking").exit_code == 0
    folder = tree / "user/LaMP_5"
    full = _read(folder / "dev_questions_merged.json")
    top2 = _read(folder / "dev_questions_merged_top2.json")
    unranked = _read(folder / "dev_questions_merged_unranked.json")
    questions = _read(folder / "dev_questions.json")
    assert [len(q["profile"]) for q in full] == [len(q["profile"]) for q in questions]
    assert all(len(q["profile"]) <= 2 for q in top2)
    assert [q["profile"] for q in unranked] == [q["profile"] for q in questions]
    record = _read(folder / "dev_questions_merged_top2.meta.json")
    assert (
        record["parameters"]["top_k"] == 2
        and len(record["sources"]["ranking"]["input_sha256"]) == 64
    )
    assert cli.json("status", *args)["rows"][0]["merged"] == "3 up to date"  # every variant
    assert cli("rank", *args, "-r", "recency").exit_code == 0
    row = cli.json("status", *args)["rows"][0]
    assert row["merged"] == "1 up to date, 2 stale"  # the unranked file needs no ranking
    assert "dev_questions_merged.json stale: ranking changed" in row["problems"]
    assert "dev_questions_merged_top2.json stale: ranking changed" in row["problems"]


def test_merge_explicit_files_like_the_reference(cli, tree, tmp_path):
    folder = tree / "user/LaMP_5"
    assert cli("rank", "-t", "5", "-s", "user", "--set", "dev", "--data-dir", tree).exit_code == 0
    out = tmp_path / "m.json"
    result = cli(
        "merge",
        "--questions",
        folder / "dev_questions.json",
        "--ranking",
        folder / "dev_questions_rank.json",
        "--outputs",
        folder / "dev_outputs.json",
        "--output",
        out,
    )
    assert result.exit_code == 0, result.err
    assert (
        _read(out) == _read(folder / "dev_questions_merged.json")
        if (folder / "dev_questions_merged.json").exists()
        else len(_read(out)) == len(_read(folder / "dev_questions.json"))
    )


# --------------------------------------------------------------------------- machine output


def test_json_errors_are_one_object_on_stdout(cli, tmp_path):
    result = cli("--json", "stats", "--data-dir", tmp_path / "nowhere")
    assert result.exit_code == 1
    payload = json.loads(result.out)
    assert payload["exit_code"] == 1 and "no such folder" in payload["error"]
    result = cli("rank", "--json", "-t", "3", "-t", "4")
    assert result.exit_code == 2
    assert "given twice" in json.loads(result.out)["error"]


@pytest.mark.parametrize("command", ["rank", "rank-all", "merge", "stats", "status", "download"])
def test_quiet_works_wherever_json_does(cli, tree, command):
    result = cli(command, "--help")
    assert "--json" in result.out and "--quiet" in result.out


def test_ctrl_c_in_rank_says_what_finished_and_how_to_resume(tmp_path):
    data = write_tree(
        tmp_path / "data", tasks=(5, 7), spec=SynthSpec(questions=1500, profile_max=60)
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lampctl",
            "rank-all",
            "--data-dir",
            str(data),
            "--ranker",
            "bm25",
            "--jobs",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # As in a terminal: a shell's background job (a test run with &) ignores SIGINT, and
        # a Python started with it ignored never raises KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(data.rglob("*_rank.meta.json")):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Interrupted:" in err and "run the same command again to resume" in err
    assert "Traceback" not in err
    finished = int(err.split("Interrupted: ")[1].split()[0])
    assert finished == len(list(data.rglob("*_rank.meta.json")))
