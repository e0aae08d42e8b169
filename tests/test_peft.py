"""`lampctl peft-data` against a plain implementation written here from the description of the
LaMP authors' PEFT/data/datasets.py (and the seed fork's variant)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import lampctl

LAMP2_INPUT = (
    "Which tag does this movie relate to among the following tags? Just answer with the tag "
    "name without further explanation. tags: [sci-fi, based on a book, comedy, action, twist "
    "ending, dystopia, dark comedy, classic, psychology, fantasy, romance, thought-provoking, "
    "social commentary, violence, true story] description: "
)
LAMP3_INPUT = (
    "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, 3, "
    "4, or 5 without further explanation. review: "
)


def reference_example(task: int, item: dict, rng: random.Random) -> tuple[str, str]:
    if task == 1:
        return f"Write an abstract for this title: {item['title']}", f"{item['abstract']}"
    if task == 2:
        return f"{LAMP2_INPUT}{item['description']}", f"{item['tag']}"
    if task == 3:
        return f"{LAMP3_INPUT}{item['text']}", f"{item['score']}"
    if task == 4:
        return f"Generate a headline for the following article: {item['text']}", f"{item['title']}"
    if task == 5:
        abstract = item["abstract"]
        return f"Generate a title for the following abstract of a paper: {abstract}", item["title"]
    if task == 6:
        return f"Generate a subject for the following email: {item['text']}", f"{item['title']}"
    words = item["text"].split()
    cut = int(len(words) * rng.uniform(0.1, 0.25))
    return f"Complete the following tweet: {' '.join(words[:cut])}", " ".join(words[cut:])


def reference(task, questions, golds, seed=0, ranking=None):
    """Training rows, evaluation rows and users, as the description says, in plain loops."""
    rng = random.Random(seed)
    users, first = [], {}
    for q in questions:
        user = str(q["user_id"]) if "user_id" in q else q["id"]
        if user not in first:
            first[user] = q
            users.append(user)
    train = []
    for user in users:
        q = first[user]
        items = q["profile"]
        if ranking is not None:
            items = [next(i for i in q["profile"] if i["id"] == pid) for pid in ranking[q["id"]]]
        for i, item in enumerate(items):
            source, target = reference_example(task, item, rng)
            train.append(
                {"user_id": user, "id": f"{user}-{q['id']}-{i}", "source": source, "target": target}
            )
    evaluation = []
    for user in users:
        for q in questions:
            if (str(q["user_id"]) if "user_id" in q else q["id"]) == user:
                row = {"user_id": user, "id": q["id"], "source": q["input"]}
                if golds is not None:
                    row["target"] = golds[q["id"]]
                evaluation.append(row)
    return train, evaluation, users


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _golds(folder: Path, set_name: str) -> dict | None:
    path = folder / f"{set_name}_outputs.json"
    if not path.exists():
        return None
    return {g["id"]: g["output"] for g in json.loads(path.read_text())["golds"]}


@pytest.mark.parametrize("task", [1, 2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("split", ["user", "time"])
def test_every_task_and_split_equals_the_reference(cli, tree, task, split):
    summary = cli.json("peft-data", "-t", task, "-s", split, "--data-dir", tree)
    folder = tree / split / f"LaMP_{task}"
    assert {Path(f["output"]).parent for f in summary["files"]} == {folder}
    for entry in summary["files"]:
        set_name = Path(entry["output"]).name.split("_")[0]
        questions = json.loads((folder / f"{set_name}_questions.json").read_text())
        train, evaluation, users = reference(task, questions, _golds(folder, set_name))
        assert _rows(Path(entry["output"])) == train
        assert _rows(Path(entry["eval_output"])) == evaluation
        assert json.loads(Path(entry["users_output"]).read_text()) == users
        assert entry["stats"]["users"] == len(users) and entry["stats"]["rows"] == len(train)
    test_eval = [f for f in summary["files"] if Path(f["output"]).name.startswith("test_")]
    assert all("target" not in row for row in _rows(Path(test_eval[0]["eval_output"])))


def _write(folder: Path, questions: list[dict], golds: dict | None = None) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    q = folder / "q.json"
    q.write_text(json.dumps(questions))
    o = folder / "o.json"
    if golds is not None:
        o.write_text(
            json.dumps(
                {"task": "LaMP_7", "golds": [{"id": k, "output": v} for k, v in golds.items()]}
            )
        )
    return q, o


def _tweets(profile_sizes: list[int], seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    words = "a bb ccc dddd eeeee ffffff".split()
    out = []
    for n, size in enumerate(profile_sizes):
        profile = []
        for i in range(size):
            length = rng.choice([0, 1, 2, 7, 15])  # empty and one-word tweets included
            text = " ".join(rng.choice(words) for _ in range(length))
            profile.append({"id": f"{n}{i:03d}", "text": text, "date": "2020-01-01"})
        out.append({"id": str(700 + n), "input": f"Paraphrase the following tweet: x{n}",
                    "profile": profile, "user_id": 10 + n % 3})  # fmt: skip
    return out


@pytest.mark.parametrize("seed", [0, 7])
def test_lamp7_cuts_with_the_seed_and_users_apart_in_the_file(cli, tmp_path, seed):
    # Users 10, 11, 12 repeat with questions apart in the file, the later ones longer.
    questions = _tweets([3, 4, 0, 6, 8, 9, 1], seed=seed)
    golds = {q["id"]: f"gold {q['id']}" for q in questions}
    q, o = _write(tmp_path, questions, golds)
    out = tmp_path / "train.jsonl"
    args = ("peft-data", "-t", "7", "--questions", q, "--outputs", o, "--output", out)
    assert cli(*args, "--seed", seed).exit_code == 0
    train, evaluation, users = reference(7, questions, golds, seed=seed)
    assert _rows(out) == train
    assert _rows(tmp_path / "train_eval.jsonl") == evaluation
    assert json.loads((tmp_path / "train_users.json").read_text()) == users == ["10", "11", "12"]
    other = tmp_path / "other.jsonl"
    assert cli(*args[:-1], other, "--seed", seed + 1).exit_code == 0
    assert _rows(other) != train  # the seed changes the cuts


def test_ranked_order_follows_the_ranking(cli, tree):
    assert cli("rank", "-t", "4", "-s", "time", "-r", "bm25", "--data-dir", tree).exit_code == 0
    summary = cli.json("peft-data", "-t", "4", "-s", "time", "--set", "dev", "--order", "ranked",
                       "--data-dir", tree)  # fmt: skip
    folder = tree / "time/LaMP_4"
    questions = json.loads((folder / "dev_questions.json").read_text())
    ranking = json.loads((folder / "dev_questions_rank.json").read_text())
    train, _, _ = reference(4, questions, _golds(folder, "dev"), ranking=ranking)
    assert _rows(Path(summary["files"][0]["output"])) == train
    assert "ranked" in summary["files"][0]["output"]


def test_shards_and_user_subsets_give_the_full_runs_rows(cli, tmp_path):
    questions = _tweets([5, 1, 9, 2, 14, 3, 7, 4, 6, 8, 2, 11], seed=3)
    for n, q in enumerate(questions):
        q["user_id"] = 100 + n  # twelve users
    q, _ = _write(tmp_path, questions)
    full = tmp_path / "full.jsonl"
    assert cli("peft-data", "-t", "7", "--questions", q, "--output", full).exit_code == 0
    everything = _rows(full)
    shard_rows, shard_users = [], []
    for index in range(3):
        out = tmp_path / f"s{index}.jsonl"
        args = ("peft-data", "-t", "7", "--questions", q, "--output", out, "--shard", f"{index}/3")
        assert cli(*args).exit_code == 0, cli(*args).err
        rows = _rows(out)
        shard_rows.append(rows)
        shard_users.append(json.loads((tmp_path / f"s{index}_users.json").read_text()))
    assert sum(map(len, shard_users)) == len({u for us in shard_users for u in us}) == 12
    merged = sorted((r for rows in shard_rows for r in rows), key=everything.index)
    assert merged == everything
    loads = [len(rows) for rows in shard_rows]
    assert max(loads) - min(loads) <= 14  # at most the largest user apart
    subset = tmp_path / "users.json"
    subset.write_text(json.dumps(["108", "101", "111"]))
    part = tmp_path / "part.jsonl"
    assert (
        cli("peft-data", "-t", "7", "--questions", q, "--output", part, "--users", subset).exit_code
        == 0
    )
    assert _rows(part) == [r for r in everything if r["user_id"] in {"108", "101", "111"}]


def test_data_dir_names_carry_the_choices_and_reruns_skip(cli, tree):
    args = ("peft-data", "-t", "7", "-s", "time", "--set", "dev", "--data-dir", tree)
    first = cli.json(*args)
    again = cli.json(*args)
    assert again["files"][0]["status"] == "up to date" and first["files"][0]["status"] == "written"
    other = cli.json(*args, "--seed", "3", "--shard", "0/2")
    assert Path(other["files"][0]["output"]).name == "dev_peft_file_seed3_shard-0-of-2.jsonl"
    status = cli.json("status", "-t", "7", "-s", "time", "--set", "dev", "--data-dir", tree)
    assert status["rows"][0]["peft"] == "2 up to date"
    record_file = Path(first["files"][0]["output"]).with_suffix(".meta.json")
    record = json.loads(record_file.read_text())
    del record["stats"]  # a record without the summary: still up to date, shown without counts
    record_file.write_text(json.dumps(record))
    table = cli(*args)
    assert table.exit_code == 0, table.err
    assert "up to date" in table.out


def test_the_forks_variant_with_a_real_tokenizer(cli, tmp_path, tree):
    from test_prompts import MINILM, _sentencepiece_like
    from transformers import AutoTokenizer

    folder = tree / "user/LaMP_5"
    questions = json.loads((folder / "dev_questions.json").read_text())
    golds = _golds(folder, "dev")
    for name in (MINILM, None):
        if name is None:  # the cased SentencePiece-style tokenizer the prompts tests train
            loaded = _sentencepiece_like(_Factory(tmp_path), clean_up=False)
            name = str(loaded.ref.name_or_path)
        tok = AutoTokenizer.from_pretrained(name)
        out = tmp_path / f"fork-{abs(hash(name))}.jsonl"
        result = cli("peft-data", "-t", "5", "--questions", folder / "dev_questions.json",
                     "--outputs", folder / "dev_outputs.json", "--output", out, "--tokenizer", name,
                     "--max-length", "12", "--val-ratio", "0.3", "--max-items", "3")  # fmt: skip
        assert result.exit_code == 0, result.err
        train, _, _ = reference(5, questions, golds)
        expected = []
        for user in dict.fromkeys(r["user_id"] for r in train):
            rows = [r for r in train if r["user_id"] == user]
            n = len(rows)
            keep = int(n * 0.3)
            if keep == n or n - keep == 1:
                keep = int(n * 0.5)
            for part, chosen in (("train", rows[:keep]), ("val", rows[keep:])):
                for row in chosen[:3]:
                    ids = tok(row["source"], max_length=12, truncation=True)["input_ids"]
                    source = tok.decode(ids, skip_special_tokens=True)
                    expected.append({**row, "source": source, "part": part})
        assert _rows(out) == expected


class _Factory:
    """Enough of pytest's tmp_path_factory for the prompts tests' tokenizer maker."""

    def __init__(self, root: Path) -> None:
        self.root, self.count = root, 0

    def mktemp(self, name: str) -> Path:
        self.count += 1
        path = self.root / f"{name}{self.count}"
        path.mkdir()
        return path


def test_bad_inputs_are_one_line_and_write_nothing(cli, tmp_path):
    base = _tweets([3, 2])
    cases = {
        "no profile": ([{**base[0], "profile": None}], "'profile'"),
        "item without text": (
            [{**base[0], "profile": [{"id": "x1", "date": "2020"}]}],
            "question '700', profile item 'x1' has no 'text' field",
        ),
    }
    for name, (questions, needle) in cases.items():
        folder = tmp_path / name.replace(" ", "-")
        q, _ = _write(folder, questions)
        line = cli.error("peft-data", "-t", "7", "--questions", q, "--output", folder / "t.jsonl")
        assert needle in line, line
        assert sorted(p.name for p in folder.iterdir()) == ["q.json"]
    q, _ = _write(tmp_path / "rank", base)
    ranking = tmp_path / "rank" / "r.json"
    whole = ["0000", "0001", "0002"]
    for bad, needle in (
        ({"700": whole}, "no ranking for question '701'"),
        ({"700": ["nope"], "701": []}, "ranks profile id 'nope'"),
    ):
        ranking.write_text(json.dumps(bad))
        out = tmp_path / "rank" / "t.jsonl"
        args = ("--ranking", ranking, "--order", "ranked", "--output", out)
        line = cli.error("peft-data", "-t", "7", "--questions", q, *args)
        assert needle in line, line
    users = tmp_path / "users.json"
    users.write_text(json.dumps(["10", "99"]))
    args = ("--users", users, "--output", tmp_path / "u.jsonl")
    line = cli.error("peft-data", "-t", "7", "--questions", q, *args)
    assert "user(s) the questions file does not have (first: '99')" in line
    for option, value in (("--val-ratio", "1.5"), ("--val-ratio", "0"), ("--max-items", "0")):
        result = cli("peft-data", "-t", "7", "--questions", q, "--output", tmp_path / "v.jsonl",
                     option, value)  # fmt: skip
        assert result.exit_code == 2, (option, value, result.err)


def test_lamp6_before_avocado_build_says_so(cli, tmp_path):
    data = tmp_path / "data"
    (data / "user/LaMP_6").mkdir(parents=True)
    (data / "user/LaMP_6/dev_questions_ids.json").write_text("[]")
    line = cli.error("peft-data", "-t", "6", "-s", "user", "--set", "dev", "--data-dir", data)
    assert "not built yet (run 'lampctl avocado build')" in line
    line = cli.error("peft-data", "-t", "6", "--data-dir", data)
    assert "not built yet" in line


def test_read_users_streams_one_user_at_a_time(cli, tmp_path):
    questions = _tweets([3, 4, 2, 5])
    q, _ = _write(tmp_path, questions)
    out = tmp_path / "t.jsonl"
    run = lampctl.peft_data(["7"], questions=q, output=out)
    assert run.results[0].status == "written"
    grouped = list(lampctl.read_users(out))
    assert [user for user, _ in grouped] == ["10", "11", "12"]
    assert [row for _, rows in grouped for row in rows] == _rows(out)


def test_fields_are_formatted_as_an_f_string_formats_them(cli, tmp_path):
    """Only the fields the templates name are decoded, and each as stored: numbers, booleans,
    lists, non-ASCII text and JSON escapes give what the reference's f-strings give."""
    values = [5, 4.5, True, ["a", "b"], 'caf\u00e9 "quoted" back\\slash\nline \u2603', "", 0]
    profile = [
        {"id": f"p{i}", "text": f"review {i} {value}", "score": value, "extra": {"deep": [i]}}
        for i, value in enumerate(values)
    ]
    questions = [{"id": "q1", "input": "review: x", "profile": profile, "user_id": 3}]
    q, _ = _write(tmp_path, questions)
    raw = q.read_text()
    q.write_text(raw.replace("\\u00e9", "\u00e9"))  # one value stored unescaped, one escaped
    out = tmp_path / "t.jsonl"
    assert cli("peft-data", "-t", "3", "--questions", q, "--output", out).exit_code == 0
    train, _, _ = reference(3, questions, None)
    assert _rows(out) == train
    assert [r["target"] for r in train] == [f"{v}" for v in values]


def test_the_record_hashes_what_was_written_and_what_was_read(cli, tmp_path, monkeypatch):
    """The training rows are hashed while written and a big input in a forked process while it
    is read: the record's sha256 values equal hashing the files afterwards."""
    import hashlib

    from lampctl import ledger
    from lampctl.parallel import fork_is_safe, usable_cpus

    monkeypatch.setattr(ledger, "HASH_FORK_MIN_BYTES", 1)  # fork for any size
    q, _ = _write(tmp_path, _tweets([40, 3, 25, 60]))
    out = tmp_path / "t.jsonl"
    pending = ledger.PendingFingerprints(out, {"questions": q})
    forked = pending.forked is not None
    assert (
        pending.result()["questions"]["input_sha256"] == hashlib.sha256(q.read_bytes()).hexdigest()
    )
    assert forked == (fork_is_safe() and usable_cpus() > 1)
    run = lampctl.peft_data(["7"], questions=q, output=out)
    assert run.results[0].status == "written"
    record = json.loads((tmp_path / "t.meta.json").read_text())
    assert record["output_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert (
        record["sources"]["questions"]["input_sha256"] == hashlib.sha256(q.read_bytes()).hexdigest()
    )
    assert lampctl.peft_data(["7"], questions=q, output=out).results[0].status == "up to date"


def test_a_questions_file_read_in_several_processes_gives_the_same_rows(cli, tmp_path, monkeypatch):
    """Big files are decoded in pieces, one process per core (lampctl.io.jsonsplit); here pieces
    of any size and four cores, so a small file takes that path: rows equal the reference."""
    from lampctl import parallel
    from lampctl.io import jsonsplit

    monkeypatch.setattr(jsonsplit, "MIN_PART_BYTES", 1)
    monkeypatch.setattr(parallel, "usable_cpus", lambda: 4)
    monkeypatch.setattr(parallel, "fork_is_safe", lambda: True)
    split = []
    decode_parts = jsonsplit.decode_parts
    monkeypatch.setattr(
        jsonsplit, "decode_parts", lambda *a: split.append(decode_parts(*a)) or split[-1]
    )
    questions = _tweets([5, 1, 9, 2, 14, 3, 7, 4, 6, 8, 2, 11], seed=5)
    golds = {q["id"]: f"gold {q['id']}" for q in questions}
    q, o = _write(tmp_path, questions, golds)
    out = tmp_path / "train.jsonl"
    result = cli("peft-data", "-t", "7", "--questions", q, "--outputs", o, "--output", out)
    assert result.exit_code == 0, result.err
    assert len(split) == 1 and split[0] is not None and len(split[0]) == len(questions)
    train, evaluation, users = reference(7, questions, golds)
    assert _rows(out) == train
    assert _rows(tmp_path / "train_eval.jsonl") == evaluation
    assert json.loads((tmp_path / "train_users.json").read_text()) == users


def test_template_conversions_and_specs_format_as_an_f_string_does(cli, tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text(
        "tasks:\n  LaMP-4:\n    peft:\n"
        '      source: "Headline {{x}}: {text!r} / {title:>12}"\n'
        '      target: "{title}|{head}"\n'
    )
    questions = [
        {"id": "q1", "input": "i", "user_id": 1, "profile": [
            {"id": "a", "text": "it's \"so\"", "title": "short", "head": 3},
            {"id": "b", "text": "ünï", "title": "a much longer title", "head": "h"},
        ]},
    ]  # fmt: skip
    q, _ = _write(tmp_path, questions)
    out = tmp_path / "t.jsonl"
    result = cli("--config", config, "peft-data", "-t", "4", "--questions", q, "--output", out)
    assert result.exit_code == 0, result.err
    expected = [
        {"user_id": "1", "id": f"1-q1-{i}",
         "source": f"Headline {{x}}: {item['text']!r} / {item['title']:>12}",
         "target": f"{item['title']}|{item['head']}"}
        for i, item in enumerate(questions[0]["profile"])
    ]  # fmt: skip
    assert _rows(out) == expected
    config.write_text('tasks:\n  LaMP-4:\n    peft:\n      source: "{text.upper}"\n')
    result = cli("--config", config, "peft-data", "-t", "4", "--questions", q, "--output", out)
    assert result.exit_code == 1 and "{text.upper} is not an item field name" in result.err
    assert str(config) in result.err


def test_an_empty_shard_writes_empty_files(cli, tmp_path):
    # A SLURM array of more tasks than users: the spare tasks succeed with nothing to do.
    questions = _tweets([3, 4], seed=1)
    for n, q in enumerate(questions):
        q["user_id"] = 100 + n  # two users, five shards
    q, _ = _write(tmp_path, questions)
    out = tmp_path / "s4.jsonl"
    summary = cli.json("peft-data", "-t", "7", "--questions", q, "--output", out, "--shard", "4/5")
    assert summary["files"][0]["stats"]["users"] == 0
    assert out.read_bytes() == b"" and (tmp_path / "s4_eval.jsonl").read_bytes() == b""
    assert json.loads((tmp_path / "s4_users.json").read_text()) == []
