"""``lampctl config`` and ``lampctl env``: the settings every command reads, and the machine."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from lampctl import environment
from lampctl.cli._common import JsonOpt, QuietOpt, TsvOpt, emit, folding_table, get_state

config_app = typer.Typer(
    name="config",
    help="The project's settings (lampctl.yaml), read by every command.",
    rich_markup_mode="rich",
)

KeyArg = Annotated[str, typer.Argument(help="checkpoint, data_dir, device, precision, ...")]


def show(
    ctx: typer.Context,
    json_out: JsonOpt = False,
    tsv_out: TsvOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Every setting, its value now and where it comes from.

    A command's option wins over the environment (LAMPCTL_*), which wins over the settings
    file (the nearest lampctl.yaml in this folder or above, or LAMPCTL_SETTINGS), which wins
    over the defaults.

    Examples:

      lampctl config show

      lampctl --json config show | jq '.settings[] | select(.key=="device")'
    """
    state = get_state(ctx, json_out, quiet)
    rows = environment.current_settings()
    found = environment.settings.settings_file()

    def human(console: Console) -> None:
        table = folding_table("key", "value", "from")
        for row in rows:
            table.add_row(row.key, row.value or "-", row.source)
        console.print(table)
        console.print(f"settings file: {found or 'none'}", markup=False)

    emit(
        state,
        {
            "command": "config show",
            "settings_file": str(found) if found else None,
            "settings": [r.__dict__ for r in rows],
        },
        human,
    )


def set_command(
    ctx: typer.Context,
    key: KeyArg,
    value: Annotated[str, typer.Argument(help="The value; a path is kept relative to the file.")],
    json_out: JsonOpt = False,
    tsv_out: TsvOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Set one setting in the settings file (a new ./lampctl.yaml where there is none).

    Every command run in this folder or below then reads it, unless an option or a LAMPCTL_*
    variable says otherwise: one choice of checkpoint holds for rank-all, status and the rest.

    Examples:

      lampctl config set checkpoint ./contriever

      lampctl config set data_dir /scratch/me/data_raw
    """
    _write(ctx, key, value, json_out, quiet)


def unset_command(
    ctx: typer.Context,
    key: KeyArg,
    json_out: JsonOpt = False,
    tsv_out: TsvOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Remove one setting from the settings file.

    Examples:

      lampctl config unset checkpoint
    """
    _write(ctx, key, None, json_out, quiet)


def _write(ctx: typer.Context, key: str, value: str | None, json_out: bool, quiet: bool) -> None:
    state = get_state(ctx, json_out, quiet)
    path = environment.set_setting(key, value)
    now = environment.settings.get(environment.settings.FILE_KEYS[key])
    emit(
        state,
        {"command": "config set", "file": str(path), "key": key, "value": now},
        lambda console: console.print(f"{path}: {key} = {now or '(unset)'}", markup=False),
    )


def env_command(
    ctx: typer.Context,
    no_encoder: Annotated[
        bool, typer.Option("--no-encoder", help="Do not look for the encoder checkpoint.")
    ] = False,
    json_out: JsonOpt = False,
    tsv_out: TsvOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The machine and settings lampctl runs with: versions, devices, every setting and
    where it came from, and whether the encoder checkpoint loads here without the network.

    Paste its output into a bug report.

    Examples:

      lampctl env

      lampctl --json env | jq .encoder
    """
    state = get_state(ctx, json_out, quiet)
    report = environment.environment(check_encoder=not no_encoder)

    def human(console: Console) -> None:
        packages = ", ".join(f"{k} {v or 'missing'}" for k, v in report["packages"].items())
        lines = [
            f"lampctl {report['lampctl']}, Python {report['python']} ({report['platform']})",
            f"packages: {packages}",
            f"devices: {', '.join(report['devices'])}",
            f"hub offline: {'yes' if report['hub_offline'] else 'no'}",
            f"settings file: {report['settings_file'] or 'none'}",
        ]
        for s in report["settings"]:
            if s["value"] is not None:
                lines.append(f"  {s['key']} = {s['value']} ({s['source']})")
        encoder = report.get("encoder")
        if encoder:
            where = "available" if encoder["available"] else f"not available ({encoder['why']})"
            lines.append(f"encoder {encoder['checkpoint']}: {encoder['where']}, {where}")
        for line in lines:
            console.print(line, markup=False)

    emit(state, {"command": "env", **report}, human)
