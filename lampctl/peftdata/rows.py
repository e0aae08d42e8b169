"""Per-user training data for one adapter per user (the LaMP authors' ``PEFT/data/datasets.py``,
``create_per_user_dataset`` and ``create_per_user_dataset_test``).

What is the reference's, kept as it is (docs/reference.md, "Per-user training data"):

- a question's user is ``str(user_id)``; users in order of first appearance in the file;
- a user's training rows come from the profile of the user's *first* question in the file
  (later questions are skipped), items in profile order (or the ranking's, ``order="ranked"``);
- item i gives the row ``{"id": f"{user}-{question id}-{i}", "source", "target"}`` filled from
  the task's ``peft:`` templates in configs/tasks.yaml; LaMP-7 cuts the tweet's words at a
  share drawn with ``random.uniform(0.1, 0.25)`` into head (source) and tail (target);
- evaluation rows: every question of the user, source = its input unchanged, target = its gold.

What lampctl does where the reference crashes or depends on how a cluster is split: a question
without ``user_id`` (the user split) is its own user, named by its question id; a test set gives
evaluation rows without a target; LaMP-7's draws come from ``random.Random(seed)``, one per
profile item of the *whole file* in row order, so a shard or a user subset gets exactly the
rows the full run gives those users (the reference draws only for the users it keeps).
Shards balance training rows (largest users first onto the least-loaded shard); a user is never
split.

The seed fork's variant (FadyRezkGhattas/LaMP, ``data/datasets.py``): ``tokenizer`` truncates each
training source to ``max_length`` tokens and decodes it without special tokens; ``val_ratio``
splits each user's items into train and validation parts (``k = int(n * r)``, and
``k = int(n * 0.5)`` when that leaves no or one validation item); ``max_items`` keeps the first
N items of each part.
"""

from __future__ import annotations

import json
import operator
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from lampctl.catalog.tasks import PeftSpec, TaskSpec
from lampctl.errors import InputError, OptionError
from lampctl.io import fastjson
from lampctl.io.data import Question, map_bytes

ORDERS = ("file", "ranked")


class PeftQuestion(msgspec.Struct, gc=False):
    """A question with its profile left raw: only the users' first profiles are decoded.
    (``gc=False`` here and on the items and rows: they hold decoded JSON values and strings,
    which cannot lead back to them, so the collector need not track them: 2% of the rows.)"""

    id: str | int
    input: msgspec.Raw
    profile: msgspec.Raw
    user_id: Any = None


@dataclass(frozen=True)
class PeftOptions:
    order: str = "file"
    seed: int = 0
    tokenizer: str | None = None
    max_length: int | None = None
    val_ratio: float | None = None
    max_items: int | None = None

    def check(self) -> None:
        if self.order not in ORDERS:
            raise OptionError("order", f"use {' or '.join(ORDERS)}, not {self.order!r}")
        if self.val_ratio is not None and not 0 < self.val_ratio < 1:
            raise OptionError(
                "val_ratio", f"must lie strictly between 0 and 1, not {self.val_ratio}"
            )
        if self.max_items is not None and self.max_items < 1:
            raise OptionError("max_items", "must be at least 1")
        if self.max_length is not None and self.tokenizer is None:
            raise OptionError("max_length", "--max-length goes with --tokenizer")
        if self.max_length is not None and self.max_length < 1:
            raise OptionError("max_length", "must be at least 1")

    def as_record(self, task: TaskSpec) -> dict[str, Any]:
        """The choices that decide the rows (the seed only where draws are made)."""
        record: dict[str, Any] = {"order": self.order}
        if task.peft is not None and task.peft.cut:
            record["seed"] = self.seed
        for key in ("tokenizer", "max_length", "val_ratio", "max_items"):
            if getattr(self, key) is not None:
                record[key] = getattr(self, key)
        return record


@dataclass
class User:
    id: str
    first: int  # index of the user's first question in the file
    questions: list[int]
    items: int = 0  # profile items of the first question (rows before any cut)


@dataclass(frozen=True)
class PeftStats:
    users: int
    rows: int
    eval_rows: int
    rows_per_user_mean: float
    rows_per_user_min: int
    rows_per_user_max: int
    source_tokens_per_user: dict[str, float] | None = None
    target_tokens_per_user: dict[str, float] | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_questions(path: Path, parts: int = 1) -> list[PeftQuestion]:
    """The questions, profiles left raw; in ``parts`` processes where ``parts > 1`` (see
    ``lampctl.io.jsonsplit``; only where a fork is safe), in one where the file cannot be split."""
    name = str(path)
    if parts > 1:
        from lampctl.io.jsonsplit import decode_parts

        decoded = decode_parts(path, PeftQuestion, b'"profile"', parts)
        if decoded is not None:
            return decoded
    raw = map_bytes(path, "questions file")
    try:
        return fastjson.decode(raw, msgspec.json.Decoder(list[PeftQuestion]))
    except (msgspec.DecodeError, UnicodeDecodeError):
        from lampctl.io.data import load_questions

        load_questions(path)  # names the problem in the usual words
        raise InputError(f"{name}: not a list of questions with id, input and profile") from None


def user_of(question: PeftQuestion) -> str:
    """``str(user_id)``; a question without one is its own user (its id)."""
    user = question.user_id
    return str(question.id) if user is None else str(user)


def users_in_order(questions: Sequence[PeftQuestion], name: str) -> list[User]:
    """Users in order of first appearance, each with its questions in file order."""
    users: dict[str, User] = {}
    seen: set[str] = set()
    for index, question in enumerate(questions):
        qid = str(question.id)
        if qid in seen:
            raise InputError(f"{name}: duplicate question id {qid!r}")
        seen.add(qid)
        user = user_of(question)
        if user not in users:
            users[user] = User(user, index, [])
        users[user].questions.append(index)
    return list(users.values())


def choose_users(users: list[User], wanted: Sequence[str] | None, name: str) -> list[User]:
    """The users of a ``--users`` list (in file order); every one must be in the file."""
    if wanted is None:
        return users
    known = {u.id for u in users}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise InputError(
            f"{name}: names {len(unknown)} user(s) the questions file does not have "
            f"(first: {unknown[0]!r})"
        )
    chosen = set(wanted)
    return [u for u in users if u.id in chosen]


def shard_users(users: list[User], rows: dict[str, int], index: int, count: int) -> list[User]:
    """Shard ``index`` of ``count``: users dealt largest first to the least-loaded shard (ties:
    the earlier user, the lower shard), so shards carry about equal training rows; returned in
    file order."""
    loads = [0] * count
    owner: dict[str, int] = {}
    for user in sorted(users, key=lambda u: (-rows[u.id], u.first)):
        shard = min(range(count), key=lambda s: (loads[s], s))
        owner[user.id] = shard
        loads[shard] += rows[user.id]
    return [u for u in users if owner[u.id] == index]


def split_parts(count: int, ratio: float | None) -> tuple[int, int]:
    """(train items, validation items) of a profile of ``count`` items (the fork's rule)."""
    if ratio is None:
        return count, 0
    keep = int(count * ratio)
    if keep == count or count - keep == 1:
        keep = int(count * 0.5)
    return keep, count - keep


def item_names(spec: PeftSpec) -> list[str]:
    """The item fields decoded for the templates: the id, then the fields they name; the
    struct ``item_type`` makes holds them as attributes f0, f1, ... in this order."""
    return ["id", *(f for f in spec.item_fields if f != "id")]


def item_type(spec: PeftSpec) -> type:
    """A profile item as the task's templates read it: its id and the fields they name, each
    decoded as stored (``None`` when absent); every other field is skipped, not decoded."""
    names = item_names(spec)
    return msgspec.defstruct(
        "PeftItem",
        [(f"f{i}", Any, None) for i in range(len(names))],
        rename={f"f{i}": name for i, name in enumerate(names)},
        gc=False,
    )


class PeftRow(msgspec.Struct, omit_defaults=True, gc=False):
    """One training row; ``part`` (the fork's ``"train"`` or ``"val"``) only with
    ``val_ratio``. Encoded with its keys in this order, as a dict of them would be."""

    user_id: str
    id: str
    source: str
    target: str
    part: str | None = None


class RowMaker:
    """Training rows of one user's profile, by the task's templates."""

    def __init__(self, task: TaskSpec, name: str, options: PeftOptions) -> None:
        if task.peft is None:
            raise InputError(f"{task.name} has no per-user training template in the registry")
        self.spec: PeftSpec = task.peft
        self.item = item_type(task.peft)
        names = item_names(task.peft)
        # (template field, attribute of the item struct), parsed from the templates once
        self.fields = [(f, f"f{names.index(f)}") for f in task.peft.item_fields]
        self.names = [field for field, _ in self.fields]
        self.read = _tuple_getter([attribute for _, attribute in self.fields])
        # the templates filled by position: the fields' values, then LaMP-7's head and tail
        slots = {field: index for index, field in enumerate(self.names)}
        if task.peft.cut:
            slots.update(head=len(slots), tail=len(slots) + 1)
        self.source = _positional(task.peft.source, slots)
        self.target = _positional(task.peft.target, slots)
        self.cut_slot = slots.get(task.peft.cut) if task.peft.cut else None
        self.task = task
        self.name = name
        self.options = options

    def rows(self, user: str, qid: str, items: list[Any], draws: Iterator[float]) -> list[PeftRow]:
        names, read, cut_slot = self.names, self.read, self.cut_slot
        source, target = self.source, self.target
        prefix = f"{user}-{qid}-"
        made: list[PeftRow] = []
        for index, item in enumerate(items):
            found = read(item)
            if None in found:
                field = names[[value is None for value in found].index(True)]
                raise InputError(
                    f"{self.name}: question {qid!r}, profile item {item.f0!r} has no "
                    f"{field!r} field, which {self.task.name}'s training template needs"
                )
            if cut_slot is not None:
                words = str(found[cut_slot]).split()
                cut = int(len(words) * next(draws))
                found = (*found, " ".join(words[:cut]), " ".join(words[cut:]))
            made.append(PeftRow(user, prefix + str(index), source(*found), target(*found)))
        return made

    def parts(self, rows: list[PeftRow]) -> list[PeftRow]:
        """The fork's train/validation parts and ``max_items``, on a user's rows."""
        ranges = part_ranges(len(rows), self.options)
        if ranges == [("", range(len(rows)))]:
            return rows  # one unmarked part of every row: the rows as built
        out: list[PeftRow] = []
        for part, chosen in ranges:
            for row in rows[chosen.start : chosen.stop]:
                if part:
                    row.part = part
                out.append(row)
        return out


def _positional(template: str, slots: dict[str, int]) -> Callable[..., str]:
    """``template.format_map(values)`` as ``format(*values)``: the same text (a field is
    formatted as an f-string formats it), without a dict per row."""
    import string

    pieces = []
    for literal, field, spec, conversion in string.Formatter().parse(template):
        pieces.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is not None:
            pieces.append(
                "{" + str(slots[field]) + (f"!{conversion}" if conversion else "")
                + (f":{spec}" if spec else "") + "}"
            )  # fmt: skip
    return "".join(pieces).format


def _tuple_getter(attributes: list[str]) -> Callable[[Any], tuple[Any, ...]]:
    """``attrgetter`` that always gives a tuple (it gives a bare value for one name)."""
    if len(attributes) > 1:
        return operator.attrgetter(*attributes)
    if attributes:
        one = operator.attrgetter(attributes[0])
        return lambda item: (one(item),)
    return lambda item: ()


def part_ranges(count: int, options: PeftOptions) -> list[tuple[str, range]]:
    """Which of a profile's ``count`` rows are kept, by part (``""`` without ``val_ratio``)."""
    keep, _ = split_parts(count, options.val_ratio)
    parts = [("train", range(keep)), ("val", range(keep, count))]
    if options.val_ratio is None:
        parts = [("", range(count))]
    if options.max_items is not None:
        parts = [(part, kept[: options.max_items]) for part, kept in parts]
    return parts


def ordered_items(
    question: PeftQuestion,
    decoder: msgspec.json.Decoder[Any],
    ranking: dict[str, list[Any]] | None,
    name: str,
    ranking_name: str,
    complete: bool,
) -> list[Any]:
    """The first question's profile, decoded (the fields the templates need), in file or
    ranked order."""
    from lampctl.merge import checked_order

    qid = str(question.id)
    try:
        profile = fastjson.decode(question.profile, decoder)
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: question {qid!r} is not UTF-8 text ({exc.reason})") from None
    except msgspec.DecodeError:
        raise InputError(f"{name}: question {qid!r} has no 'profile' list of items") from None
    if ranking is None:
        return profile
    ranked = ranking.get(qid)
    if ranked is None:
        raise InputError(f"{ranking_name}: no ranking for question {qid!r}")
    for position, item in enumerate(profile):
        if not isinstance(item.f0, str | int):
            raise InputError(f"{name}: question {qid!r}, profile item #{position} has no 'id'")
    as_question = Question(qid, "", [{"id": item.f0} for item in profile], {})
    by_id = {str(item.f0): item for item in profile}
    return [by_id[i] for i in checked_order(as_question, ranked, ranking_name, complete)]


class PeftBuild:
    """One questions file read for per-user rows: its users in order, those chosen (``--users``,
    ``--shard``), LaMP-7's draws; then any chosen user's training and evaluation rows."""

    def __init__(
        self,
        task: TaskSpec,
        questions_path: Path,
        golds: dict[str, Any] | None,
        ranking: dict[str, list[Any]] | None,
        options: PeftOptions,
        *,
        users_wanted: Sequence[str] | None = None,
        shard: tuple[int, int] | None = None,
        ranking_name: str = "",
        complete: bool = True,
        parse_parts: int = 1,
    ) -> None:
        self.name = name = str(questions_path)
        self.questions = read_questions(questions_path, parse_parts)
        self.golds, self.ranking = golds, ranking
        self.ranking_name, self.complete = ranking_name, complete
        users = users_in_order(self.questions, name)
        self.maker = maker = RowMaker(task, name, options)
        self.items = msgspec.json.Decoder(list[maker.item])
        spec = maker.spec
        # Item counts of every first profile, where the draws of the whole file or the shard
        # loads need them (a profile's items are only split apart here, not decoded).
        if spec.cut or shard is not None:
            counter = msgspec.json.Decoder(list[msgspec.Raw])
            for user in users:
                try:
                    user.items = len(counter.decode(self.questions[user.first].profile))
                except msgspec.DecodeError:
                    qid = str(self.questions[user.first].id)
                    raise InputError(f"{name}: question {qid!r} has no 'profile' list") from None
        chosen = choose_users(users, users_wanted, name)
        if shard is not None:
            loads = {
                u.id: sum(len(kept) for _, kept in part_ranges(u.items, options)) for u in chosen
            }
            chosen = shard_users(chosen, loads, *shard)
        self.chosen = chosen
        # One draw per profile item of the whole file, in row order, used or not.
        self.shares: dict[str, list[float]] = {}
        if spec.cut:
            draws = random.Random(options.seed)
            wanted = {u.id for u in chosen}
            for user in users:
                shares = [draws.uniform(spec.cut_low, spec.cut_high) for _ in range(user.items)]
                if user.id in wanted:
                    self.shares[user.id] = shares
        self.text = msgspec.json.Decoder(str)

    def training(self, user: User) -> list[PeftRow]:
        first = self.questions[user.first]
        items = ordered_items(
            first, self.items, self.ranking, self.name, self.ranking_name, self.complete
        )
        rows = self.maker.rows(user.id, str(first.id), items, iter(self.shares.get(user.id, ())))
        return self.maker.parts(rows)

    def evaluation(self, user: User) -> list[dict[str, Any]]:
        """Every question of the user: its input unchanged and its gold (none for test)."""
        rows = []
        for index in user.questions:
            question = self.questions[index]
            qid = str(question.id)
            try:
                source = fastjson.decode(question.input, self.text)
            except (msgspec.DecodeError, UnicodeDecodeError):
                raise InputError(f"{self.name}: question {qid!r} has no string 'input'") from None
            row: dict[str, Any] = {"user_id": user.id, "id": qid, "source": source}
            if self.golds is not None:
                if qid not in self.golds:
                    raise InputError(f"{self.name}: no gold output for question {qid!r}")
                row["target"] = self.golds[qid]
            rows.append(row)
        return rows


_ENCODER = msgspec.json.Encoder()


def jsonl(rows: Sequence[Any]) -> bytes:
    """One compact JSON object per line, UTF-8 (msgspec: several times ``json.dumps``)."""
    return _ENCODER.encode_lines(rows)


def read_users(path: Path | str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """``(user_id, rows)`` for each user of a ``peft-data`` JSONL file (training or evaluation
    rows), in file order, reading the file once and holding one user's rows at a time."""
    current: str | None = None
    rows: list[dict[str, Any]] = []
    if not Path(path).is_file():
        raise InputError(f"{path}: no such peft-data file (run 'lampctl peft-data' first)")
    with Path(path).open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path}: line {number} is not UTF-8 text (byte {exc.start + 1})"
                ) from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                user = row["user_id"]
            except (ValueError, KeyError, TypeError):
                raise InputError(f"{path}: line {number} is not a peft-data row") from None
            if (
                not isinstance(row, dict)
                or not isinstance(user, (str, int))
                or (isinstance(user, bool))
            ):
                raise InputError(f"{path}: line {number} has no text user_id")
            if not isinstance(row.get("id"), (str, int)) or isinstance(row.get("id"), bool):
                raise InputError(f"{path}: line {number} (user {user!r}) has no text id")
            user = str(user)
            if user != current:
                if current is not None:
                    yield current, rows
                current, rows = user, []
            rows.append(row)
    if current is not None:
        yield current, rows
