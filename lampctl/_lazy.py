"""Names of a package imported on first use (as huggingface_hub's ``__init__`` does), so that
importing the package loads none of its heavy modules."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``name`` comes from module ``where[name]``
    (relative to the package when it starts with a dot)."""

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(where[name], package)
        return module if module.__name__.rsplit(".", 1)[-1] == name else getattr(module, name)

    return __getattr__
