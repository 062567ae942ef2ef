"""The output layer and the cross-entropy loss as one autograd function, for training on the CPU.

Why: written as `F.cross_entropy(F.linear(h, w, b), y)`, autograd records the logits, their
log-softmax, the loss, and going backward the gradient of each in turn, in [rows, vocab] layout
where every softmax reduces over a short row of ~85 classes. Here the forward computes the logits
class-major ([vocab, rows]: the faster layout for this matrix product, and one where the softmax
reductions run along long contiguous rows), turns them into the loss and, in the same buffer,
into the gradient of the logits, softmax - onehot(y), so the backward is the two matrix products
and a sum. Same loss, same gradients (tests/test_losses.py checks both in float64).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias, targets, rows, divisor):
        n = targets.numel()
        h2 = h.reshape(-1, h.shape[-1])
        with torch.autocast("cpu", enabled=False):
            grad = torch.addmm(bias[:, None], weight, h2.t())  # the logits, [vocab, states]
            g = grad.numpy()
            t = targets.reshape(-1).numpy()
            cols = np.arange(n) if rows is None else rows.numpy()  # each target's state
            g -= g.max(axis=0)  # shifted so exp cannot overflow; the softmax is unchanged
            picked = g[t, cols]
            np.exp(g, out=g)
            total = g.sum(axis=0)
            # divisor: n for the mean, 1 for the sum; d loss / d logits = (softmax - onehot) / divisor
            if rows is None:
                loss = float(np.sum(np.log(total) - picked) / divisor)
                g *= 1.0 / (total * divisor)
                g[t, cols] -= 1.0 / divisor
            else:
                # A state shared by several targets: its softmax counts once per target.
                uses = np.bincount(cols, minlength=g.shape[1])
                loss = float((np.log(total) @ uses - picked.sum()) / divisor)
                g *= uses / (total * divisor)
                g -= np.bincount(t * g.shape[1] + cols, minlength=g.size).reshape(g.shape) / divisor
        ctx.save_for_backward(h2, weight, grad)
        ctx.h_shape = h.shape
        return h.new_tensor(loss)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        h2, weight, grad = ctx.saved_tensors
        with torch.autocast("cpu", enabled=False):
            if grad_loss.item() != 1.0:  # scaled (e.g. a weighted sum of losses); 1.0 from a plain .backward()
                grad = grad * grad_loss.to(grad.dtype)
            grad_h = (grad.t() @ weight).view(ctx.h_shape) if ctx.needs_input_grad[0] else None
            grad_w = grad @ h2 if ctx.needs_input_grad[1] else None
            grad_b = grad.sum(1) if ctx.needs_input_grad[2] else None
        return grad_h, grad_w, grad_b, None, None, None


def linear_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    rows: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """`F.cross_entropy(F.linear(h, weight, bias), targets, reduction=reduction)`, computed faster on the CPU.

    `reduction` "mean" (over every counted target) or "sum": sums of several calls over one total count
    make one mean, whatever each call's share of ignored targets.

    h [..., hidden] pairs position for position with targets [...] (class indices); weight [vocab, hidden].
    With `rows` (as targets' shape), h is [states, hidden] and target i is that of state h[rows[i]]: states that
    several targets share (rows with the same prefix) are multiplied once.
    Elsewhere (other devices, half precision, no bias) it is that expression, at least in float32, and so are the
    cases F.cross_entropy treats specially: an empty batch, and targets outside [0, vocab) (its ignore_index
    -100 is ignored, others are errors).
    """
    fast = (
        bias is not None
        and h.device.type == "cpu"
        and h.dtype in (torch.float32, torch.float64)
        and weight.dtype == h.dtype == bias.dtype
        and not torch.is_autocast_enabled("cpu")
        and targets.numel() > 0
        and 0 <= int(targets.min())
        and int(targets.max()) < weight.shape[0]
    )
    if reduction not in ("mean", "sum"):
        raise ValueError(f"unknown reduction {reduction!r} (known: mean, sum)")
    if rows is not None:
        if rows.shape != targets.shape or h.dim() != 2:
            raise ValueError(f"rows {tuple(rows.shape)} must be shaped as targets {tuple(targets.shape)}, and h [states, hidden]")
        if rows.numel() and (int(rows.min()) < 0 or int(rows.max()) >= h.shape[0]):
            raise IndexError(f"rows must index the {h.shape[0]} states of h")
    if fast:
        divisor = targets.numel() if reduction == "mean" else 1
        rows = None if rows is None else rows.reshape(-1).contiguous()
        return _LinearCrossEntropy.apply(h, weight, bias, targets.contiguous(), rows, divisor)
    logits = F.linear(h, weight, bias)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # half precision: the loss in float32
    if rows is not None:
        logits = logits[rows]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction=reduction)
