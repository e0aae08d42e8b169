"""``peft train``, ``peft predict`` and ``generate`` on tiny models built offline.

The references are written here from the description (docs/model.md): a plain peft + torch
loop for one user's adapter, per-user ``PeftModel`` + ``generate`` for the predictions, and a
one-prompt-at-a-time ``generate`` for the retrieval path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from synth import kill_when_folder_appears, peft_rows, write_jsonl, write_tiny_causal, write_tiny_t5

pytest.importorskip("peft")

import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
)

import lampctl  # noqa: E402


@pytest.fixture(scope="module")
def t5(tmp_path_factory) -> Path:
    return write_tiny_t5(tmp_path_factory.mktemp("models") / "t5")


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return write_tiny_causal(tmp_path_factory.mktemp("models") / "llama")


_rows, _write = peft_rows, write_jsonl


SMALL = {"epochs": 2, "batch_size": 2, "learning_rate": 1e-2}


def _saved(folder: Path) -> dict:
    return load_file(str(folder / "adapter_model.safetensors"))


def test_same_seed_same_bytes_other_seed_other_adapter(tmp_path, t5):
    rows = _write(tmp_path / "rows.jsonl", _rows({"1": 4}))
    files = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        lampctl.peft_train(str(t5), rows=rows, adapters=tmp_path / name, seed=seed, **SMALL)
        files.append((tmp_path / name / "1" / "adapter_model.safetensors").read_bytes())
    assert files[0] == files[1] and files[0] != files[2]


def test_reruns_skip_up_to_date_users_and_retrain_changed_ones(cli, tmp_path, t5):
    rows = _rows({"1": 3, "2": 4})
    path = _write(tmp_path / "rows.jsonl", rows)
    args = ("peft", "train", "-m", t5, "--rows", path, "--adapters", tmp_path / "ad",
            "--epochs", "1", "--batch-size", "2")  # fmt: skip
    first = cli.json(*args)
    assert first["trained"] == 2 and first["device"] == "cpu"
    again = cli.json(*args)
    assert again["trained"] == 0 and again["device"] is None  # the model was not even loaded
    rows[0]["target"] = "changed"
    _write(path, rows)
    third = cli.json(*args)
    assert [u["status"] for u in third["users"]] == ["trained", "up to date"]
    other = cli.json(*args, "--r", "4")  # other options: every user is stale
    assert other["trained"] == 2
    assert cli.json(*args, "--force")["trained"] == 2


def test_shards_are_balanced_and_cover_every_user(tmp_path, t5):
    rows = _write(tmp_path / "rows.jsonl", _rows({"a": 9, "b": 1, "c": 4, "d": 5}))
    seen = []
    for index in range(2):
        run = lampctl.peft_train(
            str(t5), rows=rows, adapters=tmp_path / "ad", shard=f"{index}/2", epochs=1
        )
        seen.append({r.user_id: r.rows for r in run.results})
    assert sorted(u for s in seen for u in s) == ["a", "b", "c", "d"]
    assert {frozenset(s) for s in seen} == {frozenset({"a", "b"}), frozenset({"c", "d"})}


def _reference_predictions(model_dir: Path, kind: str, adapters: Path, rows, beams: int,
                           dtype: torch.dtype = torch.float32) -> dict:  # fmt: skip
    """Each user's rows through that user's adapter alone (peft's ``PeftModel``), one row at
    a time."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    loader = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    out = {}
    for user in dict.fromkeys(r["user_id"] for r in rows):
        base = loader.from_pretrained(model_dir, dtype=dtype).eval()
        folder = adapters / user
        model = PeftModel.from_pretrained(base, folder).eval() if folder.is_dir() else base
        for row in (r for r in rows if r["user_id"] == user):
            enc = tokenizer([row["source"]], return_tensors="pt", return_token_type_ids=False)
            with torch.inference_mode():
                ids = model.generate(**enc, num_beams=beams, max_new_tokens=6, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)  # fmt: skip
            if kind == "causal":
                ids = ids[:, enc["input_ids"].shape[1] :]
            out[row["id"]] = tokenizer.decode(ids[0], skip_special_tokens=True).strip()
    return out


@pytest.mark.parametrize(
    ("kind", "beams", "precision"),
    [("seq2seq", 1, "fp32"), ("seq2seq", 3, "fp32"), ("causal", 1, "fp32"), ("causal", 2, "fp32"),
     ("seq2seq", 2, "bf16")],
)  # fmt: skip
def test_batched_predictions_equal_per_user_adapters(
    tmp_path, t5, llama, kind, beams, precision, monkeypatch
):
    import lampctl.model.predicting as predicting

    model = t5 if kind == "seq2seq" else llama
    monkeypatch.setattr(predicting, "GROUP_USERS", 2)  # several groups, slots refilled
    train = _write(tmp_path / "t.jsonl", _rows({"u1": 4, "u2": 3, "u3": 5, "u4": 2, "u5": 2}))
    lampctl.peft_train(str(model), rows=train, adapters=tmp_path / "ad", epochs=1,
                       learning_rate=1e-2, batch_size=2)  # fmt: skip
    (tmp_path / "ad" / "u4").rename(tmp_path / "u4-away")  # u4 has no adapter: base model
    evaluation = _rows({"u1": 3, "u2": 2, "u3": 4, "u4": 2, "u5": 1}, seed=9)
    path = _write(tmp_path / "t_eval.jsonl", evaluation)
    run = lampctl.peft_predict(
        str(model), "LaMP-4", rows=path, adapters=tmp_path / "ad", output=tmp_path / "p.json",
        num_beams=beams, max_new_tokens=6, batch_size=3, precision=precision,
    )  # fmt: skip
    assert (run.users, run.without_adapter, run.rows) == (5, 1, 12)
    data = json.loads((tmp_path / "p.json").read_text())
    assert data["task"] == "LaMP_4"
    assert [g["id"] for g in data["golds"]] == [r["id"] for r in evaluation]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    want = _reference_predictions(model, kind, tmp_path / "ad", evaluation, beams, dtype)
    assert {g["id"]: g["output"] for g in data["golds"]} == want
    assert len(set(want.values())) > 1  # the adapters answer differently


def test_the_model_step_needs_no_peft(tmp_path, t5):
    """peft train writes peft's files and peft predict reads them, each where peft cannot be
    imported; peft's own PeftModel loads what was written, to the same outputs."""
    train = _write(tmp_path / "t.jsonl", _rows({"a": 2, "b": 2}))
    path = _write(tmp_path / "t_eval.jsonl", _rows({"a": 1, "b": 2}, seed=3))
    script = (
        "import sys; sys.modules['peft'] = None\n"  # import peft now raises ImportError
        "from lampctl.cli import main\n"
        "sys.argv = ['lampctl', '--quiet', *sys.argv[1:]]\n"
        "main()\n"
    )
    commands = (
        ("peft", "train", "-m", t5, "--rows", train, "--adapters", tmp_path / "ad",
         "--epochs", "1"),
        ("peft", "predict", "-m", t5, "-t", "4", "--rows", path, "--adapters", tmp_path / "ad",
         "-o", tmp_path / "p.json", "--num-beams", "1", "--max-new-tokens", "6"),
    )  # fmt: skip
    for command in commands:
        done = subprocess.run([sys.executable, "-c", script, *map(str, command)],
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
    answers = json.loads((tmp_path / "p.json").read_text())["golds"]
    assert len(answers) == 3
    want = _reference_predictions(t5, "seq2seq", tmp_path / "ad", _rows({"a": 1, "b": 2}, seed=3),
                                  1, torch.float32)  # fmt: skip
    assert [a["output"] for a in answers] == [want[a["id"]] for a in answers]


def test_adapters_predict_refuses_are_one_line(cli, tmp_path, t5):
    train = _write(tmp_path / "t.jsonl", _rows({"a": 2, "b": 2}))
    ad = tmp_path / "ad"
    lampctl.peft_train(str(t5), rows=train, adapters=ad, epochs=1)
    path = _write(tmp_path / "t_eval.jsonl", _rows({"a": 1, "b": 1}, seed=3))
    config = json.loads((ad / "b" / "adapter_config.json").read_text())

    def predict() -> list[str]:
        result = cli("peft", "predict", "-m", t5, "-t", "4", "--rows", path, "--adapters", ad,
                     "-o", tmp_path / "p.json", "--num-beams", "1")  # fmt: skip
        assert result.exit_code == 1, result.out
        assert not (tmp_path / "p.json").exists()
        return result.err.strip().splitlines()

    for change, message in (
        ({"use_dora": True}, "a LoRA variant (use_dora) is not supported"),
        ({"r": 4}, "are not of rank 4"),
        ({"lora_alpha": 16}, "differs from"),
        ({"peft_type": "IA3"}, "not a LoRA adapter"),
    ):
        (ad / "b" / "adapter_config.json").write_text(json.dumps({**config, **change}))
        lines = predict()
        assert len(lines) == 1 and str(ad / "b") in lines[0] and message in lines[0], lines
    (ad / "b" / "adapter_config.json").write_text(json.dumps(config))
    (ad / "b" / "adapter_model.safetensors").write_bytes(b"torn")
    lines = predict()
    assert len(lines) == 1 and "cannot load the adapter" in lines[0], lines


def test_an_interrupted_prediction_resumes(tmp_path, t5, monkeypatch):
    import lampctl.model.predicting as predicting

    train = _write(tmp_path / "t.jsonl", _rows({"a": 2, "b": 2, "c": 2}))
    lampctl.peft_train(str(t5), rows=train, adapters=tmp_path / "ad", epochs=1)
    path = _write(tmp_path / "t_eval.jsonl", _rows({"a": 2, "b": 2, "c": 2}, seed=4))
    kwargs = {"rows": path, "adapters": tmp_path / "ad", "num_beams": 1, "max_new_tokens": 4}
    whole = lampctl.peft_predict(str(t5), "LaMP-4", output=tmp_path / "whole.json", **kwargs)
    assert whole.resumed == 0
    monkeypatch.setattr(predicting, "GROUP_USERS", 1)
    calls = []
    real = predicting.generate_texts

    def dies_on_the_third_batch(*args, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(predicting, "generate_texts", dies_on_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        lampctl.peft_predict(str(t5), "LaMP-4", output=tmp_path / "p.json", **kwargs)
    assert not (tmp_path / "p.json").exists()
    monkeypatch.setattr(predicting, "generate_texts", real)
    again = lampctl.peft_predict(str(t5), "LaMP-4", output=tmp_path / "p.json", **kwargs)
    assert again.resumed == 4  # users a and b were done
    assert (tmp_path / "p.json").read_text() == (tmp_path / "whole.json").read_text()
    assert not list(tmp_path.glob(".p.json.partial.jsonl"))


def test_generate_equals_one_prompt_at_a_time(cli, tmp_path, t5, llama):
    rows = [{"id": f"q{i}", "source": r["source"], "target": "x"} for i, r in
            enumerate(_rows({"x": 7}, seed=2))]  # fmt: skip
    prompts = _write(tmp_path / "dev_prompts.jsonl", rows)
    for model, kind in ((t5, "seq2seq"), (llama, "causal")):
        out = tmp_path / f"{kind}.json"
        decoding = ("--num-beams", "1", "--max-new-tokens", "5", "--batch-size", "3")
        summary = cli.json("generate", "-m", model, "-t", "5", "--prompts", prompts, "-o", out,
                           *decoding)  # fmt: skip
        assert summary["rows"] == 7
        tokenizer = AutoTokenizer.from_pretrained(model)
        loader = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
        reference = loader.from_pretrained(model).eval()
        want = []
        for row in rows:
            enc = tokenizer([row["source"]], return_tensors="pt", return_token_type_ids=False)
            with torch.inference_mode():
                ids = reference.generate(**enc, max_new_tokens=5, do_sample=False, num_beams=1,
                                         pad_token_id=tokenizer.pad_token_id)  # fmt: skip
            if kind == "causal":
                ids = ids[:, enc["input_ids"].shape[1] :]
            want.append(
                {
                    "id": row["id"],
                    "output": tokenizer.decode(ids[0], skip_special_tokens=True).strip(),
                }
            )
        data = json.loads(out.read_text())
        assert data == {"task": "LaMP_5", "golds": want}


def test_errors_are_one_line_and_leave_nothing(cli, tmp_path, t5):
    ad = tmp_path / "ad"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"user_id": "1", "id": "a", "source": "x", "target": "y"}\nnot json\n')
    cases = [
        (("--rows", bad, "-m", t5), f"{bad}: line 2 is not a peft-data row"),
        (("--rows", tmp_path / "none.jsonl", "-m", t5), "no such peft-data file"),
        (("--rows", _write(tmp_path / "r.jsonl", _rows({"1": 2})), "-m", tmp_path / "nomodel"),
         "does not exist"),
    ]  # fmt: skip
    users = tmp_path / "users.json"
    users.write_text('["1", "99"]')
    cases.append((("--rows", tmp_path / "r.jsonl", "-m", t5, "--users", users), "no user '99'"))
    for args, message in cases:
        result = cli("peft", "train", *args, "--adapters", ad)
        assert result.exit_code == 1, result.out
        lines = result.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines
        assert not ad.exists() or not any(ad.iterdir())
    missing = cli("peft", "predict", "-m", t5, "--rows", tmp_path / "r.jsonl")
    assert missing.exit_code == 2 and "--task" in missing.err  # the predictions need a task
    assert "----" not in missing.err
    for option, value in (("--dropout", "2"), ("--warmup-ratio", "3"), ("--precision", "fp8")):
        bad = cli("peft", "train", "-m", t5, "--rows", tmp_path / "r.jsonl", option, value)
        assert bad.exit_code == 2 and f"Invalid value for {option}:" in bad.err, bad.err


def test_data_dir_mode_runs_the_whole_experiment(cli, tmp_path, t5):
    from synth import SynthSpec, write_tree

    data = write_tree(tmp_path / "data", tasks=(3,), spec=SynthSpec(questions=8, profile_max=5),
                      time_users=3)  # fmt: skip
    sel = ("-t", "3", "-s", "time", "--set", "dev", "--data-dir", data)
    assert cli("peft-data", *sel).exit_code == 0
    trained = cli.json("peft", "train", "-m", t5, *sel, "--epochs", "1")
    assert trained["trained"] == 3 and "dev_peft_file_adapters" in trained["adapters"]
    predicted = cli.json("peft", "predict", "-m", t5, *sel, "--num-beams", "1",
                         "--max-new-tokens", "3")  # fmt: skip
    assert predicted["without_adapter"] == 0 and predicted["rows"] == 3
    scores = cli.json("evaluate", "-t", "3", "-p", predicted["output"], "-s", "time",
                      "--set", "dev", "--data-dir", data)  # fmt: skip
    assert scores["count"] == 3 and set(scores["metrics"]) == {"MAE", "RMSE"}
    # status tells where the run stands: adapters per base model, predictions per decoding
    status = cli.json("status", *sel[:-2], "--data-dir", data)
    (row,) = status["rows"]
    (adapters,) = row["adapters"]
    assert adapters["users"] == 3 and adapters["up_to_date"] == 3
    (made,) = row["predictions"]
    assert adapters["base_model"] == made["model"] == str(t5.resolve())
    assert made["file"] == Path(predicted["output"]).name and made["state"] == "up to date"
    assert made["decoding"] == "beams 1, 3 new tokens"
    # one user's rows change: status names the adapters and the predictions as behind
    rows_file = data / "time/LaMP_3/dev_peft_file.jsonl"
    lines = rows_file.read_text().splitlines()
    first = json.loads(lines[0])
    first["target"] = "5" if first["target"] != "5" else "1"
    rows_file.write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    eval_file = data / "time/LaMP_3/dev_peft_file_eval.jsonl"
    eval_file.write_text(eval_file.read_text().replace('"source":"', '"source":"edited ', 1))
    (row,) = cli.json("status", *sel[:-2], "--data-dir", data)["rows"]
    assert row["adapters"][0]["up_to_date"] == 2
    assert row["predictions"][0]["state"] == "stale: rows changed"
    assert any("1 of 3 users not trained" in p for p in row["problems"])
    table = cli("status", *sel[:-2], "--data-dir", data).output
    assert "2 of 3 users up to date" in table and "beams 1, 3 new tokens, stale" in table


def test_a_killed_training_finishes_with_the_same_adapters(tmp_path, t5):
    rows = _write(tmp_path / "rows.jsonl", _rows({"a": 6, "b": 6, "c": 6}))
    command = [sys.executable, "-m", "lampctl", "peft", "train", "-m", str(t5), "--rows",
               str(rows), "--epochs", "15", "--batch-size", "2", "--pack", "1"]  # fmt: skip
    kill_when_folder_appears([*command, "--adapters", str(tmp_path / "ad")], tmp_path / "ad" / "a")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMPCTL_")}
    subprocess.run([*command, "--adapters", str(tmp_path / "ad")], env=env, check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run([*command, "--adapters", str(tmp_path / "clean")], env=env, check=True,
                   capture_output=True)  # fmt: skip
    for user in "abc":
        assert (tmp_path / "ad" / user / "adapter_model.safetensors").read_bytes() == (
            tmp_path / "clean" / user / "adapter_model.safetensors"
        ).read_bytes()
    assert sorted(p.name for p in (tmp_path / "ad").iterdir()) == ["a", "b", "c"]  # no temp left


def test_sharded_predictions_gather_into_the_whole(cli, tmp_path, t5):
    train = _write(tmp_path / "t.jsonl", _rows({"a": 2, "b": 3, "c": 1}))
    lampctl.peft_train(str(t5), rows=train, adapters=tmp_path / "ad", epochs=1)
    path = _write(tmp_path / "t_eval.jsonl", _rows({"a": 2, "b": 3, "c": 1}, seed=5))
    args = ("peft", "predict", "-m", t5, "-t", "4", "--rows", path, "--adapters",
            tmp_path / "ad", "--num-beams", "1", "--max-new-tokens", "4")  # fmt: skip
    whole = cli.json(*args, "-o", tmp_path / "whole.json")
    final = tmp_path / "p.json"
    for index in range(2):
        shard = cli.json(*args, "-o", final, "--shard", f"{index}/2")
        assert shard["output"].endswith(f"p.shard-{index}-of-2.json")
    early = cli("gather", "--predictions", tmp_path / "none.json")
    assert early.exit_code == 1 and "no shard files" in early.err
    joined = cli.json("gather", "--predictions", final, "--clean")
    assert joined["files"][0]["predictions"] == whole["rows"] == 6
    got = json.loads(final.read_text())
    want = json.loads((tmp_path / "whole.json").read_text())
    assert got["task"] == want["task"] == "LaMP_4"
    assert final.read_bytes() == (tmp_path / "whole.json").read_bytes()  # the unsharded order
    assert not list(tmp_path.glob("p.shard-*"))


def test_predict_shards_follow_the_training_shards(tmp_path, t5):
    # Users with many questions but few training rows, and the reverse: balanced by the
    # training rows, array task i answers exactly the users whose adapters it trained.
    train = _write(tmp_path / "s.jsonl", _rows({"a": 9, "b": 1, "c": 5, "d": 4, "e": 2}))
    evaluation = _write(tmp_path / "s_eval.jsonl", _rows({"a": 1, "b": 8, "c": 1, "d": 6,
                                                         "e": 1, "f": 3}, seed=3))  # fmt: skip
    for index in range(2):
        trained = lampctl.peft_train(str(t5), rows=train, shard=f"{index}/2", epochs=1)
        answered = lampctl.peft_predict(str(t5), "LaMP-4", rows=evaluation, shard=f"{index}/2",
                                        num_beams=1, max_new_tokens=2)  # fmt: skip
        ids = {
            g["id"].split("-")[0] for g in json.loads(Path(answered.output).read_text())["golds"]
        }
        assert {r.user_id for r in trained.results} == ids - {"f"}  # f has no training rows


def test_targets_the_model_lacks_are_a_usage_error(cli, tmp_path, t5):
    rows = _write(tmp_path / "rows.jsonl", _rows({"1": 2}))
    result = cli("peft", "train", "-m", t5, "--rows", rows, "--targets", "q_proj,v_proj",
                 "--adapters", tmp_path / "ad")  # fmt: skip
    assert result.exit_code == 2, result.output
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "--targets" in lines[0] and "q_proj,v_proj" in lines[0]
    assert not (tmp_path / "ad" / "1").exists()


def test_no_model_command_replaces_its_own_input(cli, tmp_path, t5):
    rows = _write(tmp_path / "r.jsonl", _rows({"1": 2}))
    evaluation = _write(tmp_path / "r_eval.jsonl", _rows({"1": 1}, seed=2))
    prompts = _write(tmp_path / "p.jsonl", [{"id": "q", "source": "model data"}])
    link = tmp_path / "link.jsonl"
    link.symlink_to(prompts)
    before = {p: p.read_bytes() for p in (rows, evaluation, prompts)}
    for args in (
        ("peft", "predict", "-m", t5, "-t", "4", "--rows", evaluation, "-o", evaluation),
        ("peft", "predict", "-m", t5, "-t", "4", "--rows", evaluation, "-o", rows),
        ("generate", "-m", t5, "-t", "4", "--prompts", prompts, "-o", link),
    ):
        result = cli(*args)
        assert result.exit_code == 1, result.output
        assert len(result.err.strip().splitlines()) == 1 and "Error: " in result.err
    assert {p: p.read_bytes() for p in before} == before


def test_an_interrupted_training_names_the_adapters_it_kept(cli, tmp_path, t5, monkeypatch):
    from lampctl.model import packing

    rows = _write(tmp_path / "rows.jsonl", _rows({"a": 2, "b": 2}))
    real = packing.PackedAdapters.fill
    calls = []

    def stops_on_the_second_user(self, slot, user, encoded):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, slot, user, encoded)

    monkeypatch.setattr(packing.PackedAdapters, "fill", stops_on_the_second_user)
    result = cli("peft", "train", "-m", t5, "--rows", rows, "--adapters", tmp_path / "ad",
                 "--epochs", "1", "--pack", "1")  # fmt: skip
    assert result.exit_code == 130
    assert "1 file(s) finished and kept" in result.err and str(tmp_path / "ad" / "a") in result.err
    assert sorted(p.name for p in (tmp_path / "ad").iterdir()) == ["a"]


def test_row_lora_adds_each_rows_own_update():
    """One wrapped Linear, checked against the LoRA formula row by row: slot 0 is the bare
    layer, beam-repeated rows keep their slot, a flattened input is refused."""
    from lampctl.errors import ModelLoadError
    from lampctl.model.adapters import RowLora, RowSlots

    torch.manual_seed(0)
    base = torch.nn.Linear(6, 5)
    rows = RowSlots()
    layer = RowLora("enc.q", base, slots=2, r=3, scaling=4.0, rows=rows)
    adapters = {s: (torch.randn(3, 6), torch.randn(5, 3)) for s in (1, 2)}
    for s, (a, b) in adapters.items():
        layer.lora_a[s].copy_(a)
        layer.lora_b[s].copy_(b)
    x = torch.randn(3, 4, 6)
    slots = [2, 0, 1]
    with torch.no_grad():
        assert torch.equal(layer(x), base(x))  # no batch set: the bare layer
        with rows.batch(slots, "cpu"):
            got = layer(x)
            beams = layer(x.repeat_interleave(2, dim=0))
            with pytest.raises(ModelLoadError, match="enc.q"):
                layer(x.reshape(12, 6))
        for i, s in enumerate(slots):
            want = base(x[i])
            if s:
                a, b = adapters[s]
                want = want + (x[i] @ a.T @ b.T) * 4.0
            torch.testing.assert_close(got[i], want)
            torch.testing.assert_close(beams[2 * i], want)
            torch.testing.assert_close(beams[2 * i + 1], want)
        assert torch.equal(got[1], base(x[1]))  # slot 0: exactly the base layer
