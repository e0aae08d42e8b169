"""Synthetic LaMP-shaped data, for tests, benchmarks and trying lampctl without the real files.

The files follow the real schemas and prompt templates (docs/reference.md); the text is
random words. The time split mimics LaMP's: each user's questions in train, dev and test share
one growing history, so later questions see the earlier profile plus newer items.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORDS = (
    "model data user paper review movie tweet news email title learning neural graph "
    "retrieval language network personal profile benchmark query rank dense sparse vector "
    "the of and a to in for on with by from story film plot great bad good product quality "
    "price fast slow service team game city market health science study result method"
).split()

INPUT_TEMPLATES = {
    1: 'For an author who has written the paper with the title "{a}", which reference is '
    'related? Just answer with [1] or [2] without explanation. [1]: "{b}" [2]: "{c}"',
    2: "Which tag does this movie relate to among the following tags? Just answer with the tag "
    "name without further explanation. tags: [sci-fi, comedy, action] description: {a}",
    3: "What is the score of the following review on a scale of 1 to 5? just answer with 1, 2, "
    "3, 4, or 5 without further explanation. review: {a}",
    4: "Generate a headline for the following article: {a}",
    5: "Generate a title for the following abstract of a paper: {a}",
    6: "Generate a subject for the following email: {a}",
    7: "Paraphrase the following tweet without any explanation before or after it: {a}",
    "2N": "Which category does this article relate to among the following categories? Just "
    "answer with the category name without further explanation. categories: [travel, "
    "education, parents, style & beauty, entertainment, food & drink, science & technology, "
    "business, sports, healthy living, women, politics, crime, culture & arts, religion] "
    "article: {a}",
}

ITEM_FIELDS = {
    1: ("title", "abstract"),
    2: ("description", "tag"),
    3: ("text", "score"),
    4: ("title", "text"),
    5: ("title", "abstract"),
    6: ("text", "title"),
    7: ("text",),
    "2N": ("title", "text", "category"),
}
NEWS_CATEGORIES = ["sports", "politics", "food & drink", "women", "business"]


@dataclass(frozen=True)
class SynthSpec:
    questions: int = 20
    profile_min: int = 0
    profile_max: int = 30
    words_min: int = 3
    words_max: int = 40
    seed: int = 0


def _words(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def _date(rng: random.Random) -> str:
    year = rng.randint(2005, 2020)
    shape = rng.random()
    if shape < 0.1:
        return str(year)
    return f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def make_item(rng: random.Random, task: int | str, item_id: str, spec: SynthSpec) -> dict[str, Any]:
    item: dict[str, Any] = {"id": item_id}
    for field in ITEM_FIELDS[task]:
        if field == "score":
            item[field] = str(rng.randint(1, 5))
        elif field == "tag":
            item[field] = rng.choice(["sci-fi", "comedy", "action"])
        elif field == "category":
            item[field] = rng.choice(NEWS_CATEGORIES)
        else:
            item[field] = _words(rng, spec.words_min, spec.words_max)
    item["date"] = _date(rng)
    return item


def make_input(rng: random.Random, task: int | str, spec: SynthSpec) -> str:
    parts = {k: _words(rng, spec.words_min, spec.words_max) for k in "abc"}
    return INPUT_TEMPLATES[task].format(**parts)


def user_split(task: int | str, spec: SynthSpec, id_offset: int = 0) -> list[dict[str, Any]]:
    """Questions of distinct users, each with a profile of its own."""
    rng = random.Random(f"{spec.seed}-{task}-{id_offset}")
    questions = []
    for q in range(spec.questions):
        qid = f"{task}{id_offset + q:05d}"
        size = rng.randint(spec.profile_min, spec.profile_max)
        profile = [make_item(rng, task, f"{qid}{i:03d}", spec) for i in range(size)]
        questions.append({"id": qid, "input": make_input(rng, task, spec), "profile": profile})
    return questions


def time_split(task: int | str, spec: SynthSpec, users: int) -> dict[str, list[dict[str, Any]]]:
    """train/dev/test questions whose users' histories grow over time and are shared."""
    rng = random.Random(f"{spec.seed}-{task}-time")
    sets: dict[str, list[dict[str, Any]]] = {"train": [], "dev": [], "test": []}
    per_user = max(1, spec.questions // max(users, 1))
    counter = 0
    for user in range(users):
        history = [
            make_item(rng, task, f"{user:04d}{i:04d}", spec)
            for i in range(rng.randint(spec.profile_min, spec.profile_max))
        ]
        for step in range(per_user + 2):
            set_name = "train" if step < per_user else ("dev" if step == per_user else "test")
            counter += 1
            sets[set_name].append(
                {
                    "id": f"{task}{counter:06d}",
                    "input": make_input(rng, task, spec),
                    "profile": [dict(item) for item in history],
                    "user_id": 1000 + user,
                }
            )
            grown = rng.randint(0, 3)
            history = history + [
                make_item(rng, task, f"{user:04d}{len(history) + i:04d}", spec)
                for i in range(grown)
            ]
    return sets


def gold_output(task: int | str, qid: str) -> str:
    """A gold of the task's kind, fixed by the question id: a label for the classification
    tasks (so their metrics can be computed), ``gold <id>`` text for the generation tasks."""
    rng = random.Random(f"gold-{task}-{qid}")
    if task == 1:
        return rng.choice(["[1]", "[2]"])
    if task == 2:
        return rng.choice(["sci-fi", "comedy", "action"])
    if task == 3:
        return str(rng.randint(1, 5))
    if task == "2N":
        return rng.choice(NEWS_CATEGORIES)
    return f"gold {qid}"


def outputs_for(task: int | str, questions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        # The server's files of the deprecated news task still say LaMP_2.
        "task": "LaMP_2" if task == "2N" else f"LaMP_{task}",
        "golds": [{"id": q["id"], "output": gold_output(task, q["id"])} for q in questions],
    }


def write_tree(
    root: Path,
    tasks: tuple[int | str, ...] = (1, 2, 3, 4, 5, 6, 7),
    spec: SynthSpec | None = None,
    time_users: int = 5,
) -> Path:
    """A whole ``{user,time}/LaMP_N/{set}_{questions,outputs}.json`` tree under ``root``."""
    spec = spec or SynthSpec()
    for task in tasks:
        by_split = {
            "user": {
                s: user_split(task, spec, id_offset=o * spec.questions)
                for o, s in enumerate(("train", "dev", "test"))
            },
            "time": time_split(task, spec, users=time_users),
        }
        for split, sets in by_split.items():
            folder = root / split / f"LaMP_{task}"
            folder.mkdir(parents=True, exist_ok=True)
            for set_name, questions in sets.items():
                (folder / f"{set_name}_questions.json").write_text(json.dumps(questions))
                if set_name != "test":
                    (folder / f"{set_name}_outputs.json").write_text(
                        json.dumps(outputs_for(task, questions))
                    )
    return root


def write_tiny_bert(
    folder: Path, hidden: int = 32, layers: int = 2, heads: int = 2, max_positions: int = 64
) -> Path:
    """A small random BERT with a WordPiece vocabulary of ``WORDS``, saved like a checkpoint."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ":", '"', ".", ",", "-", "[", "]"]
    vocab += sorted(set(WORDS)) + ["##s", "##ing", "##ed", "date"] + [str(d) for d in range(10)]
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    # Positional: transformers 4 calls this argument vocab_file, transformers 5 calls it vocab.
    tokenizer = BertTokenizerFast(str(vocab_file), do_lower_case=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden * 4,
        max_position_embeddings=max_positions,
    )
    BertModel(config).eval().save_pretrained(folder)
    return folder


def write_tiny_t5(
    folder: Path,
    width: int = 16,
    layers: int = 2,
    seed: int = 0,
    init: float = 5.0,
    dropout: float = 0.1,
) -> Path:
    """A small random T5 (seq2seq) with the tiny BERT's WordPiece tokenizer, saved like a
    checkpoint: what ``peft train`` and ``generate`` load, built offline. ``init`` is T5's
    ``initializer_factor``: 5 makes outputs differ (below); 1, T5's own, is a model whose
    activations are of ordinary size. ``dropout`` is its ``dropout_rate``."""
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    write_tiny_bert(folder)  # its tokenizer files (and a BERT that the T5 files replace)
    for name in ("config.json", "model.safetensors"):
        (folder / name).unlink(missing_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=len(tokenizer), d_model=width, d_kv=width // 2, d_ff=width * 2,
        num_layers=layers, num_decoder_layers=layers, num_heads=2,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
        # Larger random weights and an untied head: T5's own small init makes a tiny random
        # model answer [PAD] to everything, and tests need outputs that differ.
        initializer_factor=init, tie_word_embeddings=False, dropout_rate=dropout,
    )  # fmt: skip
    T5ForConditionalGeneration(config).eval().save_pretrained(folder)
    return folder


def write_tiny_causal(folder: Path, width: int = 16, layers: int = 2, seed: int = 0) -> Path:
    """A small random Llama-style causal LM (q_proj/k_proj/v_proj) with the tiny BERT's
    tokenizer ([SEP] as its end of sequence), saved like a checkpoint."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    write_tiny_bert(folder)
    for name in ("config.json", "model.safetensors"):
        (folder / name).unlink(missing_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=width * 2,
        num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
    )  # fmt: skip
    LlamaForCausalLM(config).eval().save_pretrained(folder)
    return folder


def email_id(archive: int, number: int) -> str:
    return f"{archive:03d}-{number:06d}-EM.txt"


def plain_email(subject: str, body: str) -> bytes:
    return (
        f"From: someone@avocado.example\r\nTo: other@avocado.example\r\n"
        f"Subject: {subject}\r\nDate: Mon, 4 Jun 2001 10:00:00 -0700\r\n\r\n{body}\r\n"
    ).encode()


def write_avocado_corpus(
    folder: Path, archives: int, per_archive: int, seed: int = 0
) -> dict[str, tuple[str, str]]:
    """Zip archives of plain RFC-822 emails named like Avocado's; returns id -> (subject, body)."""
    import zipfile

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    truth: dict[str, tuple[str, str]] = {}
    for archive in range(1, archives + 1):
        with zipfile.ZipFile(folder / f"{archive:03d}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
            for number in range(per_archive):
                name = email_id(archive, number)
                subject = _words(rng, 2, 6)
                body = _words(rng, 10, 80)
                zf.writestr(f"{archive:03d}/{name}", plain_email(subject, body))
                truth[name] = (subject, body)
    return truth


def write_lamp6_ids(
    root: Path,
    email_ids: list[str],
    questions: int,
    profile_max: int,
    seed: int = 0,
    splits: tuple[str, ...] = ("user", "time"),
) -> None:
    """LaMP-6 id files as released (inputs and profile texts are email ids) for both splits."""
    rng = random.Random(seed)
    for split in splits:
        folder = root / split / "LaMP_6"
        folder.mkdir(parents=True, exist_ok=True)
        for offset, set_name in enumerate(("train", "dev", "test")):
            data = []
            for q in range(questions):
                qid = f"{offset}{q:05d}"
                profile = [
                    {"text": rng.choice(email_ids), "id": f"{qid}{i:03d}", "date": _date(rng)}
                    for i in range(rng.randint(1, profile_max))
                ]
                question: dict[str, Any] = {
                    "id": qid,
                    "input": rng.choice(email_ids),
                    "profile": profile,
                }
                if split == "time":
                    question["user_id"] = 7000 + q % 5
                data.append(question)
            (folder / f"{set_name}_questions_ids.json").write_text(json.dumps(data))
            if set_name != "test":
                golds = [{"id": q["id"], "output": q["input"]} for q in data]
                (folder / f"{set_name}_outputs_ids.json").write_text(
                    json.dumps({"task": "LaMP_6", "golds": golds})
                )


PEFT_WORDS = "model data user paper review movie tweet news great bad good fast slow".split()


def peft_rows(users: dict[str, int], seed: int = 0) -> list[dict]:
    """peft-data rows of random words: ``users`` maps a user id to its number of rows."""
    import random

    rng = random.Random(seed)
    rows = []
    for user, count in users.items():
        for i in range(count):
            source = " ".join(rng.choice(PEFT_WORDS) for _ in range(rng.randint(2, 9)))
            target = " ".join(rng.choice(PEFT_WORDS) for _ in range(rng.randint(1, 4)))
            rows.append(
                {"user_id": user, "id": f"{user}-q-{i}", "source": source, "target": target}
            )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --------------------------------------------------------------------------- LongLaMP

LONGLAMP_CONFIGS = {
    "abstract_generation": ("title", "abstract"),
    "product_review": ("overall", "summary", "description", "reviewText"),
    "topic_writing": ("summary", "content"),
}


def longlamp_row(rng: random.Random, config: str, items: int) -> dict[str, Any]:
    """One row as the hub's loaders read it: ``input``, ``output``, ``profile``."""
    if config == "abstract_generation":
        profile = [
            {"title": _words(rng, 4, 9), "abstract": _words(rng, 40, 120),
             "year": str(rng.randint(1995, 2020)), "id": f"p{rng.randrange(10**9)}"}
            for _ in range(items)
        ]  # fmt: skip
        text = (f'Generate the abstract for the title "{_words(rng, 4, 9)}" using the '
                f"following items: {', '.join(_words(rng, 1, 3) for _ in range(3))}")  # fmt: skip
    elif config == "product_review":
        profile = [
            {"overall": float(rng.randint(1, 5)), "summary": _words(rng, 2, 6),
             "description": _words(rng, 8, 20), "reviewText": _words(rng, 30, 90)}
            for _ in range(items)
        ]  # fmt: skip
        text = (f"Generate the review text written by a reviewer who has given an overall "
                f'rating of {float(rng.randint(1, 5))} for a product with description '
                f'"{_words(rng, 8, 20)}". The summary of the review text is '
                f'"{_words(rng, 2, 6)}".')  # fmt: skip
    else:
        profile = [
            {"summary": _words(rng, 5, 12), "content": _words(rng, 30, 90)} for _ in range(items)
        ]
        text = f"Generate the content for a reddit post {_words(rng, 5, 12)}"
    return {"input": text, "output": _words(rng, 60, 160), "profile": profile}


def write_longlamp_repo(
    root: Path,
    configs: tuple[str, ...] = tuple(LONGLAMP_CONFIGS),
    rows: int = 6,
    seed: int = 0,
    files_per_split: int = 2,
) -> Path:
    """A local copy of the LongLaMP/LongLaMP dataset repo in the hub's layout: parquet files
    ``{config}_{user,temporal}/{split}-0000i-of-0000n.parquet`` and a README whose
    ``configs:`` block names them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    front = ["---", "configs:"]
    for base in configs:
        for setting in ("user", "temporal"):
            config = f"{base}_{setting}"
            front += [f"- config_name: {config}", "  data_files:"]
            for split in ("train", "val", "test"):
                table_rows = [longlamp_row(rng, base, rng.randint(1, 6)) for _ in range(rows)]
                folder = root / config
                folder.mkdir(parents=True, exist_ok=True)
                step = -(-rows // files_per_split)
                for part in range(files_per_split):
                    chunk = table_rows[part * step : (part + 1) * step]
                    name = f"{split}-{part:05d}-of-{files_per_split:05d}.parquet"
                    pq.write_table(pa.Table.from_pylist(chunk), folder / name)
                front += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    front.append("---")
    (root / "README.md").write_text("\n".join(front) + "\n\n# LongLaMP (a test copy)\n")
    return root


def kill_when_folder_appears(command: list[str], folder: Path, poll: float = 0.02) -> None:
    """Runs ``command`` (without LAMPCTL_ settings) and kills it with SIGKILL as soon as
    ``folder`` exists (or after 300 s, or when it ends by itself): a run cut off mid-way."""
    import os
    import signal
    import subprocess
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMPCTL_")}
    killed = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while not folder.is_dir() and time.monotonic() < deadline:
        if killed.poll() is not None:
            break
        time.sleep(poll)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
