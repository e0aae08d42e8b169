"""`lampctl avocado build` on zip archives of RFC-822 emails written here."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from synth import email_id, plain_email, write_avocado_corpus, write_lamp6_ids

from lampctl.avocado import parse_email

ODD = {
    # RFC 2047 encoded-word subject (UTF-8, base64) and a quoted-printable latin-1 body
    "900-000001-EM.txt": (
        b"From: a@x\r\nSubject: =?utf-8?b?Q2Fmw6kgbWVldGluZw==?=\r\n"
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nVoil=E0 the agenda.\r\n",
        "Café meeting",
        "Voilà the agenda.",
    ),
    # folded subject header
    "900-000002-EM.txt": (
        b"From: a@x\r\nSubject: quarterly numbers\r\n are ready\r\n\r\n"
        b"\r\n  see attached  \r\n\r\n",
        "quarterly numbers are ready",
        "see attached",
    ),
    # undeclared 8-bit latin-1 in subject and body
    "900-000003-EM.txt": (
        b"From: a@x\r\nSubject: r\xe9sum\xe9 draft\r\n\r\nna\xefve body\r\n",
        "résumé draft",
        "naïve body",
    ),
    # multipart/alternative: the plain part is the body
    "900-000004-EM.txt": (
        b"From: a@x\r\nSubject: multi\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/alternative; boundary="XX"\r\n\r\n'
        b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nplain words\r\n"
        b"--XX\r\nContent-Type: text/html\r\n\r\n<p>html words</p>\r\n--XX--\r\n",
        "multi",
        "plain words",
    ),
    # no Subject header at all
    "900-000005-EM.txt": (
        b"From: a@x\r\nTo: b@y\r\n\r\nno subject here\r\n",
        "",
        "no subject here",
    ),
}


@pytest.mark.parametrize("name", sorted(ODD))
def test_parse_odd_emails(name):
    raw, subject, body = ODD[name]
    assert parse_email(raw) == (subject, body)


def _corpus(tmp_path: Path) -> tuple[Path, dict[str, tuple[str, str]]]:
    text = tmp_path / "avocado-1.0.2" / "data" / "text"
    truth = write_avocado_corpus(text, archives=4, per_archive=30)
    with zipfile.ZipFile(text / "900.zip", "w") as zf:
        for name, (raw, subject, body) in ODD.items():
            zf.writestr(f"900/{name}", raw)
            truth[name] = (subject, body)
        zf.writestr("../evil.txt", b"Subject: evil\r\n\r\nescape")
        zf.writestr("/abs/evil2.txt", b"Subject: evil\r\n\r\nescape")
    # A later archive repeats an id with other content: the first archive (sorted) wins.
    with zipfile.ZipFile(text / "950.zip", "w") as zf:
        zf.writestr(f"950/{email_id(1, 0)}", plain_email("duplicate subject", "duplicate body"))
    return text, truth


def _ids(truth: dict[str, tuple[str, str]], data: Path) -> None:
    write_lamp6_ids(data, sorted(truth), questions=6, profile_max=8, seed=3)


def test_build_both_splits_field_by_field(cli, tmp_path):
    text, truth = _corpus(tmp_path)
    data = tmp_path / "data_raw"
    _ids(truth, data)
    result = cli("--json", "avocado", "build", "--avocado-dir", text, "--data-dir", data)
    assert result.exit_code == 0, result.err
    summary = json.loads(result.out)
    assert summary["built"] == {s: {"train": 6, "dev": 6, "test": 6} for s in ("user", "time")}
    assert summary["missing"] == 0 and summary["duplicates"] == 1
    assert summary["emails_parsed"] == summary["emails_needed"]
    # Each needed email is read exactly once, from the first archive that holds it.
    needed = set()
    for ids_file in data.rglob("*_questions_ids.json"):
        for q in json.loads(ids_file.read_text()):
            needed |= {q["input"]} | {i["text"] for i in q["profile"]}
    sizes = {}
    for archive in sorted(text.glob("*.zip")):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                sizes.setdefault(Path(info.filename).name, info.file_size)
    assert summary["bytes_read"] == sum(sizes[n] for n in needed)
    for split in ("user", "time"):
        folder = data / split / "LaMP_6"
        for set_name in ("train", "dev", "test"):
            ids = json.loads((folder / f"{set_name}_questions_ids.json").read_text())
            built = json.loads((folder / f"{set_name}_questions.json").read_text())
            assert isinstance(built, list) and len(built) == len(ids)
            for before, after in zip(ids, built, strict=True):
                subject, body = truth[before["input"]]
                assert after["input"] == f"Generate a subject for the following email: {body}"
                assert after["id"] == before["id"]
                assert after.get("user_id") == before.get("user_id")
                for item_before, item_after in zip(
                    before["profile"], after["profile"], strict=True
                ):
                    assert item_after["text"] == truth[item_before["text"]][1]
                    assert item_after["title"] == truth[item_before["text"]][0]
                    assert item_after["id"] == item_before["id"]
                    assert item_after["date"] == item_before["date"]
            if set_name != "test":
                outputs = json.loads((folder / f"{set_name}_outputs.json").read_text())
                assert outputs["task"] == "LaMP_6"
                assert [g["output"] for g in outputs["golds"]] == [
                    truth[q["input"]][0] for q in ids
                ]
            else:
                assert not (folder / "test_outputs.json").exists()


def test_rebuild_is_byte_identical_and_nothing_escapes(cli, tmp_path, monkeypatch):
    text, truth = _corpus(tmp_path)
    data = tmp_path / "data_raw"
    _ids(truth, data)
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.rglob("*"))
    assert cli("avocado", "build", "--avocado-dir", text, "--data-dir", data).exit_code == 0
    first = {p: p.read_bytes() for p in data.rglob("*_questions.json")}
    created = set(tmp_path.rglob("*")) - before
    assert all(p.is_relative_to(data) for p in created)
    assert {p.name for p in created if p.is_file()} == {
        "train_questions.json",
        "dev_questions.json",
        "test_questions.json",
        "train_outputs.json",
        "dev_outputs.json",
    }
    assert not list(Path("/").glob("abs/evil2.txt")) and not list(tmp_path.rglob("evil*"))
    assert (
        cli(
            "avocado", "build", "--avocado-dir", text, "--data-dir", data, "--workers", "1"
        ).exit_code
        == 0
    )
    assert {p: p.read_bytes() for p in data.rglob("*_questions.json")} == first


def test_duplicate_id_first_archive_wins(cli, tmp_path):
    text, truth = _corpus(tmp_path)
    data = tmp_path / "data_raw"
    dup = email_id(1, 0)
    write_lamp6_ids(data, [dup], questions=1, profile_max=1, splits=("user",))
    result = cli("avocado", "build", "--avocado-dir", text, "--data-dir", data)
    assert result.exit_code == 0, result.err
    built = json.loads((data / "user/LaMP_6/train_questions.json").read_text())
    assert built[0]["input"].endswith(truth[dup][1])
    assert "1 needed email ids appear in more than one archive" in result.err


def test_missing_emails_stop_before_writing(cli, tmp_path):
    text, truth = _corpus(tmp_path)
    data = tmp_path / "data_raw"
    ids = sorted(truth) + ["777-000001-EM.txt", "777-000002-EM.txt"]
    write_lamp6_ids(data, ids, questions=20, profile_max=10, seed=1)
    result = cli("avocado", "build", "--avocado-dir", text, "--data-dir", data)
    assert result.exit_code == 1
    assert "2 of" in result.err and "777-000001-EM.txt, 777-000002-EM.txt" in result.err
    assert "--skip-missing" in result.err
    assert not list(data.rglob("*_questions.json"))

    summary = cli.json(
        "avocado", "build", "--avocado-dir", text, "--data-dir", data, "--skip-missing"
    )
    assert summary["missing"] == 2
    assert summary["dropped_questions"] + summary["dropped_items"] > 0
    for path in data.rglob("*_questions.json"):
        for question in json.loads(path.read_text()):
            assert "777-" not in question["input"]
            assert all("777-" not in item["text"] for item in question["profile"])


def test_corrupt_archive_is_named(cli, tmp_path):
    text, truth = _corpus(tmp_path)
    (text / "500.zip").write_bytes(b"this is not a zip file at all")
    data = tmp_path / "data_raw"
    _ids(truth, data)
    result = cli("avocado", "build", "--avocado-dir", text, "--data-dir", data)
    assert result.exit_code == 1
    assert f"{text / '500.zip'}: not a readable zip archive" in result.err


def test_no_avocado_folder_says_what_and_where(cli, tmp_path):
    result = cli("avocado", "build", "--avocado-dir", tmp_path / "nope", "--data-dir", tmp_path)
    assert result.exit_code == 1
    for needle in (
        "No Avocado folder at",
        "LDC2015T03",
        "catalog.ldc.upenn.edu",
        "avocado-1.0.2/data/text/",
        "--avocado-dir",
    ):
        assert needle in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_no_id_files(cli, tmp_path):
    text, _ = _corpus(tmp_path)
    result = cli("avocado", "build", "--avocado-dir", text, "--data-dir", tmp_path / "empty")
    assert result.exit_code == 1 and "no LaMP-6 id files" in result.err


def test_built_lamp6_ranks(cli, tmp_path):
    text, truth = _corpus(tmp_path)
    data = tmp_path / "data_raw"
    _ids(truth, data)
    assert cli("avocado", "build", "--avocado-dir", text, "--data-dir", data).exit_code == 0
    result = cli("rank", "-t", "6", "-s", "user", "--data-dir", data)
    assert result.exit_code == 0, result.err
    assert (data / "user/LaMP_6/dev_questions_rank.json").exists()


def test_fast_path_equals_the_full_parser_on_plain_ascii_emails():
    import random

    from lampctl.avocado import _parse_plain_ascii, parse_email_fully

    rng = random.Random(0)
    chars = "abc XYZ 01 .,;:!?-_'\"()[]\t"
    taken = 0
    for _ in range(500):
        subject = "".join(rng.choice(chars) for _ in range(rng.randint(0, 40)))
        if rng.random() < 0.3:
            subject = subject[:10] + "\r\n " + subject[10:]  # folded
        body = "".join(rng.choice(chars + "\n\r\n") for _ in range(rng.randint(0, 200)))
        headers = ["From: a@b", f"Subject: {subject}"] if rng.random() < 0.9 else ["From: a@b"]
        if rng.random() < 0.3:
            headers.append("Content-Type: text/plain; charset=us-ascii")
        if rng.random() < 0.2:
            headers.append("Content-Transfer-Encoding: 7bit")
        sep = "\r\n" if rng.random() < 0.5 else "\n"
        raw = (sep.join(headers) + sep + sep + body).encode()
        fast = _parse_plain_ascii(raw)
        if fast is not None:
            taken += 1
            assert fast == parse_email_fully(raw), raw
    assert taken == 500
    # Encoded words, 8-bit bytes and multipart messages take the full parser.
    for name in ("900-000001-EM.txt", "900-000003-EM.txt", "900-000004-EM.txt"):
        assert _parse_plain_ascii(ODD[name][0]) is None
