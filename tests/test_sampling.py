"""Sampling: carrying the state forward gives exactly the lesson's re-run-the-window predictions."""

from __future__ import annotations

import pytest
import torch
from helpers import one_line_error, run_zoo

import zoo
from zoo import registry
from zoo.data.vocab import Vocab
from zoo.errors import ZooError
from zoo.model import build
from zoo.sampling import sample, sample_by_rerunning

TEXT = "the quick brown fox jumps over the lazy dog. " * 3
VOCAB = Vocab.from_text(TEXT)


def model_for(name: str):
    spec = registry.get_model(name)
    torch.manual_seed(0)
    return spec, build(spec, len(VOCAB), {**spec.hparams, "n_hidden": 48, "n_fac": 12}).eval()


@pytest.mark.parametrize("name", ["char3", "char-loop", "char-concat", "char-rnn", "char-seq", "char-seq-identity"])
@pytest.mark.parametrize("temperature", [0.0, 0.8, 1.0])  # 0.8: the temperature folded into the output layer
def test_state_carrying_sampler_equals_rerunning_the_window(name, temperature):
    spec, model = model_for(name)
    ctx = spec.batching.length
    fast = sample(model, VOCAB, "the qu", 60, context=ctx, temperature=temperature, seed=5)[0]
    slow = sample_by_rerunning(
        model, VOCAB, "the qu", 60, context=ctx, every=spec.batching.targets == "every", temperature=temperature, top_k=None, seed=5
    )
    assert fast == slow


@pytest.mark.parametrize("name", ["char3", "char-loop", "char-concat", "char-rnn", "char-seq", "char-seq-identity"])
def test_top_k_and_many_samples_at_once_equal_rerunning_the_window(name):
    spec, model = model_for(name)
    ctx = spec.batching.length
    kwargs = dict(context=ctx, temperature=1.0, top_k=5, seed=7, num_samples=4)
    fast = sample(model, VOCAB, "the qu", 60, **kwargs)
    slow = sample_by_rerunning(model, VOCAB, "the qu", 60, every=spec.batching.targets == "every", **kwargs)
    assert fast == slow
    assert len(set(fast)) > 1  # each sample draws its own numbers


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_the_torch_loop_equals_rerunning_the_window(temperature):
    """float64 weights (like a model on a GPU) take the torch loop with the fused form instead of the NumPy one."""
    spec, model = model_for("char-rnn")
    model = model.double()
    kwargs = dict(context=8, temperature=temperature, top_k=None, seed=2, num_samples=2)
    fast = sample(model, VOCAB, "jumps", 60, **kwargs)
    slow = sample_by_rerunning(model, VOCAB, "jumps", 60, every=False, **kwargs)
    assert fast == slow


@pytest.mark.parametrize("context", [1, 2, 3, None])
def test_the_numpy_loop_equals_the_torch_loop_for_short_and_unbounded_contexts(context):
    """The NumPy loop's slot bookkeeping (windows of 1 and 2 need no [H, H] product; None carries the state)."""
    spec, model = model_for("char-rnn")
    kwargs = dict(context=context, temperature=1.0, top_k=None, seed=4, num_samples=3)
    fast = sample(model, VOCAB, "jumps", 50, **kwargs)  # float32: the NumPy loop
    torch_loop = sample(model.double(), VOCAB, "jumps", 50, **kwargs)  # float64: the torch loop
    assert fast == torch_loop
    if context is not None:
        assert fast == sample_by_rerunning(model, VOCAB, "jumps", 50, every=False, **kwargs)


@pytest.mark.parametrize("top_k", [None, 5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # the NumPy loop, the torch loop
def test_a_vanishing_temperature_samples_as_greedy_does(top_k, dtype):
    """1 / T overflows float32 below ~1e-38: the draw must still be the likeliest character, never the padding."""
    spec, model = model_for("char-rnn")
    model = model.to(dtype)
    greedy = sample(model, VOCAB, "the qu", 60, context=8, temperature=0.0)[0]
    for temperature in (1e-5, 1e-30, 1e-40, 5e-324):
        tiny = sample(model, VOCAB, "the qu", 60, context=8, temperature=temperature, top_k=top_k, seed=1)[0]
        assert tiny == greedy, temperature
        assert "\0" not in tiny
    with pytest.raises(ZooError, match="zoo samples at most 10,000,000 at once"):
        sample(model, VOCAB, "the qu", 10**14, context=8)


def test_length_zero_and_a_prompt_longer_than_the_window():
    spec, model = model_for("char-rnn")
    assert sample(model, VOCAB, "the", 0, context=8, num_samples=2) == ["", ""]
    prompt = "the quick brown fox jumps"
    fast = sample(model, VOCAB, prompt, 40, context=8, temperature=1.0, seed=9)[0]
    assert fast == sample_by_rerunning(model, VOCAB, prompt, 40, context=8, every=False, temperature=1.0, top_k=None, seed=9)


def test_same_seed_same_text_other_seed_other_text():
    spec, model = model_for("char-rnn")
    a = sample(model, VOCAB, "the", 80, context=8, temperature=1.0, seed=1)
    b = sample(model, VOCAB, "the", 80, context=8, temperature=1.0, seed=1)
    c = sample(model, VOCAB, "the", 80, context=8, temperature=1.0, seed=2)
    assert a == b and a != c


def test_many_samples_at_once_match_one_at_a_time_greedy():
    spec, model = model_for("char-loop")
    many = sample(model, VOCAB, "over the", 40, context=8, temperature=0, num_samples=3)
    one = sample(model, VOCAB, "over the", 40, context=8, temperature=0)[0]
    assert many == [one] * 3


def test_top_k_one_is_greedy_and_pad_is_never_sampled():
    spec, model = model_for("char-rnn")
    greedy = sample(model, VOCAB, "fox", 50, context=8, temperature=0)[0]
    top1 = sample(model, VOCAB, "fox", 50, context=8, temperature=1.5, top_k=1, seed=3)[0]
    assert greedy == top1
    hot = sample(model, VOCAB, "fox", 300, context=8, temperature=5.0, seed=3)[0]
    assert "\0" not in hot and len(hot) == 300


def test_prompt_errors():
    spec, model = model_for("char-rnn")
    with pytest.raises(ZooError, match="lacks"):
        sample(model, VOCAB, "ZEBRA", 10, context=8)
    with pytest.raises(ZooError, match="empty"):
        sample(model, VOCAB, "", 10, context=8)
    with pytest.raises(ZooError, match=r"contains '\\0', zoo's padding character"):
        sample(model, VOCAB, "the\0qu", 10, context=8)


def test_cli_sample_from_a_run(small_corpus, tmp_path):
    zoo.train(
        "char-rnn", data=str(small_corpus), epochs=1, lr=1e-2, batch_size=64, out=tmp_path / "r", overrides=("n_hidden=32",), quiet=True
    )
    a = run_zoo("sample", str(tmp_path / "r"), "--prompt", "The ", "--length", "120", "--seed", "4")
    b = run_zoo("sample", str(tmp_path / "r"), "--prompt", "The ", "--length", "120", "--seed", "4")
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout and a.stdout.startswith("The ") and len(a.stdout.rstrip("\n")) == 124
    two = run_zoo("sample", str(tmp_path / "r"), "--prompt", "The ", "--length", "30", "--num-samples", "2", "--temperature", "0")
    assert two.stdout.count("---") == 1
    bad = one_line_error(run_zoo("sample", str(tmp_path / "r"), "--prompt", "Ωmega"))
    assert "'Ω'" in bad
    ev = run_zoo("eval", str(tmp_path / "r"), "--json")
    assert ev.returncode == 0, ev.stderr
    import json

    result = json.loads(ev.stdout)
    assert result["val_loss"] == pytest.approx(zoo.load(tmp_path / "r").history[-1]["val_loss"], rel=1e-6)
    assert result["val_bpc"] == pytest.approx(result["val_loss"] / 0.6931471805599453)
    assert result["chars"] == result["rows"] > 0  # a window predicts one character
    text = run_zoo("eval", str(tmp_path / "r"))
    assert text.stdout.rstrip("\n").endswith(f"over {result['chars']:,} characters"), text.stdout


def test_eval_counts_every_character_a_sequence_model_predicts(small_corpus, tmp_path):
    zoo.train("char-seq", data=str(small_corpus), epochs=1, batch_size=64, out=tmp_path / "s", overrides=("n_hidden=16",), quiet=True)
    result = zoo.load(tmp_path / "s").evaluate()
    assert result["rows"] > 0 and result["chars"] == 8 * result["rows"]  # a window predicts each of its 8 next characters


def test_sampling_never_changes_the_weights_it_reads():
    """The NumPy loop scales its copy of the output layer by 1/temperature, never the model's (even a transposed view)."""
    import dataclasses

    from zoo.sampling import Draw, Noise, _sample_fused

    _, model = model_for("char-rnn")
    f = model.fused()
    stored = f.w_out.t().contiguous()  # as a plugin that keeps its decoder [hidden, vocab] would hand it over
    f = dataclasses.replace(f, w_out=stored.t())
    before = [t.clone() for t in (f.table, f.w_hh, stored, f.b_out)]
    ids = VOCAB.encode("the qu")
    for _ in range(2):
        _sample_fused(f, ids, 30, 8, Draw(0.5, None, Noise(torch.Generator().manual_seed(0), 30, 1, len(VOCAB))), 1)
    assert all(torch.equal(a, b) for a, b in zip(before, (f.table, f.w_hh, stored, f.b_out)))
