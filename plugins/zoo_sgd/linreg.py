"""linreg-sgd: the model, the lesson's three ways to fit it, and its pictures.

    lin(a, b, x) = a*x + b,  loss = mean((lin(a, b, x) - y)^2)

The gradients by hand (the lesson's `upd()`): d loss / d b = mean(2(y_hat - y)),
d loss / d a = mean(x * 2(y_hat - y)). `hand_gradients` computes them with nothing but
arithmetic and `.mean()`, so it runs on NumPy arrays (the manual method) and on torch
tensors alike (the test compares it with autograd's on the same numbers).

Defaults (every step of "manual" and "autograd" sees all the training rows: one epoch):
  manual    the lesson's animation: from (a, b) = (-1, 1), lr 0.01, 1,200 steps (40 frames x 30);
  autograd  the lesson's loop: a, b ~ N(0, 1), 10,000 steps, lr 0.01 (the lesson's 1e-3 stops
            at a = 3.4: too slow along the valley where a and b trade off);
  optim     torch.optim.SGD, minibatches of 100, lr 0.1, 10 epochs (the spec's recipe).
`--epochs N` sets the steps, `--lr` the rate, `--max-steps` caps the steps.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.errors import ZooError, ZooWarning
from zoo_sgd import A, B

METHOD_DEFAULTS = {
    "manual": {"lr": 0.01, "steps": 1200},
    "autograd": {"lr": 0.01, "steps": 10_000},
}
MANUAL_START = (-1.0, 1.0)  # the lesson's a_guess, b_guess
FRAMES = 40  # the lesson's animation: 40 frames
SHOWN_POINTS = 50  # the lesson's picture: 50 points
NOISE_FLOOR = 0.09  # the variance of 0.1*N(0, 3): the least a fitted line can reach


class LinReg(nn.Module):
    """y = a*x + b, with a and b drawn from N(0, 1) as the lesson's autograd part did; x is [rows, 1]."""

    def __init__(self, n_cont: int = 1) -> None:
        super().__init__()
        if n_cont != 1:
            raise ValueError(f"linreg-sgd fits one input column, got {n_cont}")
        self.a = nn.Parameter(torch.randn(1))
        self.b = nn.Parameter(torch.randn(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lin(self.a, self.b, x[:, 0])

    def describe(self) -> str:
        return f"a = {self.a.item():.4f}, b = {self.b.item():.4f} (the data's line: a = {A:g}, b = {B:g})"


def lin(a: Any, b: Any, x: Any) -> Any:
    return a * x + b


def mse(y_hat: Any, y: Any) -> Any:
    return ((y_hat - y) ** 2).mean()


def hand_gradients(a: Any, b: Any, x: Any, y: Any) -> tuple[Any, Any]:
    """(d loss / d a, d loss / d b) of the mean squared error, derived by hand (the lesson's upd())."""
    dydb = 2 * (lin(a, b, x) - y)
    dyda = x * dydb
    return dyda.mean(), dydb.mean()


def autograd_gradients(a: float, b: float, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """The same gradients by autograd: parameters with requires_grad, loss.backward()."""
    ta = torch.tensor(float(a), dtype=x.dtype, requires_grad=True)
    tb = torch.tensor(float(b), dtype=x.dtype, requires_grad=True)
    mse(lin(ta, tb, x), y).backward()
    return ta.grad.item(), tb.grad.item()


# --- the three methods --------------------------------------------------------------------------------------


def validate_options(options: dict[str, Any]) -> None:
    """Called by zoo before the run directory is written."""
    if options["method"] not in (*METHOD_DEFAULTS, "optim"):
        raise ZooError(f"--method {options['method']}: unknown (known: manual, autograd, optim)")
    animate = options.get("animate")
    if animate and not str(animate).lower().endswith(".gif"):
        raise ZooError(f"--animate {animate}: give a .gif path")
    if animate:  # found out now, not after the training it would follow
        folder = Path(animate).expanduser().parent
        existing = next(p for p in (folder, *folder.parents) if p.exists())  # animate_fit makes the rest
        try:
            tempfile.TemporaryFile(dir=existing).close()  # makes no folder: the run may still be refused
        except OSError as exc:
            raise ZooError(f"--animate {animate}: cannot write to {folder} ({exc.strerror or exc})") from None


def fit(ctx: Any) -> list[dict[str, float]]:
    """linreg-sgd's fit (ModelSpec.fit): one of the lesson's three methods, then the pictures."""
    validate_options(ctx.options)
    method = ctx.options["method"]
    animate = ctx.options.get("animate")
    x_trn, y_trn = (t.double() for t in ctx.data.train.all())
    x_val, y_val = (t.double() for t in ctx.data.val.all())
    x_trn, x_val = x_trn[:, 0], x_val[:, 0]
    if method == "optim":
        path: list[tuple[float, float]] = []
        history = ctx.run_trainer(_Recording(ctx.data.train, ctx.model, path))
        path.append(_ab(ctx.model))
        losses = [float(mse(lin(a, b, x_trn), y_trn)) for a, b in path]
    else:
        defaults = METHOD_DEFAULTS[method]
        lr = ctx.given.get("lr") or defaults["lr"]
        steps = ctx.given.get("epochs") or defaults["steps"]
        if ctx.given.get("max_steps"):
            steps = min(steps, ctx.given["max_steps"])
        loop = _manual if method == "manual" else _autograd
        budget = ctx.given.get("max_seconds")  # --budget: stop at the first step past it, as the trainer does
        with np.errstate(over="ignore", invalid="ignore"):  # a diverging fit is reported below, not warned about
            history, path, losses = loop(ctx, x_trn, y_trn, x_val, y_val, lr, steps, budget)
        if not all(math.isfinite(v) for v in path[-1]):  # as the trainer does for --method optim
            raise ZooError(f"the fit diverged (a, b became {path[-1][0]}, {path[-1][1]}) at lr {lr:g}; try a lower --lr")
        with torch.no_grad():
            ctx.model.a.fill_(path[-1][0])
            ctx.model.b.fill_(path[-1][1])
        _plot_loss(ctx.out_dir / "loss.png", losses, f"linreg-sgd ({method})")
    ls_a, ls_b = np.polyfit(x_trn.numpy(), y_trn.numpy(), 1)
    ctx.say(f"fitted a = {path[-1][0]:.4f}, b = {path[-1][1]:.4f}; least squares on the same rows: a = {ls_a:.4f}, b = {ls_b:.4f}")
    if animate:
        gif = Path(animate).expanduser()
        try:
            animate_fit(gif, x_trn.numpy(), y_trn.numpy(), path, losses, method)
        except ZooError as exc:  # the fit is done and worth keeping: say what failed, and let zoo save the run
            warnings.warn(str(exc), ZooWarning, stacklevel=2)
            return history
        loss_png = gif.with_name(gif.stem + "-loss.png")
        _plot_loss(loss_png, losses, f"linreg-sgd ({method})")
        ctx.say(f"animation: {gif}; loss curve: {loss_png}")
    return history


def _ab(model: nn.Module) -> tuple[float, float]:
    return model.a.item(), model.b.item()


class _Recording:
    """The trainer's batches, noting (a, b) before every step (for the animation of the optim method)."""

    def __init__(self, batches: Any, model: nn.Module, path: list[tuple[float, float]]) -> None:
        self.batches, self.model, self.path = batches, model, path

    def __len__(self) -> int:
        return len(self.batches)

    @property
    def rows(self) -> int:
        return self.batches.rows

    def epoch(self, seed: int = 0, epoch: int = 0, start_step: int = 0, **kwargs):
        for batch in self.batches.epoch(seed, epoch, start_step, **kwargs):
            self.path.append(_ab(self.model))
            yield batch


def _every(steps: int) -> int:
    return max(1, steps // 10)


def _header(ctx: Any, method: str, lr: float, steps: int, rows: int) -> None:
    ctx.say(f"{method}: {steps:,} steps of lr {lr:g}, each over all {rows:,} training rows")
    ctx.say(f"{'step':>6}  {'loss':>9}  {'val_loss':>9}  {'a':>8}  {'b':>8}")


def _row(ctx: Any, history: list, step: int, lr: float, loss: float, val: float, a: float, b: float, t0: float) -> None:
    ctx.say(f"{step:>6}  {loss:>9.4f}  {val:>9.4f}  {a:>8.4f}  {b:>8.4f}")
    history.append({"epoch": step, "lr": lr, "trn_loss": loss, "val_loss": val, "a": a, "b": b, "seconds": time.perf_counter() - t0})


def _late(t0: float, budget: float | None) -> bool:
    return budget is not None and time.perf_counter() - t0 >= budget


def _manual(ctx, x, y, x_val, y_val, lr, steps, budget=None):
    """The lesson's upd() in NumPy, from its guess (a, b) = (-1, 1)."""
    x, y, x_val, y_val = (t.numpy() for t in (x, y, x_val, y_val))
    a, b = MANUAL_START
    path, losses, history = [(a, b)], [], []
    _header(ctx, "manual (NumPy, gradients by hand)", lr, steps, len(x))
    t0 = time.perf_counter()
    for t in range(steps):
        if _late(t0, budget):
            break
        loss = float(mse(lin(a, b, x), y))
        losses.append(loss)
        if t % _every(steps) == 0:
            _row(ctx, history, t, lr, loss, float(mse(lin(a, b, x_val), y_val)), a, b, t0)
        da, db = hand_gradients(a, b, x, y)
        a -= lr * float(da)
        b -= lr * float(db)
        path.append((a, b))
    losses.append(float(mse(lin(a, b, x), y)))
    _row(ctx, history, len(path) - 1, lr, losses[-1], float(mse(lin(a, b, x_val), y_val)), a, b, t0)
    return history, path, losses


def _autograd(ctx, x, y, x_val, y_val, lr, steps, budget=None):
    """The lesson's loop: a, b with requires_grad (from the model's seeded N(0, 1) start), backward, update, zero."""
    a = ctx.model.a.detach().double().clone().requires_grad_(True)
    b = ctx.model.b.detach().double().clone().requires_grad_(True)
    path, losses, history = [(a.item(), b.item())], [], []
    _header(ctx, "autograd (loss.backward(), manual update)", lr, steps, len(x))
    t0 = time.perf_counter()
    for t in range(steps):
        if _late(t0, budget):
            break
        loss = mse(lin(a, b, x), y)
        losses.append(loss.item())
        if t % _every(steps) == 0:
            with torch.no_grad():
                val = mse(lin(a, b, x_val), y_val).item()
            _row(ctx, history, t, lr, losses[-1], val, a.item(), b.item(), t0)
        loss.backward()
        with torch.no_grad():
            a -= lr * a.grad
            b -= lr * b.grad
            a.grad.zero_()
            b.grad.zero_()
        path.append((a.item(), b.item()))
    with torch.no_grad():
        losses.append(mse(lin(a, b, x), y).item())
        val = mse(lin(a, b, x_val), y_val).item()
    _row(ctx, history, len(path) - 1, lr, losses[-1], val, a.item(), b.item(), t0)
    return history, path, losses


# --- pictures ------------------------------------------------------------------------------------------------


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ZooError("pictures need matplotlib and Pillow: pip install 'lesson6-zoo[plot]'") from None
    return plt


def _plot_loss(path: Path, losses: list[float], title: str) -> None:
    """The training loss at every step, on a log scale, with the noise floor."""
    try:
        plt = _pyplot()
    except ZooError:
        return
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(range(len(losses)), losses, label="training MSE")
    ax.axhline(NOISE_FLOOR, color="grey", ls="--", lw=1, label=f"noise floor {NOISE_FLOOR}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("mean squared error")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _save(fig: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp)
    os.replace(tmp, path)


def frame_steps(n_steps: int, frames: int = FRAMES) -> list[int]:
    """The steps the animation shows: `frames` + 1 evenly spaced from the start to the end (the lesson: every 30th)."""
    return sorted({round(k * n_steps / frames) for k in range(frames + 1)})


def animate_fit(path: Path, x: Any, y: Any, trajectory: list[tuple[float, float]], losses: list[float], method: str) -> Path:
    """The lesson's animation: 50 of the points, and the line at evenly spaced steps, as a GIF (Pillow)."""
    plt = _pyplot()
    from matplotlib import animation

    steps = frame_steps(len(trajectory) - 1)
    xs = np.array([0.0, 1.0])
    ends = np.array([[lin(a, b, 0.0), lin(a, b, 1.0)] for a, b in (trajectory[s] for s in steps)])
    lo = min(float(y[:SHOWN_POINTS].min()), float(ends.min()))
    hi = max(float(y[:SHOWN_POINTS].max()), float(ends.max()))
    pad = 0.05 * (hi - lo)
    fig, ax = plt.subplots(figsize=(5, 4), dpi=80)
    ax.scatter(x[:SHOWN_POINTS], y[:SHOWN_POINTS], s=14)
    ax.plot(xs, lin(A, B, xs), color="grey", lw=1, ls="--", label=f"y = {A:g}x + {B:g}")
    (line,) = ax.plot(xs, ends[0], color="C3", lw=2, label="fit")
    ax.set_xlim(0, 1)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.legend(loc="lower right")
    title = ax.set_title("", fontsize=10)

    def draw(i: int):
        a, b = trajectory[steps[i]]
        line.set_ydata(ends[i])
        title.set_text(f"{method}  step {steps[i]:,}  a = {a:.2f}  b = {b:.2f}  loss {losses[steps[i]]:.3f}")
        return line, title

    draw(0)
    fig.tight_layout()  # with a title in place, so that it keeps its room

    ani = animation.FuncAnimation(fig, draw, frames=len(steps), interval=100, blit=False)
    tmp = path.with_name(f".{path.stem}.tmp.gif")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        ani.save(str(tmp), writer=animation.PillowWriter(fps=10))
        os.replace(tmp, path)
    except (OSError, ValueError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        raise ZooError(f"--animate {path}: cannot write the GIF ({exc})") from None
    finally:
        plt.close(fig)
    return path
