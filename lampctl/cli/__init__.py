"""The lampctl command line: a thin layer that parses options and calls the core.

This file is the table of contents of the CLI: every command is registered here.
"""

from __future__ import annotations

import gc
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

from lampctl import __version__, settings
from lampctl.cli import _common
from lampctl.cli._common import (
    JsonOpt,
    QuietOpt,
    State,
    TsvOpt,
    json_error,
    stderr_console,
)
from lampctl.cli.avocado import avocado_app
from lampctl.cli.avocado import build as build_avocado
from lampctl.cli.config import config_app, env_command, set_command, show, unset_command
from lampctl.cli.download import download
from lampctl.cli.evaluate import evaluate
from lampctl.cli.inventory import stats_command, status_command
from lampctl.cli.merge import gather_command, merge
from lampctl.cli.model import generate_command, peft_app
from lampctl.cli.model import predict as peft_predict
from lampctl.cli.model import train as peft_train
from lampctl.cli.peft import peft_data_command
from lampctl.cli.prompts import prompts
from lampctl.cli.rank import rank
from lampctl.cli.rank_all import rank_all
from lampctl.errors import LampctlError, OptionError

DEBUG_ENV = "LAMPCTL_DEBUG"


# The click exception class behind Typer's usage errors, reached through Typer's public API.
UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


def _wants_json(ctx: Any, args: list[str] | None = None) -> bool:
    """``--json`` was given: globally or to the command (seen in ``args`` when the command's
    own options could not be parsed)."""
    root = ctx.find_root()
    state = root.obj
    given = args or []
    given = given[: given.index("--")] if "--" in given else given
    return (
        (isinstance(state, State) and state.json)
        or bool(root.params.get("json_out"))  # before the root callback ran
        or "--json" in given
    )


def _flags(ctx: Any) -> dict[str, str]:
    """The command's arguments as the API names them -> the option that sets each
    (``compare_with`` -> ``--compare``): how a core ``OptionError`` is said on the CLI."""
    flags = {}
    for param in ctx.command.params:
        long = [o for o in param.opts if o.startswith("--")]
        if param.name and long:
            flags[param.name] = max(long, key=len)
    return flags


def _one_line(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


_ARGS_KEY = "lampctl.args"


def _usage_error(exc: Any) -> NoReturn:
    """A usage error is one line too, like every other error: ``Error: MESSAGE (see
    'lampctl CMD --help')``, exit code 2 (Typer would draw a boxed panel under a usage
    block)."""
    where = exc.ctx.command_path if exc.ctx is not None else "lampctl"
    message = " ".join(exc.format_message().split())
    stderr_console().print(f"Error: {message} (see '{where} --help')", markup=False)
    raise typer.Exit(exc.exit_code)


def _escape_help(command: Any) -> None:
    """Help texts are plain text: rich markup is escaped, once, so that
    ``pip install 'lampctl[train]'`` shows its ``[train]`` (rich would eat it as a tag)."""
    from rich.markup import escape

    if getattr(command, "_help_escaped", False):
        return
    command._help_escaped = True
    for name in ("help", "short_help"):
        if isinstance(getattr(command, name, None), str):
            setattr(command, name, escape(getattr(command, name)))
    for param in getattr(command, "params", []):
        if isinstance(getattr(param, "help", None), str):
            param.help = escape(param.help)
    for sub in getattr(command, "commands", {}).values():
        _escape_help(sub)


class LampctlGroup(TyperGroup):
    """Turns lampctl's typed errors into one ``Error: ...`` line and exit code 1 (and, under
    ``--json``, one JSON object with an ``error`` field on stdout)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # --help among them
        _no_value_shown_for_flags(params)
        return params

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _escape_help(self)
        super().format_help(ctx, formatter)

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        ctx.meta[_ARGS_KEY] = list(args)  # click empties ctx.args before it looks the command up
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:  # a global option at fault (`lampctl --bogus`)
            if _wants_json(ctx, args):
                json_error(exc.format_message(), exc.exit_code)
            _usage_error(exc)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # output piped into `head` and the like: stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(141) from None
        except (LampctlError, OSError) as exc:
            if settings.debug():
                raise
            message = _one_line(exc) if isinstance(exc, OSError) else str(exc)
            if _wants_json(ctx):
                json_error(message, 1)
            stderr_console().print(f"Error: {message}", markup=False)
            raise typer.Exit(1) from None
        except UsageError as exc:  # raised inside a command, or an unknown command
            if not getattr(exc, "reported", False) and _wants_json(ctx, ctx.meta.get(_ARGS_KEY)):
                json_error(exc.format_message(), exc.exit_code)
            _usage_error(exc)
        except KeyboardInterrupt:
            if _wants_json(ctx):
                json_error("interrupted", 130, finished=list(_common.FINISHED))
            stderr_console().print(_common.interrupted_message(), markup=False)
            raise typer.Exit(130) from None


def _settings_file_defaults(ctx: Any, params: list[Any]) -> None:
    """An option read from a LAMPCTL_* variable also takes the settings file's value, below
    the variable: click ranks a context's default map under the environment."""
    values = settings.file_values()
    defaults = {
        param.name: values[param.envvar]
        for param in params
        if isinstance(getattr(param, "envvar", None), str) and param.envvar in values
    }
    if defaults:
        ctx.default_map = {**(ctx.default_map or {}), **defaults}


def _no_value_shown_for_flags(params: list[Any]) -> None:
    """A flag takes no value (``--dry-run true`` is refused), so --help shows none: Typer
    would print ``<bool>`` beside it."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class LampctlCommand(TyperCommand):
    """A command that refuses an option given twice where it takes one value: click would
    silently keep the last (``rank -t 3 -t 7`` ranking only LaMP-7). Under ``--json`` a usage
    error is one JSON object on stdout (and, for a bare command, no help text there)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # --help among them
        _no_value_shown_for_flags(params)
        return params

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _escape_help(self)
        super().format_help(ctx, formatter)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except OptionError as exc:  # the core's word for a usage error: exit 2, as click's
            flags = _flags(ctx)
            hint = flags.get(exc.option) or f"--{exc.option.replace('_', '-')}"
            raise typer.BadParameter(exc.as_flags(flags), ctx=ctx, param_hint=hint) from None

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        _settings_file_defaults(ctx, self.params)
        if not args and self.no_args_is_help and _wants_json(ctx):
            json_error(f"no options given; see 'lampctl {self.name} --help'", 2)
            raise typer.Exit(2)
        try:
            self._refuse_repeats(ctx, args)
            return super().parse_args(ctx, args)
        except UsageError as exc:
            if _wants_json(ctx, args):
                json_error(exc.format_message(), 2)
                exc.reported = True  # type: ignore[attr-defined]
            raise

    def _refuse_repeats(self, ctx: Any, args: list[str]) -> None:
        single: dict[str, Any] = {}
        for param in self.params:
            if getattr(param, "multiple", True) or getattr(param, "is_flag", False):
                continue
            for name in (*getattr(param, "opts", ()), *getattr(param, "secondary_opts", ())):
                single[name] = param
        seen: dict[str, str] = {}
        index = 0
        while index < len(args):
            token = args[index]
            if token == "--":
                break
            name = token.split("=", 1)[0]
            param = single.get(name)
            if param is not None:
                first = seen.get(param.name)
                if first is not None:
                    raise typer.BadParameter(
                        f"given twice ({first} and {token}); it takes one value",
                        ctx=ctx,
                        param_hint=" / ".join(param.opts),
                    )
                seen[param.name] = token
                if "=" not in token:
                    index += 1  # skip the value
            index += 1


app = typer.Typer(
    cls=LampctlGroup,
    name="lampctl",
    help="Download, build and rank the LaMP personalization benchmark; build its model inputs "
    "and score predictions.\n\n"
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
    tsv_out: TsvOpt = False,
    quiet: QuietOpt = False,
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
    """Download, build and rank the LaMP personalization benchmark; build its model inputs
    and score predictions.

    Examples:

      lampctl rank --task LaMP-3 --split time

      lampctl --json rank -t 5 --set dev
    """
    ctx.obj = State(json=json_out, quiet=quiet, config=config, tsv=tsv_out)
    _common.FINISHED.clear()
    from lampctl.reporting import forget_notices

    forget_notices()  # each invocation says each notice once


def _help(function: Callable[..., Any]) -> str:
    """A command's docstring with prose paragraphs reflowed (example lines, indented, kept):
    this Typer keeps single line breaks, which would show the source's wrapping in --help."""
    paragraphs = inspect.cleandoc(function.__doc__ or "").split("\n\n")
    return "\n\n".join(
        p if p.startswith(" ") else " ".join(line.strip() for line in p.splitlines())
        for p in paragraphs
    )


def _add_group(sub: typer.Typer, name: str) -> None:
    """A command group (``peft``, ``avocado``, ``config``), with lampctl's errors and help."""
    sub.info.cls = LampctlGroup
    app.add_typer(sub, name=name)


def _register(group: typer.Typer, function: Callable[..., Any], name: str, **options: Any) -> None:
    group.command(name, help=_help(function), cls=LampctlCommand, **options)(function)


_register(app, download, "download")
_register(app, rank, "rank", no_args_is_help=True)
_register(app, rank_all, "rank-all")
_register(app, gather_command, "gather")
_register(app, merge, "merge")
_register(app, prompts, "prompts")
_register(app, peft_data_command, "peft-data")
_register(peft_app, peft_train, "train", no_args_is_help=True)
_register(peft_app, peft_predict, "predict", no_args_is_help=True)
_add_group(peft_app, "peft")
_register(app, generate_command, "generate", no_args_is_help=True)
_register(app, evaluate, "evaluate", no_args_is_help=True)
_register(app, status_command, "status")
_register(app, stats_command, "stats")
_register(avocado_app, build_avocado, "build", no_args_is_help=True)
_add_group(avocado_app, "avocado")
_register(config_app, show, "show")
_register(config_app, set_command, "set")
_register(config_app, unset_command, "unset")
_add_group(config_app, "config")
_register(app, env_command, "env")


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:  # before or after a command ran
        stderr_console().print("Interrupted.", markup=False)
        sys.exit(130)
    finally:
        # The process ends here and the OS frees its memory; unfrozen, the interpreter's last
        # collection walks every object the imports made (about 30 ms, on every command).
        gc.freeze()
