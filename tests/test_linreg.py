"""linreg-sgd: the lesson's linear regression by gradient descent, three ways; its animation; save and load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import one_line_error, run_zoo
from zoo_sgd import A, B
from zoo_sgd.linreg import autograd_gradients, frame_steps, hand_gradients

import zoo
from zoo.errors import ZooError


@pytest.fixture(scope="module")
def optim_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("linreg") / "optim"
    zoo.train("linreg-sgd", seed=0, out=out, device="cpu", quiet=True)
    return out


def test_hand_gradients_equal_autograd():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, 500)
    y = A * x + B + 0.1 * rng.normal(0, 3, 500)
    for a, b in [(-1.0, 1.0), (2.5, 9.0), (3.0, 8.0), (0.3, -0.7)]:
        da, db = hand_gradients(a, b, x, y)  # NumPy, as the manual method runs them
        ga, gb = autograd_gradients(a, b, torch.from_numpy(x), torch.from_numpy(y))
        assert abs(da - ga) < 1e-6 and abs(db - gb) < 1e-6, (a, b, da, ga, db, gb)
        ta, tb = hand_gradients(torch.tensor(a), torch.tensor(b), torch.from_numpy(x), torch.from_numpy(y))  # on tensors too
        assert abs(ta.item() - ga) < 1e-6 and abs(tb.item() - gb) < 1e-6


@pytest.mark.parametrize("method", ["manual", "autograd", "optim"])
def test_every_method_lands_near_3_and_8(method, tmp_path, optim_run):
    if method == "optim":
        m = zoo.load(optim_run)
    else:
        m = zoo.train("linreg-sgd", options={"method": method}, seed=0, out=tmp_path / method, device="cpu", quiet=True)
    a, b = m.model.a.item(), m.model.b.item()
    assert abs(a - A) < 0.2 and abs(b - B) < 0.2, (method, a, b)
    assert m.history and m.history[-1]["val_loss"] < 0.1  # the noise alone is 0.09
    record = json.loads((m.path / "run.json").read_text())
    assert record["options"]["train_options"]["method"] == method


def test_cli_prints_the_fit_and_writes_a_multi_frame_gif(tmp_path):
    from PIL import Image

    gif = tmp_path / "fit.gif"
    proc = run_zoo("train", "linreg-sgd", "--method", "manual", "--animate", str(gif), "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "step" in proc.stderr and "loss" in proc.stderr  # the loss as it goes
    assert "linreg-sgd: val_loss" in proc.stdout and "a = 2.9" in proc.stdout and "b = 8.0" in proc.stdout
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.is_animated
        assert im.n_frames == len(frame_steps(1200)) == 41
    assert (tmp_path / "fit-loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "run" / "loss.png").exists()


def test_an_animation_path_that_cannot_be_written_is_refused_before_training(tmp_path):
    out = tmp_path / "run"
    line = one_line_error(run_zoo("train", "linreg-sgd", "--method", "manual", "--animate", "/proc/zoo/fit.gif", "--out", str(out)))
    assert line.startswith("zoo: error: --animate /proc/zoo/fit.gif: cannot write to /proc/zoo")
    assert not out.exists()
    out.mkdir()
    (out / "theirs.txt").write_text("not a run")  # a run refused after the options are checked
    gif = tmp_path / "new" / "deeper" / "fit.gif"
    assert "not empty" in one_line_error(run_zoo("train", "linreg-sgd", "--method", "manual", "--animate", str(gif), "--out", str(out)))
    assert not (tmp_path / "new").exists()  # the check made no folder that outlives it


def test_an_animation_that_fails_late_is_a_warning_and_the_fit_is_kept(tmp_path, monkeypatch):
    import zoo_sgd.linreg

    def broken(path, *args):
        raise ZooError(f"--animate {path}: cannot write the GIF (disk full)")

    monkeypatch.setattr(zoo_sgd.linreg, "animate_fit", broken)
    from zoo.errors import ZooWarning

    with pytest.warns(ZooWarning, match="cannot write the GIF"):
        m = zoo.train("linreg-sgd", options={"method": "manual", "animate": str(tmp_path / "fit.gif")}, out=tmp_path / "run", quiet=True)
    assert (tmp_path / "run" / "model.safetensors").exists() and m.history


@pytest.mark.parametrize("method", ["manual", "autograd"])
def test_the_hand_written_loops_stop_at_the_budget(tmp_path, method):
    full = zoo.train("linreg-sgd", options={"method": method}, out=tmp_path / "full", quiet=True)
    cut = zoo.train("linreg-sgd", options={"method": method}, max_seconds=1e-6, out=tmp_path / "cut", quiet=True)
    assert full.history[-1]["epoch"] > 100 and cut.history[-1]["epoch"] < full.history[-1]["epoch"]


def test_save_load_gives_identical_predictions(optim_run):
    from zoo.checkpoint import read_tensors

    m = zoo.load(optim_run)
    assert set(read_tensors(optim_run / "model.safetensors")) == {"a", "b"}
    table = m.table()
    again = zoo.load(optim_run)
    assert np.array_equal(m.predict(table), again.predict(table))
    a, b = m.model.a.item(), m.model.b.item()
    assert np.allclose(m.predict(table), a * table.columns["x"] + b, atol=1e-5)
    result = m.evaluate()
    assert result["val_loss"] == pytest.approx(m.history[-1]["val_loss"], rel=1e-4)


def test_the_options_belong_to_their_model(tmp_path):
    with pytest.raises(ZooError, match="--method: not an option of char-rnn"):
        zoo.train("char-rnn", options={"method": "manual"}, out=tmp_path / "x")
    with pytest.raises(ZooError, match="--colour: not an option of linreg-sgd"):
        zoo.train("linreg-sgd", options={"colour": "red"}, out=tmp_path / "y")
    line = one_line_error(run_zoo("train", "char-rnn", "--method", "manual", "--out", str(tmp_path / "z")))
    assert "not an option of char-rnn" in line


def test_a_hand_written_run_has_no_checkpoint_to_resume(tmp_path):
    run = tmp_path / "manual"
    zoo.train("linreg-sgd", options={"method": "manual"}, epochs=50, out=run, device="cpu", quiet=True)
    with pytest.raises(ZooError, match="no checkpoint"):
        zoo.train(resume=run, quiet=True)


def test_zoo_list_and_info_show_both_new_models():
    listed = {m["name"]: m for m in json.loads(run_zoo("list", "--json").stdout)}
    assert listed["linreg-sgd"]["task"] == "regression" and listed["linreg-sgd"]["num_params"] == 2
    assert listed["entity-embeddings"]["task"] == "tabular-regression" and listed["entity-embeddings"]["dataset"] == "txhousing"
    info = run_zoo("info", "linreg-sgd").stdout
    assert "training options" in info and "method='optim'" in info


@pytest.mark.parametrize("method", ["manual", "autograd"])
def test_a_diverging_hand_fit_fails_like_the_trainer_does(method, tmp_path):
    proc = run_zoo("train", "linreg-sgd", "--method", method, "--lr", "10", "--out", str(tmp_path / method))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "Warning" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]  # after the progress table: the error
    assert line.startswith("zoo: error:") and "diverged" in line and "--lr" in line


def test_a_table_run_stopped_mid_epoch_says_where_like_a_character_run(tmp_path):
    m = zoo.train("linreg-sgd", out=tmp_path / "r", max_steps=3, quiet=True, device="cpu")
    assert m.partial is not None and (m.partial["epoch"], m.partial["step"]) == (1, 3)
    resumed = zoo.train(resume=tmp_path / "r", quiet=True, device="cpu")
    assert resumed.partial is None and len(resumed.history) == 10
