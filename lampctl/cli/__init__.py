"""The lampctl command line: a thin layer that parses options and calls the core.

This file is the table of contents of the CLI: every command is registered here.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from lampctl import __version__
from lampctl.cli._common import JsonOpt, State, stderr_console
from lampctl.cli.avocado import avocado_app
from lampctl.cli.avocado import build as build_avocado
from lampctl.cli.download import download
from lampctl.cli.inventory import stats_command, status_command
from lampctl.cli.merge import gather_command, merge
from lampctl.cli.rank import rank
from lampctl.cli.rank_all import rank_all
from lampctl.errors import LampctlError

DEBUG_ENV = "LAMPCTL_DEBUG"


def _debug() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class LampctlGroup(TyperGroup):
    """Turns lampctl's typed errors into one ``Error: ...`` line and exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except LampctlError as exc:
            if _debug():
                raise
            stderr_console().print(f"Error: {exc}", markup=False)
            raise typer.Exit(1) from None
        except OSError as exc:  # e.g. disk full or permission denied while writing
            if _debug():
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            stderr_console().print(f"Error: {where}{exc.strerror or exc}", markup=False)
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=LampctlGroup,
    name="lampctl",
    help="Download, build and rank the LaMP personalization benchmark.\n\n"
    f"Set {DEBUG_ENV}=1 to see tracebacks.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lampctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    json_out: JsonOpt = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars, messages or summaries.")
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="LAMPCTL_CONFIG",
            help="A YAML file layered over the bundled task registry.",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Download, build and rank the LaMP personalization benchmark.

    Examples:

      lampctl rank --task LaMP-3 --split time

      lampctl --json rank -t 5 --set dev
    """
    ctx.obj = State(json=json_out, quiet=quiet, config=config)


def _help(function: Callable[..., Any]) -> str:
    """A command's docstring with prose paragraphs reflowed (example lines, indented, kept):
    this Typer keeps single line breaks, which would show the source's wrapping in --help."""
    paragraphs = inspect.cleandoc(function.__doc__ or "").split("\n\n")
    return "\n\n".join(
        p if p.startswith(" ") else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    )


def _register(group: typer.Typer, function: Callable[..., Any], name: str, **options: Any) -> None:
    group.command(name, help=_help(function), **options)(function)


_register(app, download, "download")
_register(app, rank, "rank", no_args_is_help=True)
_register(app, rank_all, "rank-all")
_register(app, gather_command, "gather")
_register(app, merge, "merge", no_args_is_help=True)
_register(app, status_command, "status")
_register(app, stats_command, "stats")
_register(avocado_app, build_avocado, "build", no_args_is_help=True)
app.add_typer(avocado_app, name="avocado")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        stderr_console().print("Interrupted.")
        sys.exit(130)
