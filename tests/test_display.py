"""The live displays (progress bars, the rank-all job table) on a terminal.

Tests run without a TTY, where every display is off; FORCE_COLOR makes rich treat stderr as a
terminal so the display code runs too. Results must not change.
"""

from __future__ import annotations

import json

from lampserver import LampServer, official_mirror
from synth import write_avocado_corpus, write_lamp6_ids

TTY = {"FORCE_COLOR": "1"}


def test_rank_and_rank_all_with_live_displays(cli, tree, tiny_bert):
    result = cli("rank", "-t", "5", "--set", "dev", "--data-dir", tree, env=TTY)
    assert result.exit_code == 0, result.err
    assert "LaMP-5 dev_questions.json" in result.err  # the progress bar's label
    result = cli("rank-all", "-t", "7", "--data-dir", tree, "--checkpoint", tiny_bert, env=TTY)
    assert result.exit_code == 0, result.err
    assert "6 ranked" in result.out and "contriever" in result.err
    assert json.loads((tree / "user/LaMP_7/dev_questions_rank.json").read_text())


def test_download_and_avocado_with_progress(cli, tmp_path):
    server = LampServer(official_mirror()).start()
    try:
        result = cli(
            "download", "--base-url", server.url, "--data-dir", tmp_path / "d", "-t", "7", env=TTY
        )
    finally:
        server.stop()
    assert result.exit_code == 0, result.err
    assert "10/10 files" in result.err
    text = tmp_path / "text"
    truth = write_avocado_corpus(text, archives=2, per_archive=20)
    write_lamp6_ids(tmp_path / "d", sorted(truth), questions=3, profile_max=4)
    result = cli("avocado", "build", "--avocado-dir", text, "--data-dir", tmp_path / "d", env=TTY)
    assert result.exit_code == 0, result.err
    assert "parsing emails" in result.err
