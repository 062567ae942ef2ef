"""Reliability and security (issue 7): bad input, faults, interruptions - nothing lost, nothing unsafe.

Complements test_training.py (bad CLI values, bad corpora, Ctrl-C/SIGTERM, exact resume), test_corpora.py
(cut-off download, wrong bytes), test_hub.py (tampered file, wrong token) and test_registry_toml.py.
Every fault is injected on purpose: a broken file, a failing disk (os.fsync / os.replace / tempfile raising
OSError in-process), a crash mid-epoch, a SIGKILL, two downloads racing.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch
from helpers import one_error as one_line
from helpers import run_zoo, write_prose
from helpers import zoo_in_process as cli
from hubserver import start_hub
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import zoo
from zoo import published
from zoo.checkpoint import VOCAB_METADATA, vocab_sha256
from zoo.errors import ZooError
from zoo.model import coerce, parse_overrides
from zoo.rundir import find_checkpoint
from zoo.spec import ModelSpec

REPO = Path(__file__).resolve().parents[1]
TINY = ("n_hidden=16", "n_fac=4")
TINY_CLI = ["--set", "n_hidden=16", "--set", "n_fac=4"]
EPOCH_BATCHES = 75  # 6,000 characters, 80% of the windows for training, 64 rows a batch


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "c.txt"
    write_prose(path, 6_000)
    return path


def run_kwargs(corpus: Path) -> dict:
    """One tiny char-rnn run of 2 epochs: the uninterrupted reference every crash is compared with."""
    return dict(data=str(corpus), overrides=TINY, batch_size=64, epochs=2, seed=3, device="cpu", quiet=True)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    zoo.train("char-rnn", out=out, **run_kwargs(corpus))
    assert json.loads((out / "checkpoint" / "state.json").read_text())["global_step"] == 2 * EPOCH_BATCHES
    return out


def assert_same_weights(a: Path, b: Path) -> None:
    ta, tb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert ta.keys() == tb.keys()
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k






def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------------------------------
# Bad input: one clear line, a non-zero exit, no traceback, nothing written
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, model, extra",
    [
        ("x", "char-rnn", []),  # one character: no window at all
        ("abcdefghi", "char-rnn", []),  # exactly one window of 8 and its target: nothing left to validate on
        ("abcdefghij" * 2, "char-seq", []),  # 2 windows at stride 8: no validation row
        ("abcdefghij" * 2, "char-rnn", ["--split", "tail"]),  # the tail 20% holds no whole window
    ],
)
def test_a_file_too_short_for_one_batch(capsys, tmp_path, text, model, extra):
    f = tmp_path / "short.txt"
    f.write_text(text)
    out = tmp_path / "run"
    line = one_line(*cli(capsys, "train", model, "--data", str(f), "--out", str(out), "--device", "cpu", *extra)[::2])
    assert "too short" in line and f"({len(text)} characters)" in line
    assert not out.exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--lr", "inf"], "--lr must be a positive number"),
        (["--lr", "nan"], "--lr must be a positive number"),
        (["--lr", "fast"], "'fast' is not a valid float"),
        (["--set", "n_hidden=0"], "cannot be built with the hyper-parameters"),
        (["--set", "n_fac=-1"], "cannot be built with the hyper-parameters"),
        (["--set", "n_hidden=1.5"], "n_hidden=1.5: expected an int"),
        (["--set", "dropout=0.5"], "has no hyper-parameter 'dropout'"),
        (["--seed", str(2**70)], "--seed must be at most"),  # too big for the shuffle's generator
    ],
)
def test_bad_training_values_write_nothing(capsys, tmp_path, corpus, args, needle):
    out = tmp_path / "run"
    line = one_line(*cli(capsys, "train", "char-rnn", "--data", str(corpus), "--out", str(out), "--device", "cpu", *args)[::2])
    assert needle in line
    assert not out.exists()


@pytest.mark.parametrize("name", ["char3", "char-loop", "char-concat", "char-rnn", "char-seq", "char-seq-identity"])
@pytest.mark.parametrize("size", ["n_hidden=0", "n_fac=0"])
def test_every_lesson_model_refuses_an_empty_layer_when_it_is_built(capsys, tmp_path, corpus, name, size):
    """Not later, in a traceback from the first forward pass (char3, char-loop and char-concat did)."""
    out = tmp_path / "run"
    line = one_line(*cli(capsys, "train", name, "--data", str(corpus), "--out", str(out), "--set", size)[::2])
    assert "cannot be built with the hyper-parameters" in line and f"({size.split('=')[0]} must be at least 1, got 0)" in line
    assert not out.exists()


@pytest.mark.parametrize("epochs", ["1", "2"])
def test_resuming_a_finished_run_says_how_many_epochs_it_has(capsys, reference, epochs):
    before = snapshot(reference)
    line = one_line(*cli(capsys, "train", "--resume", str(reference), "--epochs", epochs)[::2])
    assert line.endswith("has already trained 2 epochs; --epochs counts them all, so ask for more"), line
    assert snapshot(reference) == before


def test_publishing_a_pattern_that_matches_nothing_is_one_line(capsys):
    line = one_line(*cli(capsys, "publish", "nope*")[::2])
    assert line == "zoo: error: no published weights match 'nope*' in registry.toml; see `zoo list --pretrained`"


@pytest.mark.parametrize("key, value", [("epoch", "two"), ("step", -1), ("history", {"a": 1}), ("loss_sum", None)])
def test_a_hand_edited_state_json_is_one_line_on_resume(capsys, tmp_path, reference, key, value):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(reference, out)
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    (out / "checkpoint" / "state.json").write_text(json.dumps({**state, key: value}))
    line = one_line(*cli(capsys, "train", "--resume", str(out), "--epochs", "3")[::2])
    assert f"checkpoint/state.json: {key!r} is {value!r}, not what zoo wrote" in line


def test_an_unknown_nonlinearity_is_one_line(capsys, tmp_path, corpus):
    """A value of the right type that the model itself refuses (torch raises ValueError)."""
    out = tmp_path / "run"
    line = one_line(*cli(capsys, "train", "char-seq", "--data", str(corpus), "--out", str(out), "--set", "nonlinearity=sigmoid")[::2])
    assert "nonlinearity='sigmoid'" in line and "Unknown nonlinearity" in line
    assert not out.exists()


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--length", "0"], "'--length': must be positive"),
        (["--length", "-5"], "'--length': must be positive"),
        (["--length", "ten"], "'ten' is not a valid integer"),
        (["--temperature", "hot"], "'hot' is not a valid float"),
        (["--temperature", "-0.5"], "--temperature must be a number, zero or more"),
        (["--temperature", "nan"], "--temperature must be a number, zero or more"),
        (["--temperature", "inf"], "--temperature must be a number, zero or more"),
        (["--top-k", "0"], "'--top-k': must be positive"),
        (["--prompt", "for th\N{SNOWMAN}s"], "characters the model's vocabulary lacks"),
    ],
)
def test_bad_sampling_values(capsys, reference, args, needle):
    before = snapshot(reference)
    line = one_line(*cli(capsys, "sample", str(reference), *args)[::2])
    assert needle in line
    assert snapshot(reference) == before


def test_the_sampling_api_refuses_a_temperature_that_is_not_a_number(reference):
    m = zoo.load(reference)
    for t in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ZooError, match="--temperature"):
            m.sample("the ", 5, temperature=t)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"val_frac": "abc"}, "--val-frac must be a number between 0 and 1 (exclusive), got 'abc'"),
        ({"val_frac": True}, "--val-frac must be a number"),
        ({"epochs": "2"}, "--epochs must be a whole number, got '2'"),
        ({"epochs": 1.5}, "--epochs must be a whole number, got 1.5"),
        ({"epochs": True}, "--epochs must be a whole number, got True"),
        ({"lr": "fast"}, "--lr must be a positive number, got 'fast'"),
        ({"lr": -1}, "--lr must be a positive number, got -1"),
        ({"batch_size": "64"}, "--batch-size must be a whole number"),
        ({"batch_size": 0}, "--batch-size must be at least 1, got 0"),
        ({"seed": "s"}, "--seed must be a whole number"),
        ({"seed": -(2**60)}, "--seed must be at least"),
        ({"max_steps": 2.5}, "--max-steps must be a whole number"),
        ({"max_seconds": "1m"}, "--budget must be a positive number, got '1m'"),
        ({"max_seconds": float("nan")}, "--budget must be a positive number, got nan"),
        ({"max_seconds": 0}, "--budget must be a positive number, got 0"),
        ({"amp": "no"}, "--amp must be True or False, got 'no'"),  # a string would read as True
        ({"cuda_graph": "yes"}, "--cuda-graph must be True or False"),
        ({"device": 5}, "--device must be a name (auto, cpu, cuda, cuda:N or mps), got 5"),
        ({"callbacks": 5}, "callbacks must be a list"),
        ({"options": [1]}, "options must be a dict"),
    ],
)
def test_the_training_api_refuses_bad_numbers_with_one_line(tmp_path, corpus, kwargs, needle):
    """The CLI's click types check these; a Python caller has only zoo's own checks (a TypeError before)."""
    out = tmp_path / "run"
    with pytest.raises(ZooError) as info:
        zoo.train("char-rnn", data=str(corpus), out=out, overrides=TINY, quiet=True, **kwargs)
    assert needle in str(info.value) and "\n" not in str(info.value)
    assert not out.exists()


def test_the_api_takes_friendly_forms_of_its_arguments(tmp_path, corpus, monkeypatch):
    """device None is auto, a single --set string is one pair, ~ is the home folder; a non-path out is refused."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "corpus.txt").write_text(corpus.read_text())
    m = zoo.train("char-rnn", data="~/corpus.txt", out="~/run", device=None, overrides="n_hidden=8", max_steps=1, quiet=True)
    assert m.path == tmp_path / "run" and m.config["hparams"]["n_hidden"] == 8
    with pytest.raises(ZooError, match="^--out must be a path, got 123$"):
        zoo.train("char-rnn", data=str(corpus), out=123, quiet=True)
    with pytest.raises(ZooError, match=r"^--set must be a list of KEY=VALUE strings, got \[\('n_hidden', 8\)\]$"):
        zoo.train("char-rnn", data=str(corpus), overrides=[("n_hidden", 8)], quiet=True)
    for bad in (5, None):
        with pytest.raises(ZooError, match="load takes a run directory, a model name or OWNER/NAME"):
            zoo.load(bad)
    assert zoo.load("~/run").config["hparams"]["n_hidden"] == 8


@pytest.mark.parametrize("kwargs", [{"epochs": "3"}, {"max_steps": "x"}, {"val_frac": [0.2]}])
def test_resuming_through_the_api_refuses_bad_numbers(reference, kwargs):
    before = snapshot(reference)
    with pytest.raises(ZooError, match="must be a (whole )?number"):
        zoo.train(resume=reference, quiet=True, **kwargs)
    assert snapshot(reference) == before


def test_evaluating_and_sampling_through_the_api_refuse_bad_numbers(reference):
    m = zoo.load(reference)
    cases = [
        (lambda: zoo.evaluate(reference, val_frac="abc"), "--val-frac must be a number"),
        (lambda: m.evaluate(val_frac=None, batch_size="big"), "--batch-size must be a whole number"),
        (lambda: m.evaluate(batch_size=0), "--batch-size must be at least 1"),
        (lambda: m.sample("the ", "5"), "--length must be a whole number"),
        (lambda: m.sample("the ", 5, temperature="hot"), "--temperature must be a number, zero or more, got 'hot'"),
        (lambda: m.sample("the ", 5, top_k="3"), "--top-k must be a whole number"),
        (lambda: m.sample("the ", 5, top_k=0), "--top-k must be at least 1"),
        (lambda: m.sample("the ", 5, seed=1.5), "--seed must be a whole number"),
        (lambda: m.sample("the ", 5, num_samples=2.0), "--num-samples must be a whole number"),
        (lambda: m.sample(42, 5), "the prompt must be a string"),
    ]
    for call, needle in cases:
        with pytest.raises(ZooError) as info:
            call()
        assert needle in str(info.value), needle
    assert m.sample("the ", 5, seed=1, top_k=3) == m.sample("the ", 5, seed=1, top_k=3)  # good values still work


# ---------------------------------------------------------------------------------------------------------------------
# Broken weights: `zoo sample DIR` and `zoo eval DIR` say what is wrong in one line
# ---------------------------------------------------------------------------------------------------------------------


def _truncate(d: Path) -> None:
    raw = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(raw[: len(raw) // 2])


def _random_bytes(d: Path) -> None:
    (d / "model.safetensors").write_bytes(os.urandom(4096))


def _edit_config(change):
    def edit(d: Path) -> None:
        config = json.loads((d / "config.json").read_text())
        change(config)
        (d / "config.json").write_text(json.dumps(config))

    return edit


def _swap_two_chars(config: dict) -> None:
    """The same size, so every tensor fits; but 'e' and 't' now mean each other."""
    vocab = config["vocab"]
    i, j = vocab.index("e"), vocab.index("t")
    vocab[i], vocab[j] = vocab[j], vocab[i]


def _resize_tensor(d: Path) -> None:
    tensors = load_file(d / "model.safetensors")
    tensors["rnn.weight_hh_l0"] = torch.zeros(17, 17)
    save_file(tensors, d / "model.safetensors")


def _config_is_a_directory(d: Path) -> None:
    (d / "config.json").unlink()
    (d / "config.json").mkdir()


BROKEN = {
    "truncated weights": (_truncate, "model.safetensors: not a valid safetensors file, truncated or corrupt"),
    "random bytes as weights": (_random_bytes, "model.safetensors: not a valid safetensors file, truncated or corrupt"),
    "weights missing": (lambda d: (d / "model.safetensors").unlink(), "model.safetensors: no such file"),
    "config not JSON": (lambda d: (d / "config.json").write_text('{"model": "char-rnn",'), "config.json: not valid JSON"),
    "config a JSON list": (lambda d: (d / "config.json").write_text("[1, 2]"), "config.json: expected a JSON object"),
    "config a directory": (_config_is_a_directory, "config.json: cannot be read"),
    "config lacks hparams": (_edit_config(lambda c: c.pop("hparams")), "config.json: lacks the key 'hparams'"),
    "config lacks vocab": (_edit_config(lambda c: c.pop("vocab")), "config.json: lacks the key 'vocab'"),
    "tensor of the wrong shape": (_resize_tensor, "wrong shape rnn.weight_hh_l0 (17, 17) (expected (16, 16))"),
    "vocab lacks a char": (_edit_config(lambda c: c["vocab"].remove("e")), "weights do not fit the model: wrong shape e.weight"),
    "vocab with two chars swapped": (_edit_config(_swap_two_chars), "model.safetensors: these weights were trained on another vocabulary"),
    "vocab without padding": (_edit_config(lambda c: c["vocab"].pop(0)), "config.json: a vocabulary must start with the \\0"),
    "vocab with a duplicate": (_edit_config(lambda c: c["vocab"].append("e")), "config.json: a vocabulary must be distinct"),
    "model not installed": (
        _edit_config(lambda c: c.update(model="char-mamba", plugin="zoo-mamba", plugin_version="9.9")),
        "names the model 'char-mamba' of plugin 'zoo-mamba' (version 9.9), which is not installed",
    ),
    "model not a name": (_edit_config(lambda c: c.update(model=["char-rnn"])), "config.json: 'model' must be a model name"),
    "hparams torch refuses": (
        _edit_config(lambda c: c["hparams"].update(n_hidden=-1)),
        "config.json: model 'char-rnn' cannot be built with the hyper-parameters n_fac=4, n_hidden=-1",
    ),
    "hparams of the wrong type": (
        _edit_config(lambda c: c["hparams"].update(n_hidden="16")),
        "config.json: model 'char-rnn' cannot be built",
    ),
    "unknown hparam": (_edit_config(lambda c: c["hparams"].update(n_layers=2)), "config.json: model 'char-rnn' cannot be built"),
    "batching garbage": (_edit_config(lambda c: c.update(batching={"kind": "tokens"})), "'batching' is not a batching scheme"),
}


@pytest.fixture(scope="module")
def broken_dirs(reference, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("broken")
    dirs = {}
    for case, (breaker, _) in BROKEN.items():
        d = root / re.sub(r"\W+", "-", case)
        shutil.copytree(reference, d)
        breaker(d)
        dirs[case] = d
    return dirs


@pytest.mark.parametrize("command", ["sample", "eval"])
@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_weights_are_one_line_each(capsys, broken_dirs, case, command):
    d = broken_dirs[case]
    before = snapshot(d)
    line = one_line(*cli(capsys, command, str(d))[::2])
    assert BROKEN[case][1] in line, line
    assert str(d) in line  # it names the file or folder at fault
    assert snapshot(d) == before  # nothing written, nothing deleted


def test_weights_carry_their_vocabulary_and_refuse_another_of_the_same_size(reference, tmp_path):
    vocab = json.loads((reference / "config.json").read_text())["vocab"]
    ours = vocab_sha256(vocab)
    for weights in (reference / "model.safetensors", reference / "checkpoint" / "model.safetensors"):
        with safe_open(str(weights), "pt") as f:
            assert f.metadata()[VOCAB_METADATA] == ours

    swapped = tmp_path / "swapped"
    shutil.copytree(reference, swapped)
    _edit_config(_swap_two_chars)(swapped)
    theirs = vocab_sha256(json.loads((swapped / "config.json").read_text())["vocab"])
    assert theirs != ours
    with pytest.raises(ZooError) as info:
        zoo.load(swapped)
    assert f"sha256 {ours[:16]}" in str(info.value) and f"sha256 {theirs[:16]}" in str(info.value)  # it names both
    with pytest.raises(ZooError, match="checkpoint/model.safetensors: these weights were trained on another vocabulary"):
        zoo.train(resume=swapped, epochs=3, quiet=True)

    # Weights saved before the fingerprint (as the bundled ones were) load as before, whatever the vocabulary.
    for weights in (swapped / "model.safetensors", reference / "model.safetensors"):
        plain = tmp_path / "plain" / weights.parent.name
        shutil.copytree(weights.parent, plain)
        save_file(load_file(weights), plain / "model.safetensors", metadata={"format": "pt"})
        assert zoo.load(plain).sample("the ", 5, seed=0) is not None


# ---------------------------------------------------------------------------------------------------------------------
# Property-based: the --set parser and the registry.toml parser raise ZooError or nothing
# ---------------------------------------------------------------------------------------------------------------------

SPEC = ModelSpec(name="t", summary="", builder="m:f", hparams={"n": 1, "rate": 0.5, "tied": False, "act": "tanh"})
QUICK = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@QUICK
@given(st.integers(min_value=-(10**50), max_value=10**50))
def test_any_int_round_trips(i):
    assert coerce("n", str(i), 7) == i and type(coerce("n", str(i), 7)) is int


@QUICK
@given(st.floats(allow_nan=False))
def test_any_float_round_trips(x):
    assert coerce("rate", repr(x), 0.5) == x


@QUICK
@given(
    st.booleans(), st.sampled_from([str, lambda b: str(int(b)), lambda b: ("yes" if b else "no").upper(), lambda b: "On" if b else "oFF"])
)
def test_any_bool_spelling_round_trips(b, spell):
    assert coerce("tied", spell(b), not b) is b


@QUICK
@given(n=st.integers(-(10**6), 10**6), rate=st.floats(allow_nan=False), tied=st.booleans(), act=st.text(min_size=1).map(str.strip))
def test_parse_overrides_round_trips_every_type(n, rate, tied, act):
    pairs = [f" n = {n}", f"rate={rate!r}", f"tied={tied}", f"act={act}"]
    assert parse_overrides(SPEC, pairs) == {"n": n, "rate": rate, "tied": tied, "act": act}


@QUICK
@given(st.lists(st.text(max_size=30) | st.sampled_from(["n=", "=1", "rate=1e400", "tied=maybe", "n=0x10", "act="]), max_size=5))
def test_parse_overrides_raises_only_zoo_errors_and_keeps_types(pairs):
    try:
        hparams = parse_overrides(SPEC, pairs)
    except ZooError as exc:
        assert str(exc).startswith("--set ")
        return
    assert hparams.keys() == SPEC.hparams.keys()
    assert all(type(hparams[k]) is type(v) for k, v in SPEC.hparams.items())


@QUICK
@given(st.text(), st.sampled_from([0, 0.0, False, "s", None]))
def test_coerce_raises_only_zoo_errors(raw, default):
    try:
        value = coerce("k", raw, default)
    except ZooError as exc:
        assert f"--set k={raw}: expected" in str(exc)
    else:
        assert default is None or type(value) is type(default)


# Lines a registry.toml is made of, valid and not: the fuzzer recombines them (and arbitrary text).
FRAGMENTS = [
    "schema = 1",
    "schema = 2",
    "schema = '1'",
    "[weights]",
    "[weights.m]",
    "[weights.'a b']",
    "weights = 3",
    'repo = "owner/name"',
    'repo = "no-slash"',
    "repo = 5",
    f'revision = "{"a" * 40}"',
    'revision = "main"',
    'license = "mit"',
    'recipe = "zoo train m"',
    "num_params = 10",
    "num_params = -1",
    "num_params = true",
    "num_params = 1" + "0" * 400,
    f'files = {{ "model.safetensors" = "{"b" * 64}" }}',
    'files = { "x" = "short" }',
    "files = {}",
    "files = []",
    'bundled = "pkg:weights/m"',
    'bundled = "../../etc"',
    "metrics = []",
    "metrics = [1, 2]",
    "[[weights.m.metrics]]",
    'name = "val_loss"',
    "value = 1.5",
    "value = nan",
    "value = 1" + "0" * 400,
    "value = 1" + "0" * 5000,
    'value = "x"',
    'dataset = "d"',
    'split = "random"',
    "a = " + "[" * 2000,
    "extra = 1",
]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("registry-fuzz")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=40), max_size=25))
def test_registry_parser_raises_only_zoo_errors(scratch, lines):
    path = scratch / "registry.toml"
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
    try:
        entries = published.load(path)
    except ZooError:
        return
    assert all(isinstance(e, published.PublishedWeights) and len(e.files) >= 1 for e in entries.values())


def test_registry_parser_refuses_numbers_python_cannot_hold(scratch):
    base = "schema = 1\n[weights.m]\nrepo = 'o/n'\nlicense = 'mit'\nrecipe = 'r'\nnum_params = 1\n"
    base += f"files = {{ 'f' = '{'c' * 64}' }}\n[[weights.m.metrics]]\nname = 'v'\ndataset = 'd'\nsplit = 's'\n"
    path = scratch / "big.toml"
    for value, needle in [
        ("1" + "0" * 400, "too large for a number"),
        ("1" + "0" * 5000, "not valid TOML"),
        ("[" * 2000, "not valid TOML"),
    ]:
        path.write_text(base + f"value = {value}\n")
        with pytest.raises(ZooError, match=needle):
            published.load(path)


# ---------------------------------------------------------------------------------------------------------------------
# Faults: an unwritable output, a full disk, a crash mid-epoch, SIGKILL
# ---------------------------------------------------------------------------------------------------------------------


def test_an_output_path_under_a_file_is_one_line(capsys, tmp_path, corpus):
    """mkdir fails (the parent of --out is a file; chmod would not stop root, this does)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    line = one_line(*cli(capsys, "train", "char-rnn", "--data", str(corpus), "--out", str(blocker / "run"), *TINY_CLI)[::2])
    assert f"cannot write the run to {blocker / 'run'} (Not a directory)" in line
    line = one_line(*cli(capsys, "train", "char-rnn", "--data", str(corpus), "--out", str(blocker), *TINY_CLI)[::2])
    assert "is a file" in line  # click's own check of --out
    with pytest.raises(ZooError, match=f"cannot write the run to {re.escape(str(blocker))} "):
        zoo.train("char-rnn", out=blocker, **run_kwargs(corpus))  # the API has no click in front of it
    assert blocker.read_text() == "not a folder"


class _Disk:
    """Fault injection for the filesystem calls zoo's writers make; `armed` switches it on."""

    def __init__(self, monkeypatch, mode: str) -> None:
        self.mode = mode
        self.armed = False
        self.fsyncs = 0
        real_fsync, real_replace = os.fsync, os.replace
        real_mkstemp, real_mkdtemp = tempfile.mkstemp, tempfile.mkdtemp

        def fsync(fd):
            if self.armed and mode.startswith("full"):
                self.fsyncs += 1
                if self.fsyncs >= int(mode[-1]):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_fsync(fd)

        def replace(src, dst):
            if self.armed and mode == "swap" and Path(dst).name == "checkpoint":
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            return real_replace(src, dst)

        def refuse(real):
            def make(*args, **kwargs):
                if self.armed and mode == "read-only":
                    raise OSError(errno.EROFS, os.strerror(errno.EROFS))
                return real(*args, **kwargs)

            return make

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)
        monkeypatch.setattr(tempfile, "mkstemp", refuse(real_mkstemp))
        monkeypatch.setattr(tempfile, "mkdtemp", refuse(real_mkdtemp))

    def on_epoch_end(self, run, epoch, metrics):  # a training callback: the fault starts after epoch 1
        if epoch == 1:
            self.armed = True
            self.fsyncs = 0


def _leftovers(out: Path) -> list[str]:
    """Hidden temporary files and folders a write left behind (the checkpoint kept aside and the run's lock file are meant to stay)."""
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".") and p.name not in (".checkpoint.old", ".zoo.lock"))


@pytest.mark.parametrize(
    "mode, strerror",
    [
        ("full@1", "No space left on device"),  # the first write after epoch 1: the new checkpoint's weights
        ("full@2", "No space left on device"),  # the next one, still inside the checkpoint folder being built
        ("read-only", "Read-only file system"),  # no temporary file can be created at all
        ("swap", "Input/output error"),  # the old checkpoint moved aside, the new one cannot take its place
    ],
)
def test_a_failing_disk_keeps_the_last_checkpoint_and_resume_is_exact(monkeypatch, tmp_path, corpus, reference, mode, strerror):
    disk = _Disk(monkeypatch, mode)
    out = tmp_path / "run"
    with pytest.raises(ZooError, match=f"cannot write to {re.escape(str(out))} \\({strerror}\\); the last complete checkpoint is kept"):
        zoo.train("char-rnn", out=out, callbacks=[disk], **run_kwargs(corpus))
    ckpt = find_checkpoint(out)
    assert json.loads((ckpt / "state.json").read_text())["global_step"] == EPOCH_BATCHES
    assert [h["epoch"] for h in json.loads((out / "training.json").read_text())["history"]] == [1]
    assert _leftovers(out) == []  # no half-written temporary file or folder
    zoo.load(out)  # the top-level weights are whole

    # resuming while the fault persists fails the same way and still loses nothing
    with pytest.raises(ZooError, match=strerror):
        zoo.train(resume=out, device="cpu", quiet=True)
    assert json.loads((find_checkpoint(out) / "state.json").read_text())["global_step"] == EPOCH_BATCHES
    assert _leftovers(out) == []

    disk.armed = False
    resumed = zoo.train(resume=out, device="cpu", quiet=True)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert_same_weights(out, reference)
    assert not (out / ".checkpoint.old").exists()


def test_a_crash_mid_epoch_then_resume_equals_an_uninterrupted_run(monkeypatch, tmp_path, corpus, reference):
    real_zero_grad, calls = torch.optim.Adam.zero_grad, [0]

    def crashing_zero_grad(opt, *args, **kwargs):  # the trainer calls it once a batch, between forward and backward
        calls[0] += 1
        if calls[0] == EPOCH_BATCHES + 30:  # batch 30 of epoch 2
            raise RuntimeError("simulated crash (e.g. a driver error)")
        return real_zero_grad(opt, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "zero_grad", crashing_zero_grad)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        zoo.train("char-rnn", out=out, **run_kwargs(corpus))
    assert json.loads((out / "checkpoint" / "state.json").read_text())["global_step"] == EPOCH_BATCHES
    zoo.train(resume=out, device="cpu", quiet=True)
    assert_same_weights(out, reference)


KILLER = """
import os, signal, sys
from pathlib import Path
import torch
from zoo.cli import main

where, n = sys.argv[1], int(sys.argv[2])
calls, swaps = [0], [0]
real_zero_grad, real_replace = torch.optim.Adam.zero_grad, os.replace

def zero_grad(opt, *args, **kwargs):  # SIGKILL at batch n of the whole run (the trainer calls it once a batch)
    calls[0] += 1
    if where == "mid-epoch" and calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_zero_grad(opt, *args, **kwargs)

def replace(src, dst):  # SIGKILL at the n-th checkpoint swap: the old one moved aside, the new one not yet in place
    if where == "mid-swap" and Path(dst).name == "checkpoint":
        swaps[0] += 1
        if swaps[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)

torch.optim.Adam.zero_grad, os.replace = zero_grad, replace
main(sys.argv[3:])
"""


@pytest.mark.parametrize("where, n", [("mid-epoch", EPOCH_BATCHES + 30), ("mid-swap", 2)])
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, corpus, reference, where, n):
    out = tmp_path / "run"
    args = ["train", "char-rnn", "--data", str(corpus), *TINY_CLI, "--batch-size", "64", "--epochs", "2", "--seed", "3"]
    args += ["--device", "cpu", "--out", str(out), "-q"]
    proc = subprocess.run([sys.executable, "-c", KILLER, where, str(n), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr  # killed, no chance to clean up
    ckpt = find_checkpoint(out)
    assert ckpt.name == ("checkpoint" if where == "mid-epoch" else ".checkpoint.old")
    assert json.loads((ckpt / "state.json").read_text())["global_step"] == EPOCH_BATCHES
    zoo.train(resume=out, device="cpu", quiet=True)
    assert_same_weights(out, reference)
    assert (out / "checkpoint" / "state.json").exists() and not (out / ".checkpoint.old").exists()
    assert _leftovers(out) == []  # the complete new folder the kill kept from its swap is gone too


def test_the_next_checkpoint_removes_stale_temporary_folders_and_nothing_else(tmp_path, corpus):
    out = tmp_path / "run"
    zoo.train("char-rnn", out=out, **{**run_kwargs(corpus), "max_steps": 2})
    stale = out / ".checkpoint.k1ll3d_x"  # mkdtemp's pattern: as a SIGKILL mid-swap leaves it
    shutil.copytree(out / "checkpoint", stale)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep")
    kept = [out / ".checkpoint.notmine1", out / ".checkpoint.notes", out / ".checkpoint.k1ll3d_x2", out / ".checkpoint.link0000"]
    kept[0].write_text("a file, not a folder zoo made")
    kept[1].mkdir()
    kept[2].mkdir()
    kept[3].symlink_to(precious, target_is_directory=True)

    zoo.train(resume=out, max_steps=3, quiet=True)
    assert not stale.exists()
    assert all(p.exists() or p.is_symlink() for p in kept)
    assert (precious / "data.txt").read_text() == "keep"
    assert json.loads((find_checkpoint(out) / "state.json").read_text())["global_step"] == 3


# ---------------------------------------------------------------------------------------------------------------------
# Two `zoo pull` of the same model at once
# ---------------------------------------------------------------------------------------------------------------------


def _registry_for(path: Path, repo: str, revision: str, files: dict[str, bytes]) -> Path:
    pins = ", ".join(f'"{name}" = "{hashlib.sha256(data).hexdigest()}"' for name, data in files.items())
    path.write_text(
        textwrap.dedent(
            f"""\
            schema = 1

            [weights.char-rnn]
            repo = "{repo}"
            revision = "{revision}"
            license = "mit"
            recipe = "zoo train char-rnn"
            num_params = 1000
            files = {{ {pins} }}
            metrics = []
            """
        )
    )
    return path


def test_two_pulls_at_once_both_succeed_with_one_copy(tmp_path, reference):
    files = {name: (reference / name).read_bytes() for name in ("model.safetensors", "config.json", "training.json")}
    hub = start_hub(tmp_path)
    try:
        hub.create_repo("zoo-test/char-rnn")
        revision = hub.commit("zoo-test/char-rnn", files, message="weights")
        real_route = hub._route

        def slow_route(req):  # every file download takes a while, so the two clients overlap
            if req.method == "GET" and "/resolve/" in req.path:
                time.sleep(0.3)
            return real_route(req)

        hub._route = slow_route
        env = {
            **os.environ,
            **hub.env(HF_HOME=str(tmp_path / "hf")),
            "ZOO_REGISTRY": str(_registry_for(tmp_path / "r.toml", "zoo-test/char-rnn", revision, files)),
        }
        cmd = [sys.executable, "-m", "zoo", "pull", "char-rnn"]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
        results = [(p.returncode, out, err) for p in procs for out, err in [p.communicate(timeout=120)]]
        downloads = [r for r in hub.requests if r[0] == "GET" and "/resolve/" in r[1]]
        heads = [r for r in hub.requests if r[0] == "HEAD" and "/resolve/" in r[1]]
    finally:
        hub.stop()
    for code, _, stderr in results:
        assert code == 0, stderr
        assert "Traceback" not in stderr
    folders = {Path(stdout.strip()) for _, stdout, _ in results}
    assert len(folders) == 1
    folder = folders.pop()
    assert revision in str(folder)
    for name, data in files.items():
        assert (folder / name).read_bytes() == data, name
    cache = tmp_path / "hf" / "hub" / "models--zoo-test--char-rnn"
    blobs = sorted(p.name for p in (cache / "blobs").iterdir())
    assert len(blobs) == len(files) and not [b for b in blobs if b.endswith(".incomplete")]  # one copy each, no partial file
    assert hashlib.sha256(files["model.safetensors"]).hexdigest() in blobs  # LFS blobs are named by their sha256
    assert len(heads) == 2 * len(files)  # both clients asked for every file...
    assert len(files) <= len(downloads) <= 2 * len(files), downloads  # ...and the file locks kept them from clobbering each other


# ---------------------------------------------------------------------------------------------------------------------
# Security: nothing unpickles, nothing downloaded picks the code to run, tokens stay secret
# ---------------------------------------------------------------------------------------------------------------------

UNSAFE = [
    re.compile(r"\btorch\.load\s*\("),
    re.compile(r"\bpickle\.loads?\s*\("),
    re.compile(r"^\s*(import|from)\s+(c?pickle|dill|joblib|marshal)\b", re.M),
    re.compile(r"allow_pickle\s*=\s*True"),
    re.compile(r"\b(numpy|np)\.load\s*\("),
    re.compile(r"weights_only\s*=\s*False"),
]


def unsafe_calls(text: str) -> list[str]:
    return [m.group(0).strip() for pattern in UNSAFE for m in pattern.finditer(text)]


def test_nothing_in_zoo_or_its_plugins_unpickles():
    for bad in ("w = torch.load(f)", "pickle.loads(b)", "import pickle", "np.load(p, allow_pickle=True)", "numpy.load(p)"):
        assert unsafe_calls(bad), bad  # the scanner itself catches each form
    sources = sorted((REPO / "zoo").rglob("*.py")) + sorted((REPO / "plugins").rglob("*.py"))
    assert len(sources) > 20
    found = {str(p.relative_to(REPO)): hits for p in sources if (hits := unsafe_calls(p.read_text(encoding="utf-8")))}
    assert found == {}


PROBE = """
import os
open(os.environ["ZOO_PROBE_MARKER"], "w").write("imported")

def build(**kwargs):
    raise SystemExit("the probe's builder ran")
"""

LOADER = """
import json, sys
from zoo.cli import main

codes = {}
for d in sys.argv[1:]:
    for cmd in (["sample", d, "--length", "5"], ["eval", d]):
        try:
            main(cmd)
            codes[" ".join(cmd[:2])] = 0
        except SystemExit as exc:
            codes[" ".join(cmd[:2])] = exc.code
print("RESULT " + json.dumps({"codes": codes, "imported": [m for m in ("zoo_probe_evil", "this") if m in sys.modules]}))
"""


def test_a_config_never_chooses_the_code_that_runs(tmp_path, reference):
    site = tmp_path / "site"
    site.mkdir()
    (site / "zoo_probe_evil.py").write_text(PROBE)
    marker = tmp_path / "imported"
    cases = {
        "evil": {"model": "zoo_probe_evil:build", "plugin": "zoo_probe_evil"},
        "os": {"model": "os:system", "plugin": "os"},
        "builder": {"model": "zoo_lesson6.models:CharRnn"},
        "this": {"model": "this"},
        "table": {"task": "regression", "model": "zoo_probe_evil:build", "columns": {"categorical": {}, "continuous": {}, "target": {}}},
        "smuggled": {"builder": "zoo_probe_evil:build", "plugin": "zoo_probe_evil"},  # a real model name, plus a builder
    }
    dirs = []
    for name, change in cases.items():
        d = tmp_path / name
        shutil.copytree(reference, d)
        config = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps({**config, **change}))
        dirs.append(str(d))
    env = {**os.environ, "PYTHONPATH": str(site), "ZOO_PROBE_MARKER": str(marker)}
    proc = subprocess.run([sys.executable, "-c", LOADER, *dirs], capture_output=True, text=True, env=env, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["imported"] == [] and not marker.exists()  # the module a config names is never imported
    errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    refused = ("evil", "os", "builder", "this", "table")
    for name in refused:
        for cmd in ("sample", "eval"):
            assert result["codes"][f"{cmd} {tmp_path / name}"] == 1
    for model in ("os:system", "zoo_lesson6.models:CharRnn", "this"):
        assert sum(f"names the model {model!r}" in ln and "not installed" in ln for ln in errors) == 2, proc.stderr
    assert len(errors) == 2 * len(refused) and all(ln.startswith("zoo: error: ") for ln in errors)  # one line per refused command
    # a registered model name with a smuggled builder loads as the registered model; the builder is ignored
    assert result["codes"][f"sample {tmp_path / 'smuggled'}"] == 0 and result["codes"][f"eval {tmp_path / 'smuggled'}"] == 0


def test_a_token_from_the_environment_is_never_written_or_printed(capsys, tmp_path, corpus, monkeypatch):
    token = "hf_zooSECRETtoken0123456789"
    monkeypatch.setenv("HF_TOKEN", token)
    out = tmp_path / "run"
    zoo.train("char-rnn", out=out, max_steps=3, **{**run_kwargs(corpus), "quiet": False})
    logged = capsys.readouterr()
    assert "training char-rnn" in logged.err and token not in logged.out + logged.err
    hub = start_hub(tmp_path, token=token)
    try:
        home = tmp_path / "hf"
        pushed = run_zoo("push", str(out), "--repo", "alice/secret", env=hub.env(HF_HOME=str(home), ZOO_PROGRESS="1"))
        assert pushed.returncode == 0, pushed.stderr
        stored = hub.repo("alice/secret").files("main")
    finally:
        hub.stop()
    zoo.train(resume=out, device="cpu", max_steps=6)  # rewrites run.json, with the token still in the environment
    logged = capsys.readouterr()
    assert "resuming char-rnn" in logged.err and token not in logged.out + logged.err
    assert json.loads((out / "checkpoint" / "state.json").read_text())["global_step"] == 6
    assert {"model.safetensors", "config.json", "run.json", "README.md"} <= set(stored)
    assert token not in pushed.stdout + pushed.stderr
    for name, content in stored.items():
        assert token.encode() not in content, name
    written = [p for folder in (out, home) if folder.exists() for p in folder.rglob("*") if p.is_file()]
    assert any(p.name == "run.json" for p in written)
    for p in written:
        assert token.encode() not in p.read_bytes(), p


def test_a_checkpoint_of_a_plain_adam_resumes_with_the_fused_one(tmp_path):
    """How the update runs is this machine's choice: a run saved by a non-fused Adam (an older zoo, MPS) resumes
    with the fused kernel here, its step counts where that kernel wants them, and takes the same steps."""
    from zoo.checkpoint import load_checkpoint, save_checkpoint

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    plain = torch.optim.Adam(model.parameters(), lr=1e-2, foreach=False)
    x = torch.randn(8, 4)
    model(x).square().mean().backward()
    plain.step()
    save_checkpoint(tmp_path, model, plain, {"epoch": 0, "step": 1})
    twin = torch.nn.Linear(4, 3)
    fused = torch.optim.Adam(twin.parameters(), lr=1e-2, fused=True)
    load_checkpoint(tmp_path / "checkpoint", twin, fused)
    assert fused.param_groups[0]["fused"] is True and fused.param_groups[0]["foreach"] is None
    assert all(fused.state[p]["step"].dtype == torch.float32 for p in twin.parameters())
    for m, opt in ((model, plain), (twin, fused)):
        opt.zero_grad()
        m(x).square().mean().backward()
        opt.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b)
