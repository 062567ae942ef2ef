"""The fit loop: batches in, steps, a checkpoint per epoch, hooks; a trained model out.

Contract: the batches have `len()`, `rows` and `epoch(seed, epoch, start_step, rank, world)`; the `task`
(zoo.tasks: char-lm by default) gives the loss, the validation metrics and the epoch table's columns;
x may be a tuple of tensors (a table's categorical and continuous inputs). Plugins see the run through
the hooks zoo_on_train_start, zoo_on_epoch_end and zoo_on_train_end; Python callers can pass
`callbacks` with the same method names. Building the run (options, data, folder) is zoo.pipeline's.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo import checks, distributed, rundir
from zoo.allocator import keep_freed_memory
from zoo.checkpoint import save_checkpoint, save_weights
from zoo.cudagraph import GraphedSteps, check_usable
from zoo.errors import ZooError, first_line, warn
from zoo.model import uses_fused_loss
from zoo.progress import Progress
from zoo.runtime import amp_applies, autocast
from zoo.spec import OPTIMIZERS
from zoo.tasks.base import Task, to_device
from zoo.tasks.charlm import CharLMTask, forward


class TrainingInterrupted(ZooError):
    """Ctrl-C or SIGTERM: what was kept (`said`), then how to continue (`then`: `zoo train --resume DIR`, or
    whatever a caller that drives the run, like zoo compare, puts in its place)."""

    exit_code = 130
    is_error = False  # the run stopped as asked

    def __init__(self, said: str, then: str) -> None:
        super().__init__(f"{said}. {then}")
        self.said, self.then = said, then


@dataclass
class RunInfo:
    """What hooks and callbacks see of a run."""

    name: str
    out_dir: Path
    config: dict[str, Any]
    device: str
    epochs: int


@dataclass
class TrainState:
    epoch: int = 0  # epochs finished
    step: int = 0  # batches done in the current epoch
    global_step: int = 0
    loss_sum: float = 0.0  # of the current epoch so far, weighted by rows
    rows: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    trained_seconds: float = 0.0  # in training loops, over the whole run (for s/epoch and chars/s of partial runs)
    trained_items: int = 0  # characters (or rows) trained on, over the whole run
    steps_per_epoch: int = 0

    FIELDS = ("epoch", "step", "global_step", "loss_sum", "rows", "history", "trained_seconds", "trained_items", "steps_per_epoch")

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.FIELDS}

    def restore(self, saved: dict[str, Any]) -> None:
        """The counters of a checkpoint's state.json, each checked: a hand-edited file must not fail later, obscurely."""
        for key in self.FIELDS:
            if key not in saved:  # checkpoints from before a field existed lack it
                continue
            value = saved[key]
            if not _fits(getattr(self, key), value):
                raise ZooError(f"checkpoint/state.json: {key!r} is {value!r}, not what zoo wrote; the checkpoint was edited or damaged")
            setattr(self, key, value)
        if {"history", "epoch"} <= set(saved) and len(self.history) != self.epoch:  # a row of figures per finished epoch
            raise ZooError(
                f"checkpoint/state.json: 'history' holds {len(self.history)} epochs, but 'epoch' says {self.epoch} are done; "
                "the checkpoint was edited or damaged"
            )

    def check_position(self, n_batches: int) -> None:
        """Refuse a position past the end of an epoch of `n_batches` batches, or a checkpoint of epochs of another
        length (the batch size or the data changed since it was written)."""
        if self.steps_per_epoch and self.steps_per_epoch != n_batches:
            raise ZooError(
                f"checkpoint/state.json: the run's epochs had {self.steps_per_epoch} batches, but its data and batch size "
                f"now give {n_batches}; the run folder was edited or damaged"
            )
        if self.step > n_batches:  # n_batches itself: stopped after the last batch, before the epoch's end was counted
            raise ZooError(
                f"checkpoint/state.json: 'step' {self.step} is past the epoch's {n_batches} batches; the checkpoint was edited or damaged"
            )


HISTORY_KEYS = ("epoch", "trn_loss", "val_loss")  # what every history row holds (the plot and the card read them)


def _fits(default: Any, value: Any) -> bool:
    """Whether `value` is what zoo writes for a TrainState field whose initial value is `default`."""
    if isinstance(value, bool):
        return False
    if isinstance(default, list):
        return isinstance(value, list) and all(_history_row(h) for h in value)
    if isinstance(default, int):
        return checks.is_whole(value) and value >= 0
    return checks.is_number(value, finite=True)


def _history_row(row: Any) -> bool:
    return isinstance(row, dict) and all(checks.is_number(row.get(k)) for k in HISTORY_KEYS)


class _ForcedStop(KeyboardInterrupt):
    """A second Ctrl-C or SIGTERM: stop at once. The step in flight may be half applied, so nothing is saved from it."""


class _StopRequests:
    """Ctrl-C and SIGTERM (a scheduler stopping the job) while training. The first asks the loop to stop once the
    current step is whole: raised at any line, an interrupt could land between the optimizer's update and the step
    counter, and the checkpoint would then replay that batch on resume. A second one stops at once."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.requested = False
        self._say = say

    def __call__(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise _ForcedStop
        self.requested = True
        self._say("\nzoo: stopping after this step (a second Ctrl-C or SIGTERM stops at once, without saving it)")

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        # A signal the process was told to ignore (nohup, a background job) stays ignored.
        signals = [sig for sig in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(sig) is not signal.SIG_IGN]
        previous = {sig: signal.signal(sig, self) for sig in signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


SYNC_EVERY = 50  # on an accelerator, read the running loss (a sync) once per this many steps


def sync_every(device: torch.device) -> int:
    """How often to read the running loss: every step on the CPU (free), every SYNC_EVERY on an accelerator,
    where each read stalls the queue of launched work (measured: the main cost of a small model's step)."""
    return 1 if device.type == "cpu" else SYNC_EVERY


def make_optimizer(name: str, params: Any, lr: float) -> torch.optim.Optimizer:
    """A spec's `optimizer`: "adam" (the lesson's char models) or "sgd" (plain SGD, as linreg-sgd)."""
    if name == "adam":
        params = list(params)
        # The fused kernel updates every tensor in one pass: ~3x faster than the default on the CPU
        # (0.13 vs 0.36 ms a step for char-concat), and the same algorithm.
        fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        return torch.optim.Adam(params, lr=lr, fused=fused or None)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ZooError(f"unknown optimizer {name!r} (known: {', '.join(OPTIMIZERS)})")


@dataclass
class TrainerSettings:
    """How a Trainer runs, besides its model, batches and schedule (zoo.pipeline.FitContext fills it in)."""

    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: bool = False
    hook: Any = None  # the plugin host's pluggy hook caller: zoo_on_train_start, ...
    callbacks: list[Any] | None = None
    reference: list[float | None] | None = None  # the lesson's validation loss per epoch (None where it gave none)
    reference_trn: list[float | None] | None = None  # and its training loss: char3's only figure
    quiet: bool = False
    task: Task | None = None  # char-lm when None
    optimizer: str = "adam"
    dist: Any = None  # zoo.distributed.Dist under torchrun
    cuda_graph: bool = False


class Trainer:
    def __init__(
        self, model: nn.Module, train_batches: Any, val_batches: Any, epoch_lrs: list[float], run: RunInfo, settings: TrainerSettings
    ) -> None:
        device = settings.device
        self.model = model.to(device)
        self.dist = settings.dist or distributed.SINGLE
        self.net: nn.Module = self.model  # what the loop calls: the model, or its DDP wrapper under torchrun
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[device.index] if device.type == "cuda" else None)
        main = self.dist.main  # only rank 0 prints and calls hooks
        # On an accelerator, the corpus moves there once and batches are gathered there: no copy per step.
        self._pending_loss: torch.Tensor | None = None  # loss x rows summed on the device since the last read
        self._pending_rows = 0
        self.sync_every = sync_every(device)
        on_device = device.type != "cpu"
        self.train_batches = train_batches.to(device) if on_device and hasattr(train_batches, "to") else train_batches
        self.val_batches = val_batches.to(device) if on_device and hasattr(val_batches, "to") else val_batches
        self.epoch_lrs = epoch_lrs
        self.seed = settings.seed
        self.device = device
        self.out_dir = Path(run.out_dir)
        self.run = run
        self.amp = amp_applies(settings.amp, device)
        self.hook = settings.hook if main else None
        self.callbacks = (settings.callbacks or []) if main else []
        self.reference = settings.reference or []
        self.reference_trn = settings.reference_trn or []
        self.quiet = settings.quiet or not main
        self._stop = _StopRequests(self._say)
        self._warned_wrappers: set[tuple[str, str]] = set()
        self.task = settings.task if settings.task is not None else CharLMTask()  # loss, metrics, table columns
        self.opt = make_optimizer(settings.optimizer, model.parameters(), lr=epoch_lrs[0] if epoch_lrs else 1e-3)
        # A model that computes the task's loss itself from targets (zoo.model: `fused_loss`) is called that way.
        self.fused_loss = self.task.fuses_loss and uses_fused_loss(model)
        self.state = TrainState()
        self.carried: Any = None  # a stateful model's hidden state between batches
        self.graphs = self._graphed_steps() if settings.cuda_graph else None

    def restore(self, saved: dict[str, Any]) -> None:
        """Continue from a checkpoint's state (zoo.checkpoint.load_checkpoint's), its counters checked against these
        batches."""
        self.state.restore(saved)
        self.state.check_position(len(self.train_batches))
        self.carried = saved.get("carried")

    def _graphed_steps(self) -> GraphedSteps:
        """The step captured as a CUDA graph (zoo.cudagraph), where it can be: one GPU, a model without carried state."""
        check_usable(self.device, self.model, self.run.name, self.dist.enabled)
        return GraphedSteps(self._step, self.opt)

    def _emit(self, name: str, **kwargs: Any) -> None:
        if self.hook is not None:
            # Each plugin's hook on its own, in pluggy's order (last registered first, tryfirst before, trylast after):
            # the hooks see every run, so one plugin's bug must not stop another's model.
            kwargs_all = {"run": self.run, **kwargs}
            for impl in reversed(getattr(self.hook, f"zoo_{name}").get_hookimpls()):
                if impl.hookwrapper or getattr(impl, "wrapper", False):
                    if (impl.plugin_name, name) not in self._warned_wrappers:
                        self._warned_wrappers.add((impl.plugin_name, name))
                        warn(f"plugin {impl.plugin_name!r}: zoo_{name} as a hook wrapper is not called")
                    continue
                try:
                    impl.function(**{k: v for k, v in kwargs_all.items() if k in impl.argnames})
                except (Exception, SystemExit) as exc:
                    warn(f"plugin {impl.plugin_name!r}: zoo_{name} raised {first_line(exc)}; training goes on")
        for cb in self.callbacks:
            fn = getattr(cb, name, None)
            if fn:
                fn(run=self.run, **kwargs)

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def _batch_loss(self, x: Any, y: torch.Tensor) -> torch.Tensor:
        """The batch's mean loss: from the model itself if it fuses its output layer with the loss, else the task's."""
        with autocast(self.device, self.amp, cache=self.graphs is None):
            if self.fused_loss:
                return self.net(x, targets=y)
            logits, self.carried = forward(self.model, x, self.carried, self.net)
        return self.task.loss(logits, y)

    def _step(self, x: Any, y: torch.Tensor) -> torch.Tensor:
        """One optimizer step on batch (x, y); returns its loss. Gradients are set afresh, so the step can be captured."""
        loss = self._batch_loss(x, y)
        extra = getattr(self.model, "extra_loss", None)  # e.g. AWD-LSTM's activation regularisation
        self.opt.zero_grad(set_to_none=True)
        (loss if extra is None else loss + extra).backward()
        self.opt.step()
        return loss.detach()

    def _add_loss(self, loss: torch.Tensor, rows: int) -> None:
        """Count a batch's mean loss; summed where it lives and read (a wait for the device) every `sync_every` steps."""
        weighted = loss.to(torch.float32 if loss.device.type == "mps" else torch.float64) * rows  # MPS has no float64
        self._pending_loss = weighted if self._pending_loss is None else self._pending_loss + weighted
        self._pending_rows += rows
        if (self.state.global_step + 1) % self.sync_every == 0:  # fixed steps, so a resumed run reads at the same ones
            self._flush_loss()

    def _flush_loss(self) -> None:
        if self._pending_loss is None:
            return
        total, rows = self._pending_loss.item(), self._pending_rows
        self._pending_loss, self._pending_rows = None, 0
        self._check_finite(total)
        self.state.loss_sum += total
        self.state.rows += rows

    def _check_finite(self, value: float) -> None:
        if not math.isfinite(value):
            st = self.state
            raise ZooError(f"the loss became {value} by epoch {st.epoch + 1}, batch {st.step + 1}; try a lower --lr")

    def checkpoint(self, collective: bool = True) -> None:
        """Rank 0 writes; under torchrun every rank first hands in its share of a carried state."""
        self._flush_loss()
        carried = self.carried
        if self.dist.enabled:
            carried = distributed.gather_rows(self.dist, carried) if collective else None
        if not self.dist.main:
            return
        carried = carried if isinstance(carried, tuple) else (() if carried is None else (carried,))
        extra = {f"carried.{i}": t for i, t in enumerate(carried)}
        # The checkpoint first: a process killed between the two leaves a run that resumes (its next checkpoint
        # writes the weights again), never weights without a checkpoint, which could be neither resumed nor restarted.
        save_checkpoint(self.out_dir, self.model, self.opt, self.state.as_dict(), extra)
        save_weights(rundir.weights(self.out_dir), self.model)

    def fit(self, max_steps: int | None = None, max_seconds: float | None = None) -> list[dict[str, float]]:
        """Train until the recipe's last epoch, or `max_steps` batches in all, or `max_seconds` from now.

        Stopping early leaves a checkpoint that `--resume` continues from. Returns the history.
        """
        st = self.state
        keep_freed_memory()  # each step's large buffers are reused, not faulted in again (zoo.allocator)
        self._max_steps = max_steps
        self._deadline = None if max_seconds is None else time.perf_counter() + max_seconds
        self._emit("on_train_start")
        self._say(self._header())
        self._stop = _StopRequests(self._say)
        with self._stop.installed():
            try:
                while st.epoch < len(self.epoch_lrs):
                    if self._stop.requested:
                        raise KeyboardInterrupt
                    if self._limit_reached() or not self._run_epoch():
                        self.checkpoint()
                        return st.history
            except _ForcedStop:
                raise self._stopped_at_once() from None
            except KeyboardInterrupt:  # asked for between steps, or raised by code the loop called
                try:
                    self.checkpoint(collective=False)  # other ranks may be anywhere: no collective calls now
                except _ForcedStop:  # a second signal while saving: the checkpoint being built is dropped whole
                    raise self._stopped_at_once() from None
                raise TrainingInterrupted(
                    f"interrupted at epoch {st.epoch + 1}, batch {st.step}; checkpoint saved",
                    f"Continue with: zoo train --resume {self.out_dir}",
                ) from None
        self._emit("on_train_end", history=st.history)
        return st.history

    def _stopped_at_once(self) -> TrainingInterrupted:
        return TrainingInterrupted(
            f"stopped at once in epoch {self.state.epoch + 1}; nothing saved since the last checkpoint",
            f"Continue from it with: zoo train --resume {self.out_dir}",
        )

    def _header(self) -> str:
        metrics = "".join(f"  {key:>{width}}" for key, width, _ in self.task.columns)
        rate = f"{self.task.unit}/s"
        return f"{'epoch':>5}  {'lr':>8}  {'trn_loss':>8}  {'val_loss':>8}{metrics}  {'lesson':>9}  {rate:>9}  {'seconds':>7}"

    def lesson_figure(self, epoch: int) -> str:
        """The epoch table's "lesson" cell for epoch index `epoch`: the lesson's validation loss, else its training
        loss marked "trn" (compare it with trn_loss), else "-"."""
        val = self.reference[epoch] if epoch < len(self.reference) else None
        trn = self.reference_trn[epoch] if epoch < len(self.reference_trn) else None
        if val is not None:
            return f"{val:.3f}"
        return f"{trn:.3f} trn" if trn is not None else "-"

    def _limit_reached(self) -> bool:
        if self._max_steps is not None and self.state.global_step >= self._max_steps:
            return True
        if self._deadline is None:
            return False
        late = time.perf_counter() >= self._deadline
        return distributed.broadcast(self.dist, late)  # every rank stops at the same batch

    def _run_epoch(self) -> bool:
        """One epoch (or the rest of it); False if stopped early by a step or time limit."""
        st = self.state
        lr = self.epoch_lrs[st.epoch]
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.model.train()
        batches = self.train_batches
        n_batches = len(batches)
        bar = Progress(n_batches, desc=f"epoch {st.epoch + 1}/{len(self.epoch_lrs)}")
        bar.enabled = bar.enabled and not self.quiet
        bar.done = st.step
        st.steps_per_epoch = n_batches
        t0 = time.perf_counter()
        chars = 0
        if st.step == 0:
            self.carried = None  # each epoch starts from a zero state
        for x, y in batches.epoch(self.seed, st.epoch, st.step, rank=self.dist.rank, world=self.dist.world):
            x, y = to_device(x, self.device), y.to(self.device, non_blocking=True)
            loss = self._step(x, y) if self.graphs is None else self.graphs(x, y)
            self._add_loss(loss, y.shape[0])
            st.step += 1
            st.global_step += 1
            items = self.task.count(x, y)
            st.trained_items += items
            chars += items
            rate = chars / max(1e-9, time.perf_counter() - t0)
            shown = f"{st.loss_sum / st.rows:.3f}" if st.rows else "..."
            bar.update(1, loss=shown, rate=f"{rate / 1000:.0f}k {self.task.unit}/s")
            stop = self._stop.requested
            if stop or (st.step < n_batches and self._limit_reached()):
                self._flush_loss()
                bar.close()
                st.trained_seconds += time.perf_counter() - t0
                if stop:
                    raise KeyboardInterrupt  # the step is whole: fit() saves it
                return False
        self._flush_loss()
        bar.close()
        seconds = time.perf_counter() - t0
        st.trained_seconds += seconds
        val = self.task.evaluate(self.model, self.val_batches, self.device, self.amp)  # val_loss and the task's metrics
        rate_key = f"{self.task.unit}_per_s"  # chars_per_s for a char model
        loss_sum, rows, chars = distributed.all_sum(self.dist, [st.loss_sum, st.rows, chars], self.device)
        metrics = {
            "epoch": st.epoch + 1,
            "lr": lr,
            "trn_loss": loss_sum / max(1, rows),
            **val,
            "seconds": seconds,
            rate_key: chars / max(1e-9, seconds),
        }
        shown = "".join(f"  {val[key]:>{width}{fmt}}" for key, width, fmt in self.task.columns)
        self._say(
            f"{st.epoch + 1:>5}  {lr:>8.0e}  {metrics['trn_loss']:>8.4f}  {val['val_loss']:>8.4f}{shown}  "
            f"{self.lesson_figure(st.epoch):>9}  {metrics[rate_key]:>9.0f}  {seconds:>7.1f}"
        )
        st.history.append(metrics)
        st.epoch += 1
        st.step = 0
        st.loss_sum = 0.0
        st.rows = 0
        self.checkpoint()
        if self.dist.main:
            rundir.write_history(self.out_dir, st.history)
            figures = (self.reference, self.run.name, self.task.loss_label, self.reference_trn)
            _plot_losses(rundir.loss_plot(self.out_dir), st.history, *figures)
        self._emit("on_epoch_end", epoch=st.epoch, metrics=metrics)
        return True


def _plot_losses(
    path: Path,
    history: list[dict[str, float]],
    reference: list[float | None],
    title: str,
    ylabel: str = "cross-entropy (nats/char)",
    reference_trn: list[float | None] = (),
) -> None:
    """loss.png beside the weights; skipped quietly when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    from zoo.fileio import atomic_write_bytes

    epochs = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(epochs, [h["trn_loss"] for h in history], "o-", label="training")
    ax.plot(epochs, [h["val_loss"] for h in history], "s-", label="validation")
    for figures, label, style in ((reference, "lesson (validation)", "x--"), (reference_trn, "lesson (training)", "+:")):
        points = [(i + 1, r) for i, r in enumerate(figures) if r is not None and i < len(history)]
        if points:
            ax.plot(*zip(*points), style, color="grey", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_xticks(epochs)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
