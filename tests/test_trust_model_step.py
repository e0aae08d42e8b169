"""Trust in the model step: no output onto an input, into an input folder or onto another
output; a resumed prediction checks what it resumes; a model with new weights is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synth import peft_rows, write_jsonl, write_tiny_bert, write_tiny_t5

pytest.importorskip("peft")

import lampctl  # noqa: E402
from lampctl.errors import InputError, OptionError, OutputError  # noqa: E402
from lampctl.io.outputs import check_outputs  # noqa: E402


@pytest.fixture(scope="module")
def t5(tmp_path_factory) -> Path:
    return write_tiny_t5(tmp_path_factory.mktemp("models") / "t5")


_rows, _write = peft_rows, write_jsonl


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, t5) -> Path:
    """Users a and b trained on the tiny T5: their rows, eval rows and adapters."""
    folder = tmp_path_factory.mktemp("trained")
    rows = _write(folder / "t.jsonl", _rows({"a": 2, "b": 2}))
    _write(folder / "t_eval.jsonl", _rows({"a": 2, "b": 2}, seed=5))
    (folder / "ua.json").write_text(json.dumps(["a", "b"]))
    lampctl.peft_train(str(t5), rows=rows, adapters=folder / "ad", epochs=1)
    return folder


def test_no_output_lands_on_an_input_file_or_inside_an_input_folder(cli, tmp_path, t5, trained):
    prompts = _write(tmp_path / "p.jsonl", [{"id": "q", "source": "model data"}])
    evaluation, ad = trained / "t_eval.jsonl", trained / "ad"
    before = {"model": _tree_bytes(t5), "trained": _tree_bytes(trained)}
    predict = ("peft", "predict", "-m", t5, "-t", "4", "--rows", evaluation, "--adapters", ad)
    for args, says in (
        ((*predict, "--users", trained / "ua.json", "-o", trained / "ua.json"), "users file"),
        ((*predict, "-o", ad / "b" / "adapter_config.json"), "inside the adapters folder"),
        ((*predict, "-o", t5 / "out.json"), "inside the model folder"),
        (("generate", "-m", t5, "-t", "4", "--prompts", prompts, "-o", t5 / "config.json"),
         "inside the model folder"),
        (("peft", "train", "-m", t5, "--rows", trained / "t.jsonl", "--adapters", t5 / "ad"),
         "inside the model folder"),
        (("peft", "train", "-m", t5, "--rows", trained / "t.jsonl", "--adapters", trained),
         "holds this command's rows"),
    ):  # fmt: skip
        line = cli.error(*args)
        assert says in line, line
    assert {"model": _tree_bytes(t5), "trained": _tree_bytes(trained)} == before
    lampctl.generate(
        str(t5),
        "LaMP-4",
        prompts=prompts,
        output=tmp_path / "g.json",
        num_beams=1,
        max_new_tokens=2,
    )  # fmt: skip  (the model still loads)


def _stop_after(monkeypatch, batches: int) -> None:
    import lampctl.model.predicting as predicting

    real, calls = predicting.generate_texts, []

    def dies(*args, **kw):
        calls.append(1)
        if len(calls) > batches:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(predicting, "GROUP_USERS", 1)
    monkeypatch.setattr(predicting, "generate_texts", dies)


def test_a_resume_redoes_answers_whose_adapter_or_source_changed(tmp_path, t5, monkeypatch):
    import lampctl.model.predicting as predicting

    rows = _write(tmp_path / "t.jsonl", _rows({"a": 2, "b": 2, "c": 2}))
    ad = tmp_path / "ad"
    lampctl.peft_train(str(t5), rows=rows, adapters=ad, epochs=1)
    evaluation = _write(tmp_path / "t_eval.jsonl", _rows({"a": 2, "b": 2, "c": 2}, seed=4))
    kwargs = {"rows": evaluation, "adapters": ad, "num_beams": 1, "max_new_tokens": 4}
    real = predicting.generate_texts
    _stop_after(monkeypatch, 2)  # users a and b answered, then killed
    with pytest.raises(KeyboardInterrupt):
        lampctl.peft_predict(str(t5), "LaMP-4", output=tmp_path / "p.json", **kwargs)
    monkeypatch.setattr(predicting, "generate_texts", real)
    # Other adapters for a (trained with another seed), and b's first source edited.
    lampctl.peft_train(str(t5), rows=rows, adapters=tmp_path / "other", epochs=1, seed=7)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        (ad / "a" / name).write_bytes((tmp_path / "other" / "a" / name).read_bytes())
    edited = _rows({"a": 2, "b": 2, "c": 2}, seed=4)
    edited[2]["source"] = "great news about a fast paper"
    _write(evaluation, edited)
    again = lampctl.peft_predict(str(t5), "LaMP-4", output=tmp_path / "p.json", **kwargs)
    assert (again.resumed, again.redone) == (1, 3)  # b's second answer kept; a's two, b's first
    fresh = lampctl.peft_predict(str(t5), "LaMP-4", output=tmp_path / "fresh.json", **kwargs)
    assert (tmp_path / "p.json").read_text() == (tmp_path / "fresh.json").read_text()
    assert fresh.resumed == fresh.redone == 0


def test_a_resume_with_other_decoding_redoes_everything(tmp_path, t5, monkeypatch):
    import lampctl.model.predicting as predicting

    rows = _write(tmp_path / "t.jsonl", _rows({"a": 2, "b": 2}))
    lampctl.peft_train(str(t5), rows=rows, adapters=tmp_path / "ad", epochs=1)
    evaluation = _write(tmp_path / "t_eval.jsonl", _rows({"a": 2, "b": 2}, seed=4))
    kwargs = {"rows": evaluation, "adapters": tmp_path / "ad", "num_beams": 1}
    real = predicting.generate_texts
    _stop_after(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        lampctl.peft_predict(str(t5), "LaMP-4", output=tmp_path / "p.json", max_new_tokens=4,
                             **kwargs)  # fmt: skip
    monkeypatch.setattr(predicting, "generate_texts", real)
    again = lampctl.peft_predict(str(t5), "LaMP-4", output=tmp_path / "p.json", max_new_tokens=3,
                                 **kwargs)  # fmt: skip
    assert (again.resumed, again.redone) == (0, 2)


def test_adapters_of_another_base_model_are_refused(tmp_path, t5, trained):
    other = write_tiny_t5(tmp_path / "other-t5", seed=1)
    with pytest.raises(InputError, match=r"trained on .*t5, not .*other-t5"):
        lampctl.peft_predict(str(other), "LaMP-4", rows=trained / "t_eval.jsonl",
                             adapters=trained / "ad", output=tmp_path / "p.json")  # fmt: skip
    assert not (tmp_path / "p.json").exists()


def test_a_model_with_newly_initialized_weights_is_refused(cli, tmp_path, trained):
    encoder = write_tiny_bert(tmp_path / "minilm")
    prompts = _write(tmp_path / "p.jsonl", [{"id": "q", "source": "model data"}])
    line = cli.error("generate", "-m", encoder, "-t", "4", "--prompts", prompts, "-o",
                     tmp_path / "g.json")  # fmt: skip
    assert "newly initialized" in line and "cls.predictions" in line, line
    line = cli.error("peft", "train", "-m", encoder, "--rows", trained / "t.jsonl", "--adapters",
                     tmp_path / "ad", "--targets", "query,value")  # fmt: skip
    assert "newly initialized" in line, line
    assert not (tmp_path / "g.json").exists() and not (tmp_path / "ad").exists()


def test_a_tied_head_is_not_a_new_weight(tmp_path):
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    from lampctl.model.loading import load_base_model

    folder = write_tiny_bert(tmp_path / "tied")
    for name in ("config.json", "model.safetensors"):
        (folder / name).unlink()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = T5Config(vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=1,
                      num_heads=2, pad_token_id=0, decoder_start_token_id=0,
                      tie_word_embeddings=True)  # fmt: skip
    T5ForConditionalGeneration(config).save_pretrained(folder)
    assert load_base_model(str(folder), device="cpu").kind == "seq2seq"


def test_every_output_is_checked_before_the_model_loads(cli, tmp_path, trained):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    missing_model = tmp_path / "no-such-model"  # loading it would fail with another error
    line = cli.error("peft", "predict", "-m", missing_model, "-t", "4", "--rows",
                     trained / "t_eval.jsonl", "--adapters", trained / "ad", "-o",
                     blocker / "p.json")  # fmt: skip
    assert line == f"Error: {blocker / 'p.json'}: cannot write: {blocker} is a file, not a folder"


def test_an_empty_users_list_is_refused(tmp_path, t5, trained):
    empty = tmp_path / "none.json"
    empty.write_text("[]")
    with pytest.raises(InputError, match="users asked for are none"):
        lampctl.peft_predict(
            str(t5),
            "LaMP-4",
            rows=trained / "t_eval.jsonl",
            adapters=trained / "ad",
            output=tmp_path / "p.json",
            users=empty,
        )
    with pytest.raises(InputError, match="users asked for are none"):
        lampctl.peft_train(str(t5), rows=trained / "t.jsonl", adapters=tmp_path / "a", users=[])


# --------------------------------------------------------------------------- outputs that collide


def test_check_outputs_table(tmp_path):
    (tmp_path / "x.jsonl").write_text("")
    (tmp_path / "link.jsonl").symlink_to("x.jsonl")
    here = Path.cwd()
    try:
        import os

        os.chdir(tmp_path)
        for first, second in (
            ("x.jsonl", "x.jsonl"),
            ("x.jsonl", "./x.jsonl"),
            ("x.jsonl", "link.jsonl"),
            ("x.jsonl", str(tmp_path / "sub" / ".." / "x.jsonl")),
        ):
            with pytest.raises(OptionError) as caught:
                check_outputs({"output": Path(first), "eval_output": Path(second)})
            assert caught.value.option == "eval_output"
            assert "(--eval-output)" in caught.value.as_flags()
            assert "(--output)" in caught.value.as_flags()
    finally:
        os.chdir(here)
    check_outputs({"output": Path("/dev/null"), "eval_output": Path("/dev/null")})
    with pytest.raises(OutputError, match="inside the model folder"):
        check_outputs({"output": tmp_path / "m" / "config.json"},
                      input_folders={"model": tmp_path / "m"})  # fmt: skip
    with pytest.raises(OptionError):
        check_outputs({"output": tmp_path / "ad" / "u" / "p.json"},
                      output_folders={"adapters": tmp_path / "ad"})  # fmt: skip


@pytest.fixture
def ranked(cli, tree) -> Path:
    result = cli("rank", "-t", "3", "-s", "time", "-r", "bm25", "--data-dir", tree)
    assert result.exit_code == 0, result.err
    return tree / "time/LaMP_3"


@pytest.mark.parametrize(
    "clash",
    [
        {"--output": "same.jsonl", "--eval-output": "same.jsonl"},
        {"--output": "same.jsonl", "--users-output": "same.jsonl"},
        {"--eval-output": "same.jsonl", "--users-output": "same.jsonl"},
        {"--output": "t.jsonl", "--eval-output": "t.meta.json"},
        {"--output": "t.jsonl", "--users-output": "./t.meta.json"},
        {"--output": "t.jsonl", "--eval-output": "./t.jsonl"},
        {"--output": "t.jsonl", "--eval-output": "link.jsonl"},
    ],
)
def test_peft_data_refuses_two_outputs_on_one_file(cli, ranked, monkeypatch, clash):
    monkeypatch.chdir(ranked)
    (ranked / "link.jsonl").symlink_to("t.jsonl")
    before = sorted(p.name for p in ranked.iterdir())
    outputs = {"--output": "t.jsonl", "--eval-output": "t_eval.jsonl",
               "--users-output": "t_users.json", **clash}  # fmt: skip
    result = cli(
        "peft-data",
        "-t",
        "3",
        "--questions",
        "dev_questions.json",
        "--outputs",
        "dev_outputs.json",
        *(part for item in outputs.items() for part in item),
    )
    assert result.exit_code == 2, result.output
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, lines
    for flag in clash:  # both options named (a record by its output's option)
        assert f"({flag})" in lines[0] or f"(record of {flag})" in lines[0], lines[0]
    if "meta.json" in str(clash):
        assert "(record of --output)" in lines[0], lines[0]
    assert sorted(p.name for p in ranked.iterdir()) == before  # nothing written
    json_result = cli("--json", "peft-data", "-t", "3", "--questions", "dev_questions.json",
                      "--outputs", "dev_outputs.json",
                      *(part for item in outputs.items() for part in item))  # fmt: skip
    assert json_result.exit_code == 2 and "error" in json.loads(json_result.out)


def test_same_seed_same_adapter_config_bytes_in_other_processes(tmp_path, t5):
    import subprocess
    import sys

    rows = _write(tmp_path / "t.jsonl", _rows({"a": 2}))
    script = (
        "import sys, lampctl; lampctl.peft_train(sys.argv[1], rows=sys.argv[2], "
        "adapters=sys.argv[3], epochs=1)"
    )
    configs = []
    for run, seed in enumerate(("1", "2", "3")):  # each hash seed orders a set differently
        out = tmp_path / f"ad{run}"
        env = {**__import__("os").environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", script, str(t5), str(rows), str(out)], env=env,
                       check=True)  # fmt: skip
        configs.append((out / "a" / "adapter_config.json").read_bytes())
    assert configs[0] == configs[1] == configs[2]
    assert json.loads(configs[0])["target_modules"] == ["k", "q", "v"]


# --------------------------------------------------------------------------- golds


def _bad_golds(folder: Path, ids: list[str]) -> dict[str, tuple[Path, str]]:
    """Outputs files that cannot be right, and what the refusal must say."""
    first = ids[0]
    cases = {
        "twice": ([{"id": first, "output": "a"}, {"id": first, "output": "b"},
                   *({"id": i, "output": "x"} for i in ids[1:])], f"id {first!r} appears twice"),
        "null": ([{"id": first, "output": None}, *({"id": i, "output": "x"} for i in ids[1:])],
                 f"output of {first!r} is null"),
        "list": ([{"id": first, "output": ["x"]}, *({"id": i, "output": "x"} for i in ids[1:])],
                 f"output of {first!r} is a list"),
    }  # fmt: skip
    found = {}
    for name, (golds, says) in cases.items():
        path = folder / f"{name}_outputs.json"
        path.write_text(json.dumps({"task": "LaMP_3", "golds": golds}))
        found[name] = (path, says)
    other = folder / "other_outputs.json"
    other.write_text(json.dumps({"task": "LaMP_5", "golds": [{"id": i, "output": "x"}
                                                            for i in ids]}))  # fmt: skip
    found["other task"] = (other, "is for LaMP_5, not LaMP-3")
    return found


def test_golds_that_cannot_be_right_are_refused_by_every_reader(cli, ranked, tmp_path):
    questions = ranked / "dev_questions.json"
    ids = [str(q["id"]) for q in json.loads(questions.read_text())]
    predictions = tmp_path / "p.json"
    predictions.write_text(json.dumps({"task": "LaMP_3", "golds": [{"id": i, "output": "3"}
                                                                  for i in ids]}))  # fmt: skip
    for name, (golds, says) in _bad_golds(tmp_path, ids).items():
        out = tmp_path / "out"
        for args in (
            ("peft-data", "-t", "3", "--questions", questions, "--outputs", golds,
             "--output", out / "t.jsonl"),
            ("merge", "--questions", questions, "--no-ranking", "--outputs", golds,
             "--output", out / "m.json"),
            ("prompts", "-t", "3", "--questions", questions, "--no-profile", "--outputs", golds,
             "--output", out / "p.jsonl"),
            ("evaluate", "-t", "3", "-p", predictions, "--golds", golds),
        ):  # fmt: skip
            if name == "other task" and args[0] == "merge":
                continue  # explicit files name no task: merge takes any task's golds
            line = cli.error(*args)
            assert line.startswith(f"Error: {golds}: ") and says in line, (name, args[0], line)
            assert not out.exists(), (name, args[0])


# --------------------------------------------------------------------------- model-step inputs


def test_bad_rows_files_are_one_line(cli, tmp_path, t5):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(_rows({"a": 1})[0]).encode() + b"\n" + b'{"user_id": "\xe9"}\n')
    no_id = _write(tmp_path / "noid.jsonl", [{k: v for k, v in r.items() if k != "id"}
                                             for r in _rows({"a": 2})])  # fmt: skip
    train = ("peft", "train", "-m", t5, "--adapters", tmp_path / "ad", "--rows")
    predict = ("peft", "predict", "-m", t5, "-t", "4", "--adapters", tmp_path / "ad", "-o",
               tmp_path / "p.json", "--rows")  # fmt: skip
    for rows, says in (
        (empty, "holds no"),
        (latin, "line 2 is not UTF-8 text (byte 14)"),
        (no_id, "line 1 (user 'a') has no text id"),
    ):
        for args in (train, predict):
            line = cli.error(*args, rows)
            assert line.startswith(f"Error: {rows}: ") and says in line, line
    assert not (tmp_path / "ad").exists() and not (tmp_path / "p.json").exists()


def test_the_api_checks_its_options_as_the_cli_does(tmp_path, trained, t5):
    rows = trained / "t.jsonl"
    for call, option in (
        (lambda: lampctl.peft_train(str(t5), rows=rows, adapters=tmp_path / "a", shard=(3, 2)),
         "shard"),
        (lambda: lampctl.peft_predict(str(t5), "LaMP-4", rows=trained / "t_eval.jsonl",
                                      adapters=trained / "ad", shard=(0, 0)), "shard"),
        (lambda: lampctl.peft_train(str(t5), rows=rows, adapters=tmp_path / "a", epochs="2"),
         "epochs"),
        (lambda: lampctl.peft_train(str(t5), rows=rows, adapters=tmp_path / "a", dropout=True),
         "dropout"),
        (lambda: lampctl.peft_predict(str(t5), "LaMP-4", rows=trained / "t_eval.jsonl",
                                      adapters=trained / "ad", num_beams=2.5), "num_beams"),
    ):  # fmt: skip
        with pytest.raises(OptionError) as caught:
            call()
        assert caught.value.option == option
    with pytest.raises(OptionError, match="did you mean epochs"):
        lampctl.peft_train(str(t5), rows=rows, adapters=tmp_path / "a", epoch=1)
    assert not (tmp_path / "a").exists()


def test_a_failed_adapter_save_leaves_nothing(tmp_path, t5, monkeypatch):
    import safetensors.torch
    from safetensors import SafetensorError

    rows = _write(tmp_path / "t.jsonl", _rows({"a": 2}))

    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(OutputError, match="cannot write the adapter: .*No space left"):
        lampctl.peft_train(str(t5), rows=rows, adapters=tmp_path / "ad", epochs=1)
    assert sorted(p.name for p in (tmp_path / "ad").iterdir()) == []


def test_a_file_where_an_adapter_goes_is_replaced_without_debris(tmp_path, t5):
    rows = _write(tmp_path / "t.jsonl", _rows({"a": 2}))
    (tmp_path / "ad").mkdir()
    (tmp_path / "ad" / "a").write_text("not an adapter")
    lampctl.peft_train(str(t5), rows=rows, adapters=tmp_path / "ad", epochs=1)
    assert sorted(p.name for p in (tmp_path / "ad").iterdir()) == ["a"]
    assert (tmp_path / "ad" / "a" / "adapter_config.json").is_file()


# --------------------------------------------------------------------------- predictions records


def test_predictions_carry_their_decoding_and_skip_when_up_to_date(cli, tmp_path, t5, trained):
    import shutil

    folder = tmp_path / "set"
    shutil.copytree(trained, folder)
    common = ("-m", t5, "-t", "4", "--rows", folder / "t_eval.jsonl", "--adapters", folder / "ad",
              "--max-new-tokens", "3")  # fmt: skip
    four = cli.json("peft", "predict", *common, "--num-beams", "2", "-o", folder / "p.json")
    assert four["status"] == "written" and four["without_adapter"] == 0
    four = cli.json("peft", "predict", *common, "--num-beams", "2")  # the default name
    assert four["output"].endswith("_beams2_tokens3.json")
    # The API's greedy run gets a file of its own: the 2-beam file is not replaced.
    before = Path(four["output"]).read_bytes()
    one = lampctl.peft_predict(
        str(t5),
        "LaMP-4",
        rows=folder / "t_eval.jsonl",
        adapters=folder / "ad",
        num_beams=1,
        max_new_tokens=3,
    )
    assert one.output.endswith("_beams1_tokens3.json") and one.output != four["output"]
    assert Path(four["output"]).read_bytes() == before
    again = cli.json("peft", "predict", *common, "--num-beams", "2")
    assert again["status"] == "up to date" and again["device"] is None  # no model loaded
    forced = cli.json("peft", "predict", *common, "--num-beams", "2", "--force")
    assert forced["status"] == "written" and Path(forced["output"]).read_bytes() == before
    # A retrained adapter makes the file stale.
    lampctl.peft_train(str(t5), rows=folder / "t.jsonl", adapters=folder / "ad", epochs=1,
                       seed=3, force=True)  # fmt: skip
    assert cli.json("peft", "predict", *common, "--num-beams", "2")["status"] == "written"


def test_generate_keeps_a_record_and_skips_when_up_to_date(cli, tmp_path, t5):
    prompts = _write(tmp_path / "p.jsonl", [{"id": f"q{i}", "source": r["source"]}
                                            for i, r in enumerate(_rows({"x": 3}))])  # fmt: skip
    args = ("generate", "-m", t5, "-t", "4", "--prompts", prompts, "--num-beams", "1",
            "--max-new-tokens", "3")  # fmt: skip
    first = cli.json(*args)
    assert first["status"] == "written" and first["output"].endswith("_beams1_tokens3.json")
    assert cli.json(*args)["status"] == "up to date"
    _write(prompts, [{"id": "q0", "source": "fast paper"}])
    assert cli.json(*args)["status"] == "written"  # the prompts changed
    assert cli.json(*args, "--force")["status"] == "written"
