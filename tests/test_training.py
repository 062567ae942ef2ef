"""Training end to end on a small corpus: checkpoints, save -> load, exact resume, Ctrl-C."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch
from helpers import one_line_error, run_zoo
from safetensors.torch import load_file

import zoo
from zoo.errors import ZooError
from zoo.publish import card_text
from zoo.runtime import cpu_name

SMALL = ["--set", "n_hidden=32", "--set", "n_fac=8"]
SMALL_API = ("n_hidden=32", "n_fac=8")


@pytest.mark.parametrize("name", ["char3", "char-loop", "char-concat", "char-rnn", "char-seq", "char-seq-identity"])
def test_every_lesson_model_trains_saves_loads_and_samples(name, small_corpus, tmp_path):
    out = tmp_path / "run"
    m = zoo.train(name, data=str(small_corpus), epochs=1, lr=1e-2, out=out, overrides=SMALL_API, batch_size=32, quiet=True)
    for f in ("model.safetensors", "config.json", "training.json", "run.json", "checkpoint/state.json", "checkpoint/optimizer.safetensors"):
        assert (out / f).exists(), f
    uniform = math.log(len(m.vocab))  # the loss of knowing nothing
    assert len(m.history) == 1 and m.history[0]["val_loss"] < uniform - 0.8
    loaded = zoo.load(out)
    x = torch.randint(1, len(loaded.vocab), (3, loaded.batching.length))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), m.model.eval()(x), rtol=0, atol=0)
    for k, v in m.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v), k
    assert loaded.sample("The ", 50, seed=1) == loaded.sample("The ", 50, seed=1)
    assert len(loaded.sample("The ", 50, seed=1)) == 50


def test_resume_is_exact(small_corpus, tmp_path):
    """N steps straight == N/2 steps, stop, resume, N/2 steps (CPU, same seed)."""
    kw = dict(data=str(small_corpus), overrides=SMALL_API, batch_size=32, quiet=True, seed=7, epochs=2)
    straight = zoo.train("char-rnn", out=tmp_path / "a", max_steps=40, **kw)
    zoo.train("char-rnn", out=tmp_path / "b", max_steps=20, **kw)
    state = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())
    assert state["global_step"] == 20
    resumed = zoo.train(resume=tmp_path / "b", max_steps=40, quiet=True)
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert straight.sample("the", 40, seed=0) == resumed.sample("the", 40, seed=0)


def _signal_after_update(monkeypatch, sig: int, updates: set[int], times: int = 1) -> None:
    """Send this process `sig` (`times` times) right after the optimizer's update number n, for n in `updates`: the
    point where an interrupt raised at once would leave updated weights beside a step counter that has not moved."""
    real_init, count = torch.optim.Adam.__init__, [0]

    def init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)

        def after_step(opt, args, kwargs):
            count[0] += 1
            if count[0] in updates:
                for _ in range(times):
                    os.kill(os.getpid(), sig)  # Python runs the handler before the next call

        self.register_step_post_hook(after_step)

    monkeypatch.setattr(torch.optim.Adam, "__init__", init)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupt_in_the_middle_of_a_step_still_resumes_exactly(small_corpus, tmp_path, monkeypatch, sig):
    from zoo.trainer import TrainingInterrupted

    kw = dict(data=str(small_corpus), overrides=SMALL_API, batch_size=32, quiet=True, seed=7, epochs=1)
    zoo.train("char-rnn", out=tmp_path / "straight", **kw)
    with monkeypatch.context() as patch:
        _signal_after_update(patch, sig, {9})
        with pytest.raises(TrainingInterrupted, match="interrupted at epoch 1, batch 9; checkpoint saved"):
            zoo.train("char-rnn", out=tmp_path / "stopped", **kw)
    assert json.loads((tmp_path / "stopped" / "checkpoint" / "state.json").read_text())["global_step"] == 9
    zoo.train(resume=tmp_path / "stopped", quiet=True)
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "stopped" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_interrupt_stops_at_once_and_keeps_the_last_checkpoint(small_corpus, tmp_path, monkeypatch):
    from zoo.trainer import TrainingInterrupted

    kw = dict(data=str(small_corpus), overrides=SMALL_API, batch_size=32, quiet=True, seed=7, epochs=2)
    first = zoo.train("char-rnn", out=tmp_path / "probe", max_steps=1, **kw).partial
    per_epoch = json.loads((tmp_path / "probe" / "checkpoint" / "state.json").read_text())["steps_per_epoch"]
    assert first is not None and per_epoch > 6
    stop_at = per_epoch + 3  # in the second epoch: the first one's checkpoint is the last
    _signal_after_update(monkeypatch, signal.SIGINT, {stop_at}, times=2)
    with pytest.raises(TrainingInterrupted, match="stopped at once in epoch 2; nothing saved since the last checkpoint"):
        zoo.train("char-rnn", out=tmp_path / "r", **kw)
    state = json.loads((tmp_path / "r" / "checkpoint" / "state.json").read_text())
    assert (state["epoch"], state["step"], state["global_step"]) == (1, 0, per_epoch)


def test_a_second_interrupt_while_the_checkpoint_is_written_drops_it_whole(small_corpus, tmp_path, monkeypatch):
    import zoo.trainer
    from zoo.trainer import TrainingInterrupted

    kw = dict(data=str(small_corpus), overrides=SMALL_API, batch_size=32, quiet=True, seed=7, epochs=1)
    _signal_after_update(monkeypatch, signal.SIGINT, {4})
    real = zoo.trainer.save_checkpoint

    def save_then_interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C arrives while the checkpoint is being built
        return real(*args, **kwargs)

    monkeypatch.setattr(zoo.trainer, "save_checkpoint", save_then_interrupted)
    with pytest.raises(TrainingInterrupted, match="stopped at once in epoch 1"):
        zoo.train("char-rnn", out=tmp_path / "r", **kw)
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [".zoo.lock", "config.json", "run.json"]
    monkeypatch.setattr(zoo.trainer, "save_checkpoint", real)
    monkeypatch.undo()
    assert zoo.train("char-rnn", out=tmp_path / "r", max_steps=2, **kw).partial["step"] == 2  # started again


def test_an_ignored_ctrl_c_stays_ignored(small_corpus, tmp_path, monkeypatch):
    """nohup and background jobs ignore SIGINT: training must not take it over and stop."""
    kw = dict(data=str(small_corpus), overrides=SMALL_API, batch_size=32, quiet=True, seed=7, max_steps=8)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _signal_after_update(monkeypatch, signal.SIGINT, {3})
        m = zoo.train("char-rnn", out=tmp_path / "r", **kw)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)
    assert m.partial["step"] == 8  # ran to its limit


def test_resume_across_an_epoch_boundary_matches_full_history(small_corpus, tmp_path):
    kw = dict(data=str(small_corpus), overrides=SMALL_API, batch_size=64, quiet=True, seed=1, epochs=2)
    full = zoo.train("char-seq", out=tmp_path / "a", **kw)
    n = json.loads((tmp_path / "a" / "checkpoint" / "state.json").read_text())["global_step"]
    zoo.train("char-seq", out=tmp_path / "b", max_steps=n // 2 + 1, **kw)
    resumed = zoo.train(resume=tmp_path / "b", quiet=True)
    assert [round(h["val_loss"], 6) for h in full.history] == [round(h["val_loss"], 6) for h in resumed.history]
    assert [round(h["trn_loss"], 6) for h in full.history] == [round(h["trn_loss"], 6) for h in resumed.history]


def test_cli_train_prints_the_epoch_table_and_writes_a_plot(small_corpus, tmp_path):
    proc = run_zoo("train", "char-concat", "--data", str(small_corpus), "--epochs", "1", "--out", str(tmp_path / "r"), *SMALL)
    assert proc.returncode == 0, proc.stderr
    assert "trn_loss" in proc.stderr and "val_loss" in proc.stderr and "lesson" in proc.stderr
    assert "1.805" not in proc.stderr  # the lesson's Nietzsche figure means nothing beside another text
    assert "char-concat: val_loss" in proc.stdout
    png = (tmp_path / "r" / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["options"]["seed"] == 0 and run["versions"]["torch"] == torch.__version__
    assert run["command"].startswith("zoo train char-concat")
    # what computed it, for the card: the card names the machine and the minutes of training
    assert run["machine"]["cpu"] == cpu_name() and run["machine"]["cores"] == os.cpu_count() and run["machine"]["threads"] >= 1
    card = card_text(tmp_path / "r")
    minutes = json.loads((tmp_path / "r" / "training.json").read_text())["history"][0]["seconds"] / 60
    machine = f"{cpu_name()} ({os.cpu_count()} logical cores, {run['machine']['threads']} torch threads)"
    assert f"- training: 1 epoch, {minutes:.1f} minutes (validation excluded) on {machine}\n" in card
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["model"] == "char-concat" and cfg["vocab"][0] == "\0" and cfg["hparams"]["n_hidden"] == 32

    again = run_zoo("train", "char-concat", "--data", str(small_corpus), "--out", str(tmp_path / "r"))
    assert "--resume" in one_line_error(again)


def start_training_and_wait(args: list[str], min_batches: int = 5) -> tuple[subprocess.Popen, list[str]]:
    """Start `zoo train` and return once its progress bar shows `min_batches` batches done."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "zoo", "train", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "ZOO_PROGRESS": "1"},
    )
    seen: list[str] = []

    def pump() -> None:
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):
            seen.append(chunk.decode(errors="replace"))

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        done = [int(n) for n in re.findall(r"\| (\d+)/\d+", "".join(seen))]
        if done and max(done) >= min_batches:
            return proc, seen
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("training did not start: " + "".join(seen))


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tmp_path, small_corpus):
    big = tmp_path / "big.txt"
    big.write_text(small_corpus.read_text() * 20)
    out = tmp_path / "r"
    proc, seen = start_training_and_wait(["char-rnn", "--data", str(big), "--epochs", "1", "--batch-size", "16", "--out", str(out)])
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    time.sleep(0.2)
    err = "".join(seen)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "--resume" in err
    assert "zoo: interrupted at epoch 1" in err and "error" not in err  # stopped as asked, not failed
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    assert state["epoch"] == 0 and state["step"] >= 5
    done = run_zoo("train", "--resume", str(out), "--max-steps", str(state["global_step"] + 5))
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "checkpoint" / "state.json").read_text())["global_step"] == state["global_step"] + 5


def test_sigterm_is_handled_like_ctrl_c(tmp_path, small_corpus):
    big = tmp_path / "big.txt"
    big.write_text(small_corpus.read_text() * 20)
    out = tmp_path / "r"
    proc, seen = start_training_and_wait(["char-loop", "--data", str(big), "--batch-size", "16", "--out", str(out)])
    proc.terminate()
    proc.wait(timeout=60)
    assert proc.returncode == 130, "".join(seen)
    assert json.loads((out / "checkpoint" / "state.json").read_text())["step"] >= 5


@pytest.mark.parametrize(
    "args, needle",
    [
        (["train", "char-rnn", "--device", "cuda"], "CUDA is not available"),
        (["train", "char-rnn", "--device", "tpu"], "unknown device"),
        (["train", "char-rnn", "--device", "cuda:x"], "--device cuda:x: unknown device"),
        (["train", "--resume", "/no/such/run"], "/no/such/run: no such run directory"),
        (["train", "char-rnn", "--set", "n_layers=2"], "no hyper-parameter 'n_layers'"),
        (["train", "char-rnn", "--set", "n_hidden=big"], "expected an int"),
        (["train", "char-rnn", "--set", "n_hidden"], "expected key=value"),
        (["train", "char-rnn", "--data", "/nonexistent/file.txt"], "no such file"),
        (["train", "char-rnn", "--epochs", "0"], "must be positive"),
        (["train", "char-rnn", "--batch-size", "-3"], "must be positive"),
        (["train", "char-rnn", "--lr", "fast"], "not a valid float"),
        (["train", "char-rnm"], "did you mean char-rnn"),
        (["train", "char-rnn", "--data", "nietzsche"], "--data pydoc-topics"),
        (["sample", "char-gru"], "no trained weights"),
    ],
)
def test_bad_input_is_one_clear_line(args, needle):
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = one_line_error(run_zoo(*args))
    assert needle in line


@pytest.mark.parametrize(
    "content, needle",
    [(b"", "empty"), (b"\x00\x01\x02binary", "binary"), (b"caf\xe9 au lait", "not valid UTF-8"), (b"short", "too short")],
)
def test_bad_corpus_files(tmp_path, content, needle):
    f = tmp_path / "c.txt"
    f.write_bytes(content)
    line = one_line_error(run_zoo("train", "char-rnn", "--data", str(f), "--out", str(tmp_path / "r")))
    assert needle in line
    assert not (tmp_path / "r" / "config.json").exists()


def test_a_directory_is_not_a_corpus(tmp_path):
    assert "is a directory" in one_line_error(run_zoo("train", "char-rnn", "--data", str(tmp_path)))


def test_api_errors_are_zoo_errors(small_corpus):
    with pytest.raises(ZooError, match="did you mean"):
        zoo.train("char-rn", data=str(small_corpus))


def test_resume_refuses_options_it_cannot_honour(small_corpus, tmp_path):
    out = tmp_path / "r"
    first = run_zoo("train", "char-rnn", "--data", str(small_corpus), "--max-steps", "4", "--out", str(out), *SMALL)
    assert first.returncode == 0, first.stderr
    assert "stopped at epoch 1, batch 4 (trn_loss so far" in first.stdout
    for extra, flag in ((["--lr", "0.1"], "--lr"), (["--set", "n_hidden=3"], "--set"), (["--data", str(small_corpus)], "--data")):
        line = one_line_error(run_zoo("train", "--resume", str(out), *extra))
        assert line.startswith(f"zoo: error: {flag}: a resumed run keeps the options it started with")
    cases = ((["--seed", "0"], "--seed"), (["--amp"], "--amp"), (["--no-amp"], "--amp"), (["--batch-size", "8"], "--batch-size"))
    for extra, flag in cases:
        line = one_line_error(run_zoo("train", "--resume", str(out), *extra))  # even a value equal to the default
        assert line.startswith(f"zoo: error: {flag}: a resumed run keeps the options it started with"), line
    assert "already trained 4 batches" in one_line_error(run_zoo("train", "--resume", str(out), "--max-steps", "3"))
    more = run_zoo("--threads", "1", "train", "--resume", str(out), "--max-steps", "6")
    assert more.returncode == 0 and "batch 6" in more.stdout, more.stderr


def test_the_api_refuses_options_a_resumed_run_cannot_honour(small_corpus, tmp_path):
    out = tmp_path / "r"
    zoo.train("char-rnn", data=str(small_corpus), out=out, max_steps=2, batch_size=64, overrides=SMALL_API, quiet=True)
    before = (out / "checkpoint" / "state.json").read_text()
    for given, flag in (
        ({"lr": 0.5}, "--lr"),
        ({"batch_size": 3}, "--batch-size"),
        ({"data": "pydoc-topics"}, "--data"),
        ({"seed": 0}, "--seed"),
        ({"out": tmp_path / "elsewhere"}, "--out"),
        ({"split": "tail"}, "--split"),
        ({"amp": True}, "--amp"),
        ({"overrides": ["n_hidden=8"]}, "--set"),
        ({"options": {"method": "manual"}}, "--method"),
    ):
        with pytest.raises(ZooError, match=f"^{flag}: a resumed run keeps the options it started with"):
            zoo.train(resume=out, quiet=True, **given)
    assert (out / "checkpoint" / "state.json").read_text() == before and not (tmp_path / "elsewhere").exists()


def test_reading_the_loss_every_few_steps_gives_the_same_history_and_resume(small_corpus, tmp_path, monkeypatch):
    """On an accelerator the running loss is read every SYNC_EVERY steps; the figures must not change, nor resume."""
    kw = dict(data=str(small_corpus), overrides=SMALL_API, batch_size=64, quiet=True, seed=3, epochs=2)
    every_step = zoo.train("char-rnn", out=tmp_path / "a", **kw)
    monkeypatch.setattr("zoo.trainer.sync_every", lambda device: 7)
    deferred = zoo.train("char-rnn", out=tmp_path / "b", **kw)
    n = json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())["global_step"]
    zoo.train("char-rnn", out=tmp_path / "c", max_steps=n // 2 + 3, **kw)  # stops between two reads
    resumed = zoo.train(resume=tmp_path / "c", quiet=True)
    for run in (deferred, resumed):
        assert [round(h["trn_loss"], 9) for h in run.history] == [round(h["trn_loss"], 9) for h in every_step.history]
        assert [h["val_loss"] for h in run.history] == [h["val_loss"] for h in every_step.history]


def test_a_diverging_loss_stops_with_one_line(small_corpus, tmp_path):
    # Adam's first step moves every weight by about lr: 1e38 overflows the logits at once.
    proc = run_zoo(
        "train", "char-rnn", "--data", str(small_corpus), "--lr", "1e38", "--max-steps", "20", "-q", "--out", str(tmp_path / "r"), *SMALL
    )
    assert proc.returncode != 0
    assert one_line_error(proc).startswith("zoo: error: the loss became")
    assert "lower --lr" in proc.stderr


class _FailAtStart:
    """A training callback that fails before the first batch, as a late error or an early Ctrl-C would."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def on_train_start(self, run):
        raise self.exc


@pytest.mark.parametrize("exc", [RuntimeError("bad arguments found late"), KeyboardInterrupt()])
def test_a_run_that_failed_before_its_first_checkpoint_can_be_started_again(small_corpus, tmp_path, exc):
    out = tmp_path / "r"
    kw = dict(data=str(small_corpus), overrides=SMALL_API, batch_size=64, quiet=True, seed=2, epochs=1, max_steps=2)
    with pytest.raises(type(exc)):
        zoo.train("char-rnn", out=out, callbacks=[_FailAtStart(exc)], **kw)
    assert sorted(p.name for p in out.iterdir()) == [".zoo.lock", "config.json", "run.json"]  # no weights, no checkpoint
    with pytest.raises(ZooError, match="stopped before its first checkpoint.*start it again with the same --out"):
        zoo.train(resume=out, quiet=True)

    m = zoo.train("char-rnn", out=out, **kw)  # the same --out: taken over, not refused
    assert json.loads((out / "checkpoint" / "state.json").read_text())["global_step"] == 2
    assert m.partial is not None and m.partial["step"] == 2
    # now it holds a checkpoint and weights: never taken over again
    with pytest.raises(ZooError, match="already holds a run; continue it with --resume"):
        zoo.train("char-rnn", out=out, **kw)


def test_a_run_killed_while_writing_its_first_checkpoint_can_be_started_again(small_corpus, tmp_path):
    """What SIGKILL (or a full disk) leaves mid-write: the folder a checkpoint was being built in, a weights temp."""
    out = tmp_path / "r"
    kw = dict(data=str(small_corpus), overrides=SMALL_API, batch_size=64, quiet=True, seed=2, epochs=1, max_steps=2)
    with pytest.raises(KeyboardInterrupt):
        zoo.train("char-rnn", out=out, callbacks=[_FailAtStart(KeyboardInterrupt())], **kw)
    (out / ".checkpoint.k1ll3d_x").mkdir()
    (out / ".checkpoint.k1ll3d_x" / "model.safetensors").write_bytes(b"half")
    (out / ".model.safetensors.abcd1234.tmp").write_bytes(b"half")
    m = zoo.train("char-rnn", out=out, **kw)  # taken over, as a run with nothing to resume
    assert m.partial is not None and m.partial["step"] == 2
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name != ".zoo.lock") == []  # tidied
    (out / "notes.txt").write_text("mine")
    (out / "model.safetensors").unlink()
    (out / "checkpoint").rename(out / ".checkpoint.abcdefgh")
    with pytest.raises(ZooError, match="not empty|already holds"):  # someone's file beside it: never taken over
        zoo.train("char-rnn", out=out, **kw)


def test_a_run_killed_between_its_checkpoint_and_its_weights_resumes(small_corpus, tmp_path, monkeypatch):
    """The checkpoint is written before model.safetensors, so a kill between the two leaves a run that resumes."""
    import zoo.trainer

    kw = dict(data=str(small_corpus), overrides=SMALL_API, batch_size=64, quiet=True, seed=2, epochs=1)
    zoo.train("char-rnn", out=tmp_path / "straight", **kw)

    def killed(*args, **kwargs):  # the process dies as it starts the top-level weights of its first checkpoint
        raise SystemExit("killed")

    monkeypatch.setattr(zoo.trainer, "save_weights", killed)
    with pytest.raises(SystemExit):
        zoo.train("char-rnn", out=tmp_path / "r", max_steps=3, **kw)
    monkeypatch.undo()
    assert not (tmp_path / "r" / "model.safetensors").exists()
    zoo.train(resume=tmp_path / "r", quiet=True)
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "r" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _not_ours(d):
    (d / "notes.txt").write_text("mine")


@pytest.mark.parametrize(
    "spoil",
    [
        lambda d: (d / "model.safetensors").write_bytes(b"weights"),
        _not_ours,
        lambda d: (d / "config.json").write_text(json.dumps({"model": "char-rnn"})),  # no zoo format: someone else's
        lambda d: (d / "config.json").write_text("{not json"),
        lambda d: (d / "run.json").write_text(json.dumps({"model": "char-seq"})),  # not the run config.json describes
        lambda d: (d / "run.json").unlink() or (d / "run.json").mkdir(),
    ],
    ids=["weights", "other-file", "foreign-config", "config-not-json", "other-run", "run-json-a-folder"],
)
def test_a_folder_with_anything_of_value_is_never_taken_over(small_corpus, tmp_path, spoil):
    out = tmp_path / "r"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"format": "zoo/1", "model": "char-rnn"}))
    (out / "run.json").write_text(json.dumps({"model": "char-rnn"}))
    spoil(out)
    before = {p.name: p.read_bytes() if p.is_file() else None for p in out.iterdir()}
    with pytest.raises(ZooError, match="already holds a run"):
        zoo.train("char-rnn", data=str(small_corpus), out=out, overrides=SMALL_API, max_steps=1, quiet=True)
    assert {p.name: p.read_bytes() if p.is_file() else None for p in out.iterdir()} == before


@pytest.mark.parametrize("theirs", ["model.safetensors", "notes.txt", "checkpoint"])
def test_a_new_run_never_writes_into_a_folder_of_someone_elses_files(small_corpus, tmp_path, theirs):
    out = tmp_path / "mine"
    out.mkdir()
    (out / theirs).mkdir() if theirs == "checkpoint" else (out / theirs).write_text("precious")
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ZooError, match=rf"is not empty and holds no zoo run \(it has '{theirs}'\); choose a new or empty folder"):
        zoo.train("char-rnn", data=str(small_corpus), out=out, overrides=SMALL_API, max_steps=1, quiet=True)
    assert sorted(p.name for p in out.iterdir()) == before
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder is fine
    zoo.train("char-rnn", data=str(small_corpus), out=empty, overrides=SMALL_API, max_steps=1, quiet=True)
    assert (empty / "model.safetensors").exists()


def test_a_run_json_that_lists_every_epochs_rate_still_resumes(small_corpus, tmp_path):
    """run.json records the rates up to the last change and the epoch count; older ones listed every epoch's rate."""
    out = tmp_path / "r"
    zoo.train("char-rnn", data=str(small_corpus), out=out, overrides=SMALL_API, batch_size=64, epochs=3, max_steps=2, quiet=True)
    record = json.loads((out / "run.json").read_text())
    assert (record["options"]["epoch_lrs"], record["options"]["epochs"]) == ([1e-3], 3)
    record["options"]["epoch_lrs"] = [1e-3, 1e-3, 5e-4]  # as an older zoo wrote it, with no "epochs"
    del record["options"]["epochs"]
    (out / "run.json").write_text(json.dumps(record))
    resumed = zoo.train(resume=out, max_steps=3, quiet=True)
    assert resumed.partial is not None and resumed.partial["step"] == 3
    options = json.loads((out / "run.json").read_text())["options"]
    assert (options["epoch_lrs"], options["epochs"]) == ([1e-3, 1e-3, 5e-4], 3)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/usr/bin/zoo", "train", "char-rnn"], "zoo train char-rnn"),
        (["/site/zoo/__main__.py", "sample", "char-rnn"], "zoo sample char-rnn"),
        (["/site/pytest/__main__.py", "-q", "tests"], None),  # python -m pytest: not zoo's command line
        (["my_script.py", "--flag"], None),
        ([], None),
    ],
)
def test_run_json_records_only_zoos_own_command_line(monkeypatch, argv, expected):
    from zoo.pipeline import cli_command

    monkeypatch.setattr(sys, "argv", argv)
    assert cli_command() == expected


def test_the_lessons_figures_are_shown_only_beside_the_lessons_corpus():
    from zoo import registry
    from zoo.data.sources import resolve
    from zoo.pipeline import reference_losses

    spec = registry.get_model("char-concat")
    nietzsche = resolve("nietzsche", "nietzsche", registry.datasets())
    assert reference_losses(spec, "/data/nietzsche.txt", nietzsche.sha256) == [1.805]  # the same bytes, any path
    assert reference_losses(spec, "nietzsche", "0" * 64) == []  # another text, whatever it is called
    assert reference_losses(registry.get_model("char-gru"), "pydoc-topics", None) == []  # the offline corpus
    char3 = registry.get_model("char3")  # the lesson gave char3's training loss only
    assert reference_losses(char3, "nietzsche", nietzsche.sha256) == []
    assert reference_losses(char3, "nietzsche", nietzsche.sha256, "trn") == [None, 2.08]


def test_the_epoch_table_shows_the_lessons_training_loss_where_it_gave_no_validation_loss(tmp_path):
    from zoo.trainer import RunInfo, Trainer, TrainerSettings

    model = torch.nn.Linear(2, 2)
    run = RunInfo(name="m", out_dir=tmp_path, config={}, device="cpu", epochs=3)
    settings = TrainerSettings(quiet=True, reference=[1.805, None], reference_trn=[None, 2.08])
    trainer = Trainer(model, [], [], [1e-3] * 3, run, settings)
    assert [trainer.lesson_figure(e) for e in range(3)] == ["1.805", "2.080 trn", "-"]


def test_mixed_precision_defaults_to_on_only_for_large_models_on_cuda(small_corpus, tmp_path, monkeypatch):
    from torch import nn

    import zoo.runtime
    from zoo.errors import ZooWarning
    from zoo.runtime import AMP_MIN_PARAMS, resolve_amp

    big, small = nn.Linear(1000, AMP_MIN_PARAMS // 1000), nn.Linear(10, 10)
    cuda, cpu, mps = torch.device("cuda"), torch.device("cpu"), torch.device("mps")
    assert resolve_amp(None, big, cuda) is True and resolve_amp(None, small, cuda) is False
    assert resolve_amp(False, big, cuda) is False and resolve_amp(True, small, cuda) is True
    assert resolve_amp(None, big, cpu) is False  # off the GPU only when asked: float32 gives the lesson's figures
    monkeypatch.setattr(zoo.runtime, "cpu_has_bf16", lambda: True)
    assert resolve_amp(True, small, cpu) is True
    monkeypatch.setattr(zoo.runtime, "cpu_has_bf16", lambda: False)
    with pytest.warns(ZooWarning, match="this CPU has no native bfloat16"):
        assert resolve_amp(True, small, cpu) is False  # emulated bf16 is several times slower than float32
    with pytest.warns(ZooWarning, match="not on mps"):
        assert resolve_amp(True, small, mps) is False
    kwargs = dict(data=str(small_corpus), max_steps=1, batch_size=64, overrides=SMALL_API, device="cpu", quiet=True)
    zoo.train("char-rnn", out=tmp_path / "auto", **kwargs)
    with pytest.warns(ZooWarning, match="no native bfloat16"):
        zoo.train("char-rnn", out=tmp_path / "asked", amp=True, **kwargs)
    recorded = [json.loads((tmp_path / d / "run.json").read_text())["options"]["amp"] for d in ("auto", "asked")]
    assert recorded == [False, False]  # the resolved choice is recorded, so --resume keeps it


def test_amp_on_a_cpu_with_native_bf16_trains_under_bf16_autocast(small_corpus, tmp_path, monkeypatch, capsys):
    import zoo_lesson6.models

    import zoo.runtime

    # Where this CPU lacks native bf16, torch emulates it: slower, the same arithmetic.
    monkeypatch.setattr(zoo.runtime, "cpu_has_bf16", lambda: True)
    seen = []
    real = zoo_lesson6.models.autocast_inputs
    monkeypatch.setattr(zoo_lesson6.models, "autocast_inputs", lambda *t: seen.append(real(*t)[0].dtype) or real(*t))
    kwargs = dict(data=str(small_corpus), epochs=1, batch_size=64, overrides=SMALL_API, device="cpu", seed=3)
    plain = zoo.train("char-loop", out=tmp_path / "fp32", quiet=True, **kwargs)
    assert set(seen) == {torch.float32}
    seen.clear()
    mixed = zoo.train("char-loop", out=tmp_path / "bf16", amp=True, **kwargs)
    assert "device cpu, bf16 autocast" in capsys.readouterr().err
    assert torch.bfloat16 in seen  # the training steps ran in bf16
    assert json.loads((tmp_path / "bf16" / "run.json").read_text())["options"]["amp"] is True
    assert {t.dtype for t in load_file(tmp_path / "bf16" / "model.safetensors").values()} == {torch.float32}
    a, b = plain.history[-1]["val_loss"], mixed.history[-1]["val_loss"]
    assert a != b and abs(a - b) < 0.05, (a, b)  # bf16 rounding changes the figure, a little


class _EpochHook:
    def __init__(self, fail: bool) -> None:
        self.fail, self.epochs = fail, []

    @zoo.hookimpl
    def zoo_on_epoch_end(self, run, epoch):
        self.epochs.append(epoch)
        if self.fail:
            raise RuntimeError("my logger is down\nsecond line")


def test_a_plugins_failing_training_hook_is_one_warning_and_training_goes_on(small_corpus, tmp_path, capsys):
    from zoo import plugins

    broken, other = _EpochHook(fail=True), _EpochHook(fail=False)
    host = plugins.host()
    host.register(broken, name="broken-logger")
    host.register(other, name="other-logger")
    try:
        m = zoo.train("char-rnn", data=str(small_corpus), out=tmp_path / "r", overrides=SMALL_API, batch_size=64, epochs=2, quiet=True)
    finally:
        host.unregister("broken-logger")
        host.unregister("other-logger")
    assert len(m.history) == 2 and broken.epochs == other.epochs == [1, 2]  # every hook ran, every epoch
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "broken-logger" in ln]
    line = "zoo: warning: plugin 'broken-logger': zoo_on_epoch_end raised RuntimeError: my logger is down / second line; training goes on"
    assert warned == [line] * 2


def test_resuming_on_the_cpu_keeps_the_precision_the_run_trained_in(small_corpus, tmp_path, monkeypatch, capsys):
    import zoo.runtime

    monkeypatch.setattr(zoo.runtime, "cpu_has_bf16", lambda: True)
    kw = dict(data=str(small_corpus), batch_size=64, overrides=SMALL_API, device="cpu", max_steps=2, quiet=True)
    zoo.train("char-rnn", out=tmp_path / "bf16", amp=True, **kw)
    zoo.train("char-rnn", out=tmp_path / "old", **kw)
    record = json.loads((tmp_path / "old" / "run.json").read_text())
    del record["options"]["autocast"]
    record["options"]["amp"] = True  # as zoo wrote it before CPU autocast, when it meant float32 there
    (tmp_path / "old" / "run.json").write_text(json.dumps(record))
    capsys.readouterr()
    for run, bf16 in (("bf16", True), ("old", False)):
        zoo.train(resume=tmp_path / run, max_steps=3, device="cpu")
        banner = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("resuming")]
        assert len(banner) == 1 and banner[0].endswith(", bf16 autocast") == bf16, (run, banner)


class _Ordered:
    def __init__(self, name: str, calls: list) -> None:
        self.name, self.calls = name, calls

    @zoo.hookimpl
    def zoo_on_epoch_end(self, epoch):
        self.calls.append(self.name)


class _First(_Ordered):
    @zoo.hookimpl(tryfirst=True)
    def zoo_on_epoch_end(self, epoch):
        self.calls.append(self.name)


class _Wrapper:
    @zoo.hookimpl(wrapper=True)
    def zoo_on_epoch_end(self, epoch):
        raise AssertionError("a wrapper's body must not run as a plain hook")
        yield  # a generator, as pluggy requires of a wrapper


def test_training_hooks_run_in_pluggys_order_and_wrappers_are_refused_once(small_corpus, tmp_path, capsys):
    from zoo import plugins

    calls: list[str] = []
    host = plugins.host()
    named = {"hook-a": _First("hook-a", calls), "hook-b": _Ordered("hook-b", calls), "hook-c": _Ordered("hook-c", calls)}
    for name, plugin in {**named, "hook-w": _Wrapper()}.items():
        host.register(plugin, name=name)
    try:
        host.pm.subset_hook_caller("zoo_on_epoch_end", remove_plugins=[host.pm.get_plugin("hook-w")])(run=None, epoch=0, metrics={})
        expected = [c for c in calls if c in named]
        calls.clear()
        zoo.train("char-rnn", data=str(small_corpus), out=tmp_path / "r", overrides=SMALL_API, batch_size=64, epochs=2, quiet=True)
    finally:
        for name in (*named, "hook-w"):
            host.unregister(name)
    assert expected[0] == "hook-a" and calls == expected * 2  # tryfirst first, then the last registered first
    warned = [ln for ln in capsys.readouterr().err.splitlines() if "hook-w" in ln]
    assert warned == ["zoo: warning: plugin 'hook-w': zoo_on_epoch_end as a hook wrapper is not called"]


def test_a_character_models_spec_chooses_its_optimizer(small_corpus, tmp_path, monkeypatch):
    import dataclasses

    from zoo import registry

    real = registry.get_model
    monkeypatch.setattr(registry, "get_model", lambda name: dataclasses.replace(real(name), optimizer="sgd"))
    zoo.train("char-rnn", data=str(small_corpus), out=tmp_path / "r", overrides=SMALL_API, batch_size=64, max_steps=2, quiet=True)
    groups = json.loads((tmp_path / "r" / "checkpoint" / "state.json").read_text())["optimizer"]["param_groups"]
    assert "momentum" in groups[0] and "betas" not in groups[0]  # SGD's, not Adam's
    monkeypatch.setattr(registry, "get_model", lambda name: dataclasses.replace(real(name), optimizer="lbfgs"))
    with pytest.raises(ZooError, match="unknown optimizer 'lbfgs'"):  # not Adam, silently
        zoo.train("char-rnn", data=str(small_corpus), out=tmp_path / "l", overrides=SMALL_API, max_steps=1, quiet=True)
    assert not (tmp_path / "l").exists()  # refused before the run's folder is written


def test_the_trainer_takes_the_fused_loss_of_a_model_that_has_one(small_corpus, tmp_path, monkeypatch):
    """The lesson models train through forward(x, targets) (zoo.losses), not logits then cross-entropy."""
    import zoo.losses

    calls = []
    real = zoo.losses._LinearCrossEntropy.apply
    monkeypatch.setattr(zoo.losses._LinearCrossEntropy, "apply", lambda *a: calls.append(1) or real(*a))
    zoo.train("char-rnn", data=str(small_corpus), out=tmp_path / "r", overrides=SMALL_API, batch_size=64, max_steps=3, quiet=True)
    assert len(calls) == 3  # one per training batch; evaluation asks for logits


def test_a_folder_a_run_is_training_in_is_never_taken_over(small_corpus, tmp_path):
    """Before its first checkpoint a live run's folder looks abandoned; its lock (zoo.runlock) says otherwise."""
    from zoo import runlock

    out = tmp_path / "live"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"format": "zoo/1", "model": "char-rnn"}))
    (out / "run.json").write_text(json.dumps({"model": "char-rnn"}))
    kwargs = dict(data=str(small_corpus), overrides=SMALL_API, batch_size=64, max_steps=1, quiet=True)
    with runlock.scope():
        runlock.lock(out)  # as the live run holds it (a lock on its own open file: another holder, even in-process)
        with pytest.raises(ZooError, match="is being trained by another process right now"):
            zoo.train("char-rnn", out=out, **kwargs)
    zoo.train("char-rnn", out=out, **kwargs)  # the run ended (lock released): the folder is free again
    assert (out / "model.safetensors").exists() and not runlock.is_locked(out)
    with runlock.scope():
        runlock.lock(out)
        with pytest.raises(ZooError, match="is being trained by another process right now"):
            zoo.train(resume=out, max_steps=2, quiet=True)
    assert zoo.train(resume=out, max_steps=2, quiet=True).partial["step"] == 2
