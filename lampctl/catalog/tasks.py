"""The task registry: LaMP tasks as data, loaded from ``configs/tasks.yaml``.

One routine (``build_query`` / ``item_text``) turns any task's question into a query and
its profile into ranked texts, driven only by the registry.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lampctl.errors import ConfigError

QUERY_RULES = ("after", "quoted", "whole")


@dataclass(frozen=True)
class QueryRule:
    rule: str
    marker: str | None = None
    pick: tuple[int, ...] = ()


METRICS = ("classification", "rating", "rouge", "generation")


@dataclass(frozen=True)
class EvaluationSpec:
    """The official metric of a task (see configs/tasks.yaml)."""

    metric: str
    labels: tuple[str, ...] = ()
    scale: tuple[float, float] = (1.0, 5.0)

    @property
    def names(self) -> tuple[str, ...]:
        """The official result keys, in the official order."""
        return {
            "classification": ("accuracy", "f1"),
            "rating": ("MAE", "RMSE"),
            "rouge": ("rouge-1", "rouge-L"),
            # LongLaMP's generation_metrics.py, in its order.
            "generation": ("bleu", "rouge-1", "rouge-2", "rouge-L", "rouge-LSum", "meteor"),
        }[self.metric]

    @property
    def higher_is_better(self) -> bool:
        return self.metric != "rating"


@dataclass(frozen=True)
class PromptSpec:
    """How the paper packs a question's top-k items into the model input (prompts.py)."""

    field: str
    frame: str
    need_frame: str | None = None
    need_tokens: int | None = None
    reserve: int = 1
    phrase: str | None = None
    joiner: str = ", and "
    source: str | None = None
    insert_after: str | None = None
    # "budget": LaMP's prompts.py, items packed under a token budget. "ranked": LongLaMP's
    # prompts.py with is_ranked=True and no max_len_prompt: the first k items whole, only
    # ``field`` cut (to its first ``words`` words, then the tokenizer's round trip).
    style: str = "budget"
    words: int | None = None

    @property
    def item_fields(self) -> tuple[str, ...]:
        """Every item field the frames use (the truncated ``field`` first)."""
        names = [self.field]
        for template in (self.frame, self.need_frame or ""):
            for _, name, _, _ in string.Formatter().parse(template):
                if name and name != "text" and name not in names:
                    names.append(name)
        return tuple(names)


@dataclass(frozen=True)
class PeftSpec:
    """How one profile item becomes a training example for a per-user adapter (the LaMP
    authors' ``PEFT/data/datasets.py``): ``source`` and ``target`` filled from the item's
    fields; with ``cut``, that field's words are cut at a random share in [low, high) into
    ``{head}`` and ``{tail}`` (LaMP-7)."""

    source: str
    target: str
    cut: str | None = None
    cut_low: float = 0.1
    cut_high: float = 0.25

    @property
    def item_fields(self) -> tuple[str, ...]:
        """The item fields the templates read (the cut field for ``{head}``/``{tail}``)."""
        names: list[str] = []
        for template in (self.source, self.target):
            for _, name, _, _ in string.Formatter().parse(template):
                if name in ("head", "tail") and self.cut:
                    name = self.cut
                if name and name not in names:
                    names.append(name)
        return tuple(names)


@dataclass(frozen=True)
class HubSpec:
    """A task whose files are a Hugging Face dataset (LongLaMP): the repo and revision, the
    config of each lampctl split, the hub split of each lampctl set, and the columns and
    profile-item fields every row must have (the schema is data, as the registry's other
    facts are: a row lacking one is an error naming the config, the split and its fields)."""

    repo: str
    revision: str
    configs: Mapping[str, str]  # lampctl split -> config name (user -> ..._user)
    sets: Mapping[str, str]  # lampctl set -> hub split (dev -> val)
    item_fields: tuple[str, ...]
    columns: tuple[str, ...] = ("input", "output", "profile")
    user_fields: tuple[str, ...] = ()  # the first a row has becomes its user_id


@dataclass(frozen=True)
class TaskSpec:
    name: str
    number: int
    title: str
    profile_text: tuple[str, ...]
    query: QueryRule
    default_ranker: Mapping[str, str]
    needs_build: str | None = None
    evaluation: EvaluationSpec | None = None
    prompt: PromptSpec | None = None
    peft: PeftSpec | None = None
    folder: str | None = None  # default LaMP_{number}
    aliases: tuple[str, ...] = ()
    opt_in: bool = False  # left out of "every task" unless its files are present
    output_task_names: tuple[str, ...] = ()  # other "task" values its files may carry
    family: str = "LaMP"  # LaMP or LongLaMP: "-t LongLaMP" names every task of a family
    hub: HubSpec | None = None  # files from a Hugging Face dataset, not LaMP's server
    number_fields: tuple[str, ...] = ()  # item fields that may be numbers (5.0 -> "5.0")
    test_outputs: bool = False  # the test set's gold outputs are published too
    # recency ranks by the items' dates ("date"), or by profile order, newest last, where
    # items have none ("order": LongLaMP, as its official rec ranker does)
    recency: str = "date"
    # per-task defaults of the model step over configs/training.yaml's: max_new_tokens and
    # max_length (LongLaMP's outputs run to hundreds of words)
    model_defaults: Mapping[str, int] = field(default_factory=dict)
    # what ``avocado build`` makes of an email (needs_build: avocado): "subject" (LaMP-6: the
    # subject from the body) or "completion" (LongLaMP-1: the rest of the body from its start)
    avocado: str = "subject"
    # how ``avocado build`` reads an email: "lamp" (lampctl.emails.parse_email: the text/plain
    # parts, whitespace of the subject normalised) or "mailparser" (LongLaMP-1: as the
    # mailparser package its script uses gives subject and body; parse_email_as_mailparser)
    email_reader: str = "lamp"

    @property
    def dir_name(self) -> str:
        return self.folder or f"LaMP_{self.number}"

    def names_output_task(self, value: str) -> bool:
        """Whether an outputs or predictions file's ``"task"`` value is this task's."""
        return _norm(value) in {
            _norm(n) for n in (self.name, *self.aliases, *self.output_task_names)
        }


@dataclass(frozen=True)
class Layout:
    task_dir: str
    questions: str
    outputs: str
    ranking: str
    merged: str
    id_questions: str
    id_outputs: str


@dataclass(frozen=True)
class EncoderDefaults:
    checkpoint: str
    revision: str | None
    batch_size: int
    max_tokens_per_batch: int
    device: str = "auto"
    precision: str = "fp32"


@dataclass(frozen=True)
class Registry:
    tasks: Mapping[str, TaskSpec]
    layout: Layout
    splits: tuple[str, ...]
    sets: tuple[str, ...]
    encoder: EncoderDefaults

    def expand(self, names: Sequence[str]) -> list[str]:
        """Task names with each family name (``LongLaMP``) replaced by its tasks."""
        out: list[str] = []
        for name in names:
            family = [t.name for t in self.tasks.values() if _norm(t.family) == _norm(name)]
            if family and not any(_norm(name) in {_norm(n) for n in (t.name, *t.aliases)}
                                  for t in self.tasks.values()):  # fmt: skip
                out += [n for n in family if n not in out]
            elif name not in out:
                out.append(name)
        return out

    def task(self, name: str) -> TaskSpec:
        """Resolve ``LaMP-3``, ``LaMP_3``, ``lamp3`` or ``3`` to a task (and a task's aliases,
        such as ``2N`` or ``LaMP-2-old`` for LaMP-2N)."""
        wanted = _norm(name)
        for spec in self.tasks.values():
            if wanted in {_norm(n) for n in (spec.name, *spec.aliases)}:
                return spec
        match = re.fullmatch(r"(?i)(?:lamp[-_ ]?)?(\d+)", name.strip())
        if match:
            for spec in self.tasks.values():
                if spec.number == int(match.group(1)) and not spec.opt_in:
                    return spec
        family = [t.name for t in self.tasks.values() if _norm(t.family) == wanted]
        if family:
            raise ConfigError(
                f"{name!r} names a family of tasks ({', '.join(family)}): name one of them here"
            )
        known = ", ".join(self.tasks)
        raise ConfigError(f"unknown task {name!r} (known: {known})")

    def task_dir(self, data_dir: Path, task: TaskSpec, split: str) -> Path:
        """``{split}/{folder}``; in a layout written with ``{number}`` (``LaMP_{number}``), a
        task with a folder of its own gives its folder's suffix (LaMP-2N: ``2N``), never
        another task's folder."""
        number = task.dir_name.removeprefix("LaMP_")
        return data_dir / self.layout.task_dir.format(
            split=split, number=number, folder=task.dir_name
        )

    def path(self, kind: str, data_dir: Path, task: TaskSpec, split: str, set_name: str) -> Path:
        """Path of a file of the layout; ``kind`` is a field of ``Layout``."""
        pattern: str = getattr(self.layout, kind)
        return self.task_dir(data_dir, task, split) / pattern.format(set=set_name)

    def check_split(self, split: str) -> str:
        if split not in self.splits:
            raise ConfigError(f"unknown split {split!r} (known: {', '.join(self.splits)})")
        return split

    def combinations(
        self,
        tasks: Sequence[str] = (),
        splits: Sequence[str] = (),
        sets: Sequence[str] = (),
        data_dir: Path | None = None,
    ) -> list[tuple[TaskSpec, str, str]]:
        """Every (task, split, set) the filters allow, task-major order. No task filter: every
        task but the opt-in ones (LaMP-2N), which come only where ``data_dir`` holds their
        folder."""
        if tasks:
            chosen = [self.task(t) for t in self.expand(tasks)]
        else:
            chosen = [
                t
                for t in self.tasks.values()
                if not t.opt_in
                or (
                    data_dir is not None
                    and any(self.task_dir(data_dir, t, s).is_dir() for s in self.splits)
                )
            ]
        chosen_splits = [self.check_split(s) for s in splits] if splits else self.splits
        chosen_sets = [self.check_set(s) for s in sets] if sets else self.sets
        return [(t, sp, st) for t in chosen for sp in chosen_splits for st in chosen_sets]

    def check_set(self, set_name: str) -> str:
        if set_name not in self.sets:
            raise ConfigError(f"unknown set {set_name!r} (known: {', '.join(self.sets)})")
        return set_name


def _norm(name: str) -> str:
    """Task names compared without case, spaces or the dash/underscore difference."""
    return str(name).strip().lower().replace("_", "-").replace(" ", "")
