"""LongLaMP through the registry: download from a local copy of the hub repo (parquet files
and a README configs: block, as 'hf download' leaves it), status, rank, evaluate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from synth import LONGLAMP_CONFIGS, WORDS, write_longlamp_repo

pq = pytest.importorskip("pyarrow.parquet")

TASKS = {"LongLaMP-2": "abstract_generation", "LongLaMP-3": "product_review",
         "LongLaMP-4": "topic_writing"}  # fmt: skip
SPLITS = {"user": "user", "time": "temporal"}
SETS = {"train": "train", "dev": "val", "test": "test"}


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return write_longlamp_repo(tmp_path_factory.mktemp("hub") / "LongLaMP", rows=7)


@pytest.fixture
def data(cli, repo, tmp_path) -> Path:
    result = cli("download", "-t", "LongLaMP", "--source", repo, "--data-dir", tmp_path / "d")
    assert result.exit_code == 0, result.output
    return tmp_path / "d"


def _parquet_rows(repo: Path, config: str, split: str) -> list[dict]:
    rows = []
    for path in sorted((repo / config).glob(f"{split}-*.parquet")):
        rows += pq.read_table(path).to_pylist()
    return rows


def test_download_converts_every_config_into_the_layout(data, repo):
    for task, base in TASKS.items():
        for split, setting in SPLITS.items():
            for set_name, hub_split in SETS.items():
                config = f"{base}_{setting}"
                folder = data / split / task.replace("-", "_")
                questions = json.loads((folder / f"{set_name}_questions.json").read_text())
                outputs = json.loads((folder / f"{set_name}_outputs.json").read_text())
                rows = _parquet_rows(repo, config, hub_split)
                # the reference, from the description: ids from config, split and row number;
                # items keep their own id, else {question id}-{item number}
                assert [q["id"] for q in questions] == [
                    f"{config}-{hub_split}-{n}" for n in range(len(rows))
                ]
                for question, row in zip(questions, rows, strict=True):
                    assert question["input"] == row["input"]
                    for number, (item, raw) in enumerate(
                        zip(question["profile"], row["profile"], strict=True)
                    ):
                        expected = dict(raw, id=raw.get("id") or f"{question['id']}-{number}")
                        assert item == expected
                assert outputs["task"] == task.replace("-", "_")
                assert outputs["golds"] == [
                    {"id": q["id"], "output": r["output"]}
                    for q, r in zip(questions, rows, strict=True)
                ]
    manifest = json.loads((data / "MANIFEST.json").read_text())["files"]
    entry = manifest["user/LongLaMP_2/dev_questions.json"]
    assert entry["url"].endswith("/abstract_generation_user/val") and entry["rows"] == 7


def test_a_rerun_is_skipped_and_a_changed_source_redone(cli, data, repo, tmp_path):
    args = ("download", "-t", "LongLaMP-4", "--split", "user", "--set", "dev", "--source", repo,
            "--data-dir", data)  # fmt: skip
    again = cli.json(*args)
    assert again["skipped"] == 2 and again["downloaded"] == 0
    assert cli.json(*args, "--verify")["verified"] == 2  # hashed again, and equal
    questions = data / "user/LongLaMP_4/dev_questions.json"
    written = questions.read_bytes()
    questions.write_bytes(written.replace(b"reddit", b"Reddit", 1))  # same size, edited
    redone = cli.json(*args)
    assert redone["downloaded"] == 2  # the set's two files are made together
    notes = {f["rel"]: f["fixes"] for f in redone["files"]}
    assert notes["user/LongLaMP_4/dev_questions.json"] == [
        "changed since its conversion: converted again"]  # fmt: skip
    assert notes["user/LongLaMP_4/dev_outputs.json"] == []
    assert questions.read_bytes() == written
    status = cli.json("status", "-t", "LongLaMP", "--data-dir", data)
    rows = {(r["task"], r["split"], r["set"]): r for r in status["rows"]}
    assert len(rows) == 24  # LongLaMP-1 too: not built here (it needs Avocado and id files)
    assert rows[("LongLaMP-1", "user", "dev")]["questions"] == "missing"
    assert rows[("LongLaMP-4", "user", "test")]["outputs"] == "present"  # test golds published
    assert rows[("LongLaMP-4", "user", "dev")]["verified"] == "verified"


def test_bad_sources_are_one_line_and_write_nothing(cli, repo, tmp_path):
    import shutil

    import pyarrow as pa

    def copy(name: str) -> Path:
        return Path(shutil.copytree(repo, tmp_path / name))

    no_column = copy("nocol")
    for path in (no_column / "topic_writing_user").glob("val-*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["output"]), path)
    cut = copy("cut")
    victim = sorted((cut / "product_review_user").glob("train-*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[:100])
    no_field = copy("nofield")
    for path in (no_field / "abstract_generation_temporal").glob("test-*.parquet"):
        rows = pq.read_table(path).to_pylist()
        for row in rows:
            row["profile"] = [{"title": i["title"]} for i in row["profile"]]
        pq.write_table(pa.Table.from_pylist(rows), path)
    null_input = copy("nullinput")  # found only while converting, in the last set read
    last = sorted((null_input / "topic_writing_temporal").glob("test-*.parquet"))[-1]
    rows = pq.read_table(last).to_pylist()
    rows[-1]["input"] = None  # the very last row of the run
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(last)), last)
    not_repo = tmp_path / "empty"
    not_repo.mkdir()
    cases = [
        (no_column, "LongLaMP-4", "topic_writing_user/val has no 'output' column (its columns: "),
        (cut, "LongLaMP-3", "not a readable parquet file"),
        (no_field, "LongLaMP-2",
         "abstract_generation_temporal/test profile items have no 'abstract' field (their "
         "fields: title)"),
        (not_repo, "LongLaMP-2", "not a Hugging Face dataset repo"),
        (null_input, "LongLaMP-4", "topic_writing_temporal/test row 6 has no text input"),
    ]  # fmt: skip
    for source, task, message in cases:
        out = tmp_path / f"out-{source.name}"
        line = cli.error("download", "-t", task, "--source", source, "--data-dir", out)
        assert message in line, line
        assert not out.exists() or not any(out.rglob("*.json")), line
        assert not out.exists() or not list(out.glob(".*staging*"))  # nothing left behind
    # earlier files stay as they were: a good run, then a bad one over it
    good = tmp_path / "good"
    assert cli("download", "-t", "LongLaMP-4", "--source", repo, "--data-dir", good).exit_code == 0
    before = {p: p.read_bytes() for p in good.rglob("*.json")}
    cli.error("download", "-t", "LongLaMP-4", "--source", null_input, "--data-dir", good)
    assert {p: p.read_bytes() for p in good.rglob("*.json")} == before


def test_lamp_only_options_and_hub_options_are_kept_apart(cli, repo, tmp_path):
    wrong = cli("download", "-t", "LaMP-3", "--source", repo, "--data-dir", tmp_path / "d")
    assert wrong.exit_code == 2 and "name a LongLaMP task too" in wrong.err
    assert "--source" in wrong.err
    mirror = cli("download", "-t", "LongLaMP-2", "--base-url", "http://127.0.0.1:9/",
                 "--data-dir", tmp_path / "d")  # fmt: skip
    assert mirror.exit_code == 2 and "LaMP's file server" in mirror.err
    both = cli("download", "-t", "LongLaMP-2", "--source", repo, "--revision", "abc",
               "--data-dir", tmp_path / "d")  # fmt: skip
    assert both.exit_code == 2 and "--revision" in both.err
    assert not (tmp_path / "d").exists()
    wrong_split = cli.error("download", "-t", "LongLaMP-2", "--split", "temporal", "--source",
                            repo, "--data-dir", tmp_path / "d")  # fmt: skip
    assert "unknown split 'temporal'" in wrong_split


def test_rank_uses_the_official_queries_and_corpus(cli, data):
    from rank_bm25 import BM25Okapi

    for task, query_of, text_of in (
        ("LongLaMP-3", lambda q: q["input"],
         lambda i: f"{i['overall']} {i['summary']} {i['description']} {i['reviewText']}"),
        ("LongLaMP-2", lambda q: q["input"].split("items:", 1)[1].strip(),
         lambda i: f"{i['title']} {i['abstract']}"),
        ("LongLaMP-4", lambda q: q["input"], lambda i: f"{i['summary']} {i['content']}"),
    ):  # fmt: skip
        result = cli("rank", "-t", task, "--split", "user", "--set", "dev", "-r", "bm25",
                     "--data-dir", data)  # fmt: skip
        assert result.exit_code == 0, result.output
        folder = data / "user" / task.replace("-", "_")
        ranking = json.loads((folder / "dev_questions_rank.json").read_text())
        for question in json.loads((folder / "dev_questions.json").read_text()):
            bm25 = BM25Okapi([text_of(i).split() for i in question["profile"]])
            scores = bm25.get_scores(query_of(question).split())
            order = sorted(range(len(scores)), key=lambda n: (-scores[n], n))
            assert ranking[question["id"]] == [question["profile"][n]["id"] for n in order]


def test_recency_is_profile_order_newest_last(cli, data):
    result = cli("rank", "-t", "LongLaMP-4", "--split", "time", "--set", "test", "-r",
                 "recency", "--data-dir", data)  # fmt: skip
    assert result.exit_code == 0, result.output
    folder = data / "time/LongLaMP_4"
    ranking = json.loads((folder / "test_questions_rank.json").read_text())
    for question in json.loads((folder / "test_questions.json").read_text()):
        assert ranking[question["id"]] == [i["id"] for i in question["profile"][::-1]]


def test_the_family_name_and_config_names_resolve(cli):
    from lampctl.catalog.bundled import cached_registry

    found = cached_registry(None)
    assert found.expand(["LongLaMP"]) == ["LongLaMP-1", *TASKS]
    assert found.task("abstract_generation").name == "LongLaMP-2"
    assert found.task("3").name == "LaMP-3"  # a bare number stays LaMP's
    assert set(LONGLAMP_CONFIGS) == set(TASKS.values())


def _predictions(data: Path, task: str, tmp_path: Path, empty: int = 1) -> tuple[Path, list]:
    golds = json.loads((data / "user" / task.replace("-", "_") / "dev_outputs.json").read_text())
    rows = [{"id": g["id"], "output": " ".join(g["output"].split()[::2])} for g in golds["golds"]]
    for row in rows[:empty]:
        row["output"] = ""
    path = tmp_path / "predictions.json"
    path.write_text(json.dumps({"task": task.replace("-", "_"), "golds": rows}))
    return path, list(zip(rows, golds["golds"], strict=True))


def test_evaluate_equals_sacrebleu_and_rouge_score(cli, data, tmp_path):
    import sacrebleu
    from rouge_score import rouge_scorer

    path, pairs = _predictions(data, "LongLaMP-3", tmp_path)
    args = ("evaluate", "-t", "LongLaMP-3", "-p", path, "--split", "user", "--set", "dev",
            "--data-dir", data, "--no-meteor")  # fmt: skip
    found = cli.json(*args)
    preds = [p["output"].strip() for p, _ in pairs]
    golds = [g["output"].strip() for _, g in pairs]
    assert found["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [golds]).score, abs=1e-9)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"])
    for name, key in (("rouge-1", "rouge1"), ("rouge-2", "rouge2"), ("rouge-L", "rougeL"),
                      ("rouge-LSum", "rougeLsum")):  # fmt: skip
        mean = sum(scorer.score(g, p)[key].fmeasure for p, g in zip(preds, golds, strict=True))
        assert found[name] == pytest.approx(mean / len(preds), abs=1e-12)
    assert "meteor" not in found["metrics"] and found["outside_labels"] == 1  # one empty
    # the official evaluate_data's drop, on request: the empty pair leaves the corpus
    dropped = cli.json(*args, "--drop-empty")
    kept = [(p, g) for p, g in zip(preds, golds, strict=True) if p]
    bleu = sacrebleu.corpus_bleu([p for p, _ in kept], [[g for _, g in kept]]).score
    assert dropped["bleu"] == pytest.approx(bleu, abs=1e-9) and dropped["dropped"] == 1
    assert dropped["bleu"] != found["bleu"]
    table = cli(*args, "--drop-empty", "--bootstrap", "20", "--by-user").out
    assert "1 empty prediction (scored 0)" in table and "1 pair with an empty side" in table
    same = cli.json(*args, "--compare", path, "--permutations", "50")["compare"]
    assert set(same) == {"bleu", "rouge-1", "rouge-2", "rouge-L", "rouge-LSum"}
    assert all(c["difference"] == 0 and c["p_value"] == 1 for c in same.values())


def test_meteor_without_nltk_data_is_one_line_naming_the_way(cli, data, tmp_path, monkeypatch):
    import nltk

    def nothing(resource, *args, **kwargs):
        raise LookupError(resource)

    monkeypatch.setattr(nltk.data, "find", nothing)
    path, _ = _predictions(data, "LongLaMP-4", tmp_path)
    line = cli.error("evaluate", "-t", "LongLaMP-4", "-p", path, "--split", "user", "--set",
                     "dev", "--data-dir", data)  # fmt: skip
    assert "python -m nltk.downloader wordnet punkt_tab" in line and "--no-meteor" in line


def test_meteor_is_nltks_meteor_score_per_question(cli, data, tmp_path, monkeypatch):
    """The plumbing, with NLTK's own meteor_score: WordNet itself is not installable offline,
    so a WordNet without synonyms and whitespace words stand in for NLTK's data."""
    from nltk.translate.meteor_score import meteor_score

    from lampctl.scoring import generation

    class NoSynonyms:
        def synsets(self, *args, **kwargs):
            return []

    monkeypatch.setattr(generation, "meteor_ready", lambda: None)
    monkeypatch.setattr(generation, "_wordnet", NoSynonyms)
    monkeypatch.setattr(generation, "_word_tokenize", str.split)
    path, pairs = _predictions(data, "LongLaMP-2", tmp_path)
    found = cli.json("evaluate", "-t", "LongLaMP-2", "-p", path, "--split", "user", "--set",
                     "dev", "--data-dir", data)  # fmt: skip
    expected = [
        meteor_score([g["output"].strip().split()], p["output"].strip().split(),
                     wordnet=NoSynonyms(), alpha=0.9, beta=3, gamma=0.5)
        for p, g in pairs
    ]  # fmt: skip
    assert found["meteor"] == pytest.approx(sum(expected) / len(expected), abs=1e-12)
    assert list(found["metrics"]) == ["bleu", "rouge-1", "rouge-2", "rouge-L", "rouge-LSum",
                                      "meteor"]  # fmt: skip


FORKED_SCORING = """
import json, random, sys
from lampctl import parallel
from lampctl.scoring import generation

class NoSynonyms:
    def synsets(self, *args, **kwargs):
        return []

generation.meteor_ready = lambda: None
generation._wordnet = NoSynonyms
generation._word_tokenize = str.split
started = []

class Counted(parallel.Forked):
    def __init__(self, *args):
        started.append(1)
        super().__init__(*args)

parallel.Forked = Counted
rng = random.Random(0)
words = "the a model user data paper good bad . ,".split()
def text():
    return " ".join(rng.choice(words) for _ in range(rng.randint(0, 30)))
golds = [text() for _ in range(1203)]
predictions = [text() for _ in range(1203)]
one = generation.score_rows(predictions, golds, workers=1)
forked_before = len(started)
three = generation.score_rows(predictions, golds, workers=3)
print(json.dumps({"same": bool((one == three).all()), "rows": len(three), "before": forked_before,
                  "children": len(started), "torch": "torch" in sys.modules}))
"""


def test_long_lists_are_scored_in_forked_pieces_with_the_same_rows():
    """A fresh process (fork is refused where torch is loaded, as in this one): 1,203 pairs
    scored in one process and in three at once give the same numbers, row for row."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", FORKED_SCORING], capture_output=True,
                          text=True, check=True)  # fmt: skip
    found = json.loads(done.stdout)
    assert found == {"same": True, "rows": 1203, "before": 0, "children": 2, "torch": False}


def test_a_forked_scorer_opens_its_own_wordnet_files(tmp_path):
    """NLTK's WordNet seeks the data files it holds open; a forked child shares those files'
    offsets with its parent, so a child drops them from WordNet's map (WordNet reopens its
    own) and keeps them open: closing one would move the shared offset."""
    from lampctl.scoring import generation

    scorer = generation._RowScorer(meteor=False, drop_empty=False)
    handle = (tmp_path / "data.noun").open("w+")
    scorer.files = {"n": handle}
    scorer(["a b"], ["a c"])  # in the parent: the map stays
    assert scorer.files == {"n": handle}
    scorer.parent = -1  # as seen from a child
    rows = scorer(["a b"], ["a c"])
    assert scorer.files == {} and not handle.closed and rows.shape == (1, generation.WIDTH)
    assert generation._INHERITED.pop() == {"n": handle}
    handle.close()


FRAMES = {  # LongLaMP's prompts.py, is_ranked=True, written out from its description
    "LongLaMP-2": (lambda i, t: f'"{t}" is the abstract for the title "{i["title"]}"',
                   ". Use the above abstracts as context to understand the style and language "
                   "of the user and, ", "abstract"),
    "LongLaMP-3": (lambda i, t: f'"{i["overall"]}" is a rating for the product with description '
                   f'"{i["description"]}". "{i["summary"]}" is summary for "{t}" ',
                   ". Following the given patterns ", "reviewText"),
    "LongLaMP-4": (lambda i, t: f'"{i["summary"]}" is a summary for "{t}" ',
                   ". Following the given patterns, ", "content"),
}  # fmt: skip


def test_prompts_are_the_official_strings(cli, data, tiny_bert):
    from transformers import AutoTokenizer

    tokenizers = {}
    for name, limit in (("short", 24), ("long", 100_000)):  # the round trip cuts, or not
        tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
        tokenizer.model_max_length = limit
        tokenizer.save_pretrained(tiny_bert.parent / name)
        tokenizers[name] = tokenizer
    folder = data / "user/LongLaMP_2"
    questions = json.loads((folder / "dev_questions.json").read_text())
    words = [WORDS[n % len(WORDS)] for n in range(800)]  # past the 750-word cut
    long = "  ".join(words)  # double spaces: the cut re-joins with one
    questions[0]["profile"][-1]["abstract"] = long  # the newest: recency ranks it first
    (folder / "dev_questions.json").write_text(json.dumps(questions))
    cut_seen = False
    for task, (frame, tail, field) in FRAMES.items():
        name = "long" if task == "LongLaMP-2" else "short"  # the 750-word cut shows unmasked
        tokenizer = tokenizers[name]
        folder = data / "user" / task.replace("-", "_")
        ranker = "recency" if task == "LongLaMP-2" else "bm25"
        assert cli("rank", "-t", task, "--split", "user", "--set", "dev", "-r", ranker,
                   "--data-dir", data, "--force").exit_code == 0  # fmt: skip
        result = cli.json("prompts", "-t", task, "--split", "user", "--set", "dev", "-k", "2",
                          "--data-dir", data, "--tokenizer", tiny_bert.parent / name)  # fmt: skip
        (made,) = result["files"] if "files" in result else [result]
        path = Path(made["output"])
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        ranking = json.loads((folder / "dev_questions_rank.json").read_text())
        golds = {g["id"]: g["output"] for g in
                 json.loads((folder / "dev_outputs.json").read_text())["golds"]}  # fmt: skip
        for row, question in zip(rows, json.loads((folder / "dev_questions.json").read_text()),
                                 strict=True):  # fmt: skip
            by_id = {i["id"]: i for i in question["profile"]}
            items = [by_id[i] for i in ranking[question["id"]][:2]]
            parts = []
            for item in items:
                text = item[field]
                if task == "LongLaMP-2":
                    text = " ".join(text.split()[:750])
                ids = tokenizer(text, max_length=None, truncation=True)["input_ids"]
                text = tokenizer.batch_decode([ids], skip_special_tokens=True)[0]
                parts.append(frame(item, text))
            assert row["source"] == ", and ".join(parts) + tail + question["input"]
            if any(item.get("abstract") == long for item in items):
                cut_seen = True
                assert row["source"].startswith(f'"{" ".join(words[:750])}" is the abstract')
            assert row["target"] == golds[question["id"]]
    assert cut_seen  # the long abstract was among some question's items


def test_peft_data_rows_follow_the_registry_templates(cli, data):
    folder = data / "user/LongLaMP_3"
    assert cli("peft-data", "-t", "LongLaMP-3", "--split", "user", "--set", "dev",
               "--data-dir", data).exit_code == 0  # fmt: skip
    rows = [json.loads(line) for line in (folder / "dev_peft_file.jsonl").read_text().splitlines()]
    expected = []
    for question in json.loads((folder / "dev_questions.json").read_text()):
        user = question.get("user_id", question["id"])  # each row its own user here
        for number, item in enumerate(question["profile"]):
            expected.append({
                "user_id": user,
                "id": f"{user}-{question['id']}-{number}",
                "source": "Generate the review text written by a reviewer who has given an "
                f"overall rating of {item['overall']} for a product with description "
                f'"{item["description"]}". The summary of the review text is "{item["summary"]}".',
                "target": item["reviewText"],
            })  # fmt: skip
    assert rows == expected
    assert all(" rating of " in r["source"] and ".0 for a product" in r["source"] for r in rows)


def test_merge_writes_the_sorted_list_the_official_scripts_read(cli, data):
    folder = data / "time/LongLaMP_2"
    assert cli("rank", "-t", "LongLaMP-2", "--split", "time", "--set", "train", "-r", "recency",
               "--data-dir", data).exit_code == 0  # fmt: skip
    assert cli("merge", "-t", "LongLaMP-2", "--split", "time", "--set", "train",
               "--data-dir", data).exit_code == 0  # fmt: skip
    merged = json.loads((folder / "train_questions_merged.json").read_text())
    questions = json.loads((folder / "train_questions.json").read_text())
    golds = json.loads((folder / "train_outputs.json").read_text())["golds"]
    assert [m["input"] for m in merged] == [q["input"] for q in questions]
    assert [m["output"] for m in merged] == [g["output"] for g in golds]
    for m, q in zip(merged, questions, strict=True):
        assert m["profile"] == q["profile"][::-1]  # ranked newest first, whole items


def test_model_step_defaults_come_from_the_task(cli, data, tmp_path, tiny_bert):
    from synth import write_tiny_t5

    from lampctl.api.modelling import _with_task_defaults

    assert _with_task_defaults("LongLaMP-4", None, {"max_new_tokens": None},
                               ("max_new_tokens", "max_length")) == {
        "max_new_tokens": 512, "max_length": 1024}  # fmt: skip
    assert _with_task_defaults("LongLaMP-4", None, {"max_new_tokens": 9}, ("max_new_tokens",)) == {
        "max_new_tokens": 9}  # fmt: skip
    assert _with_task_defaults("LaMP-4", None, {}, ("max_new_tokens",)) == {}
    t5 = write_tiny_t5(tmp_path / "t5")
    sel = ("-t", "LongLaMP-4", "--split", "user", "--set", "dev", "--data-dir", data)
    assert cli("rank", *sel, "-r", "bm25").exit_code == 0
    assert cli("prompts", *sel, "-k", "1", "--tokenizer", t5).exit_code == 0
    made = cli.json("generate", "-m", t5, *sel, "--num-beams", "1")
    assert made["output"].endswith("_beams1_tokens512.json")


def test_the_hub_is_read_at_the_revision_through_huggingface_hub(cli, repo, tmp_path,
                                                                 monkeypatch):  # fmt: skip
    import httpx
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError, RevisionNotFoundError

    asked = []

    def snapshot(repo_id, **options):
        asked.append((repo_id, options))
        if options["revision"] == "missing":
            response = httpx.Response(404, request=httpx.Request("GET", "https://hf.co/x"))
            raise RevisionNotFoundError("404", response=response)
        if options["revision"] == "offline":
            raise LocalEntryNotFoundError("no cache")
        return str(repo)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    found = cli.json("download", "-t", "LongLaMP-4", "--revision", "v1", "--set", "dev",
                     "--data-dir", tmp_path / "d")  # fmt: skip
    assert found["downloaded"] == 4  # two splits, questions and outputs
    ((repo_id, options),) = asked
    assert repo_id == "LongLaMP/LongLaMP" and options["revision"] == "v1"
    assert options["repo_type"] == "dataset"
    assert set(options["allow_patterns"]) >= {"topic_writing_user/*", "topic_writing_temporal/*"}
    assert found["files"][0]["url"].startswith("hf://LongLaMP/LongLaMP@v1/topic_writing_")
    commit = "0123456789abcdef" * 2 + "01234567"  # the cache names a snapshot by its commit
    cached = tmp_path / "snapshots" / commit
    shutil.copytree(repo, cached)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *_, **__: str(cached))
    pinned = cli.json("download", "-t", "LongLaMP-4", "--set", "dev", "--data-dir",
                      tmp_path / "main")  # fmt: skip
    assert {f["url"].split("/")[3] for f in pinned["files"]} == {f"LongLaMP@{commit}"}
    manifest = json.loads((tmp_path / "main" / "MANIFEST.json").read_text())
    assert f"@{commit}/" in json.dumps(manifest)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    for revision, message in (("missing", "no revision 'missing' on the hub"),
                              ("offline", "not reachable and not in the local cache")):  # fmt: skip
        line = cli.error("download", "-t", "LongLaMP-4", "--revision", revision, "--data-dir",
                         tmp_path / revision)  # fmt: skip
        assert message in line and not (tmp_path / revision).exists()


def test_longlamp1_is_built_from_avocado_by_the_completion_rule(cli, tmp_path):
    import random

    from synth import write_avocado_corpus

    truth = write_avocado_corpus(tmp_path / "text", 2, 15, seed=3)
    ids = sorted(truth)
    rng = random.Random(5)
    data = tmp_path / "d"
    made = {}
    for split in ("user", "time"):
        folder = data / split / "LongLaMP_1"
        folder.mkdir(parents=True)
        for set_name in ("train", "dev", "test"):
            questions = [
                {"id": f"{split}{set_name}{n}", "input": rng.choice(ids),
                 "content_length": rng.randint(0, 12),
                 "profile": [{"text": rng.choice(ids), "id": f"{split}{set_name}{n}-{i}"}
                             for i in range(rng.randint(1, 4))]}
                for n in range(4)
            ]  # fmt: skip
            (folder / f"{set_name}_questions_ids.json").write_text(json.dumps(questions))
            made[(split, set_name)] = questions
    missing = cli.error("avocado", "build", "--avocado-dir", tmp_path / "text", "--task",
                        "LongLaMP-1", "--data-dir", tmp_path / "none")  # fmt: skip
    assert "LongLaMP does not publish them" in missing
    result = cli("avocado", "build", "--avocado-dir", tmp_path / "text", "--task", "LongLaMP-1",
                 "--data-dir", data)  # fmt: skip
    assert result.exit_code == 0, result.output
    for (split, set_name), questions in made.items():
        folder = data / split / "LongLaMP_1"
        built = json.loads((folder / f"{set_name}_questions.json").read_text())
        for question, original in zip(built, questions, strict=True):
            subject, body = truth[original["input"]]
            words = body.split()
            head = " ".join(words[: original["content_length"]])
            assert question["input"] == (
                f"Complete the text of the following email. title: {subject}. text: {head}"
            )
            assert [(i["title"], i["text"]) for i in question["profile"]] == [
                truth[i["text"]] for i in original["profile"]
            ]
        outputs = folder / f"{set_name}_outputs.json"
        if set_name == "test":
            assert not outputs.exists()  # the official script writes no test golds
            continue
        golds = json.loads(outputs.read_text())
        assert golds["task"] == "LongLaMP_1"
        assert golds["golds"] == [
            {"id": q["id"], "output": " ".join(truth[q["input"]][1].split()[q["content_length"] :])}
            for q in questions
        ]
    no_length = data / "user/LongLaMP_1/dev_questions_ids.json"
    broken = json.loads(no_length.read_text())
    del broken[1]["content_length"]
    no_length.write_text(json.dumps(broken))
    line = cli.error("avocado", "build", "--avocado-dir", tmp_path / "text", "--task",
                     "LongLaMP-1", "--data-dir", data)  # fmt: skip
    assert "has no 'content_length'" in line and "userdev1" in line
    nothing = cli.error("download", "-t", "LongLaMP-1", "--data-dir", tmp_path / "x")
    assert "avocado build --task LongLaMP-1" in nothing


def _odd_emails() -> dict[str, bytes]:
    """Emails where mailparser and lampctl's LaMP-6 reader differ: folded and encoded
    subjects, plain and html alternatives, attachments, other text parts, charsets."""
    from email.message import EmailMessage

    def message(subject: str) -> EmailMessage:
        mail = EmailMessage()
        mail["From"], mail["To"], mail["Subject"] = "a@avocado.example", "b@x.example", subject
        return mail

    alternative = message("Quarterly   numbers")
    alternative.set_content("Hello Bob,\n\nthe numbers are in.\n")
    alternative.add_alternative("<p>Hello Bob,</p><p>the numbers are in.</p>", subtype="html")
    mixed = message("caf\u00e9 plans for the week")
    mixed.set_content("Lunch at the caf\u00e9 on Friday?\n", charset="utf-8",
                      cte="quoted-printable")  # fmt: skip
    mixed.add_attachment(b"a,b\n1,2\n", maintype="text", subtype="csv", filename="t.csv")
    mixed.add_attachment("BEGIN:VCALENDAR\nEND:VCALENDAR\n", subtype="calendar")
    other = message("minutes")
    other.set_content("the minutes follow\n")
    other.add_related("an enriched note", subtype="enriched")
    html = message("html only")
    html.set_content("<div>only <b>html</b> here</div>", subtype="html", charset="latin-1",
                     cte="base64")  # fmt: skip
    folded = (b"From: a@avocado.example\r\nSubject: Lunch\r\n  tomorrow  at noon\r\n"
              b"Subject-Note: x\r\n\r\n  Shall we meet at noon?\r\n\r\n")  # fmt: skip
    encoded = (b"From: a@avocado.example\r\nSubject: =?utf-8?q?R=C3=A9sum=C3=A9?= and "
               b"=?iso-8859-1?q?caf=E9?= notes\r\n\r\nSee the notes.\r\n")  # fmt: skip
    return {
        "001-000001-EM.txt": alternative.as_bytes(),
        "001-000002-EM.txt": mixed.as_bytes(),
        "001-000003-EM.txt": other.as_bytes(),
        "001-000004-EM.txt": html.as_bytes(),
        "001-000005-EM.txt": folded,
        "001-000006-EM.txt": encoded,
    }


def test_longlamp1_reads_emails_as_its_scripts_mailparser_does(cli, tmp_path):
    """The reference is the mailparser package itself, as LongLaMP's
    create_avocado_dataset.py calls it (parse, then .subject and .body.strip())."""
    import zipfile

    import mailparser  # the test extra's

    emails = _odd_emails()
    (tmp_path / "text").mkdir()
    with zipfile.ZipFile(tmp_path / "text" / "001.zip", "w") as zf:
        for name, raw in emails.items():
            zf.writestr(f"001/{name}", raw)
    ids = sorted(emails)
    questions = [
        {"id": f"q{n}", "input": email, "content_length": 3,
         "profile": [{"text": ids[(n + 1) % len(ids)], "id": f"q{n}-0"}]}
        for n, email in enumerate(ids)
    ]  # fmt: skip
    folder = tmp_path / "d" / "user" / "LongLaMP_1"
    folder.mkdir(parents=True)
    (folder / "dev_questions_ids.json").write_text(json.dumps(questions))
    result = cli("avocado", "build", "--avocado-dir", tmp_path / "text", "--task", "LongLaMP-1",
                 "--data-dir", tmp_path / "d")  # fmt: skip
    assert result.exit_code == 0, result.output
    database = {}
    for name, raw in emails.items():
        mail = mailparser.parse_from_bytes(raw)
        database[name] = {"subject": mail.subject, "content": mail.body.strip()}
    built = json.loads((folder / "dev_questions.json").read_text())
    golds = json.loads((folder / "dev_outputs.json").read_text())["golds"]
    for question, original, gold in zip(built, questions, golds, strict=True):
        email = database[original["input"]]
        words = email["content"].split()
        assert question["input"] == (
            f"Complete the text of the following email. title: {email['subject']}. "
            f"text: {' '.join(words[:3])}"
        )
        assert gold["output"] == " ".join(words[3:])
        (item,) = question["profile"]
        other = database[original["profile"][0]["text"]]
        assert (item["title"], item["text"]) == (other["subject"], other["content"])
    assert "--- mail_boundary ---" in database["001-000001-EM.txt"]["content"]  # exercised
    assert "\n" in database["001-000005-EM.txt"]["subject"]


def test_the_budgeted_mode_is_a_registry_switch_and_a_file_of_its_own(cli, data, tiny_bert,
                                                                      tmp_path):  # fmt: skip
    sel = ("-t", "LongLaMP-4", "--split", "user", "--set", "dev", "--data-dir", data)
    assert cli("rank", *sel, "-r", "bm25").exit_code == 0
    args = ("prompts", *sel, "-k", "2", "--tokenizer", tiny_bert, "--max-length", "64")
    ranked = cli.json(*args)
    overlay = tmp_path / "budget.yaml"
    overlay.write_text("tasks:\n  LongLaMP-4:\n    prompt:\n      style: budget\n")
    budget = cli.json("--config", overlay, *args)
    (ranked_file,) = [f["output"] for f in ranked["files"]]
    (budget_file,) = [f["output"] for f in budget["files"]]
    assert "_k2_ranked_" in ranked_file and "_k2_len64_" in budget_file
    for row in Path(budget_file).read_text().splitlines():
        assert json.loads(row)["source"].count(" is a summary for ") <= 2
    assert budget["files"][0]["hit_budget"] > 0  # items cut to the budget (LaMP's arithmetic)
    assert budget["files"][0]["max_tokens"] < ranked["files"][0]["max_tokens"]


def test_readme_configs_in_both_of_the_hubs_spellings(tmp_path):
    from lampctl.download.hub import _readme_configs

    (tmp_path / "README.md").write_text(
        "---\nconfigs:\n- config_name: a\n  data_files:\n  - split: train\n    path: a/train-*\n"
        "- config_name: b\n  data_files:\n    train: b/tr.parquet\n    val: [b/v1.parquet, "
        "b/v2.parquet]\n---\n# card\n"
    )
    assert _readme_configs(tmp_path) == {
        "a": {"train": ["a/train-*"]},
        "b": {"train": ["b/tr.parquet"], "val": ["b/v1.parquet", "b/v2.parquet"]},
    }
    (tmp_path / "README.md").write_text("# a card without front matter\n")
    assert _readme_configs(tmp_path) is None
