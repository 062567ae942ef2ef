"""Hostile inputs to `zoo train --resume`: hand-edited run.json, state.json and optimizer state, links out of the run folder.

Part of issue 19's suite of hostile inputs. Each case copies one small run, damages one thing in it, and asks for a
resume: the answer is one `zoo: error:` line naming what is wrong, and the folder (and whatever a link points to) is
left byte for byte as it was. A wrong-shaped Adam state made the fused CPU kernel write past its buffer (a
segmentation fault), so that case runs in a subprocess.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import one_line_error, run_zoo, write_prose
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import zoo
from zoo.checkpoint import optimizer_from_tensors, optimizer_to_tensors
from zoo.cli import main as zoo_main
from zoo.errors import ZooError
from zoo.options import BATCH_SIZE_LIMIT, EPOCHS_LIMIT, SEED_LIMIT, recorded_options
from zoo.trainer import TrainState

TINY = ("n_hidden=16", "n_fac=4")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "c.txt"
    write_prose(path, 6_000)
    return path


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory) -> Path:
    """A char-rnn run stopped in its second epoch: one epoch of history, a position mid-epoch, Adam's state."""
    out = tmp_path_factory.mktemp("run") / "run"
    kw = dict(data=str(corpus), overrides=TINY, batch_size=64, epochs=2, seed=3, device="cpu", quiet=True)
    zoo.train("char-rnn", out=out, max_steps=80, **kw)
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert (state["epoch"], state["step"], len(state["history"])) == (1, 5, 1)
    return out


@pytest.fixture(scope="module")
def stateful_run(corpus, tmp_path_factory) -> Path:
    """A stateful model's run stopped mid-epoch: its checkpoint carries the hidden state between batches."""
    out = tmp_path_factory.mktemp("stateful") / "run"
    zoo.train("char-stateful", out=out, data=str(corpus), overrides=TINY, batch_size=8, seed=3, device="cpu", quiet=True, max_steps=5)
    assert "carried.0" in load_file(out / "checkpoint" / "optimizer.safetensors")
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def resume_error(capsys, folder: Path, *args: str) -> str:
    """`zoo train --resume FOLDER` in-process: assert one error line and nothing changed in the folder; the line."""
    before = snapshot(folder)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        zoo_main(["train", "--resume", str(folder), "--device", "cpu", *args])
    err = capsys.readouterr().err
    assert exc.value.code not in (0, None), err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), err
    assert snapshot(folder) == before
    return lines[0]


def damaged(run: Path, tmp_path: Path, damage: Callable[[Path], None]) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    damage(out)
    return out


def edit_json(name: str, change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        path = folder / name
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))

    return damage


def edit_tensors(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        path = folder / "checkpoint" / "optimizer.safetensors"
        tensors = load_file(path)
        change(tensors)
        save_file(tensors, path)

    return damage


def set_option(key: str, value) -> Callable[[Path], None]:
    return edit_json("run.json", lambda record: record["options"].__setitem__(key, value))


def drop_option(key: str) -> Callable[[Path], None]:
    return edit_json("run.json", lambda record: record["options"].pop(key))


def set_state(key: str, value) -> Callable[[Path], None]:
    return edit_json("checkpoint/state.json", lambda state: state.__setitem__(key, value))


def set_scalars(change: Callable[[dict], None]) -> Callable[[Path], None]:
    return edit_json("checkpoint/state.json", lambda state: change(state["optimizer"]))


def set_group(key: str, value) -> Callable[[Path], None]:
    return edit_json("checkpoint/state.json", lambda state: state["optimizer"]["param_groups"][0].__setitem__(key, value))


# ---------------------------------------------------------------------------------------------------------------------
# run.json: every option a resume reads (the ZeroDivisionError, IndexError, KeyError, MemoryError)
# ---------------------------------------------------------------------------------------------------------------------

RUN_JSON = [
    (set_option("batch_size", 0), "'batch_size' must be at least 1, got 0"),  # was ZeroDivisionError
    (set_option("batch_size", -64), "'batch_size' must be at least 1, got -64"),
    (set_option("batch_size", 10**9), f"'batch_size' must be at most {BATCH_SIZE_LIMIT}, got 1000000000"),  # was obeyed
    (set_option("batch_size", 2.5), "'batch_size' must be a whole number, got 2.5"),
    (set_option("batch_size", "64"), "'batch_size' must be a whole number, got '64'"),
    (set_option("batch_size", 32), "the run's epochs had 75 batches, but its data and batch size now give 150"),
    (set_option("epoch_lrs", []), "'epoch_lrs' must be a list of learning rates, got []"),  # was IndexError
    (set_option("epoch_lrs", "fast"), "'epoch_lrs' must be a list of learning rates, got 'fast'"),
    (set_option("epoch_lrs", [0]), "'epoch_lrs' must be a positive number, got 0"),
    (set_option("epoch_lrs", [-1e-3]), "'epoch_lrs' must be a positive number, got -0.001"),
    (set_option("epoch_lrs", [float("nan")]), "'epoch_lrs' must be a positive number, got nan"),
    (set_option("epoch_lrs", [None]), "'epoch_lrs' must be a positive number, got None"),
    (set_option("epochs", 0), "'epochs' must be at least 1, got 0"),
    (set_option("epochs", 10**12), f"'epochs' must be at most {EPOCHS_LIMIT}"),  # was MemoryError
    (set_option("epochs", "2"), "'epochs' must be a whole number, got '2'"),
    (set_option("seed", 2**70), f"'seed' must be at most {SEED_LIMIT}"),  # overflowed the shuffle's generator
    (set_option("seed", "3"), "'seed' must be a whole number, got '3'"),
    (set_option("seed", None), "'seed' must be a whole number, got None"),
    (set_option("data", 5), "'data' must be a dataset name or a file's path, got 5"),
    (set_option("train_options", []), "'train_options' must be an object, got []"),
    (set_option("amp", "no"), "'amp' must be true, false or null, got 'no'"),
    (drop_option("seed"), "'options' lacks the key 'seed'"),  # was KeyError
    (drop_option("batch_size"), "'options' lacks the key 'batch_size'"),
    (drop_option("epoch_lrs"), "'options' lacks the key 'epoch_lrs'"),
    (drop_option("data"), "'options' lacks the key 'data'"),
    (edit_json("run.json", lambda record: record.__setitem__("options", [1, 2])), "'options' must be an object, got [1, 2]"),
    (edit_json("run.json", lambda record: record.pop("options")), "'options' must be an object, got None"),
]


# config.json's held-out part, which a resume splits the text by (the rest of config.json is its task's to check)
RUN_JSON += [
    (edit_json("config.json", lambda config: config.__setitem__("val_frac", "0.2")), "'val_frac' must be a number between 0 and 1"),
    (edit_json("config.json", lambda config: config.__setitem__("val_frac", 0)), "'val_frac' must be a number between 0 and 1"),
    (edit_json("config.json", lambda config: config.__setitem__("val_frac", float("nan"))), "(exclusive), got nan"),
    (edit_json("config.json", lambda config: config.__setitem__("split", 5)), "config.json: 'split' must be the name of a split, got 5"),
]


@pytest.mark.parametrize("damage, needle", RUN_JSON)
def test_a_hand_edited_run_record_is_one_line_on_resume(capsys, tmp_path, run, damage, needle):
    line = resume_error(capsys, damaged(run, tmp_path, damage))
    assert needle in line, line


def test_resuming_asks_for_no_more_epochs_than_the_cap(capsys, run):
    line = resume_error(capsys, run, "--epochs", str(10**12))
    assert f"--epochs must be at most {EPOCHS_LIMIT}" in line


# ---------------------------------------------------------------------------------------------------------------------
# checkpoint/state.json: the counters and the optimizer's settings
# ---------------------------------------------------------------------------------------------------------------------

STATE_JSON = [
    (set_state("step", 10**9), "'step' 1000000000 is past the epoch's 75 batches"),
    (set_state("steps_per_epoch", 7), "the run's epochs had 7 batches, but its data and batch size now give 75"),
    (set_state("loss_sum", float("inf")), "'loss_sum' is inf, not what zoo wrote"),
    (set_state("trained_seconds", float("nan")), "'trained_seconds' is nan, not what zoo wrote"),
    (set_state("epoch", 0), "'history' holds 1 epochs, but 'epoch' says 0 are done"),
    (set_state("history", [{"epoch": 1}]), "'history' is [{'epoch': 1}], not what zoo wrote"),  # the plot's KeyError
    (set_state("optimizer", 5), "checkpoint/state.json: 'optimizer' must be an object, got 5"),  # was AttributeError
    (set_state("optimizer", {"param_groups": "x"}), "the optimizer's 'param_groups' must be a list of 1 objects"),
    (set_group("params", [0, 1]), "a parameter group's 'params' must list 7 parameter numbers, got [0, 1]"),
    (set_group("params", [0, 0, 1, 2, 3, 4, 5]), "a parameter number is listed twice"),
    (set_group("params", [0, 1, 2, 3, 4, 5, 9]), "optimizer.safetensors: holds optimizer state for parameter 6, which the"),
    (set_group("lr", "fast"), "checkpoint/state.json: the optimizer's 'lr' must be a positive number, got 'fast'"),
    (set_group("betas", [0.5, "x"]), "the optimizer's 'betas' is [0.5, 'x'], not this run's (0.9, 0.999)"),
    (set_group("eps", -1), "the optimizer's 'eps' is -1, not this run's 1e-08"),
    (set_group("amsgrad", True), "the optimizer's 'amsgrad' is True, not this run's False"),
    (set_scalars(lambda opt: opt.__setitem__("scalars", [])), "the optimizer's 'scalars' must be an object"),
    (set_scalars(lambda opt: opt["scalars"].__setitem__("0.step", [1])), "the state 'step' of parameter 0 is saved twice"),
    (set_scalars(lambda opt: opt["scalars"].__setitem__("0.oops", 1)), "parameter 0's optimizer state holds"),
]


@pytest.mark.parametrize("damage, needle", STATE_JSON)
def test_a_hand_edited_state_json_is_one_line_on_resume(capsys, tmp_path, run, damage, needle):
    line = resume_error(capsys, damaged(run, tmp_path, damage))
    assert needle in line, line


# ---------------------------------------------------------------------------------------------------------------------
# checkpoint/optimizer.safetensors: each state tensor against its parameter, the random generator's state
# ---------------------------------------------------------------------------------------------------------------------


def _put(name: str, value: torch.Tensor) -> Callable[[Path], None]:
    return edit_tensors(lambda tensors: tensors.__setitem__(name, value))


OPTIMIZER_FILE = [
    (_put("state.0.exp_avg", torch.zeros(63, 4, dtype=torch.float64)), "safetensors: the optimizer's 'exp_avg' of parameter 0 (63, 4) is"),
    (_put("state.0.exp_avg", torch.zeros(63)), "is (63,) torch.float32, not (63, 4) torch.float32"),
    (_put("state.0.exp_avg_sq", torch.full((63, 4), float("nan"))), "'exp_avg_sq' of parameter 0 (63, 4) holds numbers that are not"),
    (edit_tensors(lambda t: t.pop("state.2.exp_avg")), "parameter 2's optimizer state holds ['exp_avg_sq', 'step']"),  # a KeyError
    (_put("state.0.step", torch.tensor(0.0)), "'step' of parameter 0 (63, 4) must be a count of at least 1, got 0.0"),  # lr / 0
    (_put("state.0.step", torch.ones(3)), "must be a count of at least 1, got (3,) torch.float32"),
    (_put("state.0.step", torch.tensor(float("inf"))), "must be a count of at least 1, got inf"),
    (_put("state.7.exp_avg", torch.zeros(3)), "holds optimizer state for parameter 7"),
    (_put("state.x.exp_avg", torch.zeros(3)), "'state.x.exp_avg' is not the name of an optimizer state"),
    (_put("payload", torch.zeros(3)), "holds 'payload', which zoo does not write"),
    (_put("rng.torch", torch.zeros(10, dtype=torch.uint8)), "state 'rng.torch' is (10,) torch.uint8, not (5056,) torch.uint8"),
    (_put("rng.torch", torch.zeros(5056)), "state 'rng.torch' is (5056,) torch.float32"),  # was TypeError
    (_put("rng.torch", torch.zeros(5056, dtype=torch.uint8)), "the random generator's state 'rng.torch' is not one torch wrote"),
]


@pytest.mark.parametrize("damage, needle", OPTIMIZER_FILE)
def test_a_damaged_optimizer_state_is_one_line_on_resume(capsys, tmp_path, run, damage, needle):
    line = resume_error(capsys, damaged(run, tmp_path, damage))
    assert needle in line, line


def test_an_adam_state_of_the_wrong_shape_is_refused_before_the_fused_kernel_sees_it(tmp_path, run):
    """The issue's segmentation fault: exp_avg 3x3 for a larger weight; the fused CPU Adam wrote past the buffer.
    In a subprocess, so that without the check the crash is this test's failure, not the test run's."""
    folder = damaged(run, tmp_path, _put("state.5.exp_avg", torch.zeros(3, 3)))
    before = snapshot(folder)
    line = one_line_error(run_zoo("train", "--resume", str(folder), "--device", "cpu", timeout=120))
    assert "'exp_avg' of parameter 5 (63, 16) is (3, 3) torch.float32, not (63, 16) torch.float32" in line, line
    assert snapshot(folder) == before


def test_a_huge_optimizer_file_is_refused_before_it_is_read(tmp_path, run):
    """A sparse 16 GB optimizer.safetensors: read whole, it took all memory before any check. Under a 6 GB address
    space limit the old read was a MemoryError traceback; now its size alone refuses it."""
    import resource

    folder = damaged(run, tmp_path, lambda f: None)
    huge = folder / "checkpoint" / "optimizer.safetensors"
    with open(huge, "r+b") as f:
        f.truncate(16 * 2**30)

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))

    cmd = [sys.executable, "-m", "zoo", "train", "--resume", str(folder), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, preexec_fn=limit_memory)
    line = one_line_error(proc)
    assert "optimizer.safetensors: 17,179,869,184 bytes, more than this model's state can take" in line, line
    assert huge.stat().st_size == 16 * 2**30


@pytest.mark.parametrize(
    "damage, needle",
    [
        (_put("carried.0", torch.zeros(8, 3)), "the carried hidden state [(8, 3)] does not fit the model's [(8, 1, 16)]"),
        (_put("carried.0", torch.zeros(())), "the carried hidden state [()] does not fit"),
        (_put("carried.0", torch.full((8, 1, 16), float("inf"))), "the carried hidden state [(8, 1, 16)] does not fit"),
        (_put("carried.1", torch.zeros(8, 1, 16)), "the carried hidden state [(8, 1, 16), (8, 1, 16)] does not fit"),
    ],
)
def test_a_damaged_carried_state_is_one_line_on_resume(capsys, tmp_path, stateful_run, damage, needle):
    line = resume_error(capsys, damaged(stateful_run, tmp_path, damage))
    assert needle in line, line


# ---------------------------------------------------------------------------------------------------------------------
# Links out of the run folder: refused before anything is read or written; what they point to is left alone
# ---------------------------------------------------------------------------------------------------------------------


def test_a_linked_checkpoint_folder_is_refused_and_left_as_it_was(capsys, tmp_path, run):
    """It resumed once (the link moved aside as .checkpoint.old) and then failed at every checkpoint after."""
    elsewhere = tmp_path / "big-disk" / "checkpoint"
    folder = damaged(run, tmp_path, lambda f: shutil.move(f / "checkpoint", elsewhere))
    (folder / "checkpoint").symlink_to(elsewhere, target_is_directory=True)
    kept = snapshot(elsewhere)
    line = resume_error(capsys, folder, "--max-steps", "90")
    assert f"{folder / 'checkpoint'} is a symbolic link; zoo replaces a run's checkpoint folder whole every epoch" in line
    assert (folder / "checkpoint").is_symlink() and snapshot(elsewhere) == kept


LINKABLE = ["checkpoint/optimizer.safetensors", "checkpoint/state.json", "checkpoint/model.safetensors", "run.json", "config.json"]


@pytest.mark.parametrize("name", LINKABLE)
def test_a_file_linked_out_of_the_run_folder_is_refused(capsys, tmp_path, run, name):
    outside = tmp_path / "outside" / Path(name).name
    outside.parent.mkdir()
    folder = damaged(run, tmp_path, lambda f: shutil.move(f / name, outside))
    (folder / name).symlink_to(outside)
    kept = outside.read_bytes()
    line = resume_error(capsys, folder)
    assert f"{folder / name} is a symbolic link out of the run folder (to {outside})" in line, line
    assert outside.read_bytes() == kept


def test_a_link_to_an_endless_device_is_never_read(capsys, tmp_path, run):
    folder = damaged(run, tmp_path, lambda f: (f / "checkpoint" / "optimizer.safetensors").unlink())
    (folder / "checkpoint" / "optimizer.safetensors").symlink_to("/dev/zero")
    assert "is a symbolic link out of the run folder (to /dev/zero)" in resume_error(capsys, folder)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_in_place_of_a_checkpoint_file_is_never_opened(capsys, tmp_path, run):
    folder = damaged(run, tmp_path, lambda f: (f / "checkpoint" / "state.json").unlink())
    os.mkfifo(folder / "checkpoint" / "state.json")
    assert f"{folder / 'checkpoint' / 'state.json'} is not a regular file" in resume_error(capsys, folder)


# ---------------------------------------------------------------------------------------------------------------------
# Any value at all: a ZooError or a checked value, never another exception
# ---------------------------------------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
GOOD_OPTIONS = {"epoch_lrs": [1e-3], "epochs": 2, "batch_size": 64, "seed": 3, "data": "c.txt", "amp": False, "train_options": {}}


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(sorted(GOOD_OPTIONS)), value=JSON)
def test_any_recorded_option_is_checked_or_refused(key, value):
    try:
        options = recorded_options({"options": {**GOOD_OPTIONS, key: value}}, "run.json")
    except ZooError:
        return
    assert 1 <= options["batch_size"] <= BATCH_SIZE_LIMIT and 1 <= options["epochs"] <= EPOCHS_LIMIT
    assert options["epoch_lrs"] and all(math.isfinite(lr) and lr > 0 for lr in options["epoch_lrs"])
    assert abs(options["seed"]) <= SEED_LIMIT and isinstance(options["data"], str)


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(TrainState.FIELDS), value=JSON)
def test_any_state_counter_is_checked_or_refused(key, value):
    state = TrainState()
    try:
        state.restore({**TrainState().as_dict(), key: value})
        state.check_position(10)
    except ZooError:
        return
    assert 0 <= state.step <= 10 and len(state.history) == state.epoch
    assert all(math.isfinite(x) for x in (state.loss_sum, state.trained_seconds))


def _stepped_adam() -> tuple[torch.optim.Optimizer, dict, dict]:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
    model(torch.randn(8, 4)).square().mean().backward()
    opt.step()
    tensors, meta = optimizer_to_tensors(opt)
    return opt, tensors, meta


@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from(["lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "params", "fused"]), value=JSON)
def test_any_optimizer_setting_is_checked_or_refused(key, value):
    opt, tensors, meta = _stepped_adam()
    meta["param_groups"][0][key] = value
    try:
        optimizer_from_tensors(opt, tensors, meta, Path("checkpoint"))
    except ZooError:
        return
    group = opt.param_groups[0]
    assert group["betas"] == (0.9, 0.999) and group["eps"] == 1e-8 and group["fused"] is True and group["lr"] > 0


def test_an_intact_checkpoint_still_resumes_exactly_where_it_stopped(capsys, tmp_path, run):
    """Every check above passes what zoo itself wrote."""
    folder = damaged(run, tmp_path, lambda f: None)
    capsys.readouterr()
    zoo.train(resume=folder, device="cpu", quiet=True, max_steps=82)
    assert json.loads((folder / "checkpoint" / "state.json").read_text())["global_step"] == 82
