"""The six lesson models: shapes, parameter counts (the spec's meta cannot lie), step == forward."""

from __future__ import annotations

import pytest
import torch

from zoo import registry
from zoo.model import build, count_params
from zoo.tasks.charlm import loss_fn

LESSON = ["char3", "char-loop", "char-concat", "char-rnn", "char-seq", "char-seq-identity"]
VOCAB = 85  # Nietzsche: 84 characters + the \0 pad


@pytest.mark.parametrize("name", LESSON)
def test_registered_with_lesson_metadata(name):
    spec = registry.get_model(name)
    assert spec.plugin == name
    assert spec.hparams["n_fac"] == 42 and spec.hparams["n_hidden"] == 256
    assert spec.batch_size == 512 and spec.optimizer == "adam"
    assert spec.reference is not None and "Lesson 6" in spec.reference.source
    assert len(spec.epoch_lrs()) == spec.epochs


@pytest.mark.parametrize("name", LESSON)
def test_forward_shapes_and_declared_parameter_count(name):
    spec = registry.get_model(name)
    model = build(spec, VOCAB)
    assert count_params(model) == spec.num_params
    x = torch.randint(1, VOCAB, (5, spec.batching.length))
    out = model(x)
    if spec.batching.targets == "every":
        assert out.shape == (5, spec.batching.length, VOCAB)
    else:
        assert out.shape == (5, VOCAB)


@pytest.mark.parametrize("name", LESSON)
def test_stepping_a_zero_state_equals_the_forward_pass(name):
    """What the sampler does (one step per character) must equal the model's own forward."""
    spec = registry.get_model(name)
    torch.manual_seed(0)
    model = build(spec, VOCAB).eval()
    x = torch.randint(1, VOCAB, (4, spec.batching.length))
    with torch.no_grad():
        h = model.init_state(4)
        outs = []
        for t in range(x.shape[1]):
            logits, h = model.step(x[:, t], h)
            outs.append(logits)
        full = model(x)
    expected = full[:, -1] if full.dim() == 3 else full
    torch.testing.assert_close(outs[-1], expected, rtol=1e-5, atol=1e-5)
    if full.dim() == 3:
        torch.testing.assert_close(torch.stack(outs, 1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", LESSON)
def test_one_adam_step_lowers_the_loss_on_a_fixed_batch(name):
    spec = registry.get_model(name)
    torch.manual_seed(0)
    model = build(spec, VOCAB)
    x = torch.randint(1, VOCAB, (64, spec.batching.length))
    y = torch.randint(1, VOCAB, x.shape if spec.batching.targets == "every" else (64,))
    opt = torch.optim.Adam(model.parameters(), lr=spec.recipe[0].lr)
    before = loss_fn(model(x), y)
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = loss_fn(model(x), y)
    assert after < before


def test_identity_init_and_nonlinearity():
    spec = registry.get_model("char-seq-identity")
    model = build(spec, VOCAB)
    assert torch.equal(model.rnn.weight_hh_l0.detach(), torch.eye(256))
    assert model.rnn.nonlinearity == "tanh"
    relu = build(spec, VOCAB, {**spec.hparams, "nonlinearity": "relu"})
    assert relu.rnn.nonlinearity == "relu"
    plain = build(registry.get_model("char-seq"), VOCAB)
    assert not torch.equal(plain.rnn.weight_hh_l0.detach(), torch.eye(256))


def test_concat_model_feeds_the_state_and_input_together():
    model = build(registry.get_model("char-concat"), VOCAB)
    assert model.l_in.in_features == 42 + 256
