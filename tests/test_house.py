"""The shape of the package, checked: layers, import graph, sizes, the public names.

- no import cycle among lampctl's modules (lazy imports inside functions count too; imports
  under ``TYPE_CHECKING`` do not, they never run);
- the core (everything outside ``api/`` and ``cli/``) never imports the API, the CLI or Typer;
- no module over 500 lines, and every command's function in ``cli/`` under 40 lines of body
  (options parsed, one API call, the result handed to a renderer);
- ``lampctl/__init__``'s lazy map, ``__all__`` and its type-checking imports name the same
  things, from the same modules, and each resolves.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import lampctl

PACKAGE = Path(lampctl.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The lampctl modules (and outside packages, by top name) ``path`` imports at run time."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def test_no_import_cycle():
    modules = _modules()
    graph = {
        name: {m for m in _imports(path, modules) if m in modules and m != name}
        for name, path in modules.items()
    }
    # The package itself only re-exports lazily; an edge to it is no dependency.
    graph = {name: edges - {"lampctl"} for name, edges in graph.items()}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def walk(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt)
        path.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name)


def test_the_core_never_imports_the_api_the_cli_or_typer():
    modules = _modules()
    for name, path in modules.items():
        if name in ("lampctl", "lampctl.__main__") or name.startswith(
            ("lampctl.api", "lampctl.cli")
        ):
            continue
        imported = _imports(path, modules)
        bad = sorted(
            m for m in imported if m.startswith(("lampctl.api", "lampctl.cli", "typer", "click"))
        )
        assert not bad, f"{name} imports {bad}"


def test_modules_are_small_and_commands_thin():
    for name, path in _modules().items():
        lines = len(path.read_text().splitlines())
        assert lines <= 500, f"{name}: {lines} lines"
    for path in (PACKAGE / "cli").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.FunctionDef) or not node.args.args:
                continue
            if node.args.args[0].arg != "ctx":  # a command takes the Typer context first
                continue
            body = node.body
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:]  # the docstring is the command's help
            size = body[-1].end_lineno - body[0].lineno + 1
            assert size <= 40, f"cli/{path.name}: {node.name} has {size} lines of body"


def test_public_names_agree():
    source = (PACKAGE / "__init__.py").read_text()
    tree = ast.parse(source)
    where = dict(lampctl._WHERE)
    assert set(lampctl.__all__) == set(where) | {"__version__"}
    typed: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    for alias in stmt.names:
                        typed[alias.asname or alias.name] = f"{stmt.module}.{alias.name}"
    assert set(typed) == set(where), set(typed) ^ set(where)
    for name, module in where.items():
        value = getattr(lampctl, name)
        assert value is not None, name
        if typed[name] != f"{module}.{name}":  # imported from elsewhere: the same object
            origin, _, attr = typed[name].rpartition(".")
            try:
                same = getattr(importlib.import_module(origin), attr)
            except (ImportError, AttributeError):
                same = importlib.import_module(typed[name])
            assert same is value, name
    assert sorted(dir(lampctl)) == dir(lampctl) and set(lampctl.__all__) <= set(dir(lampctl))


def test_every_package_is_installed():
    """pyproject.toml lists the packages (configs/ is mapped in): a folder of the source tree
    that is not listed works from a checkout and is missing from an installed lampctl. Where
    the suite runs against an installed copy (CI), that copy has every package too."""
    import tomllib

    source = Path(__file__).resolve().parents[1]
    pyproject = tomllib.loads((source / "pyproject.toml").read_text())
    listed = set(pyproject["tool"]["setuptools"]["packages"])

    def packages(root: Path) -> set[str]:
        return {
            ".".join(init.parent.relative_to(root).parts)
            for init in (root / "lampctl").rglob("__init__.py")
        }

    found = packages(source)
    assert found - listed == set()
    assert listed - found == {"lampctl.configs"}
    assert found - packages(PACKAGE.parent) == set()  # the installed copy, when there is one
