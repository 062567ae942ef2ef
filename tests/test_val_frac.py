"""`--val-frac`: the held-out fraction of a character model, from training to evaluation, resume and compare."""

from __future__ import annotations

import json
import warnings

import pytest
from helpers import one_line_error, run_zoo

import zoo
from zoo import compare, registry
from zoo.errors import ZooError, ZooWarning

SMALL_API = ("n_hidden=32", "n_fac=8")


def small(name: str) -> tuple[str, ...]:
    spec = registry.get_model(name)
    return SMALL_API if name == "char-rnn" else tuple(f"{k}={v}" for k, v in spec.tiny.items())


@pytest.mark.parametrize("name", ["char-rnn", "char-stateful"])
def test_a_tenth_held_out_is_recorded_and_evaluated_alike(name, small_corpus, tmp_path):
    out = tmp_path / "r"
    m = zoo.train(
        name, data=str(small_corpus), split="tail", val_frac=0.1, epochs=1, lr=1e-2, batch_size=64, out=out,
        overrides=small(name), quiet=True,
    )  # fmt: skip
    assert json.loads((out / "config.json").read_text())["val_frac"] == 0.1
    assert json.loads((out / "run.json").read_text())["options"]["val_frac"] == 0.1
    loaded = zoo.load(out)
    # by default a stateful model is evaluated on as many streams as it trained with: the figure is its training's
    with pytest.warns(ZooWarning, match="overlaps rows it trained on"):  # the tail 20% includes trained rows
        tenth, fifth = loaded.evaluate(), loaded.evaluate(val_frac=0.2)
    assert fifth["rows"] / tenth["rows"] == pytest.approx(2, rel=0.1)  # about half the rows of the default
    final = json.loads((out / "training.json").read_text())["history"][-1]["val_loss"]
    assert tenth["val_loss"] == pytest.approx(final, rel=1e-5) == m.history[-1]["val_loss"]
    assert loaded.evaluate(batch_size=64, val_frac=0.1) == tenth
    with pytest.raises(ZooError, match="between 0 and 1"):
        loaded.evaluate(val_frac=1.0)


def test_a_run_from_before_val_frac_holds_out_a_fifth(small_corpus, tmp_path):
    out = tmp_path / "r"
    zoo.train("char-rnn", data=str(small_corpus), split="tail", epochs=1, batch_size=256, out=out, overrides=SMALL_API, quiet=True)
    config = json.loads((out / "config.json").read_text())
    assert config["val_frac"] == 0.2
    del config["val_frac"]
    (out / "config.json").write_text(json.dumps(config))
    assert zoo.load(out).evaluate() == zoo.load(out).evaluate(val_frac=0.2) == zoo.evaluate(out, val_frac=0.2)
    proc = run_zoo("eval", str(out), "--val-frac", "0.1", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == zoo.evaluate(out, val_frac=0.1)


@pytest.mark.parametrize("value", ["1.5", "0", "1", "-0.1", "nan"])
def test_a_bad_val_frac_is_one_clear_line(value, small_corpus, tmp_path):
    out = tmp_path / "r"
    line = one_line_error(run_zoo("train", "char-rnn", "--data", str(small_corpus), "--val-frac", value, "--out", str(out)))
    assert "--val-frac must be between 0 and 1 (exclusive)" in line
    assert not (out / "config.json").exists()


def test_val_frac_is_for_character_models_only():
    with pytest.raises(ZooError, match="--val-frac applies to character models only"):
        zoo.train("linreg-sgd", val_frac=0.1, quiet=True)


def test_resume_keeps_the_val_frac_it_started_with(small_corpus, tmp_path):
    out = tmp_path / "r"
    args = ("--data", str(small_corpus), "--split", "tail", "--val-frac", "0.1", "--epochs", "1", "--batch-size", "256")
    first = run_zoo("train", "char-rnn", *args, "--max-steps", "4", "--out", str(out), "--set", "n_hidden=32", "--set", "n_fac=8")
    assert first.returncode == 0, first.stderr
    line = one_line_error(run_zoo("train", "--resume", str(out), "--val-frac", "0.2"))
    assert line.startswith("zoo: error: --val-frac: ") and "holds out 0.1 of its text; a resumed run keeps the options" in line
    assert "between 0 and 1" in one_line_error(run_zoo("train", "--resume", str(out), "--val-frac", "0"))
    with pytest.raises(ZooError, match="--val-frac: .* holds out 0.1 of its text"):
        zoo.train(resume=out, val_frac=0.2, quiet=True)
    resumed = zoo.train(resume=out, val_frac=0.1, quiet=True)  # the same fraction is no change
    assert json.loads((out / "config.json").read_text())["val_frac"] == 0.1
    assert resumed.evaluate(val_frac=0.1)["val_loss"] == pytest.approx(resumed.history[-1]["val_loss"], rel=1e-5)


def test_compare_does_not_reuse_a_run_that_held_out_another_fraction(small_corpus, tmp_path):
    out = tmp_path / "cmp"
    kw = dict(budget=1, data=str(small_corpus), device="cpu", out=out)
    (fifth,) = compare.compare("char-r*", **kw)
    weights = out / "char-rnn" / "model.safetensors"
    record = json.loads((out / "char-rnn" / "compare.json").read_text())
    assert record["val_frac"] == 0.2
    del record["val_frac"]  # as a comparison from before --val-frac wrote it: still reused, as 0.2
    (out / "char-rnn" / "compare.json").write_text(json.dumps(record))
    stamp = weights.stat().st_mtime_ns
    assert [e.val_loss for e in compare.compare("char-r*", **kw)] == [fifth.val_loss]
    assert weights.stat().st_mtime_ns == stamp

    # Another fraction: the finished run's training saw part of the new held-out text. Refused, nothing deleted.
    with pytest.raises(ZooError, match="held out 20% of the text, not 10%; choose another --out"):
        compare.compare("char-r*", **kw, val_frac=0.1)
    assert weights.stat().st_mtime_ns == stamp

    kw["out"] = tmp_path / "cmp10"
    (tenth,) = compare.compare("char-r*", **kw, val_frac=0.1)
    weights = kw["out"] / "char-rnn" / "model.safetensors"
    assert json.loads((kw["out"] / "char-rnn" / "config.json").read_text())["val_frac"] == 0.1
    assert json.loads((kw["out"] / "char-rnn" / "compare.json").read_text())["val_frac"] == 0.1
    assert len(tenth.curve) == compare.CHUNKS
    assert tenth.val_loss == pytest.approx(zoo.load(kw["out"] / "char-rnn").evaluate(split="tail")["val_loss"], rel=1e-6)
    stamp = weights.stat().st_mtime_ns
    compare.compare("char-r*", **kw, val_frac=0.1)
    assert weights.stat().st_mtime_ns == stamp  # and that run is reused in turn


def test_compare_cli_refuses_a_bad_val_frac(tmp_path):
    line = one_line_error(run_zoo("compare", "char-r*", "--budget", "1", "--val-frac", "1.5", "--out", str(tmp_path / "c")))
    assert "--val-frac must be between 0 and 1 (exclusive)" in line


def test_help_no_longer_hard_codes_a_fifth():
    proc = run_zoo("train", "--help")
    assert proc.returncode == 0 and "--val-frac" in proc.stdout and "20%" not in proc.stdout
    for command in ("eval", "compare"):
        assert "--val-frac" in run_zoo(command, "--help").stdout


def test_a_fraction_that_leaves_no_validation_rows_says_so(small_corpus, tmp_path):
    line = one_line_error(run_zoo("train", "char-rnn", "--data", str(small_corpus), "--val-frac", "1e-9", "--out", str(tmp_path / "r")))
    assert "1e-09 of it held out" in line and " 0 validation rows" in line and "another --val-frac" in line
    assert not (tmp_path / "r").exists()


def test_evaluating_on_rows_the_model_trained_on_warns(small_corpus, tmp_path):
    out = tmp_path / "r"
    kwargs = dict(data=str(small_corpus), split="tail", val_frac=0.1, epochs=1, batch_size=256, overrides=SMALL_API, quiet=True)
    zoo.train("char-rnn", out=out, **kwargs)
    m = zoo.load(out)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the run's own held-out tail, or the end of it: no warning
        m.evaluate()
        m.evaluate(val_frac=0.05)
        other = tmp_path / "other.txt"  # another text: nothing in common with training
        other.write_text(small_corpus.read_text()[::-1], encoding="utf-8")
        m.evaluate(data=str(other), split="random")
    with pytest.warns(ZooWarning, match=r"held out the tail 10% .* the tail 20% overlaps rows it trained on"):
        m.evaluate(val_frac=0.2)
    with pytest.warns(ZooWarning, match="the random 10% overlaps"):
        m.evaluate(split="random")
    proc = run_zoo("eval", str(out), "--split", "random")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().startswith("zoo: warning: char-rnn held out the tail 10%")
    assert len(proc.stderr.strip().splitlines()) == 1 and "val_loss" in proc.stdout


def test_a_stateful_model_evaluated_with_another_split_name_does_not_warn(small_corpus, tmp_path):
    """Streams always hold out the end of the text: --split random names the same rows for them."""
    out = tmp_path / "s"
    zoo.train("char-stateful", data=str(small_corpus), split="tail", epochs=1, out=out, overrides=small("char-stateful"), quiet=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zoo.load(out).evaluate(split="random")
