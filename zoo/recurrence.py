"""Fast training forms of simple recurrences over characters, as autograd functions with a hand-written backward.

Why: a recurrence written as a Python loop of nn.Linear calls makes autograd record a dozen small
operations per time step and, going backward, compute the weight gradient one time step at a
time. Here the forward loop does one matrix product (accumulated in place) and one in-place
activation per step, and the backward loop only what must be sequential (the gradient flowing to
the previous state); the weight gradients of all time steps become one large matrix product at
the end, which runs near the CPU's peak rate. Exact algebraic savings come with it: each step's
input term is a row of a [vocab, hidden] table (an embedding followed by a linear layer is a
lookup in their product), gathered for all steps at once straight into the output buffer; and
from a zero initial state, the state after t characters depends only on those t characters, so
the first steps are computed once per distinct prefix in the batch, not once per row (in a batch
of 512 windows of English text, ~40 distinct first characters, ~220 first pairs, ~400 triples).

    h_t = act(table[idx[t]] + h_{t-1} @ w_hh.T)                                    elman()
    h_t = tanh(relu(table[idx[t]] + h_{t-1} @ w_in_h.T) @ w_hid.T + b_hid)         relu_tanh()

`idx` is time-major ([T, B]); the functions return the state after every step, [T, B, H], or with
`last_only` the last one, [B, H]. They compute in the dtype of their inputs with autocast off
inside: under mixed precision the caller casts first (`autocast_inputs`).
`tests/test_recurrence.py` checks both against torch's autograd (gradcheck, float64).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

_aten = torch.ops.aten
ACTIVATIONS = ("tanh", "relu")


def autocast_inputs(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The tensors in the autocast dtype when autocast is on for their device (mixed precision), else as they are."""
    device_type = tensors[0].device.type
    if not torch.is_autocast_enabled(device_type):
        return tensors
    dtype = torch.get_autocast_dtype(device_type)
    return tuple(t if not t.is_floating_point() else t.to(dtype) for t in tensors)


def _numpy_can(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64, torch.bfloat16) and x.is_contiguous()


def _numpy_tanh(x: torch.Tensor, out: torch.Tensor) -> None:
    """out = tanh(x) by numpy; bfloat16 (which numpy lacks) through a float32 copy."""
    if x.dtype != torch.bfloat16:
        np.tanh(x.numpy(), out=out.numpy())
        return
    wide = x.float()
    np.tanh(wide.numpy(), out=wide.numpy())
    out.copy_(wide)


def _tanh_(x: torch.Tensor) -> None:
    """tanh in place. On the CPU numpy's tanh is vectorised and ~6x faster than torch 2.13's (measured on an
    AVX-512 machine: 51 vs 340 us for 512 x 256 float32; bfloat16 through float32, 77 vs 228 us); the two agree
    to an ulp or two."""
    if _numpy_can(x):
        _numpy_tanh(x, x)
    else:
        x.tanh_()


class _NumpyTanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.empty_like(x)
        _numpy_tanh(x.detach(), y)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return _aten.tanh_backward(grad, y)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """torch.tanh, differentiable, with numpy's faster tanh on the CPU (see `_tanh_`)."""
    if _numpy_can(x):
        return _NumpyTanh.apply(x)
    return torch.tanh(x)


def _differentiable(act: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation as an autograd-tracked function (for the shared steps, which autograd differentiates)."""
    return tanh if act == "tanh" else torch.relu


def _activate_(x: torch.Tensor, act: str) -> None:
    if act == "tanh":
        _tanh_(x)
    else:
        x.relu_()


def _act_backward(grad: torch.Tensor, out: torch.Tensor, act: str, into: torch.Tensor) -> torch.Tensor:
    """d loss / d pre-activation, from the activation's output alone, written into `into`."""
    if act == "tanh":
        return _aten.tanh_backward.grad_input(grad, out, grad_input=into)
    return _aten.threshold_backward.grad_input(grad, out, 0, grad_input=into)


def _gather(table: torch.Tensor, idx: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """table[idx] for time-major idx [T, B]: [T, B, H], written into `out` (contiguous) or a new buffer to overwrite."""
    out = table.new_empty((*idx.shape, table.shape[1])) if out is None else out
    torch.index_select(table, 0, idx.reshape(-1), out=out.view(-1, table.shape[1]))
    return out


def _table_grad(d: torch.Tensor, idx: torch.Tensor, rows: int) -> torch.Tensor:
    """The gradient of a table whose rows idx were gathered, given the gradient d of the gathered rows."""
    return d.new_zeros(rows, d.shape[-1]).index_add_(0, idx.reshape(-1), d.reshape(-1, d.shape[-1]))


class _Elman(torch.autograd.Function):
    """States k.. of h_t = act(table[idx[t - k]] + h_{t-1} @ w_hh.T), after k given ones (`prefix`, [k, B, H]).

    `prod`, when given, is step k's product h_{k-1} @ w_hh.T, computed by the caller (a table row).
    Returns every state, the prefix included ([k + n, B, H]), or the last ([B, H]).
    """

    @staticmethod
    def forward(ctx, table, idx, w_hh, prefix, prod, act, last_only):
        k, (n, batch), hidden = prefix.shape[0], idx.shape, table.shape[1]
        with torch.autocast(table.device.type, enabled=False):
            hs = prefix.new_empty((k + n, batch, hidden))
            hs[:k].copy_(prefix)
            # The input terms, gathered straight into the output; each step then adds its product in place.
            _gather(table, idx, out=hs[k:])
            w_t = w_hh.t()
            for t in range(k, k + n):
                if t == k and prod is not None:
                    hs[t].add_(prod)
                else:
                    hs[t].addmm_(hs[t - 1], w_t)
                _activate_(hs[t], act)
        ctx.act, ctx.rows, ctx.k, ctx.has_prod, ctx.last_only = act, table.shape[0], k, prod is not None, last_only
        ctx.save_for_backward(idx, hs, w_hh)
        return hs[-1].clone() if last_only else hs

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        idx, hs, w_hh = ctx.saved_tensors
        k, n, hidden = ctx.k, idx.shape[0], hs.shape[2]
        last_only = ctx.last_only  # only the last state was returned: no gradient reaches the others directly
        with torch.autocast(hs.device.type, enabled=False):
            grad_out = grad_out.to(hs.dtype)
            d_pre = hs.new_empty((n, *hs.shape[1:]))  # d loss / d (table[idx[j]] + product) of step k + j
            grad_h = grad_out if last_only else grad_out[-1]
            carry = torch.empty_like(grad_h)
            for t in range(k + n - 1, k - 1, -1):
                _act_backward(grad_h, hs[t], ctx.act, d_pre[t - k])
                if t == k and ctx.has_prod:
                    break  # step k's product came from the caller, who passes its gradient on
                if last_only:
                    grad_h = torch.mm(d_pre[t - k], w_hh, out=carry)
                else:
                    grad_h = torch.addmm(grad_out[t - 1], d_pre[t - k], w_hh, out=carry)
            # The weight gradient of all steps that multiplied by w_hh at once: sum_t d_pre[t].T @ h_{t-1}.
            s = 1 if ctx.has_prod else 0
            grad_w = d_pre[s:].reshape(-1, hidden).t() @ hs[k - 1 + s : -1].reshape(-1, hidden)
            grad_prefix = hs.new_zeros(k, *hs.shape[1:]) if last_only else grad_out[:k].clone()
            if not ctx.has_prod:
                grad_prefix[-1] = grad_h  # the gradient reaching h_{k-1}, from step k and from its own output
            grad_prod = d_pre[0] if ctx.has_prod else None
            grad_table = _table_grad(d_pre, idx, ctx.rows) if ctx.needs_input_grad[0] else None
        return grad_table, None, grad_w, grad_prefix, grad_prod, None, None


class _ReluTanh(torch.autograd.Function):
    """States k.. of h_t = tanh(relu(table[idx[t - k]] + h_{t-1} @ w_in_h.T) @ w_hid.T + b_hid); as _Elman."""

    @staticmethod
    def forward(ctx, table, idx, w_in_h, w_hid, b_hid, prefix, prod, last_only):
        k, n = prefix.shape[0], idx.shape[0]
        with torch.autocast(table.device.type, enabled=False):
            acts = _gather(table, idx)  # the input terms, then overwritten with relu(...) of every step
            hs = prefix.new_empty((k + n, *prefix.shape[1:]))
            hs[:k].copy_(prefix)
            hs[k:].copy_(b_hid)  # the bias; each step adds its product in place
            w_in_t, w_hid_t = w_in_h.t(), w_hid.t()
            for j in range(n):
                if j == 0 and prod is not None:
                    acts[0].add_(prod)
                else:
                    acts[j].addmm_(hs[k + j - 1], w_in_t)
                acts[j].relu_()
                hs[k + j].addmm_(acts[j], w_hid_t)
                _tanh_(hs[k + j])
        ctx.rows, ctx.k, ctx.has_prod, ctx.last_only = table.shape[0], k, prod is not None, last_only
        ctx.save_for_backward(idx, acts, hs, w_in_h, w_hid)
        return hs[-1].clone() if last_only else hs

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        idx, acts, hs, w_in_h, w_hid = ctx.saved_tensors
        k, n = ctx.k, idx.shape[0]
        last_only = ctx.last_only
        with torch.autocast(hs.device.type, enabled=False):
            grad_out = grad_out.to(hs.dtype)
            d_out = hs.new_empty((n, *hs.shape[1:]))  # d loss / d (acts[j] @ w_hid.T + b_hid)
            d_in = torch.empty_like(acts)  # d loss / d (table[idx[j]] + product)
            grad_h = grad_out if last_only else grad_out[-1]
            grad_act = torch.empty_like(acts[0])
            carry = torch.empty_like(grad_h)
            for j in range(n - 1, -1, -1):
                _aten.tanh_backward.grad_input(grad_h, hs[k + j], grad_input=d_out[j])
                torch.mm(d_out[j], w_hid, out=grad_act)
                _aten.threshold_backward.grad_input(grad_act, acts[j], 0, grad_input=d_in[j])
                if j == 0 and ctx.has_prod:
                    break
                if last_only:
                    grad_h = torch.mm(d_in[j], w_in_h, out=carry)
                else:
                    grad_h = torch.addmm(grad_out[k + j - 1], d_in[j], w_in_h, out=carry)
            n_in, n_out = acts.shape[-1], hs.shape[-1]
            grad_w_hid = d_out.reshape(-1, n_out).t() @ acts.reshape(-1, n_in)
            grad_b_hid = d_out.sum((0, 1))
            s = 1 if ctx.has_prod else 0
            grad_w_in_h = d_in[s:].reshape(-1, n_in).t() @ hs[k - 1 + s : -1].reshape(-1, n_out)
            grad_prefix = hs.new_zeros(k, *hs.shape[1:]) if last_only else grad_out[:k].clone()
            if not ctx.has_prod:
                grad_prefix[-1] = grad_h
            grad_prod = d_in[0] if ctx.has_prod else None
            grad_table = _table_grad(d_in, idx, ctx.rows) if ctx.needs_input_grad[0] else None
        return grad_table, None, grad_w_in_h, grad_w_hid, grad_b_hid, grad_prefix, grad_prod, None


# A step is computed once per distinct prefix while it has at most this many per row: fewer rows save matrix
# products, the bookkeeping costs a little. Measured on batches of 512 of Nietzsche: limits from 0.5 to 0.95
# gave char-concat and char-seq the same speed within noise; sharing every step (1.0) made char-seq 10% slower.
SHARE_LIMIT = 0.8


def prefix_levels(idx: torch.Tensor, vocab_size: int) -> list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]]:
    """The distinct prefixes of the rows of time-major idx ([T, B]), level by level: level t holds those of t + 1
    characters as (their last character, their parent's index at level t - 1 (None at level 0), each row's prefix).

    Level 0 always; then while a level has at most SHARE_LIMIT distinct prefixes per row, and never the last step.
    Off the CPU, level 0 alone, over the whole vocabulary: finding distinct values there waits for the device.
    """
    if idx.device.type != "cpu":
        return [(torch.arange(vocab_size, device=idx.device), None, idx[0])]
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= vocab_size):
        raise IndexError("index out of range in self")  # as an embedding lookup says; the keys below would alias
    chars, rows = torch.unique(idx[0], return_inverse=True)
    levels = [(chars, None, rows)]
    for t in range(1, idx.shape[0] - 1):
        keys, inverse = torch.unique(rows * vocab_size + idx[t], return_inverse=True)
        if len(keys) > SHARE_LIMIT * idx.shape[1]:
            break
        levels.append((keys % vocab_size, keys // vocab_size, inverse))
        rows = inverse
    return levels


class Split(NamedTuple):
    """The states of a recurrence from the zero state, its first k steps kept once per distinct prefix.

    `shared[t]` = (rows, states) for step t < k: row b's state is states[rows[b]] ([U_t, H], U_t <= B).
    `rest`: the states of steps k.. per row, [T - k, B, H].
    """

    shared: list[tuple[torch.Tensor, torch.Tensor]]
    rest: torch.Tensor

    def full(self) -> torch.Tensor:
        """Every state of every row, [T, B, H]."""
        gathered = [F.embedding(rows, states)[None] for rows, states in self.shared]
        return torch.cat([*gathered, self.rest]) if self.rest.shape[0] else torch.cat(gathered)


def _shared_steps(
    table: torch.Tensor, idx: torch.Tensor, w_prod: torch.Tensor, state: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor | None]:
    """The first k steps from the zero state, once per distinct prefix (`prefix_levels`), as `Split.shared`; a
    step's state is `state(table[c] + h_prev @ w_prod.T)`, without the product at the first step.

    Also step k's product h_{k-1} @ w_prod.T per row ([B, H]), or None when the k steps are all the steps.
    """
    shared: list[tuple[torch.Tensor, torch.Tensor]] = []
    for chars, parents, rows in prefix_levels(idx, table.shape[0]):
        pre = F.embedding(chars, table)
        if parents is not None:
            # The product once per distinct parent, then one row per child prefix.
            pre = pre + F.embedding(parents, shared[-1][1] @ w_prod.t())
        shared.append((rows, state(pre)))
    if len(shared) == idx.shape[0]:
        return shared, None
    rows, states = shared[-1]
    return shared, F.embedding(rows, states @ w_prod.t())


def _no_states(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return table.new_empty((0, idx.shape[1], table.shape[1]))


def elman_split(table: torch.Tensor, idx: torch.Tensor, w_hh: torch.Tensor, act: str = "tanh") -> Split:
    """`elman` from the zero state, every step, as a `Split`: for a caller that can use the shared steps as they are
    (char-seq's output layer and loss)."""
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown nonlinearity {act!r} (known: {', '.join(ACTIVATIONS)})")
    idx = idx.contiguous()
    shared, prod = _shared_steps(table, idx, w_hh, _differentiable(act))
    if prod is None:
        return Split(shared, _no_states(table, idx))
    return Split(shared, _Elman.apply(table, idx[len(shared) :], w_hh, _no_states(table, idx), prod, act, False))


def elman(
    table: torch.Tensor,
    idx: torch.Tensor,
    w_hh: torch.Tensor,
    h0: torch.Tensor | None = None,
    act: str = "tanh",
    last_only: bool = False,
) -> torch.Tensor:
    """The states of h_t = act(table[idx[t]] + h_{t-1} @ w_hh.T) from h_{-1} = h0 (None: zeros).

    table [V, H], idx [T, B] (time-major), w_hh [H, H], h0 [B, H]. Returns [T, B, H], or [B, H] with `last_only`.
    """
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown nonlinearity {act!r} (known: {', '.join(ACTIVATIONS)})")
    idx = idx.contiguous()
    if h0 is not None:
        hs = _Elman.apply(table, idx, w_hh, h0.to(table.dtype)[None], None, act, last_only)
        return hs if last_only else hs[1:]
    if not last_only:
        return elman_split(table, idx, w_hh, act).full()
    shared, prod = _shared_steps(table, idx, w_hh, _differentiable(act))
    if prod is None:  # a single step, shared
        rows, states = shared[-1]
        return F.embedding(rows, states)
    return _Elman.apply(table, idx[len(shared) :], w_hh, _no_states(table, idx), prod, act, True)


def relu_tanh(
    table: torch.Tensor,
    idx: torch.Tensor,
    w_in_h: torch.Tensor,
    w_hid: torch.Tensor,
    b_hid: torch.Tensor,
    h0: torch.Tensor | None = None,
    last_only: bool = False,
) -> torch.Tensor:
    """The states of h_t = tanh(relu(table[idx[t]] + h_{t-1} @ w_in_h.T) @ w_hid.T + b_hid) from h_{-1} = h0 (None: zeros).

    Shapes as `elman`'s; w_in_h [H_in, H], w_hid [H, H_in], b_hid [H].
    """
    idx = idx.contiguous()
    if h0 is not None:
        hs = _ReluTanh.apply(table, idx, w_in_h, w_hid, b_hid, h0.to(table.dtype)[None], None, last_only)
        return hs if last_only else hs[1:]

    def state(pre: torch.Tensor) -> torch.Tensor:
        return tanh(torch.addmm(b_hid, torch.relu(pre), w_hid.t()))

    shared, prod = _shared_steps(table, idx, w_in_h, state)
    if prod is None:  # a single step, shared
        rows, states = shared[-1]
        return F.embedding(rows, states) if last_only else Split(shared, _no_states(table, idx)).full()
    rest = _ReluTanh.apply(table, idx[len(shared) :], w_in_h, w_hid, b_hid, _no_states(table, idx), prod, last_only)
    return rest if last_only else Split(shared, rest).full()
