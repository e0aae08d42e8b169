"""``lampctl peft train``, ``lampctl peft predict`` and ``lampctl generate``: the model step."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from lampctl.cli._common import (
    CliReporter,
    DataDirOpt,
    JsonOpt,
    QuietOpt,
    State,
    TsvOpt,
    emit,
    fail_with,
    first_errors,
    folding_table,
    get_state,
    note_finished,
)
from lampctl.settings import DEFAULT_DATA_DIR

peft_app = typer.Typer(
    name="peft",
    help="One LoRA adapter per user (peft's files): train them, many users at once, then "
    "predict with them.",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model", "-m", help="Base model: a folder or a hub id (seq2seq or causal).",
        show_default=False,
    ),
]  # fmt: skip
OneTaskOpt = Annotated[
    str | None, typer.Option("--task", "-t", help="Task: LaMP-3, LaMP_3 or 3.", show_default=False)
]
OneSplitOpt = Annotated[str | None, typer.Option("--split", "-s", help="user or time.")]
OneSetOpt = Annotated[str | None, typer.Option("--set", help="train, dev or test.")]
VariantOpt = Annotated[
    str | None,
    typer.Option(
        "--variant",
        help="Which peft-data files: SET_peft_VARIANT (ranked, file_seed3...; default: those "
        "of peft-data's default options).",
        show_default=False,
    ),
]
UsersOpt = Annotated[
    Path | None, typer.Option("--users", help="Only these users: a JSON list of user ids.")
]
ShardUsersOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="Only shard i/n (i from 0) of the users, balanced by rows (a user is never "
        "split); default from the SLURM array variables when set.",
        show_default=False,
    ),
]
RevisionOpt = Annotated[str | None, typer.Option("--revision", help="Model: hub revision.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
PrecisionOpt = Annotated[str, typer.Option("--precision", help="fp32, bf16 or fp16.")]
BeamsOpt = Annotated[
    int | None, typer.Option("--num-beams", min=1, help="Beams (1: greedy; default 4).")
]
NewTokensOpt = Annotated[
    int | None, typer.Option("--max-new-tokens", min=1, help="Most new tokens (default 128).")
]
GenBatchOpt = Annotated[
    int | None, typer.Option("--batch-size", min=1, help="Rows per batch (default 16).")
]
PredictionsOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Predictions file (official format).")
]
MaxLengthOpt = Annotated[
    int | None, typer.Option("--max-length", min=1, help="Tokens of a source (default 512).")
]


def _decoding(beams: int | None, tokens: int | None, batch: int | None, length: int | None):
    return {
        "num_beams": beams, "max_new_tokens": tokens, "batch_size": batch, "max_length": length,
    }  # fmt: skip


def train(
    ctx: typer.Context,
    model: ModelOpt,
    task: OneTaskOpt = None,
    split: OneSplitOpt = None,
    set_name: OneSetOpt = None,
    variant: VariantOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    rows: Annotated[
        Path | None, typer.Option("--rows", help="Train from this peft-data file instead.")
    ] = None,
    adapters: Annotated[
        Path | None, typer.Option("--adapters", help="Adapters folder (default: beside rows).")
    ] = None,
    users: UsersOpt = None,
    shard: ShardUsersOpt = None,
    r: Annotated[int | None, typer.Option("--r", min=1, help="LoRA rank (8).")] = None,
    alpha: Annotated[int | None, typer.Option("--alpha", min=1, help="LoRA alpha (32).")] = None,
    dropout: Annotated[float | None, typer.Option("--dropout", help="LoRA dropout (0.1).")] = None,
    targets: Annotated[
        str | None,
        typer.Option("--targets", help="Modules, comma-separated (q,k,v; causal: *_proj)."),
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option("--learning-rate", help="AdamW learning rate (5e-5).")
    ] = None,
    weight_decay: Annotated[
        float | None, typer.Option("--weight-decay", help="AdamW weight decay (1e-4).")
    ] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Epochs (30).")] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Rows per step (16).")
    ] = None,
    warmup_ratio: Annotated[
        float | None, typer.Option("--warmup-ratio", help="Linear warmup share (0.05).")
    ] = None,
    max_grad_norm: Annotated[
        float | None, typer.Option("--max-grad-norm", help="Gradient clipping (1.0; 0: none).")
    ] = None,
    max_length: MaxLengthOpt = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Adapter init, order, dropout.")] = 0,
    revision: RevisionOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    force: Annotated[bool, typer.Option("--force", help="Retrain up-to-date users.")] = False,
    pack: Annotated[
        int | None,
        typer.Option(
            "--pack",
            min=1,
            help="Users trained at once over one base model (default 32, fewer if memory "
            "holds fewer); adapters are the same whatever K.",
        ),
    ] = None,
    json_out: JsonOpt = False,
    tsv_out: TsvOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train one fresh LoRA adapter per user on that user's peft-data rows.

    The base model is loaded once; each user's adapter is saved whole or not at all in
    ADAPTERS/USER_ID/ with a record (rows sha256, base model, options), so a rerun skips the
    users that are up to date and an interrupted run finishes the rest. Defaults are the LaMP
    authors' (r 8, alpha 32, dropout 0.1, lr 5e-5, 30 epochs, batch 16, warmup 0.05).

    Examples:

      lampctl peft train -m google/flan-t5-base -t 4 -s time --set dev

      lampctl peft train -m ./qwen --rows dev_peft_file.jsonl --epochs 3

      lampctl peft train -m ./t5 -t 7 -s time --set train --shard 3/16

      lampctl peft train -m ./t5 -t 3 -s time --set dev --pack 16 --json
    """
    from lampctl.api.modelling import peft_train

    state = get_state(ctx, json_out, quiet)
    hyperparameters: dict[str, Any] = {
        "r": r, "alpha": alpha, "dropout": dropout, "learning_rate": learning_rate,
        "weight_decay": weight_decay, "epochs": epochs, "batch_size": batch_size,
        "warmup_ratio": warmup_ratio, "max_grad_norm": max_grad_norm, "max_length": max_length,
        "seed": seed, "targets": [t.strip() for t in targets.split(",")] if targets else None,
    }  # fmt: skip
    with CliReporter(state) as reporter:
        run = peft_train(
            model, task, split, set_name, rows=rows, adapters=adapters, variant=variant,
            data_dir=data_dir, users=users, shard=shard, revision=revision, device=device,
            precision=precision, force=force, pack=pack, config=state.config,
            reporter=reporter, on_file=note_finished, **hyperparameters,
        )  # fmt: skip
    _show_training(state, run)
    fail_with(run.errors)


def _show_training(state: State, run: Any) -> None:
    def human(console: Console) -> None:
        table = folding_table("user", "rows", "status", "steps", "loss", "seconds")
        for r in run.results:
            loss = "" if r.loss is None else f"{r.loss:.4f}"
            steps = str(r.steps) if r.status == "trained" else ""
            table.add_row(r.user_id, str(r.rows), r.status, steps, loss, f"{r.seconds:.1f}")
        console.print(table)
        failed = f", {len(run.failed)} failed" if run.failed else ""
        console.print(
            f"{run.trained} trained, {run.up_to_date} up to date{failed}; adapters in "
            f"{run.adapters}",
            markup=False,
        )

    payload = {"command": "peft train", **run.as_dict(), "error": first_errors(run.errors)}
    emit(state, payload, human)


def predict(
    ctx: typer.Context,
    model: ModelOpt,
    task: OneTaskOpt = None,
    split: OneSplitOpt = None,
    set_name: OneSetOpt = None,
    variant: VariantOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    rows: Annotated[
        Path | None, typer.Option("--rows", help="Evaluation rows (SET_peft_*_eval.jsonl).")
    ] = None,
    adapters: Annotated[
        Path | None, typer.Option("--adapters", help="Adapters folder (default: beside rows).")
    ] = None,
    output: PredictionsOpt = None,
    users: UsersOpt = None,
    shard: ShardUsersOpt = None,
    num_beams: BeamsOpt = None,
    max_new_tokens: NewTokensOpt = None,
    batch_size: GenBatchOpt = None,
    max_length: MaxLengthOpt = None,
    revision: RevisionOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    force: Annotated[bool, typer.Option("--force", help="Answer again when up to date.")] = False,
    json_out: JsonOpt = False,
    tsv_out: TsvOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Answer each user's questions with that user's adapter; write the predictions file.

    Users are batched together (each row of a batch uses its own user's adapter); a user
    without an adapter gets the base model and is counted. The output is the official
    {"task", "golds": [{"id", "output"}]} file that 'lampctl evaluate' reads; its name carries
    the model, beams and new tokens, and a record beside it lets a rerun skip it when nothing
    changed (--force answers again). An interrupted run resumes, keeping only the answers
    whose question and adapter are unchanged. With --shard, one shard's file; 'lampctl gather
    --predictions FILE' joins the shards.

    Examples:

      lampctl peft predict -m google/flan-t5-base -t 4 -s time --set dev

      lampctl peft predict -m ./t5 -t 3 --rows dev_peft_file_eval.jsonl
    """
    from lampctl.api.modelling import peft_predict

    state = get_state(ctx, json_out, quiet)
    with CliReporter(state) as reporter:
        run = peft_predict(
            model, task, split, set_name, rows=rows, adapters=adapters, output=output,
            variant=variant, data_dir=data_dir, users=users, shard=shard, revision=revision,
            device=device, precision=precision, force=force, config=state.config,
            reporter=reporter, **_decoding(num_beams, max_new_tokens, batch_size, max_length),
        )  # fmt: skip
    note_finished(run.output)

    def human(console: Console) -> None:
        if run.status == "up to date":
            console.print(f"up to date: {run.output} (--force to answer again)", markup=False)
            return
        console.print(
            f"{run.rows} predictions for {run.users} users ({run.without_adapter} without an "
            f"adapter, base model; {run.resumed} resumed, {run.redone} redone) in "
            f"{run.seconds:.1f} s -> {run.output}",
            markup=False,
        )

    emit(state, {"command": "peft predict", **run.as_dict()}, human)


def generate_command(
    ctx: typer.Context,
    model: ModelOpt,
    task: OneTaskOpt = None,
    split: OneSplitOpt = None,
    set_name: OneSetOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    prompts: Annotated[
        Path | None, typer.Option("--prompts", help="A prompts file (what 'prompts' writes).")
    ] = None,
    output: PredictionsOpt = None,
    num_beams: BeamsOpt = None,
    max_new_tokens: NewTokensOpt = None,
    batch_size: GenBatchOpt = None,
    max_length: MaxLengthOpt = None,
    revision: RevisionOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "fp32",
    force: Annotated[bool, typer.Option("--force", help="Generate again when up to date.")] = False,
    json_out: JsonOpt = False,
    tsv_out: TsvOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Generate an output for every row of a prompts file: the retrieval path's model step.

    Rows are batched by length; the output is the official predictions file that 'lampctl
    evaluate' reads, in the prompts file's order; its name carries the model, beams and new
    tokens, and a record beside it lets a rerun skip it when nothing changed (--force
    generates again). Any seq2seq or causal model.

    Examples:

      lampctl generate -m google/flan-t5-base -t 4 -s user --set dev

      lampctl generate -m ./t5 -t 4 --prompts dev_prompts.jsonl -o preds.json
    """
    from lampctl.api.modelling import generate

    state = get_state(ctx, json_out, quiet)
    with CliReporter(state) as reporter:
        run = generate(
            model, task, split, set_name, prompts=prompts, output=output, data_dir=data_dir,
            revision=revision, device=device, precision=precision, force=force,
            config=state.config, reporter=reporter,
            **_decoding(num_beams, max_new_tokens, batch_size, max_length),
        )  # fmt: skip
    note_finished(run.output)

    def human(console: Console) -> None:
        if run.status == "up to date":
            console.print(f"up to date: {run.output} (--force to generate again)", markup=False)
            return
        console.print(
            f"{run.rows} predictions in {run.seconds:.1f} s -> {run.output}", markup=False
        )

    emit(state, {"command": "generate", **run.as_dict()}, human)
