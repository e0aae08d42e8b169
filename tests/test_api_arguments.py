"""The API answers a call it cannot take as the CLI answers a bad option: an ``OptionError``
naming the argument (and the nearest valid one), never a bare ``TypeError``; and its messages
name Python arguments, which the CLI shows as its options."""

from __future__ import annotations

import inspect

import pytest

import lampctl
from lampctl.errors import OptionError

# Every public function of the API, with a misspelling of one of its arguments.
MISSPELT = {
    "download": ("data_dirr", "data_dir"),
    "evaluate": ("predictons", "predictions"),
    "score_files": ("predictons", "predictions"),
    "status": ("verfy", "verify"),
    "stats": ("data_dirr", "data_dir"),
    "merge": ("outptu", "output"),
    "gather": ("clen", "clean"),
    "rank": ("rankr", "ranker"),
    "rank_all": ("devics", "devices"),
    "prompts": ("tokeniser", "tokenizer"),
    "load": ("splitt", "split"),
    "peft_data": ("outptu", "output"),
    "peft_predict": ("adapter", "adapters"),
    "generate": ("prompt", "prompts"),
    "peft_train": ("epoch", "epochs"),
}


# lampctl.download and lampctl.merge are modules too: their functions live in lampctl.api.
IN_API = {"download", "merge"}


def _function(name: str):
    import lampctl.api

    return getattr(lampctl.api if name in IN_API else lampctl, name)


def test_the_table_covers_every_function_with_a_fixed_signature():
    public = {n for n in lampctl.__all__ if inspect.isfunction(getattr(lampctl, n))} | IN_API
    open_ended = {n for n in public if any(p.kind is p.VAR_KEYWORD for p in
                  inspect.signature(_function(n)).parameters.values())}  # fmt: skip
    assert open_ended == {"peft_train", "peft_predict", "generate"}  # options by name too
    assert public - {"read_users", "registry"} == set(MISSPELT)


@pytest.mark.parametrize("name", sorted(MISSPELT))
def test_a_misspelt_keyword_names_the_nearest_argument(name, tmp_path):
    wrong, right = MISSPELT[name]
    with pytest.raises(OptionError, match=f"did you mean {right}\\?") as caught:
        _function(name)(**{wrong: tmp_path})
    assert caught.value.option == wrong
    assert not list(tmp_path.iterdir())  # refused before anything ran


def test_missing_and_extra_arguments_are_option_errors():
    with pytest.raises(OptionError, match="missing a required argument: 'task'") as caught:
        lampctl.evaluate()
    assert caught.value.option == "task"
    with pytest.raises(OptionError, match="too many positional arguments"):
        lampctl.stats(*range(12))
    with pytest.raises(OptionError, match="did you mean epochs"):
        lampctl.peft_train(model="m", rows="r.jsonl", epoch=1)


def test_messages_name_python_arguments_and_the_cli_shows_options(cli, tree, tmp_path):
    questions = tree / "time/LaMP_3/dev_questions.json"
    with pytest.raises(OptionError, match="give ranking=PATH, or no_ranking=True"):
        _function("merge")(questions=questions, output=tmp_path / "m.json")
    result = cli("merge", "--questions", questions, "--output", tmp_path / "m.json")
    assert result.exit_code == 2 and "give --ranking PATH, or --no-ranking" in result.err
    with pytest.raises(OptionError, match=r"\(tokenizer=NAME\), or pass no_profile=True"):
        lampctl.prompts(["LaMP-3"], questions=questions, output=tmp_path / "p.jsonl",
                        ranking=questions)  # fmt: skip
    result = cli("prompts", "-t", "3", "--questions", questions, "-o", tmp_path / "p.jsonl")
    assert result.exit_code == 2 and "(--tokenizer NAME), or pass --no-profile" in result.err
