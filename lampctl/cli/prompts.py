"""``lampctl prompts``: the paper's retrieval-augmented model inputs, one JSONL per set."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from lampctl.cli._common import (
    CliReporter,
    DataDirOpt,
    JsonOpt,
    QuietOpt,
    SetsOpt,
    SplitsOpt,
    TasksOpt,
    emit,
    folding_table,
    get_state,
    note_finished,
    tell_left_out,
    usable_cpus,
)
from lampctl.data import refuse_overwriting_inputs
from lampctl.datadir import ranked_sets
from lampctl.encoder import locate_checkpoint
from lampctl.prompts import PromptResult, output_name, prompts_file
from lampctl.settings import DEFAULT_DATA_DIR
from lampctl.tasks import TaskSpec
from lampctl.tokenizer import open_saved_tokenizer, open_tokenizer

PromptJob = tuple[TaskSpec, str, Path, Path | None, Path | None, Path]


def prompts(
    ctx: typer.Context,
    tasks: TasksOpt = None,
    splits: SplitsOpt = None,
    sets: SetsOpt = None,
    k: Annotated[int, typer.Option("--k", "-k", min=0, help="Ranked items per input.")] = 4,
    max_length: Annotated[
        int, typer.Option("--max-length", min=1, help="The model's input budget in tokens.")
    ] = 512,
    tokenizer_id: Annotated[
        str | None,
        typer.Option(
            "--tokenizer",
            envvar="LAMPCTL_TOKENIZER",
            help="The model's tokenizer: hub id or local folder (or LAMPCTL_TOKENIZER).",
        ),
    ] = None,
    revision: Annotated[
        str | None, typer.Option("--revision", help="Tokenizer hub revision.")
    ] = None,
    no_profile: Annotated[
        bool, typer.Option("--no-profile", help="Non-personalized inputs: source = input.")
    ] = False,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    questions_file: Annotated[
        Path | None, typer.Option("--questions", help="Build from these files instead: questions,")
    ] = None,
    ranking_file: Annotated[Path | None, typer.Option("--ranking", help="... its ranking,")] = None,
    outputs_file: Annotated[
        Path | None, typer.Option("--outputs", help="... its gold outputs (optional),")
    ] = None,
    output_file: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="... into this file (also for one data-dir set)."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Build again even if up to date.")] = False,
    processes: Annotated[
        int | None,
        typer.Option(
            "--jobs", "-j", min=1, help="CPU processes for big files (default: all usable cores)."
        ),
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Build the LaMP paper's model inputs: each question's top-k ranked items packed into its
    input under a token budget, as the reference prompts.py does, string for string.

    Writes {set}_prompts_k{K}_len{N}_{tokenizer}-{hash}.jsonl (the tokenizer folder's or
    hub id's last part and 8 hex digits of the full name, e.g.
    dev_prompts_k4_len512_flan-t5-base-1a2b3c4d.jsonl; {"id", "source", "target"} per
    question, in question order; no target for test) beside each ranking, with a record that
    lets reruns skip what is up to date. Without --task, every ranked task, split and set.

    Examples:

      lampctl prompts -t LaMP-4 -s user --set dev --k 4 --max-length 512 --tokenizer t5-base

      lampctl prompts --tokenizer ./my-tokenizer --k 1    (everything ranked)

      lampctl prompts -t 7 --no-profile

      lampctl prompts -t 5 --questions q.json --ranking r.json --output p.jsonl --tokenizer t5-base
    """
    state = get_state(ctx, json_out, quiet)
    registry = state.registry()
    if tokenizer_id is None and not no_profile:
        raise typer.BadParameter(
            "name the model's tokenizer, or pass --no-profile", param_hint="--tokenizer"
        )
    left_out: list[str] = []
    explicit = questions_file is not None or ranking_file is not None
    if explicit:
        if questions_file is None or output_file is None or not tasks or len(tasks) != 1:
            raise typer.BadParameter(
                "explicit files need one --task, --questions and --output",
                param_hint="--questions",
            )
        if ranking_file is None and not no_profile:
            raise typer.BadParameter("give --ranking, or --no-profile", param_hint="--ranking")
        spec = registry.task(tasks[0])
        jobs: list[PromptJob] = [
            (
                spec,
                "file",
                questions_file,
                None if no_profile else ranking_file,
                outputs_file,
                output_file,
            )
        ]
    else:
        name = None if no_profile else tokenizer_id
        jobs = [
            (
                s.task,
                s.set,
                s.questions,
                s.ranking,
                s.outputs,
                s.questions.with_name(output_name(s.set, k, max_length, name)),
            )
            for s in ranked_sets(
                registry,
                data_dir,
                tasks or [],
                splits or [],
                sets or [],
                need_ranking=not no_profile,
                without="--no-profile",
                left_out=left_out,
            )
        ]
        tell_left_out(state, left_out)
        if output_file is not None:
            if len(jobs) != 1:
                raise typer.BadParameter(
                    f"--output takes one set; {len(jobs)} are chosen", param_hint="--output"
                )
            jobs = [(*jobs[0][:5], output_file)]
    for _, _, questions, ranking, outputs, target in jobs:  # before the tokenizer loads
        refuse_overwriting_inputs(
            [target], {"questions": questions, "ranking": ranking, "outputs": outputs}
        )
    results: list[PromptResult] = []
    with CliReporter(state) as reporter, ThreadPoolExecutor(max_workers=1) as loader:
        tokenizer: Any | None = None
        if not no_profile:
            assert tokenizer_id is not None
            # Found once, here, so a tokenizer that cannot be had fails before any work. One
            # saved by an earlier run loads in milliseconds; the first load (through
            # transformers) goes on a thread, while the first file is read.
            folder = locate_checkpoint(tokenizer_id, revision, kind="tokenizer")
            tokenizer = open_saved_tokenizer(folder) or loader.submit(open_tokenizer, folder)
        for spec, set_name, questions, ranking, outputs, target in jobs:
            reporter.start(f"{spec.name} {target.name}", None)
            result = prompts_file(
                spec,
                set_name,
                questions,
                ranking,
                outputs,
                target,
                k=k,
                max_length=max_length,
                tokenizer=tokenizer,
                tokenizer_id=None if no_profile else tokenizer_id,
                revision=revision,
                force=force,
                jobs=processes or usable_cpus(),
                progress=reporter.advance,
            )
            results.append(result)
            note_finished(result.output)

    def human(console: Console) -> None:
        table = folding_table(
            "output",
            "questions",
            "hit budget",
            "bare input",
            "mean tokens",
            "max tokens",
            "status",
            "seconds",
        )
        for r in results:
            s = r.stats
            table.add_row(
                r.output,
                str(s.questions) if s else "",
                str(s.hit_budget) if s else "",
                str(s.bare_input) if s else "",
                f"{s.mean_tokens:.1f}" if s else "",
                str(s.max_tokens) if s else "",
                r.status,
                f"{r.seconds:.2f}",
            )
        console.print(table)

    emit(
        state,
        {
            "command": "prompts",
            "k": k,
            "max_length": max_length,
            "tokenizer": None if no_profile else tokenizer_id,
            "files": [r.as_dict() for r in results],
            "left_out": left_out,
        },
        human,
    )
