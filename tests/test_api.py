"""The public Python API: light to import, and the same answers and files as the CLI."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import lampctl
from lampctl.errors import InputError, OptionError

PACKAGE = Path(lampctl.__file__).resolve().parent


def test_import_lampctl_loads_neither_torch_nor_transformers():
    script = (
        "import sys, lampctl\n"
        "lampctl.load, lampctl.evaluate, lampctl.rank, lampctl.prompts, lampctl.settings\n"
        "print(sorted(m for m in ('torch', 'transformers', 'typer') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_load_gives_the_files_contents(cli, tree):
    assert cli("rank", "-t", "5", "-s", "user", "--set", "dev", "--data-dir", tree).exit_code == 0
    folder = tree / "user/LaMP_5"
    dev = lampctl.load("LaMP-5", split="user", set="dev", data_dir=tree)
    raw = json.loads((folder / "dev_questions.json").read_text())
    questions = dev.questions()
    assert [q.id for q in questions] == [q["id"] for q in raw]
    assert [q.input for q in questions] == [q["input"] for q in raw]
    assert [q.profile for q in questions] == [q["profile"] for q in raw]
    golds = json.loads((folder / "dev_outputs.json").read_text())["golds"]
    assert dev.golds() == {g["id"]: g["output"] for g in golds}
    assert dev.ranking() == json.loads((folder / "dev_questions_rank.json").read_text())
    assert cli("merge", "-t", "5", "-s", "user", "--set", "dev", "--data-dir", tree).exit_code == 0
    merged = json.loads((folder / "dev_questions_merged.json").read_text())
    ranked = dev.ranked_questions()
    assert [q.raw for q in ranked] == merged  # the objects questions() gives, reordered
    assert [q.profile for q in ranked] == [m["profile"] for m in merged]
    assert [q.id for q in ranked] == [q.id for q in questions]
    assert repr(dev) == f"LampSet(LaMP-5 user dev, data_dir={str(tree)!r})"
    assert lampctl.load("5", "user", "test", data_dir=tree).golds() == {}
    assert lampctl.load("5", "time", "dev", data_dir=tree).ranking() is None


def test_user_ids_follow_the_split(tree):
    time_dev = lampctl.load("7", "time", "dev", data_dir=tree).questions()
    raw = json.loads((tree / "time/LaMP_7/dev_questions.json").read_text())
    assert [q.user_id for q in time_dev] == [str(q["user_id"]) for q in raw]
    user_dev = lampctl.load("7", "user", "dev", data_dir=tree).questions()
    assert [q.user_id for q in user_dev] == [q.id for q in user_dev]  # each its own user


def test_evaluate_agrees_with_the_cli_json(cli, tree, tmp_path):
    ids = list(lampctl.load("3", "user", "dev", data_dir=tree).golds())
    golds = {qid: str(i % 5 + 1) for i, qid in enumerate(ids)}
    predictions = {qid: str((i * 7) % 5 + 1) for i, qid in enumerate(ids)}
    path = tmp_path / "p.json"
    path.write_text(json.dumps(predictions))
    gold_file = tmp_path / "g.json"
    gold_file.write_text(json.dumps(golds))
    report = cli.json("evaluate", "-t", "3", "-p", path, "--golds", gold_file)
    assert lampctl.evaluate("LaMP-3", predictions, golds) == report["metrics"]
    with_boot = lampctl.evaluate("3", predictions, golds, bootstrap=50, seed=2)
    boot = cli.json(
        "evaluate", "-t", "3", "-p", path, "--golds", gold_file, "--bootstrap", "50", "--seed", "2"
    )
    assert with_boot["bootstrap"] == boot["bootstrap"]
    # What the CLI reads, the API takes too: paths, the official object, a list of rows.
    official = {"task": "LaMP_3", "golds": [{"id": k, "output": v} for k, v in golds.items()]}
    rows = [{"id": k, "output": v} for k, v in predictions.items()]
    assert lampctl.evaluate("LaMP-3", path, gold_file) == report["metrics"]
    assert lampctl.evaluate("LaMP-3", str(path), official) == report["metrics"]
    assert lampctl.evaluate("LaMP-3", rows, official) == report["metrics"]
    with pytest.raises(InputError, match="is for LaMP_3, not LaMP-4"):
        lampctl.evaluate("LaMP-4", predictions, official)
    with pytest.raises(InputError, match="expected a file path"):
        lampctl.evaluate("LaMP-3", 42, golds)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="missing.json: predictions file not found"):
        lampctl.evaluate("LaMP-3", tmp_path / "missing.json", golds)


def test_rank_and_prompts_write_what_the_commands_write(cli, tree, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(tree, other)
    results = lampctl.rank("LaMP-5", "user", ["dev"], data_dir=other)
    assert [Path(r.output).name for r in results] == ["dev_questions_rank.json"]
    assert cli("rank", "-t", "5", "-s", "user", "--set", "dev", "--data-dir", tree).exit_code == 0
    name = "user/LaMP_5/dev_questions_rank.json"
    assert (other / name).read_bytes() == (tree / name).read_bytes()
    run = lampctl.prompts(["5"], ["user"], ["dev"], no_profile=True, data_dir=other)
    assert [r.status for r in run.results] == ["written"]
    args = ("-t", "5", "-s", "user", "--set", "dev", "--no-profile", "--data-dir", tree)
    assert cli("prompts", *args).exit_code == 0
    prompts = "user/LaMP_5/dev_prompts_noprofile.jsonl"
    assert (other / prompts).read_bytes() == (tree / prompts).read_bytes()


def test_api_errors_are_typed(tree):
    with pytest.raises(OptionError) as err:
        lampctl.rank("5", output="x.json", data_dir=tree)
    assert err.value.option == "output"
    with pytest.raises(OptionError):
        lampctl.prompts(["5"], data_dir=tree)  # no tokenizer
    with pytest.raises(InputError, match="no ranking"):
        lampctl.load("5", "time", "dev", data_dir=tree).ranked_questions()


def test_public_names_agree():
    """``__all__``, the lazy map and the type-checking imports name the same things, and
    each name loads (huggingface_hub checks its ``__init__`` the same way)."""
    source = (PACKAGE / "__init__.py").read_text()
    tree = ast.parse(source)
    typed: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for child in node.body:
                typed.update(a.asname or a.name for a in getattr(child, "names", []))
    lazy = set(lampctl._WHERE)
    assert lazy == typed
    assert set(lampctl.__all__) == lazy | {"__version__"}
    assert set(lampctl.__all__) <= set(dir(lampctl))
    for name in lampctl.__all__:
        assert getattr(lampctl, name) is not None, name


def test_read_users_on_a_missing_file_is_a_typed_error(tmp_path):
    with pytest.raises(InputError, match="no such peft-data file"):
        list(lampctl.read_users(tmp_path / "nope.jsonl"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports_at_load(path: Path, modules: set[str]) -> set[str]:
    """The lampctl modules a module imports when it loads (not in functions, not for types)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lampctl"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("lampctl"))
    return found


def test_no_import_cycle_and_no_module_over_500_lines():
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _imports_at_load(path, set(files)) - {name} for name, path in files.items()}
    state: dict[str, int] = {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for dep in graph.get(name, ()):
            if state.get(dep) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*stack[stack.index(dep) :], dep])}")
            if dep in graph and dep not in state:
                visit(dep, [*stack, dep])
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])
    long = {n: len(p.read_text().splitlines()) for n, p in files.items()}
    assert {n: c for n, c in long.items() if c > 500} == {}
