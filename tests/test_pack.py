"""``peft train --pack K``: many users' adapters at once, each the same as trained alone.

The reference here is written from the description (docs/peft.md): a plain peft + torch loop
for one user, whose adapter starts from the user's own generator (seeded with sha256 of the
seed and the user id), draws each epoch's order from it, and trains with torch's AdamW, the
linear schedule and clipping. Packing is then checked against ``--pack 1``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from synth import kill_when_folder_appears, peft_rows, write_jsonl, write_tiny_causal, write_tiny_t5

pytest.importorskip("peft")

import torch  # noqa: E402
from peft import LoraConfig, TaskType, get_peft_model  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    get_linear_schedule_with_warmup,
)

import lampctl  # noqa: E402
from lampctl.errors import OptionError  # noqa: E402

# users of very different sizes: 1 to 21 rows, so packs refill at different steps
SIZES = {"a": 1, "b": 2, "c": 3, "d": 5, "e": 8, "f": 13, "g": 21}
TOLERANCE = 1e-6  # of the adapter's largest weight (docs/peft.md says why not 0)


@pytest.fixture(scope="module")
def calm_t5(tmp_path_factory) -> Path:
    """A tiny T5 of ordinary activations (T5's own init), with its dropout on (0.1)."""
    return write_tiny_t5(tmp_path_factory.mktemp("models") / "t5", init=1.0)


@pytest.fixture(scope="module")
def still_t5(tmp_path_factory) -> Path:
    """The same without dropout: what a plain loop can match draw for draw."""
    return write_tiny_t5(tmp_path_factory.mktemp("models") / "t5", init=1.0, dropout=0.0)


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return write_tiny_causal(tmp_path_factory.mktemp("models") / "llama")


def _pairs(sizes: dict[str, int], user: str) -> list[tuple[str, str]]:
    return [(r["source"], r["target"]) for r in peft_rows(sizes) if r["user_id"] == user]


def _user_generator(seed: int, user: str) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}\0{user}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _reference_adapter(model_dir: Path, kind: str, user: str, pairs, lr: float) -> dict:
    """One user's adapter by a plain loop (LoRA r 8, alpha 32, no dropout)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    loader = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    model = loader.from_pretrained(model_dir)
    for p in model.parameters():
        p.requires_grad_(False)
    config = LoraConfig(
        task_type=TaskType.SEQ_2_SEQ_LM if kind == "seq2seq" else TaskType.CAUSAL_LM,
        r=8, lora_alpha=32, lora_dropout=0.0,
        target_modules=["q", "k", "v"] if kind == "seq2seq" else ["q_proj", "k_proj", "v_proj"],
    )  # fmt: skip
    model = get_peft_model(model, config)
    generator = _user_generator(0, user)
    with torch.no_grad():  # the user's start: A from its generator, module by module; B zero
        for module in model.modules():
            if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
                a = module.lora_A["default"].weight
                start = torch.empty(a.shape)
                torch.nn.init.kaiming_uniform_(start, a=math.sqrt(5), generator=generator)
                a.copy_(start)
                module.lora_B["default"].weight.zero_()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    epochs, batch_size = 2, 2
    steps = math.ceil(len(pairs) / batch_size) * epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(steps * 0.05), steps)
    model.train()
    for _ in range(epochs):
        permutation = torch.randperm(len(pairs), generator=generator).tolist()
        for start in range(0, len(pairs), batch_size):
            batch = [pairs[i] for i in permutation[start : start + batch_size]]
            loss = model(**_reference_batch(tokenizer, kind, batch)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
    return {k.replace(".default", ""): v for k, v in model.state_dict().items() if "lora_" in k}


def _reference_batch(tokenizer, kind: str, batch) -> dict:
    if kind == "seq2seq":
        enc = tokenizer([s for s, _ in batch], padding=True, truncation=True, max_length=512,
                        return_tensors="pt", return_token_type_ids=False)  # fmt: skip
        lab = tokenizer([t for _, t in batch], padding=True, truncation=True, max_length=512,
                        return_tensors="pt", return_token_type_ids=False)  # fmt: skip
        labels = lab["input_ids"].clone()
        labels[lab["attention_mask"] == 0] = -100  # padding is not in the loss
        return {**enc, "labels": labels}
    # causal: prompt then target and EOS, right-padded; only the target and EOS in the loss
    seqs, labels = [], []
    for source, target in batch:
        prompt = tokenizer(source)["input_ids"]
        answer = tokenizer(target, add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
        seqs.append(prompt + answer)
        labels.append([-100] * len(prompt) + answer)
    width = max(map(len, seqs))
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([s + [pad] * (width - len(s)) for s in seqs]),
        "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs]),
        "labels": torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels]),
    }


def _saved(folder: Path) -> dict:
    return load_file(str(folder / "adapter_model.safetensors"))


def _difference(got: dict, want: dict) -> float:
    """The largest difference of two adapters, over the largest weight of ``want``."""
    assert sorted(got) == sorted(want) and got
    scale = max(float(t.abs().max()) for t in want.values())
    return max(float((got[k] - want[k]).abs().max()) for k in want) / scale


def _curve(folder: Path) -> list[float]:
    return json.loads((folder / "lampctl_adapter.json").read_text())["losses"]


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_pack_1_equals_a_plain_peft_loop(tmp_path, still_t5, llama, kind):
    model = still_t5 if kind == "seq2seq" else llama
    sizes = {"7": 5, "8": 3}
    rows = write_jsonl(tmp_path / "rows.jsonl", peft_rows(sizes))
    run = lampctl.peft_train(
        str(model), rows=rows, adapters=tmp_path / "ad", device="cpu", pack=1, epochs=2,
        batch_size=2, learning_rate=1e-3, dropout=0.0,
    )  # fmt: skip
    assert [r.status for r in run.results] == ["trained", "trained"] and run.pack == 1
    for user in sizes:
        want = _reference_adapter(model, kind, user, _pairs(sizes, user), lr=1e-3)
        assert _difference(_saved(tmp_path / "ad" / user), want) <= TOLERANCE, user
    first, second = _saved(tmp_path / "ad" / "7"), _saved(tmp_path / "ad" / "8")
    assert any(not torch.equal(first[k], second[k]) for k in first)  # each user its own


def _pack_runs(model: Path, folder: Path, packs, **options) -> None:
    folder.mkdir(exist_ok=True)
    rows = write_jsonl(folder / "rows.jsonl", peft_rows(SIZES))
    common = {"device": "cpu", "epochs": 2, "batch_size": 2, "learning_rate": 1e-3, **options}
    for pack in packs:
        run = lampctl.peft_train(str(model), rows=rows, adapters=folder / f"p{pack}", pack=pack,
                                 **common)  # fmt: skip
        assert run.pack == min(pack, len(SIZES)) and run.trained == len(SIZES)
        for user, size in SIZES.items():
            assert len(_curve(folder / f"p{pack}" / user)) == math.ceil(size / 2) * 2


def _worst(folder: Path, pack: int) -> tuple[float, float]:
    """The largest difference from ``--pack 1`` of any user's adapter (of its tensor's
    largest weight) and of any step's loss (relative)."""
    weights = losses = 0.0
    for user in SIZES:
        alone, packed = folder / "p1" / user, folder / f"p{pack}" / user
        want, got = _saved(alone), _saved(packed)
        for name, tensor in want.items():
            scale = float(tensor.abs().max())
            weights = max(weights, float((got[name] - tensor).abs().max()) / scale)
        for a, b in zip(_curve(packed), _curve(alone), strict=True):
            losses = max(losses, abs(a - b) / abs(b))
    return weights, losses


@pytest.fixture
def float64(monkeypatch):
    """Base model, adapters and optimizer in float64 (a test's way: lampctl has no such
    precision), where rounding is a billion times smaller than in float32."""
    from lampctl.model import loading

    real = loading.load_base_model

    def doubled(*args, **kwargs):
        base = real(*args, **kwargs)
        base.model.double()
        return base

    monkeypatch.setattr(loading, "load_base_model", doubled)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_packing_leaves_every_adapter_and_loss_curve_as_trained_alone(
    tmp_path, calm_t5, llama, kind, float64
):
    """Dropout on (the LoRA's, and the T5's own 0.1), packs of 1, 3 and 8 users of 1 to 21
    rows. In float64 a packed adapter is --pack 1's to 1e-10 of each tensor's largest weight,
    and each step's loss to 1e-10: what packing changes is rounding, nothing drawn."""
    model = calm_t5 if kind == "seq2seq" else llama
    _pack_runs(model, tmp_path, (1, 3, 8))
    assert _saved(tmp_path / "p1" / "g")[next(iter(_saved(tmp_path / "p1" / "g")))].dtype == (
        torch.float64
    )
    for pack in (3, 8):
        weights, losses = _worst(tmp_path, pack)
        assert weights <= 1e-10 and losses <= 1e-10, (pack, weights, losses)


@pytest.mark.parametrize("kind", ["seq2seq", "causal"])
def test_packing_in_float32_differs_by_rounding_only(tmp_path, calm_t5, llama, kind):
    """In float32 (lampctl's), a row padded to another width sums in another order, and
    AdamW's per-weight scaling lets such rounding grow over the steps: packed adapters stay
    within 1e-4 of the adapter's largest weight (measured: up to 1.4e-5 after 22 steps at lr
    1e-3), each step's loss within 1e-5 (docs/peft.md)."""
    model = calm_t5 if kind == "seq2seq" else llama
    _pack_runs(model, tmp_path, (1, 8))
    for user in SIZES:
        got, want = _saved(tmp_path / "p8" / user), _saved(tmp_path / "p1" / user)
        assert _difference(got, want) <= 1e-4, user
        for a, b in zip(_curve(tmp_path / "p8" / user), _curve(tmp_path / "p1" / user),
                        strict=True):  # fmt: skip
            assert abs(a - b) <= 1e-5 * abs(b), user
    # Dropout is really drawn: the same run without it trains other adapters.
    _pack_runs(model, tmp_path / "still", (8,), dropout=0.0)
    still = _saved(tmp_path / "still" / "p8" / "g")
    assert _difference(still, _saved(tmp_path / "p8" / "g")) > 1e-3


def test_dropout_masks_follow_the_row_not_the_padding_or_the_pack():
    from lampctl.model.dropout import PackRows, row_key

    rows = PackRows()
    keys = [row_key(11, 0, 0), row_key(11, 0, 1), row_key(12, 0, 0)]
    masks = {}
    for width in (7, 12):
        with rows.step([0, 0, 1], keys, "cpu"):
            hidden = rows.dropout(torch.ones(3, width, 16), 0.25, True)
            attention = rows.dropout(torch.ones(3, 2, width, width), 0.25, True)
        masks[width] = hidden[:, :7], attention[:, :, :7, :7]
    assert torch.equal(masks[7][0], masks[12][0]) and torch.equal(masks[7][1], masks[12][1])
    hidden = masks[12][0]
    scaled = float(torch.tensor(1 / 0.75))  # kept values scaled by 1/(1-p)
    assert set(hidden.unique().tolist()) == {0.0, scaled}
    assert not torch.equal(hidden[0], hidden[1]) and not torch.equal(hidden[0], hidden[2])
    with rows.step([0], keys[2:], "cpu"):  # a row alone: the mask it had among others
        alone = rows.dropout(torch.ones(1, 7, 16), 0.25, True)
    assert torch.equal(alone[0], masks[7][0][2])
    with rows.step([0], keys[:1], "cpu"):
        big = rows.dropout(torch.ones(1, 400, 500), 0.25, True)
    assert abs(float((big == 0).float().mean()) - 0.25) < 0.01
    assert torch.equal(rows.dropout(torch.ones(2, 3), 0.25, False), torch.ones(2, 3))


def test_the_keyed_mask_is_the_documented_hash_element_by_element():
    """A plain loop over 32-bit unsigned ints, written from the description: a mask's bits are
    part of what an adapter is, so they must not drift between versions."""
    from lampctl.model.dropout import keyed_mask, mix_int, row_key

    full, spread = 0xFFFFFFFF, (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1)
    keys = [row_key(7, step, row) for step, row in ((0, 0), (0, 1), (3, 2))]
    shape, call, p = (3, 2, 4, 6), 5, 0.3
    threshold = round(p * (1 << 32)) - (1 << 31)  # kept when the signed hash is this or more
    got = keyed_mask(torch.tensor(keys, dtype=torch.int32), call, shape, p)
    for b, i, k, j in itertools.product(*(range(n) for n in shape)):
        key = mix_int((keys[b] & full) ^ ((call * 0x632BE5AB) & full))
        for dim, coordinate in ((1, i), (2, k)):
            key = mix_int(key ^ ((coordinate * spread[dim - 1]) & full))
        key = ((key ^ ((j * spread[2]) & full)) * 0x7FEB352D) & full
        key = ((key ^ (key >> 15)) * 0x846CA68B) & full
        signed = key - (1 << 32) if key >= 1 << 31 else key
        assert bool(got[b, i, k, j]) == (signed >= threshold), (b, i, k, j)


def test_pack_0_and_a_pack_larger_than_the_users(cli, tmp_path, calm_t5):
    rows = write_jsonl(tmp_path / "rows.jsonl", peft_rows({"a": 2, "b": 1, "c": 3}))
    result = cli("peft", "train", "-m", calm_t5, "--rows", rows, "--pack", "0")
    assert result.exit_code == 2 and "--pack" in result.err
    with pytest.raises(OptionError, match="at least 1"):
        lampctl.peft_train(str(calm_t5), rows=rows, pack=0)
    result = cli("peft", "train", "-m", calm_t5, "--rows", rows, "--adapters", tmp_path / "ad",
                 "--epochs", "1", "--pack", "8", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["pack"] == 3 and out["trained"] == 3 and out["failed"] == 0
    assert "--pack 8 is more than the 3 users to train" in result.err
    assert "--pack" in cli("peft", "train", "--help").output


def test_a_pack_that_does_not_fit_is_one_line_and_an_automatic_one_backs_off(
    cli, tmp_path, calm_t5, monkeypatch
):
    from lampctl.model import training

    rows = write_jsonl(tmp_path / "rows.jsonl", peft_rows({"a": 2, "b": 1, "c": 3}))
    monkeypatch.setattr(training, "free_memory", lambda device: 50_000)
    result = cli("peft", "train", "-m", calm_t5, "--rows", rows, "--adapters", tmp_path / "ad",
                 "--epochs", "1", "--pack", "3")  # fmt: skip
    assert result.exit_code == 2, result.output
    (line,) = result.err.strip().splitlines()
    assert "3 users at once need about" in line and "50.0 KB is free" in line
    assert "--pack 1 fits" in line and "Traceback" not in result.output
    assert not (tmp_path / "ad").exists() or not any((tmp_path / "ad").iterdir())
    run = lampctl.peft_train(str(calm_t5), rows=rows, adapters=tmp_path / "ad", epochs=1)
    assert run.pack == 1 and run.trained == 3


def test_a_step_larger_than_memory_runs_in_chunks_to_the_same_adapters(
    cli, tmp_path, calm_t5, monkeypatch
):
    from lampctl.model import packing, training

    rows = write_jsonl(tmp_path / "rows.jsonl", peft_rows({"a": 3, "b": 6, "c": 4}))
    args = ("peft", "train", "-m", calm_t5, "--rows", rows, "--epochs", "2", "--batch-size",
            "2", "--pack", "3")  # fmt: skip
    assert cli(*args, "--adapters", tmp_path / "whole").exit_code == 0
    monkeypatch.setattr(packing.PackedAdapters, "slot_bytes", lambda self: 100)
    monkeypatch.setattr(packing.PackedAdapters, "row_activation_bytes", lambda self, row: 1000)
    monkeypatch.setattr(training, "free_memory", lambda device: 6700)  # 3 slots and 5 rows
    result = cli(*args, "--adapters", tmp_path / "chunked")
    assert result.exit_code == 0, result.output
    assert "each step runs in forwards of 5 rows" in result.err
    for user in "abc":
        got, want = _saved(tmp_path / "chunked" / user), _saved(tmp_path / "whole" / user)
        assert _difference(got, want) <= 1e-4


def test_running_out_of_memory_mid_pack_is_one_line(cli, tmp_path, calm_t5, monkeypatch):
    from lampctl.model import packing

    rows = write_jsonl(tmp_path / "rows.jsonl", peft_rows({"a": 1, "b": 6, "c": 6, "d": 6}))
    real, steps = packing.PackedAdapters.step, []

    def runs_out(self):
        steps.append(1)
        if len(steps) == 2:  # after user a (one step) is saved
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self)

    monkeypatch.setattr(packing.PackedAdapters, "step", runs_out)
    result = cli("peft", "train", "-m", calm_t5, "--rows", rows, "--adapters", tmp_path / "ad",
                 "--epochs", "1", "--batch-size", "2", "--pack", "4")  # fmt: skip
    assert result.exit_code == 1 and "Traceback" not in result.output
    (line,) = result.err.strip().splitlines()[-1:]
    assert "out of memory on cpu in a step of 3 users' rows" in line
    assert "Tried to allocate 2.00 GiB" in line and "rerun with --pack 1" in line
    assert sorted(p.name for p in (tmp_path / "ad").iterdir()) == ["a"]


def test_a_broken_user_fails_alone_and_the_pack_finishes(cli, tmp_path, calm_t5, monkeypatch):
    records = peft_rows({"a": 2, "b": 3, "c": 2, "d": 4})
    broken = next(r for r in records if r["user_id"] == "b")
    del broken["target"]
    rows = write_jsonl(tmp_path / "rows.jsonl", records)
    args = ("peft", "train", "-m", calm_t5, "--rows", rows, "--epochs", "2", "--batch-size",
            "2", "--pack", "4")  # fmt: skip
    result = cli(*args, "--adapters", tmp_path / "ad", "--json")
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert out["trained"] == 3 and out["failed"] == 1
    (failed,) = [u for u in out["users"] if u["status"] == "failed"]
    assert failed["user_id"] == "b" and "of user 'b' has no target" in failed["error"]
    assert sorted(p.name for p in (tmp_path / "ad").iterdir()) == ["a", "c", "d"]
    assert result.err.count("Error: ") == 1 and "user 'b'" in result.err

    # A loss that stops being finite mid-pack: that user fails, its neighbours are saved.
    from lampctl.model import packing

    real = packing.PackedAdapters._row_losses

    def poisoned(self, inputs, labels):
        sums = real(self, inputs, labels)
        for n, slot in enumerate(self.rows.slots.tolist()):
            state = self.states[slot]
            if state is not None and state.user.user == "c" and state.step == 1:
                sums = sums.clone()
                sums[n] = float("nan")
        return sums

    monkeypatch.setattr(packing.PackedAdapters, "_row_losses", poisoned)
    result = cli(*args, "--adapters", tmp_path / "again")
    assert result.exit_code == 1, result.output
    assert "user 'c': the loss is nan at step 2; its adapter is not saved" in result.err
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["a", "d"]
    assert "2 trained, 0 up to date, 2 failed" in result.stdout


def test_a_killed_pack_finishes_with_the_same_adapters(tmp_path, calm_t5):
    rows = write_jsonl(tmp_path / "rows.jsonl", peft_rows({"a": 2, "b": 9, "c": 5, "d": 14}))
    command = [sys.executable, "-m", "lampctl", "peft", "train", "-m", str(calm_t5), "--rows",
               str(rows), "--epochs", "12", "--batch-size", "2", "--pack", "3"]  # fmt: skip
    kill_when_folder_appears([*command, "--adapters", str(tmp_path / "ad")], tmp_path / "ad" / "a")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMPCTL_")}
    kept = sorted(p.name for p in (tmp_path / "ad").iterdir() if not p.name.startswith("."))
    assert "d" not in kept  # killed mid-pack, with users left to train
    subprocess.run([*command, "--adapters", str(tmp_path / "ad")], env=env, check=True,
                   capture_output=True)  # fmt: skip
    subprocess.run([*command, "--adapters", str(tmp_path / "clean")], env=env, check=True,
                   capture_output=True)  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "ad").iterdir()) == ["a", "b", "c", "d"]
    for user in "abcd":
        resumed, clean = tmp_path / "ad" / user, tmp_path / "clean" / user
        assert _difference(_saved(resumed), _saved(clean)) <= TOLERANCE
        assert (resumed / "adapter_config.json").read_bytes() == (
            clean / "adapter_config.json"
        ).read_bytes()
