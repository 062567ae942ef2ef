"""zoo.losses.linear_cross_entropy against F.cross_entropy(F.linear(...)): same loss, same gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from zoo.losses import linear_cross_entropy


def _inputs(shape: tuple[int, ...], vocab: int = 7, hidden: int = 5, dtype=torch.float64, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(*shape, hidden, generator=g, dtype=dtype, requires_grad=True)
    w = (3 * torch.randn(vocab, hidden, generator=g, dtype=dtype)).requires_grad_()  # large logits: tests the shift
    b = torch.randn(vocab, generator=g, dtype=dtype, requires_grad=True)
    y = torch.randint(0, vocab, shape, generator=g)
    return h, w, b, y


def _reference(h, w, b, y):
    logits = F.linear(h, w, b)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


@pytest.mark.parametrize("shape", [(1,), (6,), (3, 4)])
def test_loss_and_gradients_match_the_plain_expression(shape):
    h, w, b, y = _inputs(shape)
    fused, ref = linear_cross_entropy(h, w, b, y), _reference(h, w, b, y)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-12)
    for a, r in zip(torch.autograd.grad(fused, (h, w, b)), torch.autograd.grad(ref, (h, w, b))):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *a: linear_cross_entropy(*a, y), (h, w, b))


def test_a_scaled_loss_scales_the_gradients():
    h, w, b, y = _inputs((4, 2))
    (g_fused,) = torch.autograd.grad(0.25 * linear_cross_entropy(h, w, b, y), (w,))
    (g_ref,) = torch.autograd.grad(0.25 * _reference(h, w, b, y), (w,))
    torch.testing.assert_close(g_fused, g_ref)


def test_huge_logits_give_a_finite_loss():
    h, w, b, y = _inputs((8,))
    with torch.no_grad():
        w *= 1e3  # exp of the raw logits would overflow float64
    loss = linear_cross_entropy(h, w, b, y)
    assert torch.isfinite(loss)
    torch.testing.assert_close(loss, _reference(h, w, b, y))


def test_float32_matches_and_the_input_is_not_modified():
    h, w, b, y = _inputs((5, 3), vocab=85, hidden=16, dtype=torch.float32)
    before = h.detach().clone()
    torch.testing.assert_close(linear_cross_entropy(h, w, b, y), _reference(h, w, b, y), rtol=1e-5, atol=1e-5)
    assert torch.equal(h.detach(), before)


def test_other_dtypes_and_autocast_take_the_plain_path():
    h, w, b, y = _inputs((4,), dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = linear_cross_entropy(h, w, b, y)
    assert loss.dtype == torch.float32  # the loss is computed in float32 from bfloat16 logits
    torch.testing.assert_close(loss, _reference(h, w, b, y), rtol=0.05, atol=0.05)
    loss.backward()
    assert h.grad is not None and torch.isfinite(h.grad).all()


def test_what_cross_entropy_treats_specially_is_treated_the_same():
    h, w, b, y = _inputs((6,))
    padded = y.clone()
    padded[2] = -100  # F.cross_entropy's ignore_index: left out of the mean
    torch.testing.assert_close(linear_cross_entropy(h, w, b, padded), _reference(h, w, b, padded))
    for bad in (-1, 7):  # outside [0, vocab): an error, as F.cross_entropy's, never a wrapped index
        wrong = y.clone()
        wrong[0] = bad
        with pytest.raises((IndexError, RuntimeError)):
            linear_cross_entropy(h, w, b, wrong)
    torch.testing.assert_close(linear_cross_entropy(h, w, None, y), _reference(h, w, None, y))  # a head without bias
    assert torch.isnan(linear_cross_entropy(h[:0], w, b, y[:0]))  # an empty batch, like F.cross_entropy


def test_states_shared_by_several_targets_count_once_per_target():
    """With rows, h holds distinct states and target i belongs to h[rows[i]]: the same loss and gradients as
    repeating the states, including a state that has the same target twice and a state that has none."""
    h, w, b, _ = _inputs((5,))
    rows = torch.tensor([0, 0, 0, 2, 3, 3, 1, 0])  # state 4 unused
    y = torch.tensor([1, 1, 4, 0, 6, 2, 3, 5])
    fused = linear_cross_entropy(h, w, b, y, rows)
    ref = _reference(h[rows], w, b, y)
    torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-12)
    for a, r in zip(torch.autograd.grad(fused, (h, w, b)), torch.autograd.grad(ref, (h, w, b))):
        torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(lambda *a: linear_cross_entropy(*a, y, rows), (h, w, b))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the plain path takes rows too
        torch.testing.assert_close(linear_cross_entropy(h.float(), w.float(), b.float(), y, rows), ref.float(), rtol=0.05, atol=0.05)
    with pytest.raises(ValueError, match="shaped as targets"):
        linear_cross_entropy(h, w, b, y, rows[:-1])
    for bad in (-1, 5):
        with pytest.raises(IndexError, match="the 5 states"):
            linear_cross_entropy(h, w, b, y, torch.full_like(rows, bad))


def test_the_sum_reduction_matches_cross_entropys():
    h, w, b, y = _inputs((6,))
    for rows in (None, torch.tensor([0, 0, 1, 2, 5, 5])):
        states = h if rows is None else h[rows]
        fused = linear_cross_entropy(h, w, b, y, rows, reduction="sum")
        ref = F.cross_entropy(F.linear(states, w, b), y, reduction="sum")
        torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-12)
        for a, r in zip(torch.autograd.grad(fused, (h, w, b)), torch.autograd.grad(ref, (h, w, b))):
            torch.testing.assert_close(a, r, rtol=1e-10, atol=1e-12)
    ignored = y.clone()
    ignored[1] = -100  # the plain path: F.cross_entropy leaves it out of the sum
    torch.testing.assert_close(
        linear_cross_entropy(h, w, b, ignored, reduction="sum"), F.cross_entropy(F.linear(h, w, b), ignored, reduction="sum")
    )
    with pytest.raises(ValueError, match="unknown reduction"):
        linear_cross_entropy(h, w, b, y, reduction="none")
