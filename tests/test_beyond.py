"""Stateful models: state carry-over, reset, weight tying, dropout off in evaluation, exact resume."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

import zoo
from zoo import registry
from zoo.model import build
from zoo.tasks.charlm import evaluate, forward

STATEFUL = ["char-stateful", "char-gru", "char-lstm", "char-awd-lstm"]
V = 40


def tiny(name: str, **extra):
    spec = registry.get_model(name)
    torch.manual_seed(0)
    return build(spec, V, {**spec.hparams, **spec.tiny, **extra})


@pytest.mark.parametrize("name", STATEFUL)
def test_two_halves_with_carried_state_equal_the_whole(name):
    model = tiny(name).eval()
    x = torch.randint(1, V, (3, 12))
    with torch.no_grad():
        whole, _ = model(x, model.init_state(3))
        a, state = model(x[:, :5], model.init_state(3))
        b, _ = model(x[:, 5:], state)
        fresh, _ = model(x[:, 5:], model.init_state(3))
    torch.testing.assert_close(torch.cat([a, b], 1), whole, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(fresh, b)  # the carried state matters


@pytest.mark.parametrize("name", STATEFUL)
def test_step_equals_forward(name):
    model = tiny(name).eval()
    x = torch.randint(1, V, (2, 7))
    with torch.no_grad():
        whole, _ = model(x, model.init_state(2))
        state, outs = model.init_state(2), []
        for t in range(7):
            logits, state = model.step(x[:, t], state)
            outs.append(logits)
    torch.testing.assert_close(torch.stack(outs, 1), whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["char-lstm", "char-awd-lstm"])
def test_dropout_is_off_in_evaluation(name):
    model = tiny(name)
    x = torch.randint(1, V, (4, 9))
    model.eval()
    with torch.no_grad():
        e1, _ = model(x)
        e2, _ = model(x)
    torch.testing.assert_close(e1, e2, rtol=0, atol=0)
    model.train()
    torch.manual_seed(1)
    t1, _ = model(x)
    torch.manual_seed(2)
    t2, _ = model(x)
    assert not torch.allclose(t1, t2)


def test_awd_weight_tying_survives_save_and_load(tmp_path, small_corpus):
    model = tiny("char-awd-lstm")
    assert model.l_out.weight is model.e.weight
    m = zoo.train(
        "char-awd-lstm",
        data=str(small_corpus),
        epochs=1,
        max_steps=3,
        out=tmp_path / "r",
        overrides=("n_hidden=16", "emb_size=8", "n_layers=2"),
        quiet=True,
    )
    stored = load_file(tmp_path / "r" / "model.safetensors")
    assert "e.weight" in stored and "l_out.weight" not in stored  # tied: stored once
    loaded = zoo.load(tmp_path / "r")
    assert loaded.model.l_out.weight is loaded.model.e.weight
    torch.testing.assert_close(loaded.model.e.weight, m.model.e.weight.detach())


def test_awd_adds_activation_regularisation_only_in_training():
    model = tiny("char-awd-lstm")
    x = torch.randint(1, V, (2, 6))
    model.train()
    model(x)
    assert model.extra_loss.item() > 0
    model.eval()
    model(x)
    assert model.extra_loss.item() == 0


def test_evaluation_starts_from_a_zero_state_and_carries_it():
    from zoo.data.batching import StreamBatches

    model = tiny("char-stateful").eval()
    data = torch.randint(1, V, (401,))
    batches = StreamBatches(data, length=10, batch_size=4)
    loss1, _ = evaluate(model, batches, torch.device("cpu"))
    loss2, _ = evaluate(model, batches, torch.device("cpu"))
    assert loss1 == loss2  # no state leaks from one evaluation into the next
    # carrying the state over the whole stream equals one long forward pass
    x = torch.cat([b[0] for b in batches.epoch()], 1)
    y = torch.cat([b[1] for b in batches.epoch()], 1)
    with torch.no_grad():
        whole, _ = model(x)
    expected = torch.nn.functional.cross_entropy(whole.reshape(-1, V), y.reshape(-1)).item()
    assert loss1 == pytest.approx(expected, rel=1e-5)
    logits, state = forward(model, x[:, :10])
    assert state[0].shape == (4, 1, 16) and not state[0].requires_grad


def test_a_stream_models_card_and_header_say_it_held_out_the_tail_even_when_asked_for_random(small_corpus, tmp_path, capsys):
    from zoo.errors import ZooWarning
    from zoo.publish import card_text

    kw = dict(data=str(small_corpus), overrides=("n_hidden=16", "n_fac=4"), batch_size=8, max_steps=2, split="random")
    with pytest.warns(ZooWarning, match="--split random: char-stateful reads contiguous streams, so it holds out the end"):
        m = zoo.train("char-stateful", out=tmp_path / "s", **kw)
    assert "(tail split, 20% held out)" in capsys.readouterr().err
    assert m.config["split"] == "tail"  # recorded as it was done
    zoo.train(resume=tmp_path / "s", epochs=1, quiet=True)  # the card needs a finished epoch's figures
    card = card_text(tmp_path / "s", license="mit")
    assert "validation: last 20% of the text" in card and "random 20%" not in card
    assert "split: validation (tail)" in card


def test_stateful_resume_is_exact_mid_epoch(small_corpus, tmp_path):
    kw = dict(data=str(small_corpus), overrides=("n_hidden=16", "n_fac=4"), batch_size=8, quiet=True, seed=3, epochs=1)
    zoo.train("char-stateful", out=tmp_path / "a", max_steps=30, **kw)
    zoo.train("char-stateful", out=tmp_path / "b", max_steps=13, **kw)
    zoo.train(resume=tmp_path / "b", max_steps=30, quiet=True)
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_stateful_models_train_and_sample_end_to_end(small_corpus, tmp_path):
    m = zoo.train(
        "char-gru", data=str(small_corpus), epochs=1, lr=1e-2, out=tmp_path / "g", overrides=("n_hidden=32",), batch_size=16, quiet=True
    )
    assert m.context is None and m.config["split"] == "tail"
    assert m.history[0]["val_loss"] < 3.5
    text = zoo.load(tmp_path / "g").sample("The ", 100, seed=0)
    assert len(text) == 100 and text == m.sample("The ", 100, seed=0)
