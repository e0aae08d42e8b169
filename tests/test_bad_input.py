"""Bad input: one line naming the culprit, exit 1, and no output file created or touched."""

from __future__ import annotations

import json

import pytest

GOOD_ITEM = {"id": "i1", "text": "good product", "date": "2012-03-06"}


def _question(**changes):
    question = {"id": "q1", "input": "review: good", "profile": [dict(GOOD_ITEM)]}
    question.update(changes)
    return {k: v for k, v in question.items() if v is not None}


CASES = {
    "missing file": (None, ["-t", "3"], ["not found"]),
    "truncated json": (b'[{"id": "q1", "input": "rev', ["-t", "3"], ["invalid JSON", "truncated"]),
    "invalid json": (b"[{'id': 1}]", ["-t", "3"], ["invalid JSON at line 1"]),
    "html page": (
        b"<!DOCTYPE html><html><body>Not found</body></html>",
        ["-t", "3"],
        ["HTML page"],
    ),
    "empty file": (b"", ["-t", "3"], ["empty"]),
    "non utf-8": (
        '[{"id": "q1", "input": "caf\u00e9"}]'.encode("latin-1"),
        ["-t", "3"],
        ["not UTF-8", "0xe9"],
    ),
    "not a list": (json.dumps({"id": "q1"}), ["-t", "3"], ["expected a JSON list"]),
    "question without id": ([_question(id=None)], ["-t", "3"], ["question #0", "'id'"]),
    "question without input": ([_question(input=None)], ["-t", "3"], ["'q1'", "'input'"]),
    "question without profile": ([_question(profile=None)], ["-t", "3"], ["'q1'", "'profile'"]),
    "item without id": (
        [_question(profile=[{"text": "x"}])],
        ["-t", "3"],
        ["'q1'", "profile item #0"],
    ),
    "item without ranked field": (
        [_question(profile=[{"id": "i9", "date": "2012"}])],
        ["-t", "3", "-r", "bm25"],
        ["'q1'", "'i9'", "'text'"],
    ),
    "missing date under recency": (
        [_question(profile=[{"id": "i9", "text": "x"}])],
        ["-t", "3", "-r", "recency"],
        ["'q1'", "'i9'", "no date"],
    ),
    "malformed date under recency": (
        [_question(profile=[{"id": "i9", "text": "x", "date": "March 2012"}])],
        ["-t", "3", "-r", "recency"],
        ["'i9'", "malformed date 'March 2012'"],
    ),
    "missing date under use-date": (
        [_question(profile=[{"id": "i9", "text": "x"}])],
        ["-t", "3", "-r", "bm25", "--use-date"],
        ["'i9'", "no date"],
    ),
    "lamp-1 without references": (
        [{"id": "q7", "input": 'title "only one" here', "profile": []}],
        ["-t", "1", "-r", "bm25"],
        ["'q7'", "double-quoted", "found 1"],
    ),
    "query marker missing": (
        [_question(input="no marker here")],
        ["-t", "3", "-r", "bm25"],
        ["'q1'", "'review:'"],
    ),
    "duplicate question ids": (
        [_question(), _question()],
        ["-t", "3"],
        ["duplicate question id 'q1'"],
    ),
    "unknown task": ([_question()], ["-t", "LaMP-12"], ["unknown task 'LaMP-12'"]),
    "unknown ranker": ([_question()], ["-t", "3", "-r", "tfidf"], ["unknown ranker 'tfidf'"]),
    "unbuilt lamp-6": (
        [
            {
                "id": "500",
                "input": "147-000874-EM.txt",
                "profile": [{"id": "5000", "text": "147-000137-EM.txt"}],
            }
        ],
        ["-t", "6", "-r", "bm25"],
        ["'500'", "avocado build"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(cli, tmp_path, case):
    content, args, needles = CASES[case]
    source = tmp_path / "questions.json"
    if content is not None:
        data = content if isinstance(content, bytes) else json.dumps(content)
        source.write_bytes(data if isinstance(data, bytes) else data.encode())
    target = tmp_path / "rank.json"
    line = cli.error("rank", *args, "--input", source, "--output", target)
    for needle in needles:
        assert needle in line
    if case not in ("unknown task", "unknown ranker"):
        assert str(source) in line
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) in (["questions.json"], [])


def test_failure_leaves_an_existing_ranking_untouched(cli, tmp_path):
    source = tmp_path / "questions.json"
    target = tmp_path / "rank.json"
    target.write_text('{"old": []}')
    source.write_text(json.dumps([_question(), _question(id="q2", input="nothing")]))
    result = cli("rank", "-t", "3", "-r", "bm25", "-i", source, "-o", target)
    assert result.exit_code == 1 and "'q2'" in result.err
    assert target.read_text() == '{"old": []}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["questions.json", "rank.json"]


def test_bad_user_config_names_the_key(cli, tmp_path, tree):
    config = tmp_path / "mine.yaml"
    config.write_text("tasks:\n  LaMP-3:\n    default_ranker: {time: tfidf}\n")
    result = cli("--config", config, "rank", "-t", "3", "-s", "time", "--data-dir", tree)
    assert result.exit_code == 1
    assert "tasks.LaMP-3.default_ranker.time 'tfidf' is not a ranker" in result.err
    assert str(config) in result.err
    config.write_text("tasks:\n  LaMP-3:\n    rankers: {time: bm25}\n")
    result = cli("--config", config, "rank", "-t", "3", "--data-dir", tree)
    assert result.exit_code == 1 and "unknown key tasks.LaMP-3.rankers" in result.err


def test_a_config_that_is_not_yaml_is_one_line_naming_the_file(cli, tmp_path, tree):
    config = tmp_path / "mine.yaml"
    config.write_text("tasks:\n  LaMP-3: [unclosed\n    default_ranker: {time: bm25}\n")
    result = cli("--config", config, "rank", "-t", "3", "-s", "time", "--data-dir", tree)
    assert result.exit_code == 1
    assert f"{config}: invalid YAML" in result.err
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1


def test_user_config_overrides_default_ranker(cli, tmp_path, tree):
    config = tmp_path / "mine.yaml"
    config.write_text("tasks:\n  LaMP-3:\n    default_ranker: {time: bm25}\n")
    result = cli(
        "--json",
        "rank",
        "-t",
        "3",
        "-s",
        "time",
        "--data-dir",
        tree,
        env={"LAMPCTL_CONFIG": str(config)},
    )
    assert result.exit_code == 0, result.err
    assert json.loads(result.out)["ranker"] == "bm25"


def test_no_questions_files_for_the_task(cli, tmp_path):
    (tmp_path / "user/LaMP_7").mkdir(parents=True)
    (tmp_path / "user/LaMP_7/dev_questions.json").write_text("[]")
    result = cli("rank", "-t", "3", "--data-dir", tmp_path)
    assert result.exit_code == 1 and "no questions files for LaMP-3" in result.err


def test_rank_on_unbuilt_lamp6_folder_says_to_build(cli, tmp_path):
    folder = tmp_path / "user/LaMP_6"
    folder.mkdir(parents=True)
    (folder / "dev_questions_ids.json").write_text("[]")
    result = cli("rank", "-t", "6", "--data-dir", tmp_path)
    assert result.exit_code == 1
    assert "no questions files for LaMP-6" in result.err and "avocado build" in result.err
