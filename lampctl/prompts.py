"""The paper's retrieval-augmented model inputs (LaMP ``prompts.py``), string for string.

For each question the first k items of its ranked profile are packed into the input under a
token budget, with the task's frames from the registry (``prompt:`` in configs/tasks.yaml).
The arithmetic is the reference's, quirks included (see LAMP_FORMAT.md, "Model inputs"):

    factor = 0.6; budget = max_length - min(len(tok(input)), int(factor * max_length))
    per = (budget - reserve - 2 * (m - 1) - len(tok(phrase))) // m
    for each item: need = len(tok(need frame)); kept = tok(text, max_length=per + saved - need)
                   saved += per - len(kept) - need; slot = decode(kept, skip_special_tokens)
    any exception: factor -= 0.1 and again; once factor < 0 the source is the bare input.

What is not the reference's is how the tokenizer is asked. The reference tokenizes every item
in full, one call each. Here each distinct text is tokenized once per run, in batches, and only
as far as any truncation can reach: ``tok(text, max_length=L, truncation=True)`` is the text's
first ``L - s`` tokens between its ``s`` special tokens (right truncation, ``L >= s``), and ``L``
never exceeds ``max_length``. Texts are cut before a whitespace for that first tokenization;
for the whitespace-splitting pre-tokenizers this is used with (BERT, Metaspace, ByteLevel,
Whitespace) a cut there cannot change the tokens before it. Any other tokenizer, and every call
with ``L < s`` (where tokenizers do not truncate, or fail), goes to the tokenizer as the
reference calls it.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import msgspec

from lampctl import fastjson
from lampctl.errors import InputError, LampctlError
from lampctl.tasks import PromptSpec, TaskSpec
from lampctl.tokenizer import ModelTokenizer

START_FACTOR = 0.6
FACTOR_STEP = 0.1
_WHITESPACE_SPLITTING = {
    "BertPreTokenizer",
    "Whitespace",
    "WhitespaceSplit",
    "Metaspace",
    "ByteLevel",
}
_CUT = re.compile(r"\S(?=\s)")
_WORD = re.compile(r"[^\W_]\S*")  # a letter or digit, up to the next whitespace
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# --------------------------------------------------------------------------- tokenizer


class CountingTokenizer:
    """The tokenizer calls the reference makes, answered from one batched tokenization of each
    distinct text (see the module docstring for why the answers are the same)."""

    def __init__(self, tokenizer: ModelTokenizer) -> None:
        self.tokenizer = tokenizer
        self.special = tokenizer.special
        # text -> (its first content ids, whether that is all of them)
        self._content: dict[str, tuple[list[int], bool]] = {}
        self._lengths: dict[str, int] = {}  # exact len(tok(s)) of frames and phrases
        self._long: dict[str, int] = {}  # texts known to have at least this many tokens
        self._chars_per_token = 6.0  # a first guess, then learned from the data
        backend = tokenizer.backend
        self.sliceable = backend is not None and tokenizer.right_truncation
        pre = repr(backend.pre_tokenizer) if backend is not None else ""
        names = set(re.findall(r"([A-Za-z]+)\(", pre))
        self.prefix_safe = bool(names) and names <= _WHITESPACE_SPLITTING | {"Sequence"}
        self._backend = backend if self.sliceable else None
        self._backend_checked = tokenizer.verified
        self.calls = 0

    # ---- batched work

    def prime_texts(self, caps: dict[str, int]) -> None:
        """Content ids (no special tokens) of each text, at least ``cap`` of them (all, when the
        text has fewer); a text already known that far is not tokenized again."""
        todo = {}
        for text, cap in caps.items():
            known = self._content.get(text)
            if known is None or (not known[1] and len(known[0]) < cap):
                todo[text] = max(cap, 1)
        factor = 1.0
        while todo:
            texts = list(todo)
            cut = []
            for text in texts:
                limit = int(todo[text] * self._chars_per_token * factor) + 16
                match = _CUT.search(text, limit) if self.prefix_safe and len(text) > limit else None
                cut.append(text[: match.end()] if match else text)
            ratios = []
            for text, short, ids in zip(texts, cut, self._encode(cut), strict=True):
                complete = len(short) == len(text)
                if not complete and ids:
                    ratios.append(len(short) / len(ids))
                if complete or len(ids) >= todo[text]:
                    self._content[text] = (ids, complete)
                    del todo[text]
            if ratios:  # learn how many characters a token takes in this data
                ratios.sort()
                self._chars_per_token = max(2.0, ratios[int(0.95 * (len(ratios) - 1))] * 1.05)
            factor *= 2  # too few tokens in the prefix (a sparse text): a longer one

    def prime_lengths(self, strings: Sequence[str]) -> None:
        """Exact ``len(tok(s))`` (special tokens included) for short strings: frames, phrases."""
        todo = [s for s in dict.fromkeys(strings) if s not in self._lengths]
        if todo:
            for s, ids in zip(todo, self._encode(todo), strict=True):
                self._lengths[s] = self.special + len(ids)

    def _encode(self, texts: list[str]) -> list[list[int]]:
        """Content ids, in one batched call. The tokenizers backend is called directly where
        the first batch shows it answers exactly as the transformers call does."""
        self.calls += 1
        if self._backend is not None:
            backend = self._backend
            backend.no_truncation()
            backend.no_padding()
            encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
            ids = [e.ids for e in encode(texts, add_special_tokens=False)]
            if not self._backend_checked:
                sample = texts[:64]
                plain = self.tokenizer.full(sample, add_special_tokens=False)["input_ids"]
                self._backend_checked = True
                if [list(x) for x in plain] != ids[: len(sample)]:
                    self._backend = None
                    return self._encode(texts)
            return ids
        full = self.tokenizer.full
        return [list(x) for x in full(texts, add_special_tokens=False)["input_ids"]]

    def surely_longer(self, text: str, tokens: int) -> bool:
        """Whether ``text`` certainly has at least ``tokens`` content tokens, without tokenizing
        it: under a whitespace-splitting pre-tokenizer every whitespace-separated word with a
        letter or digit in it becomes at least one token."""
        if not self.prefix_safe or len(text) < tokens:
            return False
        if text.isascii() and not _ASCII_CONTROL.search(text):
            # Plain ASCII: every whitespace-separated word is printable and so a token or more.
            if len(text.split(None, tokens)) <= tokens:
                return False
        elif sum(1 for _ in islice(_WORD.finditer(text), tokens)) < tokens:
            return False
        self._long[text] = tokens  # a lower bound: all that min(len, cap) needs
        return True

    # ---- the reference's calls

    def length(self, text: str) -> int:
        """``len(tok(text))``, exact for frames and phrases; for a primed text exact up to the
        cap it was primed with (enough for ``min(len, int(factor * max_length))``)."""
        if text in self._lengths:
            return self._lengths[text]
        known = self._content.get(text)
        if known is None:
            if text in self._long:
                return self.special + self._long[text]
            self.prime_lengths([text])
            return self._lengths[text]
        return self.special + len(known[0])

    def truncate(self, text: str, limit: int) -> tuple[int, list[int], bool]:
        """``tok(text, max_length=limit, truncation=True)``: (its length, ids to decode, whether
        the text was cut)."""
        if not self.sliceable or limit < self.special:
            self.calls += 1
            tokenizer = self.tokenizer.full
            ids = tokenizer(text, max_length=limit, truncation=True)["input_ids"]
            full = tokenizer(text)["input_ids"] if limit >= 0 else ids
            return len(ids), list(ids), len(ids) < len(full)
        room = limit - self.special
        known = self._content.get(text)
        if known is None or (not known[1] and len(known[0]) <= room):
            self.prime_texts({text: room + 1})
            known = self._content[text]
        content = known[0]
        kept = content[:room]
        return self.special + len(kept), kept, len(content) > room

    def decode(self, batches: list[list[int]]) -> list[str]:
        """``batch_decode(..., skip_special_tokens=True)``, by the backend in one call where
        that is known to be what transformers does (``ModelTokenizer.backend_decodes``)."""
        if not batches:
            return []
        if self.tokenizer.backend_decodes:
            return list(self.tokenizer.backend.decode_batch(batches, skip_special_tokens=True))
        return list(self.tokenizer.full.batch_decode(batches, skip_special_tokens=True))


# --------------------------------------------------------------------------- one question


@dataclass(frozen=True)
class Built:
    source: str
    truncated: bool  # an item's text was cut, or the source fell back to the bare input
    # The source's length as the reference's budget counts it: the input's tokens (as far as
    # min(len, int(factor * max_length)) reads them) plus the items' kept and frame tokens,
    # the separators and the fixed phrase.
    tokens: int = 0


def item_values(
    spec: PromptSpec, item: dict[str, Any], question_id: str, name: str
) -> dict[str, Any]:
    values = {}
    for key in spec.item_fields:
        if key not in item or item[key] is None:
            raise InputError(
                f"{name}: question {question_id!r}, profile item {item.get('id')!r} has no "
                f"{key!r} field, which the prompt needs"
            )
        if not isinstance(item[key], str):  # str.format would paste a list's or dict's repr
            raise InputError(
                f"{name}: question {question_id!r}, profile item {item.get('id')!r}: "
                f"{key!r} is a {type(item[key]).__name__}, not text"
            )
        values[key] = item[key]
    return values


def need_frame(spec: PromptSpec, values: dict[str, Any]) -> str | None:
    if spec.need_tokens is not None:
        return None
    if spec.need_frame is not None:
        return spec.need_frame.format(**values)
    return spec.frame.format(**{**values, "text": " "})


def build_source(
    spec: PromptSpec,
    question_input: str,
    items: list[dict[str, Any]],
    max_length: int,
    tokens: CountingTokenizer,
) -> tuple[Built, list[list[int]] | None, list[dict[str, Any]]]:
    """The reference's prompt for one question: (result with items still to decode, the ids to
    decode, the items' values). Decoding is batched by the caller."""
    m = len(items)
    if m == 0:  # the reference divides by zero at every factor, then gives the bare input
        return Built(question_input, True, tokens.length(question_input)), None, []
    phrase = tokens.length(spec.phrase) if spec.phrase else 0
    factor = START_FACTOR
    while True:
        budget = max_length - min(tokens.length(question_input), int(factor * max_length))
        try:
            per = (budget - spec.reserve - 2 * (m - 1) - phrase) // m
            saved = 0
            kept_ids: list[list[int]] = []
            cut = False
            used = max_length - budget + spec.reserve + 2 * (m - 1) + phrase
            for values in items:
                frame = need_frame(spec, values)
                need = spec.need_tokens if frame is None else tokens.length(frame)
                length, ids, was_cut = tokens.truncate(values[spec.field], per + saved - need)
                saved += per - length - need
                kept_ids.append(ids)
                cut = cut or was_cut
                used += length + need
            return Built("", cut, used), kept_ids, items
        except Exception:  # as the reference: any failure lowers the factor and tries again
            factor -= FACTOR_STEP
            if factor < 0:
                return Built(question_input, True, tokens.length(question_input)), None, []


def assemble(spec: PromptSpec, question_input: str, slots: list[str], items: list[dict]) -> str:
    parts = [
        spec.frame.format(**{**values, "text": slot})
        for slot, values in zip(slots, items, strict=True)
    ]
    joined = spec.joiner.join(parts)
    if spec.insert_after is not None:
        at = question_input.find(spec.insert_after)
        if at == -1:
            return question_input
        end = at + len(spec.insert_after)
        return question_input[:end] + spec.joiner + joined + question_input[end:]
    assert spec.source is not None
    return spec.source.format(items=joined, input=question_input)


def _prime_first_attempt(
    spec: PromptSpec,
    tokens: CountingTokenizer,
    questions: list[tuple[str, list[dict[str, Any]]]],
    max_length: int,
    phrase: int,
) -> None:
    """Tokenize, item position by item position across the chunk, just the tokens the first
    attempt (factor 0.6) will read of each item: its truncation length is known once the items
    before it are. Retries, rare, tokenize further on demand."""
    state = []
    for question_input, items in questions:
        m = len(items)
        if m:
            used = min(tokens.length(question_input), int(START_FACTOR * max_length))
            per = (max_length - used - spec.reserve - 2 * (m - 1) - phrase) // m
            state.append([per, 0, items])
    position = 0
    while state:
        caps: dict[str, int] = {}
        limits = []
        for per, saved, items in state:
            values = items[position]
            frame = need_frame(spec, values)
            need = spec.need_tokens if frame is None else tokens.length(frame)
            limit = per + saved - need
            limits.append((limit, need))
            if limit >= tokens.special:
                text = values[spec.field]
                caps[text] = max(caps.get(text, 0), limit - tokens.special + 1)
        tokens.prime_texts(caps)
        following = []
        for entry, (limit, need) in zip(state, limits, strict=True):
            if limit < 0:
                continue  # the first attempt fails here; the retry asks on demand
            length, _, _ = tokens.truncate(entry[2][position][spec.field], limit)
            entry[1] += entry[0] - length - need
            if position + 1 < len(entry[2]):
                following.append(entry)
        state = following
        position += 1


# --------------------------------------------------------------------------- one file


@dataclass(frozen=True)
class PromptQuestion:
    id: str
    input: str
    items: list[dict[str, Any]]  # the first k ranked items, decoded


def read_prompt_questions(
    questions_path: Path,
    ranking_path: Path | None,
    k: int,
) -> list[PromptQuestion]:
    """Each question with its first k ranked items (or profile order without a ranking)."""
    return [q for part in prompt_question_chunks(questions_path, ranking_path, k) for q in part]


def prompt_question_chunks(
    questions_path: Path,
    ranking_path: Path | None,
    k: int,
    chunk: int = 512,
    part: tuple[int, int] = (0, 1),
) -> Iterator[list[PromptQuestion]]:
    """``read_prompt_questions`` a chunk at a time (of part ``i`` of ``n`` equal runs of
    questions, for worker ``i`` of ``n``). Only what is used is decoded: each question's input
    and first k ranked items; the rest stays raw bytes, viewed in the mapped file."""
    from lampctl.data import load_questions, map_bytes
    from lampctl.fastjson import RawQuestion

    name = str(questions_path)
    raw = map_bytes(questions_path, "questions file")
    try:
        questions = msgspec.json.decode(raw, type=list[RawQuestion])
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        load_questions(questions_path)  # names the problem in the usual words
        raise InputError(f"{name}: {exc}") from None
    picker = _Picker(name, ranking_path, k)
    out: list[PromptQuestion] = []
    seen: set[str] = set()
    worker, workers = part
    first, end = len(questions) * worker // workers, len(questions) * (worker + 1) // workers
    for question in islice(questions, first, end):
        if len(out) == chunk:
            yield out
            out = []
        qid = str(question.id)
        if qid in seen:
            raise InputError(f"{name}: duplicate question id {qid!r}")
        seen.add(qid)
        try:
            out.append(picker.pick(qid, question.input, question.profile))
        except UnicodeDecodeError:  # bytes are checked as far as they are decoded
            load_questions(questions_path)  # names the byte and its offset
            raise InputError(f"{name}: question {qid!r} is not UTF-8 text") from None
    if out:
        yield out


class _Picker:
    """A question's input and its first k ranked items (profile order without a ranking),
    decoded from raw JSON; items are decoded only as far as finding the ranked ids needs."""

    def __init__(self, name: str, ranking_path: Path | None, k: int) -> None:
        from lampctl.data import read_bytes
        from lampctl.fastjson import ItemId

        self.name, self.ranking_path, self.k = name, ranking_path, k
        self.ranking: dict[str, list[str | int]] | None = None
        if ranking_path is not None:
            try:
                self.ranking = fastjson.decode(
                    read_bytes(ranking_path, "ranking file"),
                    msgspec.json.Decoder(dict[str, list[str | int]]),
                )
            except UnicodeDecodeError as exc:
                raise InputError(f"{ranking_path}: not UTF-8 text (offset {exc.start})") from None
            except msgspec.DecodeError as exc:
                raise InputError(
                    f"{ranking_path}: not a {{question id: [profile ids]}} ranking: {exc}"
                ) from None
        self.item_id = msgspec.json.Decoder(ItemId)
        self.items = msgspec.json.Decoder(list[msgspec.Raw])
        self.text = msgspec.json.Decoder(str)

    def pick(self, qid: str, raw_input: bytes, raw_profile: bytes) -> PromptQuestion:
        name = self.name
        try:
            profile = fastjson.decode(raw_profile, self.items)
        except msgspec.DecodeError:
            raise InputError(f"{name}: question {qid!r} has no 'profile' list") from None
        try:
            question_input = fastjson.decode(raw_input, self.text)
        except msgspec.DecodeError:
            raise InputError(f"{name}: question {qid!r} has no string 'input'") from None
        if self.ranking is None:
            chosen = profile[: self.k]
        else:
            chosen = [profile[i] for i in self._ranked_positions(qid, profile)]
        return PromptQuestion(qid, question_input, [fastjson.decode(i) for i in chosen])

    def _ranked_positions(self, qid: str, profile: list[Any]) -> list[int]:
        assert self.ranking is not None
        ranked = self.ranking.get(qid)
        if ranked is None:
            raise InputError(f"{self.ranking_path}: no ranking for question {qid!r}")
        wanted = [str(i) for i in ranked[: self.k]]
        if len(set(wanted)) != len(wanted):
            raise InputError(f"{self.ranking_path}: question {qid!r} ranks an item twice")
        position: dict[str, int] = {}
        looking = set(wanted)
        for index, item in enumerate(profile):  # until the k ranked ids are found
            try:
                found = str(fastjson.decode(item, self.item_id).id)
            except msgspec.DecodeError:
                raise InputError(
                    f"{self.name}: question {qid!r}, profile item #{index} has no string 'id'"
                ) from None
            if found in looking:
                position[found] = index
                looking.discard(found)
                if not looking:
                    break
        missing = [i for i in wanted if i not in position]
        if missing:
            raise InputError(
                f"{self.ranking_path}: question {qid!r} ranks profile id {missing[0]!r}, which "
                "its profile does not have"
            )
        return [position[i] for i in wanted]


@dataclass(frozen=True)
class FileBuild:
    """What building one file's rows takes, in this process or in a worker."""

    task: TaskSpec
    questions_path: Path
    ranking_path: Path | None
    k: int
    max_length: int
    golds: dict[str, Any] | None
    outputs_name: str

    def chunks(self, part: tuple[int, int] = (0, 1)) -> Iterator[list[PromptQuestion]]:
        return prompt_question_chunks(self.questions_path, self.ranking_path, self.k, part=part)

    def build(
        self,
        tokenizer: ModelTokenizer | None,
        chunks: Iterable[list[PromptQuestion]],
        each: Callable[[str, list[PromptQuestion]], None],
    ) -> Tally:
        """Each chunk's rows, handed to ``each`` with the chunk; what the builder counted."""
        builder = PromptBuilder(self.task, tokenizer, self.max_length, str(self.questions_path))
        for chunk in chunks:
            each(render_rows(chunk, builder.add(chunk), self.golds, self.outputs_name), chunk)
        return builder.tally

    def here(
        self,
        tokenizer: ModelTokenizer | Future[ModelTokenizer] | None,
        progress: Callable[[int], None] | None = None,
    ) -> tuple[str, PromptStats]:
        """The file's rows, built in this process; a tokenizer still loading (a future) is
        waited for once the questions are read."""
        chunks: Iterable[list[PromptQuestion]] = self.chunks()
        if isinstance(tokenizer, Future):
            chunks = list(chunks)
            tokenizer = tokenizer.result()
        texts: list[str] = []

        def keep(text: str, chunk: list[PromptQuestion]) -> None:
            texts.append(text)
            if progress:
                progress(len(chunk))

        tally = self.build(tokenizer, chunks, keep)
        return "".join(texts), PromptStats.combine([tally])


WORKER_MIN_BYTES = 16_000_000  # of the questions file per worker process
MAX_WORKERS = 8


class WorkerBuild:
    """The rows of a big file built by ``jobs`` forked processes, each reading and building an
    equal run of its questions (each maps the file and finds the questions itself; this
    process only gathers the rows).

    Each worker tokenizes on its own core (the tokenizers library's threads are off in it: they
    would not survive the fork once this process has started them). What the workers run is
    imported before the fork. Errors come back with their messages; the first in file order
    is raised. Workers die with this process.
    """

    def __init__(self, pipes: list[Any], processes: list[Any], questions_path: Path) -> None:
        self.pipes = pipes
        self.processes = processes
        self.questions_path = questions_path

    @classmethod
    def start(
        cls, job: FileBuild, tokenizer: ModelTokenizer | None, jobs: int
    ) -> WorkerBuild | None:
        """Workers started, or None where they do not pay or are not safe: a small file, one
        job, no fork, or torch loaded (its threads do not survive a fork)."""
        from lampctl.parallel import fork_is_safe

        try:
            size = job.questions_path.stat().st_size
        except OSError:
            return None  # the in-process reader names the problem
        # Each worker finds every question in the file (about a quarter of a second for
        # 800 MB) before its own: beyond 8 workers, or under 16 MB each, that does not pay.
        jobs = min(jobs, MAX_WORKERS, size // WORKER_MIN_BYTES)
        if jobs < 2 or not fork_is_safe():
            return None
        import multiprocessing as mp
        import pickle  # noqa: F401 - imported before the fork, for the workers
        import traceback  # noqa: F401

        import lampctl.data  # noqa: F401
        import lampctl.fastjson  # noqa: F401
        import lampctl.parallel  # noqa: F401

        context = mp.get_context("fork")
        pipes, processes = [], []
        # The library's after-fork hook warns and switches its threads off in a child once this
        # process has used them; the children switch them off themselves, so mark them
        # configured while forking.
        unset = "TOKENIZERS_PARALLELISM" not in os.environ
        if unset:
            os.environ["TOKENIZERS_PARALLELISM"] = "true"
        try:
            for index in range(jobs):
                receiver, sender = context.Pipe(duplex=False)
                process = context.Process(
                    target=_build_part,
                    args=(sender, os.getpid(), (index, jobs), job, tokenizer),
                    daemon=True,
                )
                process.start()
                sender.close()
                pipes.append(receiver)
                processes.append(process)
        except OSError:  # no process to be had (memory, process limits): build here instead
            cls(pipes, processes, job.questions_path).close()
            return None
        finally:
            if unset:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)
        return cls(pipes, processes, job.questions_path)

    def gather(self, progress: Callable[[int], None] | None = None) -> tuple[str, PromptStats]:
        import pickle
        from multiprocessing.connection import wait

        jobs = len(self.pipes)
        rows: list[list[str]] = [[] for _ in range(jobs)]
        ids: list[list[str]] = [[] for _ in range(jobs)]
        outcome: list[tuple[str, Any] | None] = [None] * jobs
        waiting = {pipe: index for index, pipe in enumerate(self.pipes)}
        while waiting:
            for pipe in wait(list(waiting)):
                index = waiting[pipe]
                try:
                    kind, payload = pickle.loads(self.pipes[index].recv_bytes())
                except EOFError:
                    self.processes[index].join()
                    kind, payload = "died", self.processes[index].exitcode
                if kind == "rows":
                    rows[index].append(payload[0])
                    ids[index].extend(payload[1])
                    if progress:
                        progress(len(payload[1]))
                    continue
                outcome[index] = (kind, payload)
                del waiting[pipe]
            first = next((i for i, o in enumerate(outcome) if o is None or o[0] != "done"), None)
            if first is not None and outcome[first] is not None:
                break  # the first failure in file order is known
        for result in outcome:
            if result is None or result[0] == "done":
                continue
            kind, payload = result
            if kind == "error":
                raise InputError(payload)
            if kind == "died":
                raise LampctlError(
                    f"{self.questions_path}: a worker process building prompts stopped "
                    f"(exit code {payload}); try --jobs 1"
                )
            raise RuntimeError(f"building prompts from {self.questions_path} failed:\n{payload}")
        seen: set[str] = set()
        for part in ids:
            for qid in part:
                if qid in seen:
                    raise InputError(f"{self.questions_path}: duplicate question id {qid!r}")
                seen.add(qid)
        tallies = [payload for _, payload in outcome]  # type: ignore[misc]
        return "".join(text for part in rows for text in part), PromptStats.combine(tallies)

    def close(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()
            process.join()
        for pipe in self.pipes:
            pipe.close()


def _build_part(
    sender: Any,
    parent: int,
    part: tuple[int, int],
    job: FileBuild,
    tokenizer: ModelTokenizer | None,
) -> None:
    """A worker of ``WorkerBuild``: part ``i`` of ``n`` of the file's rows, a chunk at a time."""
    import pickle
    import traceback

    from lampctl.data import gc_paused
    from lampctl.parallel import worker_setup

    worker_setup(parent)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one core each; see WorkerBuild

    def send(kind: str, payload: Any) -> None:
        sender.send_bytes(pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL))

    try:
        with gc_paused():
            tally = job.build(
                tokenizer,
                job.chunks(part),
                lambda text, chunk: send("rows", (text, [q.id for q in chunk])),
            )
        send("done", tally)
    except InputError as exc:
        send("error", str(exc))
    except BrokenPipeError:
        pass  # the parent stopped listening: it has an error of its own to report
    except BaseException:
        send("crash", traceback.format_exc())


@dataclass(frozen=True)
class PromptStats:
    questions: int
    hit_budget: int
    bare_input: int
    mean_tokens: float
    max_tokens: int
    over_max_length: int
    tokenizer_calls: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def combine(cls, parts: Sequence[Tally]) -> PromptStats:
        """The stats of a file from those of its parts (in any order)."""
        counted = sum(p.counted for p in parts)
        total = sum(p.total_tokens for p in parts)
        return cls(
            questions=sum(p.questions for p in parts),
            hit_budget=sum(p.hit_budget for p in parts),
            bare_input=sum(p.bare_input for p in parts),
            mean_tokens=round(total / counted, 2) if counted else 0.0,
            max_tokens=max((p.max_tokens for p in parts), default=0),
            over_max_length=sum(p.over_max_length for p in parts),
            tokenizer_calls=sum(p.tokenizer_calls for p in parts),
        )


@dataclass
class Tally:
    """What ``PromptStats`` sums up, as a builder counts it."""

    questions: int = 0
    hit_budget: int = 0
    bare_input: int = 0
    counted: int = 0  # sources with a token count (all, with a tokenizer)
    total_tokens: int = 0
    max_tokens: int = 0
    over_max_length: int = 0
    tokenizer_calls: int = 0


class PromptBuilder:
    """Sources a chunk of questions at a time, in question order, with one ``CountingTokenizer``
    for the whole file (a text that recurs across chunks is tokenized once); ``stats`` sums up
    the chunks so far. ``tokenizer`` None: the bare inputs."""

    def __init__(
        self, task: TaskSpec, tokenizer: ModelTokenizer | None, max_length: int, name: str
    ) -> None:
        if task.prompt is None:
            raise InputError(f"{task.name} has no prompt in the task registry")
        self.spec = task.prompt
        self.max_length = max_length
        self.name = name
        self.tokens = CountingTokenizer(tokenizer) if tokenizer is not None else None
        self.phrase = 0
        if self.tokens is not None and self.spec.phrase:
            self.tokens.prime_lengths([self.spec.phrase])
            self.phrase = self.tokens.length(self.spec.phrase)
        self.input_cap = int(START_FACTOR * max_length) + 1  # all min(len, int(f * max)) reads
        self.tally = Tally()

    def add(self, questions: Sequence[PromptQuestion]) -> list[str]:
        tally = self.tally
        tally.questions += len(questions)
        tokens = self.tokens
        if tokens is None:
            return [q.input for q in questions]
        spec, max_length = self.spec, self.max_length
        values_of = [
            [item_values(spec, item, q.id, self.name) for item in q.items] for q in questions
        ]
        inputs = [q.input for q in questions]
        cap = self.input_cap
        tokens.prime_texts({t: cap for t in inputs if not tokens.surely_longer(t, cap)})
        frames = [need_frame(spec, v) for values in values_of for v in values]
        tokens.prime_lengths([f for f in frames if f is not None])
        _prime_first_attempt(
            spec, tokens, list(zip(inputs, values_of, strict=True)), max_length, self.phrase
        )
        pending: list[tuple[Built, list[dict[str, Any]] | None]] = []
        to_decode: list[list[int]] = []
        for question_input, values in zip(inputs, values_of, strict=True):
            built, ids, items = build_source(spec, question_input, values, max_length, tokens)
            tally.counted += 1
            tally.total_tokens += built.tokens
            tally.max_tokens = max(tally.max_tokens, built.tokens)
            tally.over_max_length += built.tokens > max_length
            pending.append((built, None if ids is None else items))
            if ids is not None:
                to_decode.extend(ids)
        slots = tokens.decode(to_decode)
        offset = 0
        sources = []
        for question_input, (built, items) in zip(inputs, pending, strict=True):
            if items is None:
                sources.append(built.source)
                tally.bare_input += 1
            else:
                sources.append(
                    assemble(spec, question_input, slots[offset : offset + len(items)], items)
                )
                offset += len(items)
            tally.hit_budget += built.truncated
        tally.tokenizer_calls = tokens.calls
        return sources

    def stats(self) -> PromptStats:
        return PromptStats.combine([self.tally])


def build_prompts(
    task: TaskSpec,
    questions: list[PromptQuestion],
    tokenizer: ModelTokenizer | None,
    max_length: int,
    name: str,
    chunk: int = 512,
) -> tuple[list[str], PromptStats]:
    """Sources for every question, in order (``tokenizer`` None: the bare inputs)."""
    builder = PromptBuilder(task, tokenizer, max_length, name)
    sources: list[str] = []
    for start in range(0, len(questions), chunk):
        sources.extend(builder.add(questions[start : start + chunk]))
    return sources, builder.stats()


def read_golds(path: Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    from lampctl.data import load_outputs

    return load_outputs(path)


def render_rows(
    questions: list[PromptQuestion], sources: list[str], golds: dict[str, Any] | None, name: str
) -> str:
    lines = []
    for question, source in zip(questions, sources, strict=True):
        row: dict[str, Any] = {"id": question.id, "source": source}
        if golds is not None:
            if question.id not in golds:
                raise InputError(f"{name}: no gold output for question {question.id!r}")
            row["target"] = golds[question.id]
        lines.append(json.dumps(row, ensure_ascii=False))
    return "".join(line + "\n" for line in lines)


def output_name(set_name: str, k: int, max_length: int, tokenizer: str | None) -> str:
    """``dev_prompts_k4_len512_bert-base-uncased-1a2b3c4d.jsonl``: different choices never
    overwrite each other (the hash tells two tokenizers with one folder name apart)."""
    if tokenizer is None:
        return f"{prompts_prefix(set_name)}noprofile.jsonl"
    import hashlib

    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", tokenizer.rstrip("/").split("/")[-1]) or "tokenizer"
    digest = hashlib.sha256(tokenizer.encode()).hexdigest()[:8]
    return f"{prompts_prefix(set_name)}k{k}_len{max_length}_{slug}-{digest}.jsonl"


def prompts_prefix(set_name: str) -> str:
    """How every model-input file of a set is named first (``status`` finds them by it)."""
    return f"{set_name}_prompts_"


@dataclass(frozen=True)
class PromptResult:
    task: str
    set: str
    output: str
    status: str  # written | up to date
    stats: PromptStats | None
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "set": self.set,
            "output": self.output,
            "status": self.status,
            "seconds": self.seconds,
            **(self.stats.as_dict() if self.stats else {}),
        }


def prompts_file(
    task: TaskSpec,
    set_name: str,
    questions_path: Path,
    ranking_path: Path | None,
    outputs_path: Path | None,
    output_path: Path,
    *,
    k: int,
    max_length: int,
    tokenizer: ModelTokenizer | Future[ModelTokenizer] | None,
    tokenizer_id: str | None,
    revision: str | None,
    force: bool = False,
    jobs: int = 1,
    progress: Callable[[int], None] | None = None,
) -> PromptResult:
    """Build one set's JSONL and its record; skipped when the record says it is up to date.
    ``tokenizer`` may still be loading (a future): the file is read meanwhile. A big file is
    built by ``jobs`` worker processes."""
    from lampctl import __version__
    from lampctl.data import atomic_writer, gc_paused, refuse_overwriting_inputs
    from lampctl.records import (
        derived_freshness,
        held_still,
        read_record,
        record_path,
        source_fingerprints,
        write_derived_record,
    )

    started = time.perf_counter()
    sources = {"questions": questions_path}
    if ranking_path is not None:
        sources["ranking"] = ranking_path
    if outputs_path is not None:
        sources["outputs"] = outputs_path
    refuse_overwriting_inputs([output_path], dict(sources))
    parameters = {
        "k": k if tokenizer is not None else 0,
        "max_length": max_length if tokenizer is not None else None,
        "tokenizer": tokenizer_id,
        "revision": revision,
        "profile": tokenizer is not None,
    }
    if not force and derived_freshness(output_path, sources, parameters)[0] == "up to date":
        stats = (read_record(record_path(output_path)) or {}).get("stats")
        return PromptResult(
            task.name,
            set_name,
            str(output_path),
            "up to date",
            PromptStats(**stats) if isinstance(stats, dict) else None,
            round(time.perf_counter() - started, 3),
        )
    job = FileBuild(
        task,
        questions_path,
        ranking_path,
        k if tokenizer is not None else 0,
        max_length,
        read_golds(outputs_path),
        str(outputs_path),
    )
    # Worker processes are forked first, before this process starts its hashing thread; none
    # while transformers (and torch) load on a thread.
    workers = None if isinstance(tokenizer, Future) else WorkerBuild.start(job, tokenizer, jobs)
    try:
        # The inputs are hashed for the record on a thread meanwhile (hashlib lets go of the GIL).
        with held_still(sources), ThreadPoolExecutor(max_workers=1) as hasher, gc_paused():
            fingerprints = hasher.submit(source_fingerprints, output_path, sources)
            if workers is not None:
                text, stats = workers.gather(progress)
            else:
                text, stats = job.here(tokenizer, progress)
            with atomic_writer(output_path) as handle:
                handle.write(text)
            known = fingerprints.result()
    finally:
        if workers is not None:
            workers.close()
    write_derived_record(
        output_path,
        sources,
        parameters,
        {"lampctl": __version__, "stats": stats.as_dict()},
        fingerprints=known,
    )
    return PromptResult(
        task.name,
        set_name,
        str(output_path),
        "written",
        stats,
        round(time.perf_counter() - started, 3),
    )
