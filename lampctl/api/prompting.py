"""``lampctl.prompts``: what ``lampctl prompts`` does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lampctl import settings
from lampctl.catalog.bundled import cached_registry as registry
from lampctl.errors import OptionError

if TYPE_CHECKING:
    from lampctl.catalog.tasks import Registry, TaskSpec
    from lampctl.inputs import PromptResult
from lampctl.arguments import checked_arguments
from lampctl.io.data import as_path

# --------------------------------------------------------------------------- prompts


@dataclass(frozen=True)
class PromptJob:
    task: TaskSpec
    set: str
    questions: Path
    ranking: Path | None
    outputs: Path | None
    output: Path


@dataclass
class PromptsRun:
    """What ``prompts`` did: one result per file, and the sets it left out and why."""

    results: list[PromptResult]
    left_out: list[str]


@checked_arguments
def prompt_jobs(
    found: Registry,
    *,
    tasks: Sequence[str],
    splits: Sequence[str],
    sets: Sequence[str],
    data_dir: Path,
    k: int,
    max_length: int,
    tokenizer: str | None,
    questions: Path | None,
    ranking: Path | None,
    outputs: Path | None,
    output: Path | None,
    left_out: list[str],
) -> list[PromptJob]:
    """The files ``prompts`` builds: explicit files, or every ranked set asked for."""
    from lampctl.catalog.datadir import explicit_files, ranked_sets
    from lampctl.inputs.naming import output_name

    no_profile = tokenizer is None
    files = {"questions": questions, "ranking": ranking}
    selection = {"task": tasks, "split": splits, "set": sets}
    need = {"questions": questions, "output": output}
    if explicit_files(files, need, task="one", selection=selection,
                      data_dir_only={"outputs": outputs}):  # fmt: skip
        if ranking is None and not no_profile:
            raise OptionError(
                "ranking",
                "give ranking=PATH, or no_profile=True",
                mentions=("ranking", "no_profile"),
            )
        spec = found.task(tasks[0])
        return [
            PromptJob(spec, "file", questions, None if no_profile else ranking, outputs, output)
        ]
    jobs = [
        PromptJob(
            s.task,
            s.set,
            s.questions,
            s.ranking,
            s.outputs,
            s.questions.with_name(
                output_name(s.set, k, max_length, tokenizer, s.task.prompt.style)
                if s.task.prompt is not None
                else output_name(s.set, k, max_length, tokenizer)
            ),
        )
        for s in ranked_sets(
            found,
            data_dir,
            tasks,
            splits,
            sets,
            need_ranking=not no_profile,
            without="--no-profile",
            left_out=left_out,
        )
    ]
    if output is not None:
        if len(jobs) != 1:
            raise OptionError(
                "output",
                f"output=PATH takes one set; {len(jobs)} are chosen",
                mentions=("output",),
            )
        jobs = [replace(jobs[0], output=output)]
    return jobs


@checked_arguments
def prompts(
    tasks: Sequence[str] = (),
    splits: Sequence[str] = (),
    sets: Sequence[str] = (),
    *,
    k: int = 4,
    max_length: int = 512,
    tokenizer: str | None = None,
    revision: str | None = None,
    no_profile: bool = False,
    data_dir: Path | str | None = None,
    questions: Path | str | None = None,
    ranking: Path | str | None = None,
    outputs: Path | str | None = None,
    output: Path | str | None = None,
    force: bool = False,
    jobs: int | None = None,
    config: Path | str | None = None,
    on_start: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    on_file: Callable[[str], None] | None = None,
    on_planned: Callable[[list[str]], None] | None = None,
) -> PromptsRun:
    """The paper's model inputs, as ``lampctl prompts`` builds them: each ranked set asked
    for (every one, without filters), or explicit files; ``tokenizer`` (hub id or folder, or
    LAMPCTL_TOKENIZER) is needed unless ``no_profile``."""
    from lampctl.inputs import prompts_file
    from lampctl.inputs.tokenizer import open_saved_tokenizer, open_tokenizer
    from lampctl.io.outputs import check_outputs, local_folder
    from lampctl.ledger import outputs_with_record
    from lampctl.parallel import usable_cpus
    from lampctl.retrieval.encoder import locate_checkpoint

    found = registry(config)
    tokenizer = tokenizer or settings.get("LAMPCTL_TOKENIZER")
    if tokenizer is None and not no_profile:
        raise OptionError(
            "tokenizer",
            "name the model's tokenizer (tokenizer=NAME), or pass no_profile=True",
            mentions=("tokenizer", "no_profile"),
        )
    left_out: list[str] = []

    planned = prompt_jobs(
        found,
        tasks=list(tasks),
        splits=list(splits),
        sets=list(sets),
        data_dir=settings.data_dir(data_dir),
        k=k,
        max_length=max_length,
        tokenizer=None if no_profile else tokenizer,
        questions=as_path(questions),
        ranking=as_path(ranking),
        outputs=as_path(outputs),
        output=as_path(output),
        left_out=left_out,
    )
    if on_planned:
        on_planned(left_out)
    for job in planned:  # before the tokenizer loads
        check_outputs(
            outputs_with_record(job.output),
            {"questions": job.questions, "ranking": job.ranking, "outputs": job.outputs},
            input_folders={"tokenizer": local_folder(tokenizer)},
        )
    results = []
    with ThreadPoolExecutor(max_workers=1) as loader:
        loaded: Any = None
        if not no_profile:
            assert tokenizer is not None
            # Found once, here, so a tokenizer that cannot be had fails before any work. One
            # saved by an earlier run loads in milliseconds; the first load (through
            # transformers) goes on a thread, while the first file is read.
            folder = locate_checkpoint(tokenizer, revision, kind="tokenizer")
            loaded = open_saved_tokenizer(folder) or loader.submit(open_tokenizer, folder)
        for job in planned:
            if on_start:
                on_start(f"{job.task.name} {job.output.name}")
            result = prompts_file(
                job.task,
                job.set,
                job.questions,
                job.ranking,
                job.outputs,
                job.output,
                k=k,
                max_length=max_length,
                tokenizer=loaded,
                tokenizer_id=None if no_profile else tokenizer,
                revision=revision,
                force=force,
                jobs=jobs or usable_cpus(),
                progress=progress,
            )
            results.append(result)
            if on_file:
                on_file(result.output)
    return PromptsRun(results, left_out)
