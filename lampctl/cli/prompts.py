"""``lampctl prompts``: the paper's retrieval-augmented model inputs, one JSONL per set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from lampctl import api
from lampctl.cli._common import (
    CliReporter,
    DataDirOpt,
    JsonOpt,
    QuietOpt,
    SetsOpt,
    SplitsOpt,
    State,
    TasksOpt,
    TsvOpt,
    emit,
    folding_table,
    get_state,
    note_finished,
    tell_left_out,
)
from lampctl.settings import DEFAULT_DATA_DIR


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
    tsv_out: TsvOpt = False,
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

      lampctl prompts -t 4 -s user --set dev --k 4 --tokenizer t5-base

      lampctl prompts --tokenizer ./my-tokenizer --k 1    (everything ranked)

      lampctl prompts -t 7 --no-profile

      lampctl prompts -t 5 --questions q.json --ranking r.json -o p.jsonl \\
          --tokenizer t5-base
    """
    state = get_state(ctx, json_out, quiet)
    with CliReporter(state) as reporter:
        run = api.prompts(
            tasks or [], splits or [], sets or [], k=k, max_length=max_length,
            tokenizer=tokenizer_id, revision=revision, no_profile=no_profile, data_dir=data_dir,
            questions=questions_file, ranking=ranking_file, outputs=outputs_file,
            output=output_file, force=force, jobs=processes, config=state.config,
            on_planned=lambda left_out: tell_left_out(state, left_out),
            on_start=lambda label: reporter.start(label, None), progress=reporter.advance,
            on_file=note_finished,
        )  # fmt: skip
    choices = {"k": k, "max_length": max_length, "tokenizer": None if no_profile else tokenizer_id}
    _show_prompts(state, run, choices)


def _show_prompts(state: State, run: api.PromptsRun, choices: dict[str, Any]) -> None:
    columns = ("output", "questions", "hit budget", "bare input", "mean tokens", "max tokens",
               "status", "seconds")  # fmt: skip

    def human(console: Console) -> None:
        table = folding_table(*columns)
        for r in run.results:
            s = r.stats
            counts = (
                (str(s.questions), str(s.hit_budget), str(s.bare_input), f"{s.mean_tokens:.1f}",
                 str(s.max_tokens)) if s else ("",) * 5
            )  # fmt: skip
            table.add_row(r.output, *counts, r.status, f"{r.seconds:.2f}")
        console.print(table)

    files = [r.as_dict() for r in run.results]
    payload = {"command": "prompts", **choices, "files": files, "left_out": run.left_out}
    emit(state, payload, human)
