"""torchrun: two CPU processes (gloo) give the single-process result; only rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import zoo

TORCHRUN = Path(sys.executable).with_name("torchrun")
TINY = ("--set", "n_hidden=32", "--set", "n_fac=8")


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # torchrun leaves a torchelastic_* folder in the temp dir: keep it beside cwd, under pytest's own temp dirs.
    tmp = cwd.parent / f"{cwd.name}-tmp"
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp)}
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "zoo", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def corpus(tmp_path, small_corpus) -> Path:
    return small_corpus


def close_weights(a: Path, b: Path, atol: float) -> None:
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=atol)


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this python")
def test_two_processes_match_one_and_only_rank_0_writes(corpus, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    proc = torchrun("train", "char-rnn", "--data", str(corpus), "--epochs", "2", "--batch-size", "64", "--out", "ddp", *TINY, cwd=work)
    assert proc.returncode == 0, proc.stderr[:3000] + proc.stderr[-3000:]
    assert proc.stdout.count("char-rnn: val_loss") == 1  # rank 0 reports, rank 1 is silent
    assert sorted(p.name for p in work.iterdir()) == ["ddp"]  # nothing else written anywhere
    assert {p.name for p in (work / "ddp").iterdir()} == {
        "checkpoint",
        "config.json",
        "run.json",
        "training.json",
        "model.safetensors",
        "loss.png",
        ".zoo.lock",  # rank 0's lock while it trained (zoo.runlock)
    }
    assert json.loads((work / "ddp" / "run.json").read_text())["options"]["world_size"] == 2

    single = zoo.train("char-rnn", data=str(corpus), epochs=2, batch_size=64, out=tmp_path / "one", overrides=TINY[1::2], quiet=True)
    ddp_hist = json.loads((work / "ddp" / "training.json").read_text())["history"]
    for a, b in zip(ddp_hist, single.history):
        assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-4)  # same global batches, gradients averaged
        assert a["trn_loss"] == pytest.approx(b["trn_loss"], abs=1e-4)
    close_weights(work / "ddp", tmp_path / "one", atol=1e-4)


@pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun is not installed beside this python")
def test_stateful_streams_shard_and_resume_under_torchrun(corpus, tmp_path):
    args = ("--data", str(corpus), "--epochs", "1", "--batch-size", "8", "--set", "n_hidden=16", "--set", "n_fac=4")
    first = torchrun("train", "char-stateful", *args, "--out", "ddp", "--max-steps", "20", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[:3000] + first.stderr[-3000:]
    state = json.loads((tmp_path / "ddp" / "checkpoint" / "state.json").read_text())
    assert state["global_step"] == 20 and state["epoch"] == 0
    second = torchrun("train", "--resume", "ddp", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[:3000] + second.stderr[-3000:]
    single = zoo.train(
        "char-stateful", data=str(corpus), epochs=1, batch_size=8, out=tmp_path / "one", overrides=("n_hidden=16", "n_fac=4"), quiet=True
    )
    ddp_val = json.loads((tmp_path / "ddp" / "training.json").read_text())["history"][-1]["val_loss"]
    assert ddp_val == pytest.approx(single.history[-1]["val_loss"], abs=1e-4)
    close_weights(tmp_path / "ddp", tmp_path / "one", atol=1e-4)
