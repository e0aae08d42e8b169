"""Results tables off a terminal: one line per row at full width (``grep`` finds a row whole),
and ``--tsv`` for scripts that want columns without JSON."""

from __future__ import annotations

import json


def test_piped_status_prints_each_row_on_one_line(cli, tree):
    rows = cli.json("status", "--data-dir", tree)["rows"]
    shown = cli("status", "--data-dir", tree)  # CliRunner's stdout is not a terminal
    assert shown.exit_code == 0
    lines = [line for line in shown.out.splitlines() if " LaMP-" in line]
    assert len(lines) == len(rows)
    for row, line in zip(rows, lines, strict=True):
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        assert cells[:3] == [row["task"], row["split"], row["set"]]
        assert cells[-1] == "; ".join([*row["problems"], *row["notes"]])  # whole, unfolded


def test_tsv_gives_a_header_and_one_line_per_row(cli, tree):
    rows = cli.json("stats", "--data-dir", tree, "-t", "3")["rows"]
    for args in (("stats", "--tsv"), ("--tsv", "stats"), ("stats", "--tsv", "-q")):
        result = cli(*args, "--data-dir", tree, "-t", "3")
        assert result.exit_code == 0, result.output
        header, *lines = result.out.splitlines()
        assert header.split("\t")[:4] == ["task", "split", "set", "questions"]
        assert len(lines) == len(rows)
        for row, line in zip(rows, lines, strict=True):
            cells = line.split("\t")
            assert len(cells) == len(header.split("\t"))
            assert cells[:5] == [row["task"], row["split"], row["set"], str(row["questions"]),
                                 str(row["users"])]  # fmt: skip


def test_tsv_sends_notes_to_stderr_and_keeps_cells_on_their_line(cli, tree):
    result = cli("status", "--tsv", "--data-dir", tree, "-t", "5")
    assert result.exit_code == 0, result.output
    header, *lines = result.out.splitlines()
    assert "problems" in header.split("\t")
    assert all(line.count("\t") == header.count("\t") for line in lines)
    assert "rows need attention" in result.err and "rows need attention" not in result.out
    payload = json.loads(cli("--json", "status", "--data-dir", tree, "-t", "5").out)
    assert len(lines) == len(payload["rows"])
