"""zoo.recurrence (the fast training form of the lesson models) against torch's autograd and the lesson's code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zoo import registry
from zoo.model import build
from zoo.recurrence import SHARE_LIMIT, elman, elman_split, prefix_levels, relu_tanh

LESSON = ["char3", "char-loop", "char-concat", "char-rnn", "char-seq", "char-seq-identity"]
V, B, H = 7, 3, 5


def _inputs(steps: int, with_h0: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(V, H, generator=g, dtype=torch.float64, requires_grad=True)
    idx = torch.randint(0, V, (steps, B), generator=g)
    w = (0.5 * torch.randn(H, H, generator=g, dtype=torch.float64)).requires_grad_()
    h0 = torch.randn(B, H, generator=g, dtype=torch.float64, requires_grad=True) if with_h0 else None
    return table, idx, w, h0


def _elman_by_autograd(table, idx, w, h0, act):
    f = torch.tanh if act == "tanh" else torch.relu
    h = torch.zeros(idx.shape[1], w.shape[0], dtype=table.dtype) if h0 is None else h0
    states = []
    for t in range(idx.shape[0]):
        h = f(table[idx[t]] + h @ w.t())
        states.append(h)
    return torch.stack(states)


@pytest.mark.parametrize("steps", [1, 2, 3, 6])
@pytest.mark.parametrize("act", ["tanh", "relu"])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("last_only", [False, True])
def test_elman_matches_autograd_and_passes_gradcheck(steps, act, with_h0, last_only):
    table, idx, w, h0 = _inputs(steps, with_h0)
    out = elman(table, idx, w, h0, act=act, last_only=last_only)
    ref = _elman_by_autograd(table, idx, w, h0, act)
    torch.testing.assert_close(out, ref[-1] if last_only else ref)
    args = (table, w) if h0 is None else (table, w, h0)
    assert torch.autograd.gradcheck(lambda *a: elman(a[0], idx, a[1], a[2] if len(a) > 2 else None, act, last_only), args)


@pytest.mark.parametrize("steps", [1, 2, 3, 6])
@pytest.mark.parametrize("with_h0", [False, True])
@pytest.mark.parametrize("last_only", [False, True])
def test_relu_tanh_matches_autograd_and_passes_gradcheck(steps, with_h0, last_only):
    table, idx, w_in, h0 = _inputs(steps, with_h0, seed=1)
    g = torch.Generator().manual_seed(2)
    w_hid = (0.5 * torch.randn(H, H, generator=g, dtype=torch.float64)).requires_grad_()
    b = torch.randn(H, generator=g, dtype=torch.float64, requires_grad=True)
    h = torch.zeros(B, H, dtype=torch.float64) if h0 is None else h0
    states = []
    for t in range(steps):
        h = torch.tanh(F.linear(torch.relu(table[idx[t]] + h @ w_in.t()), w_hid, b))
        states.append(h)
    ref = torch.stack(states)
    out = relu_tanh(table, idx, w_in, w_hid, b, h0, last_only=last_only)
    torch.testing.assert_close(out, ref[-1] if last_only else ref)

    def f(table, w_in, w_hid, b, *h0):
        return relu_tanh(table, idx, w_in, w_hid, b, h0[0] if h0 else None, last_only=last_only)

    assert torch.autograd.gradcheck(f, (table, w_in, w_hid, b) + ((h0,) if h0 is not None else ()))


def _rows_with_shared_prefixes(kind: str, rows: int, steps: int, vocab: int, seed: int = 0) -> torch.Tensor:
    """Batch-first character rows: "random" (little sharing), "few" (3 letters: early prefixes shared),
    "repeated" (4 distinct rows, each 3 times: every prefix shared)."""
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        return torch.randint(0, vocab, (rows, steps), generator=g)
    if kind == "few":
        return vocab - 1 - torch.randint(0, 3, (rows, steps), generator=g)
    distinct = torch.randint(0, vocab, (4, steps), generator=g)
    return distinct.repeat(-(-rows // 4), 1)[:rows]


def test_prefix_levels_describe_the_distinct_prefixes():
    x = torch.tensor([[1, 2, 3, 4], [1, 2, 5, 4], [1, 6, 3, 4], [1, 2, 3, 0], [2, 2, 3, 4]] * 2)  # 10 rows, 5 distinct
    idx = x.t().contiguous()
    levels = prefix_levels(idx, 7)
    assert len(levels) == 3  # every step but the last: at most 4 distinct prefixes of 10 rows at each
    for t, (chars, _, rows) in enumerate(levels):
        # Rebuild each row's prefix from the levels: the same as the row's first t + 1 characters.
        for b in range(x.shape[0]):
            prefix, u = [], int(rows[b])
            for level in range(t, -1, -1):
                prefix.append(int(levels[level][0][u]))
                if level:
                    u = int(levels[level][1][u])
            assert prefix[::-1] == x[b, : t + 1].tolist()
        assert len(chars) == len({tuple(r) for r in x[:, : t + 1].tolist()})
    assert levels[0][1] is None


def test_prefix_levels_stop_when_a_step_has_few_shared_prefixes():
    x = _rows_with_shared_prefixes("random", 40, 6, vocab=85)
    levels = prefix_levels(x.t().contiguous(), 85)
    assert len(levels) == 1  # 40 random rows: the first pairs are (nearly) all distinct
    assert len(levels[0][0]) <= min(40, 85)
    x = _rows_with_shared_prefixes("few", 40, 6, vocab=85)
    for chars, _, _ in prefix_levels(x.t().contiguous(), 85)[1:]:
        assert len(chars) <= SHARE_LIMIT * 40


def test_an_index_outside_the_table_is_an_error_even_in_shared_steps():
    table, idx, w, _ = _inputs(4, False)
    idx[1, 0] = V  # the rows' keys would alias another prefix if this were not checked
    with pytest.raises(IndexError):
        elman(table, idx, w)


@pytest.mark.parametrize("kind", ["few", "repeated"])
@pytest.mark.parametrize("last_only", [False, True])
def test_shared_prefixes_give_the_same_states_and_gradients(kind, last_only):
    table, _, w, _ = _inputs(5, False)
    idx = _rows_with_shared_prefixes(kind, 12, 5, V).t().contiguous()
    assert len(prefix_levels(idx, V)) > 1  # the case under test: more than the first step is shared
    ref = _elman_by_autograd(table, idx, w, None, "tanh")
    torch.testing.assert_close(elman(table, idx, w, last_only=last_only), ref[-1] if last_only else ref)
    assert torch.autograd.gradcheck(lambda t, w: elman(t, idx, w, last_only=last_only), (table, w))
    split = elman_split(table, idx, w)
    torch.testing.assert_close(split.full(), ref)
    for t, (rows, states) in enumerate(split.shared):
        torch.testing.assert_close(states[rows], ref[t])
        assert len(states) < idx.shape[1]  # once per distinct prefix
    torch.testing.assert_close(split.rest, ref[len(split.shared) :])
    g = torch.Generator().manual_seed(5)
    w_hid = (0.5 * torch.randn(H, H, generator=g, dtype=torch.float64)).requires_grad_()
    b = torch.randn(H, generator=g, dtype=torch.float64, requires_grad=True)

    def f(table, w_in, w_hid, b):
        return relu_tanh(table, idx, w_in, w_hid, b, last_only=last_only)

    h, states = torch.zeros(idx.shape[1], H, dtype=torch.float64), []
    for t in range(idx.shape[0]):
        h = torch.tanh(F.linear(torch.relu(table[idx[t]] + h @ w.t()), w_hid, b))
        states.append(h)
    torch.testing.assert_close(f(table, w, w_hid, b), states[-1] if last_only else torch.stack(states))
    assert torch.autograd.gradcheck(f, (table, w, w_hid, b))


def test_unknown_nonlinearity_is_refused():
    table, idx, w, _ = _inputs(2, False)
    with pytest.raises(ValueError, match="nonlinearity"):
        elman(table, idx, w, act="sigmoid")


def _lesson_model(name: str):
    """The model in float64, seeded: the two forms are compared to 1e-10."""
    torch.manual_seed(0)
    return build(registry.get_model(name), 85).double()


def _assert_same_loss_and_gradients(model, fast: torch.Tensor, lesson: torch.Tensor) -> None:
    torch.testing.assert_close(fast, lesson, rtol=1e-10, atol=1e-10)
    params = list(model.parameters())
    for p, a, b in zip(model.named_parameters(), torch.autograd.grad(fast, params), torch.autograd.grad(lesson, params)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"gradient of {p[0]}")


@pytest.mark.parametrize("kind", ["random", "few", "repeated"])
@pytest.mark.parametrize("name", LESSON)
def test_fast_forward_equals_the_lessons_code_with_the_same_gradients(name, kind):
    """forward (zoo.recurrence, tables) and lesson_forward (the lesson's code) are the same function."""
    model = _lesson_model(name)
    x = _rows_with_shared_prefixes(kind, 12, registry.get_model(name).batching.length, 85)
    fast, lesson = model(x), model.lesson_forward(x)
    torch.testing.assert_close(fast, lesson, rtol=1e-10, atol=1e-10)
    _assert_same_loss_and_gradients(model, fast.square().sum(), lesson.square().sum())


@pytest.mark.parametrize("name", LESSON)
def test_fast_forward_under_cpu_autocast_runs_in_bfloat16(name):
    """`zoo train --amp` on the CPU: the fast forms in bf16 stay near the float32 function, values and gradients."""
    spec = registry.get_model(name)
    torch.manual_seed(0)
    model = build(spec, 85)
    x = _rows_with_shared_prefixes("few", 64, spec.batching.length, 85)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), model(x), rtol=0.05, atol=0.05)
    torch.testing.assert_close(out.float(), model.lesson_forward(x), rtol=0.05, atol=0.05)
    grads = torch.autograd.grad(out.float().square().mean(), list(model.parameters()))
    exact = torch.autograd.grad(model(x).square().mean(), list(model.parameters()))
    for g, e in zip(grads, exact, strict=True):
        assert torch.isfinite(g).all()
        assert (g - e).norm() <= 0.05 * e.norm() + 1e-6


def test_numpy_tanh_in_bfloat16_rounds_as_torch_does(monkeypatch):
    from zoo.recurrence import _tanh_, tanh

    def not_torchs(*args, **kwargs):
        raise AssertionError("bf16 tanh on the CPU must take the NumPy path")

    monkeypatch.setattr(torch.Tensor, "tanh_", not_torchs)
    monkeypatch.setattr(torch, "tanh", not_torchs)
    x = torch.randn(300, 257).bfloat16()
    y = x.clone()
    _tanh_(y)
    assert y.dtype == torch.bfloat16
    import numpy as np

    torch.testing.assert_close(y, torch.from_numpy(np.tanh(x.float().numpy())).bfloat16(), rtol=0, atol=0)  # rounded once
    z = tanh(x.clone().requires_grad_())
    torch.testing.assert_close(z.detach(), y, rtol=0, atol=0)
    monkeypatch.undo()
    torch.testing.assert_close(y, torch.tanh(x), rtol=2**-7, atol=0)  # torch's own, to a bf16 ulp


def test_bench_plain_models_start_from_zoos_weights_and_compute_the_same():
    """bench/plain_models.py (the plain loop's baseline) must stay the lesson's architectures, weight for weight."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    try:
        from plain_models import plain_model
    finally:
        sys.path.pop(0)
    for name in LESSON:
        spec = registry.get_model(name)
        torch.manual_seed(3)
        zoo_model = build(spec, 85)
        torch.manual_seed(3)
        plain = plain_model(spec.builder.partition(":")[2], 85, **spec.hparams)
        zs, ps = zoo_model.state_dict(), plain.state_dict()
        assert list(zs) == list(ps), name
        assert all(torch.equal(zs[k], ps[k]) for k in zs), name
        x = torch.randint(0, 85, (4, spec.batching.length))
        torch.testing.assert_close(zoo_model(x), plain(x), rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("kind", ["random", "few", "repeated"])
@pytest.mark.parametrize("name", LESSON)
def test_forward_with_targets_is_the_lessons_loss_with_the_same_gradients(name, kind):
    """model(x, targets=y), what the trainer calls, equals cross-entropy on the lesson's code, gradients included."""
    from zoo.model import uses_fused_loss

    spec = registry.get_model(name)
    model = _lesson_model(name)
    assert uses_fused_loss(model)
    x = _rows_with_shared_prefixes(kind, 12, spec.batching.length, 85)
    # Targets differ between rows that share a state: the loss must count each target, not each state.
    y = torch.randint(0, 85, x.shape if spec.batching.targets == "every" else x.shape[:1])
    lesson = F.cross_entropy(model.lesson_forward(x).reshape(-1, 85), y.reshape(-1))
    _assert_same_loss_and_gradients(model, model(x, targets=y), lesson)


def test_char_seq_loss_with_ignored_targets_is_the_mean_over_the_others():
    """-100 targets (F.cross_entropy's ignore_index) change how many targets each step has: still one mean."""
    model = _lesson_model("char-seq")
    x = _rows_with_shared_prefixes("few", 12, registry.get_model("char-seq").batching.length, 85)
    y = torch.randint(0, 85, x.shape)
    y[:3, :2] = -100
    y[:, 5] = -100  # a whole step ignored
    lesson = F.cross_entropy(model.lesson_forward(x).reshape(-1, 85), y.reshape(-1))
    _assert_same_loss_and_gradients(model, model(x, targets=y), lesson)
