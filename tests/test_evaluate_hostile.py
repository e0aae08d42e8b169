"""`lampctl evaluate` under hostile predictions: one-line errors, finite numbers, valid JSON."""

from __future__ import annotations

import json
import math
import struct
import zipfile
from pathlib import Path

import pytest


def _outputs(task: int, answers: dict[str, str]) -> str:
    return json.dumps(
        {"task": f"LaMP_{task}", "golds": [{"id": i, "output": o} for i, o in answers.items()]}
    )


@pytest.fixture
def golds3(tmp_path: Path) -> Path:
    path = tmp_path / "golds3.json"
    path.write_text(_outputs(3, {"a": "1", "b": "2", "c": "5", "d": "4"}))
    return path


def test_non_finite_ratings_count_as_unparsable_and_json_stays_valid(cli, tmp_path, golds3):
    preds = tmp_path / "p.json"
    preds.write_text(_outputs(3, {"a": "nan", "b": "inf", "c": "-inf", "d": "1e309"}))
    result = cli("--json", "evaluate", "-t", "3", "-p", preds, "--golds", golds3)
    assert result.exit_code == 0, result.err
    payload = json.loads(result.out, parse_constant=lambda c: pytest.fail(f"bare {c}"))
    # Scored as unparsable text: the end of the 1-5 scale farther from each gold.
    errors = [abs(5 - 1), abs(5 - 2), abs(1 - 5), abs(1 - 4)]
    assert payload["outside_labels"] == 4
    assert payload["MAE"] == pytest.approx(sum(errors) / 4)
    assert payload["RMSE"] == pytest.approx(math.sqrt(sum(e * e for e in errors) / 4))
    human = cli("evaluate", "-t", "3", "-p", preds, "--golds", golds3)
    assert "4 unparsable or non-finite ratings" in human.out
    one = tmp_path / "one.json"
    one.write_text(_outputs(3, {"a": "x", "b": "2", "c": "5", "d": "4"}))
    human = cli("evaluate", "-t", "3", "-p", one, "--golds", golds3)
    assert "1 unparsable or non-finite rating (" in human.out


def test_json_output_never_holds_nan():
    from lampctl.cli._common import finite

    value = {"a": [float("nan"), 1.5, (float("inf"),)], "b": {"c": -float("inf")}, "d": "nan"}
    assert json.dumps(finite(value), allow_nan=False) == (
        '{"a": [null, 1.5, [null]], "b": {"c": null}, "d": "nan"}'
    )


def _zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_zip_member_that_inflates_past_the_cap_is_refused(cli, tmp_path, golds3):
    preds = _outputs(3, {"a": "1", "b": "2", "c": "5", "d": "4"}).encode()
    bomb = _zip(tmp_path / "bomb.zip", {"LaMP_3.json": preds + b" " * 5_000_000})
    assert bomb.stat().st_size < 50_000
    gold_zip = _zip(tmp_path / "golds.zip", {"LaMP_3.json": golds3.read_bytes()})
    line = cli.error("evaluate", "-p", bomb, "--golds", gold_zip, "--max-member-bytes", "1000000")
    assert f"{bomb}:LaMP_3.json: inflates to more than 1,000,000 bytes" in line
    within = cli.json("evaluate", "-p", bomb, "--golds", gold_zip)  # the default cap: 256 MiB
    assert within["tasks"]["LaMP-3"]["MAE"] == 0.0


def _patch(path: Path, old: bytes, new: bytes) -> None:
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new))


def test_unreadable_zip_members_are_one_line_errors_naming_the_member(cli, tmp_path, golds3):
    preds = _outputs(3, {"a": "1", "b": "2", "c": "5", "d": "4"}).encode()
    # A bad CRC: one byte of the stored data flipped.
    crc = _zip(tmp_path / "crc.zip", {"LaMP_3.json": preds}, zipfile.ZIP_STORED)
    _patch(crc, b'"b", "output": "2"', b'"b", "output": "3"')
    assert "LaMP_3.json" in cli.error("evaluate", "-p", crc, "--golds", golds3)
    # An encrypted member (the flag set in both headers).
    locked = _zip(tmp_path / "locked.zip", {"LaMP_3.json": preds}, zipfile.ZIP_STORED)
    data = bytearray(locked.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + offset
        data[at : at + 2] = struct.pack("<H", struct.unpack("<H", data[at : at + 2])[0] | 1)
    locked.write_bytes(bytes(data))
    line = cli.error("evaluate", "-p", locked, "--golds", golds3)
    assert f"{locked}:LaMP_3.json: is encrypted" in line
    # A compression method zipfile does not know (99, AES).
    odd = _zip(tmp_path / "odd.zip", {"LaMP_3.json": preds}, zipfile.ZIP_STORED)
    data = bytearray(odd.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = data.index(signature) + offset
        data[at : at + 2] = struct.pack("<H", 99)
    odd.write_bytes(bytes(data))
    line = cli.error("evaluate", "-p", odd, "--golds", golds3)
    assert "LaMP_3.json" in line and "Traceback" not in line


def test_two_files_for_one_task_in_a_zip_is_an_error(cli, tmp_path, golds3):
    preds = _outputs(3, {"a": "1", "b": "2", "c": "5", "d": "4"}).encode()
    both = _zip(tmp_path / "both.zip", {"a/LaMP_3.json": preds, "b/LaMP_3.json": preds})
    line = cli.error("evaluate", "-p", both, "--golds", golds3)
    assert line.startswith(f"Error: {both}:b/LaMP_3.json: a second file for LaMP-3")
    result = cli("--json", "evaluate", "-p", both, "--golds", golds3)
    assert result.exit_code == 1 and "a second file for LaMP-3" in json.loads(result.out)["error"]


def test_a_task_the_zip_does_not_hold_is_an_error(cli, tmp_path, golds3):
    preds = _outputs(3, {"a": "1", "b": "2", "c": "5", "d": "4"}).encode()
    bundle = _zip(tmp_path / "three.zip", {"LaMP_3.json": preds})
    line = cli.error("evaluate", "-t", "LaMP-4", "-p", bundle, "--golds", golds3)
    assert line == f"Error: {bundle}: has no predictions for LaMP-4 (it holds LaMP-3)"


@pytest.mark.parametrize(
    "args",
    [
        ["--bootstrap", str(10**12)],
        ["--permutations", str(10**12)],
        ["--seed", "-1"],
    ],
)
def test_unbounded_or_negative_options_are_usage_errors(cli, tmp_path, golds3, args):
    result = cli("evaluate", "-t", "3", "-p", golds3, "--golds", golds3, *args)
    assert result.exit_code == 2
    assert "Traceback" not in result.err and args[0] in result.err


def test_an_unhashable_user_id_is_named(cli, tmp_path, golds3):
    questions = tmp_path / "q.json"
    users: list = [["u", 1], "u2", "u3", "u4"]
    questions.write_text(
        json.dumps(
            [
                {"id": qid, "input": "x", "profile": [], "user_id": user}
                for qid, user in zip("abcd", users, strict=True)
            ]
        )
    )
    line = cli.error(
        "evaluate", "-t", "3", "-p", golds3, "--golds", golds3, "--by-user",
        "--questions", questions,
    )  # fmt: skip
    assert line == f"Error: {questions}: question 'a' has a user_id that is a list, not a string"
