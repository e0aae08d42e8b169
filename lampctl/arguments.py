"""What every public API function checks of how it was called, before it does anything: a
misspelled keyword (``epoch=1``), a missing argument or too many positional ones are an
``OptionError`` naming the argument, with the nearest valid name, as the CLI answers a
misspelled option, rather than Python's bare ``TypeError``."""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from lampctl.errors import OptionError

F = TypeVar("F", bound=Callable[..., Any])

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def checked_arguments(function: F | None = None, *, options: type | None = None) -> Any:
    """``function`` with its call checked against its signature first (see the module).
    A function that takes ``**options`` names their dataclass (``options``): a keyword is
    then either an argument or one of its fields."""

    def wrap(function: F) -> F:
        signature = inspect.signature(function)
        names = [n for n, p in signature.parameters.items() if p.kind in _NAMED]
        valid = [*names, *(f.name for f in dataclasses.fields(options))] if options else names

        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            for given in kwargs:
                if given not in valid:
                    raise _unknown(function.__name__, given, valid)
            try:
                signature.bind(*args, **kwargs)
            except TypeError as exc:
                missing = [n for n in names if n not in kwargs][len(args) :]
                required = [
                    n for n in missing if signature.parameters[n].default is inspect.Parameter.empty
                ]
                option = required[0] if required else (names[0] if names else function.__name__)
                raise OptionError(option, f"{function.__name__}(): {exc}") from None
            return function(*args, **kwargs)

        return cast(F, call)

    return wrap(function) if function is not None else wrap


def _unknown(function: str, given: str, names: list[str]) -> OptionError:
    near = difflib.get_close_matches(given, names, n=1, cutoff=0.6)
    hint = f"did you mean {near[0]}?" if near else f"it takes {', '.join(names)}"
    return OptionError(given, f"{function}() has no argument {given!r}; {hint}")
