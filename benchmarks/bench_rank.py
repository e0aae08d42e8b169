"""Benchmark `lampctl rank` against the LaMP reference patterns, measured in the same run.

1. BM25 on generated LaMP-4-shaped files (1,000-question user and time splits; a rank-all over
   a time split's train, dev and test; a real-size 4,500-question, ~830 MB train file): the
   reference process (load JSON, one rank_bm25.BM25Okapi per question, argsort, write)
   against `lampctl`, as whole processes, median of 3, with the peak memory of the whole
   process tree (all workers); scores are checked bit for bit.
2. Contriever on a tiny BERT: the seed pattern (model loaded per question, batch 16, no
   inference mode) against lampctl's encoder ranker.

Usage: python benchmarks/bench_rank.py [--questions 1000] [--real-size 4500]
       [--real-size-reference] [--encoder-questions 60] [--skip-encoder]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test data
from synth import SynthSpec, time_split, user_split, write_tiny_bert  # noqa: E402

REFERENCE_BM25 = r"""
import json, sys
import numpy as np
from rank_bm25 import BM25Okapi
questions = json.load(open(sys.argv[1]))
out = {}
for q in questions:
    corpus = [f"{p['title']} {p['text']}" for p in q["profile"]]
    query = q["input"][q["input"].find("article:") + len("article:"):].strip()
    bm25 = BM25Okapi([c.split() for c in corpus])
    scores = bm25.get_scores(query.split())
    order = np.argsort(scores)[::-1]
    out[q["id"]] = [q["profile"][i]["id"] for i in order]
json.dump(out, open(sys.argv[2], "w"))
"""


def tree_memory(pid: int) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) in bytes over ``pid`` and all its descendants, from /proc.
    RSS counts pages shared between forked processes once per process; PSS splits them."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        # Workers are started after their parent, so only newer pids need a look (cheap
        # enough to poll without slowing the measured processes down).
        if entry.name.isdigit() and int(entry.name) >= pid:
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    rss = pss = 0
    todo = [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            for line in Path(f"/proc/{current}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, pss


def run_timed(command: list[str]) -> float:
    """Seconds of a whole process, with nothing else running beside it."""
    start = time.perf_counter()
    process = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if process.returncode:
        raise SystemExit(f"{command[:6]} failed: {process.stderr.decode()[-2000:]}")
    return time.perf_counter() - start


def run_measured(command: list[str]) -> tuple[float, int, int]:
    """(seconds, peak tree RSS, peak tree PSS) of a whole process and its workers (sampling
    /proc costs some time: time figures come from ``run_timed`` runs)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_rss = peak_pss = 0
    while process.poll() is None:
        rss, pss = tree_memory(process.pid)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if process.returncode:
        raise SystemExit(f"{command[:6]} failed: {process.stderr.read().decode()[-2000:]}")
    return seconds, peak_rss, peak_pss


def timed(command: list[str]) -> float:
    return run_timed(command)


def median_run(command: list[str], repeats: int) -> tuple[float, int, int]:
    """Median seconds of ``repeats`` plain runs, and the peaks of one sampled run."""
    seconds = sorted(run_timed(command) for _ in range(repeats))[repeats // 2]
    _, rss, pss = run_measured(command)
    return seconds, rss, pss


def lamp4_file(path: Path, questions: int, items: int, seed: int, words: tuple[int, int]) -> int:
    """A LaMP-4-shaped user-split file written question by question (never whole in memory)."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(30000)] + ["the", "of", "a", "in", "said", "to"] * 2000

    def text(n: int) -> str:
        return " ".join(rng.choices(vocab, k=n))

    total = 0
    with path.open("w") as handle:
        handle.write("[")
        for q in range(questions):
            profile = [
                {
                    "id": f"{q}{i:04d}",
                    "title": text(rng.randint(6, 14)),
                    "text": text(rng.randint(*words)),
                }
                for i in range(rng.randint(items // 2, items * 3 // 2))
            ]
            total += len(profile)
            question = {
                "id": str(q),
                "profile": profile,
                "input": "Generate a headline for the following article: "
                + text(rng.randint(150, 600)),
            }
            handle.write(("," if q else "") + json.dumps(question))
        handle.write("]")
    return total


def reference_commands(source: Path, out: Path) -> dict[str, list[str]]:
    # The LaMP reference script imports torch and transformers at its top for every ranker;
    # the lean variant leaves them out, to show the ranking loop alone.
    as_written = "import torch, transformers\n" + REFERENCE_BM25
    return {
        "reference as written": [sys.executable, "-c", as_written, str(source), str(out)],
        "reference lean": [sys.executable, "-c", REFERENCE_BM25, str(source), str(out)],
    }


def lampctl_rank(source: Path, out: Path, jobs: int | None = None) -> list[str]:
    command = [sys.executable, "-m", "lampctl", "--quiet", "rank", "-t", "4", "-r", "bm25"]
    command += ["-i", str(source), "-o", str(out)]
    return command + (["--jobs", str(jobs)] if jobs else [])


def compare_file(label: str, folder: Path, source: Path, repeats: int) -> None:
    size = source.stat().st_size
    print(f"BM25, {label}: {size / 1e6:.0f} MB (whole processes, median of {repeats})")
    results = {}
    for name, command in reference_commands(source, folder / "r.json").items():
        results[name] = median_run(command, repeats)
    results["lampctl rank"] = median_run(lampctl_rank(source, folder / "l.json"), repeats)
    for name, (seconds, rss, pss) in results.items():
        print(
            f"  {name:22s} {seconds:6.2f} s   peak tree RSS {rss / 1e6:6.0f} MB, "
            f"PSS {pss / 1e6:6.0f} MB"
        )
    ours = results["lampctl rank"][0]
    print(
        f"  speed-up: {results['reference as written'][0] / ours:.2f}x as written, "
        f"{results['reference lean'][0] / ours:.2f}x lean"
    )
    check_identical(source, folder / "r.json", folder / "l.json")


def check_identical(source: Path, reference: Path, ours: Path) -> None:
    from rank_bm25 import BM25Okapi

    from lampctl.retrieval.rankers.bm25 import BM25Ranker

    data = json.loads(source.read_text())
    ranker = BM25Ranker()
    identical = 0
    sample = data[: min(len(data), 300)]
    for q in sample:
        texts = [f"{p['title']} {p['text']}" for p in q["profile"]]
        query = q["input"].split("article:", 1)[1].strip()
        expected = BM25Okapi([t.split() for t in texts]).get_scores(query.split())
        identical += ranker.scores_for(query, texts).tobytes() == expected.tobytes()
    reference_ranking = json.loads(reference.read_text())
    lampctl_ranking = json.loads(ours.read_text())
    same = sum(reference_ranking[k] == lampctl_ranking[k] for k in reference_ranking)
    print(
        f"  bit-identical scores: {identical}/{len(sample)} questions checked; identical "
        f"rankings {same}/{len(reference_ranking)} (the rest are ties the reference's "
        "unstable argsort orders differently)"
    )


def bench_bm25(folder: Path, questions: int, repeats: int) -> None:
    spec = SynthSpec(
        questions=questions, profile_min=50, profile_max=350, words_min=20, words_max=60, seed=4
    )
    user = folder / "user_questions.json"
    user.write_text(json.dumps(user_split(4, spec)))
    compare_file(f"{questions}-question LaMP-4 user split", folder, user, repeats)
    timeline = time_split(4, spec, users=max(questions // 16, 1))
    time_train = folder / "time_questions.json"
    time_train.write_text(json.dumps(timeline["train"]))
    compare_file(
        f"{len(timeline['train'])}-question LaMP-4 time split (train)", folder, time_train, repeats
    )

    # rank-all over a time split's train, dev and test against the reference run three times.
    tree = folder / "tree"
    task_dir = tree / "time/LaMP_4"
    task_dir.mkdir(parents=True)
    for set_name, questions_of_set in timeline.items():
        (task_dir / f"{set_name}_questions.json").write_text(json.dumps(questions_of_set))
    reference = reference_commands(time_train, folder / "r.json")["reference as written"]
    started = time.perf_counter()
    for set_name in timeline:
        source = task_dir / f"{set_name}_questions.json"
        subprocess.run([*reference[:3], str(source), str(folder / "r.json")], check=True)
    reference_seconds = time.perf_counter() - started
    rank_all = [
        sys.executable,
        "-m",
        "lampctl",
        "--quiet",
        "rank-all",
        "--data-dir",
        str(tree),
        "--ranker",
        "bm25",
        "--force",
    ]
    seconds, rss, pss = median_run(rank_all, repeats)
    print(
        f"BM25, rank-all over the time split's train, dev and test "
        f"({sum(len(v) for v in timeline.values())} questions):"
    )
    print(f"  reference as written, 3 processes {reference_seconds:6.2f} s")
    print(
        f"  lampctl rank-all                  {seconds:6.2f} s   peak tree RSS "
        f"{rss / 1e6:.0f} MB, PSS {pss / 1e6:.0f} MB   speed-up "
        f"{reference_seconds / seconds:.2f}x"
    )


def bench_real_size(folder: Path, questions: int, reference: bool) -> None:
    source = folder / "lamp4_train_questions.json"
    items = lamp4_file(source, questions, 200, seed=9, words=(40, 260))
    size = source.stat().st_size
    print(
        f"BM25, real-size LaMP-4 train: {questions} questions, {items} items, {size / 1e6:.0f} MB"
    )
    for jobs in (2, 8):
        seconds = run_timed(lampctl_rank(source, folder / "l.json", jobs))
        _, rss, pss = run_measured(lampctl_rank(source, folder / "l.json", jobs))
        print(
            f"  lampctl rank --jobs {jobs}: {seconds:6.1f} s   peak tree RSS "
            f"{rss / 1e6:.0f} MB ({rss / size:.2f}x the file), PSS {pss / 1e6:.0f} MB "
            f"({pss / size:.2f}x)"
        )
    if reference:
        command = reference_commands(source, folder / "r.json")["reference as written"]
        seconds, rss, _ = run_measured(command)
        print(
            f"  reference as written: {seconds:6.1f} s   peak RSS {rss / 1e6:.0f} MB "
            f"({rss / size:.2f}x the file)"
        )
    source.unlink()


def bench_encoder(folder: Path, questions: int) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from lampctl.retrieval.encoder import EncoderConfig
    from lampctl.retrieval.rankers.base import PreparedQuestion
    from lampctl.retrieval.rankers.contriever import ContrieverRanker

    checkpoint = write_tiny_bert(folder / "bert", hidden=128, layers=2, heads=2, max_positions=512)
    spec = SynthSpec(
        questions=questions, profile_min=20, profile_max=120, words_min=10, words_max=80, seed=5
    )
    data = [
        PreparedQuestion(
            q["id"],
            q["input"].split(":", 1)[1].strip(),
            [p["id"] for p in q["profile"]],
            texts=[p["text"] for p in q["profile"]],
        )
        for q in user_split(7, spec)
    ]
    items = sum(len(q.texts) for q in data)
    print(f"Contriever: tiny BERT (128 hidden, 2 layers), {questions} questions, {items} items")

    def seed_pattern() -> list[np.ndarray]:
        results = []
        for q in data:
            tokenizer = AutoTokenizer.from_pretrained(checkpoint)
            model = AutoModel.from_pretrained(checkpoint)

            def embed(batch: list[str], tokenizer=tokenizer, model=model) -> torch.Tensor:
                tokens = tokenizer(batch, padding=True, truncation=True, return_tensors="pt")
                hidden = model(**tokens).last_hidden_state
                mask = tokens["attention_mask"]
                hidden = hidden.masked_fill(~mask[..., None].bool(), 0.0)
                return hidden.sum(1) / mask.sum(1)[..., None]

            query = embed([q.query])
            scores: list[float] = []
            for start in range(0, len(q.texts), 16):
                scores.extend((query.squeeze() @ embed(q.texts[start : start + 16]).T).tolist())
            results.append(np.array(scores))
        return results

    start = time.perf_counter()
    expected = seed_pattern()
    seed_time = time.perf_counter() - start

    start = time.perf_counter()
    ranker = ContrieverRanker(EncoderConfig(checkpoint=str(checkpoint), device="cpu"))
    got = list(ranker.score(data))
    lampctl_time = time.perf_counter() - start
    worst = max(
        float(np.max(np.abs(g - e) / np.maximum(np.abs(e), 1e-6)))
        for g, e in zip(got, expected, strict=True)
        if len(e)
    )
    print(f"  seed pattern      : {seed_time:7.2f} s")
    print(
        f"  lampctl           : {lampctl_time:7.2f} s   speed-up {seed_time / lampctl_time:5.2f}x"
        f"   (includes its one model load)"
    )
    print(f"  largest relative score difference: {worst:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=1000)
    parser.add_argument("--encoder-questions", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--real-size", type=int, default=4500, help="0 skips the big file")
    parser.add_argument(
        "--real-size-reference",
        action="store_true",
        help="Also time the reference on the big file (minutes).",
    )
    parser.add_argument("--skip-encoder", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_bm25(Path(tmp), args.questions, args.repeats)
        if args.real_size:
            bench_real_size(Path(tmp), args.real_size, args.real_size_reference)
        if not args.skip_encoder:
            bench_encoder(Path(tmp), args.encoder_questions)


if __name__ == "__main__":
    main()
