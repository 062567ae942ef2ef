"""The training step as one CUDA graph, replayed: `zoo train --cuda-graph`.

Why: on a GPU, a lesson model's step keeps the GPU busy for about half a millisecond, while the CPU
spends two to five launching its 50-130 kernels one by one (measured on an H200; bench/README.md).
A CUDA graph records those launches once and replays them all with one call, so a step costs
what the GPU needs, not what the CPU needs to ask for it.

What a graph needs, and how the trainer provides it:
- fixed shapes and fixed memory: each batch is copied into the same input buffers, and the step
  returns the same loss tensor each time. A step whose shapes (or learning rates, which the fused
  optimizer takes as numbers) differ from the graph's runs as usual: the short last batch of an
  epoch, the first steps after the learning rate changes.
- no waiting for the GPU inside the step (no `.item()`, no data-dependent shapes): the lesson
  models' GPU path has none; the trainer reads the loss outside the step.
- warm-up: a step shape is captured only after it has run as usual WARMUP times in a row, on a
  side stream, so that lazily created state (optimizer moments, library handles) exists first.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from zoo.errors import ZooError

WARMUP = 3  # ordinary steps of one shape before it is captured

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x, y) -> the batch's loss, after backward and update
Capture = Callable[[Callable[[], torch.Tensor]], Callable[[], torch.Tensor]]


def capture_cuda(fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """Record fn's kernels as one CUDA graph (nothing runs now); the returned replay runs them and returns fn's output."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay


def check_usable(device: torch.device, model: torch.nn.Module, name: str, distributed: bool = False) -> None:
    """Why a run cannot capture its step, as a ZooError: it must train on one CUDA device a model without carried state."""
    if getattr(model, "stateful", False):  # first: no device would help
        raise ZooError(f"--cuda-graph: {name} carries its state from batch to batch; train it without --cuda-graph")
    if distributed:
        raise ZooError("--cuda-graph: not under torchrun (each process's step would need its collective calls captured too)")
    if device.type != "cuda":
        raise ZooError(f"--cuda-graph needs a CUDA device; this run trains on {device}")


def check_optimizer(opt: torch.optim.Optimizer) -> None:
    """Graphs need an optimizer step that never reads a number back from the GPU: fused Adam, or SGD."""
    if isinstance(opt, torch.optim.SGD) or all(group.get("fused") for group in opt.param_groups):
        return
    raise ZooError(f"--cuda-graph needs the fused Adam or SGD; this run's optimizer is {type(opt).__name__} without fused kernels")


@contextlib.contextmanager
def _capturable(opt: torch.optim.Optimizer) -> Iterator[None]:
    """Let the optimizer be captured. Fused Adam computes the same either way (its step counts already live on
    the GPU); the flag only satisfies torch's capture check, and is put back so checkpoints are unchanged."""
    saved = [group.get("capturable") for group in opt.param_groups]
    for group in opt.param_groups:
        if "capturable" in group:
            group["capturable"] = True
    try:
        yield
    finally:
        for group, value in zip(opt.param_groups, saved):
            if value is not None:
                group["capturable"] = value


class GraphedSteps:
    """Runs training steps, replaying one captured CUDA graph for every step of the shape it was captured with.

    `step(x, y)` must do a whole step (forward, backward with gradients set afresh, optimizer update) and
    return the loss. Calls of one shape and learning rate are captured after WARMUP of them in a row; a call
    of another shape runs `step` as usual and leaves the graph alone; a new learning rate drops it.
    `capture` records a function for replay: CUDA graphs by default (tests pass a stand-in that replays by calling).
    """

    def __init__(
        self, step: Step, opt: torch.optim.Optimizer, warmup: int = WARMUP, capture: Capture = capture_cuda, side_stream: bool = True
    ) -> None:
        check_optimizer(opt)
        self.step = step
        self.opt = opt
        self.warmup = warmup
        self.capture = capture
        self.side_stream = side_stream
        self.replays = 0  # steps run from the graph
        self.captures = 0  # graphs recorded
        self._key: tuple[Any, ...] | None = None  # the shape and learning rates of the graph, or of the steps in a row
        self._in_a_row = 0
        self._replay: Callable[[], torch.Tensor] | None = None
        self._x: torch.Tensor | None = None  # the graph's input buffers
        self._y: torch.Tensor | None = None
        self._stream: torch.cuda.Stream | None = None

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Streams, captures and replays belong to the current CUDA device: make it the batch's (--device cuda:1).
        with torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext():
            return self._run(x, y)

    def _run(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        key = (x.shape, x.dtype, x.device, y.shape, y.dtype, tuple(group["lr"] for group in self.opt.param_groups))
        if self._replay is not None and key == self._key:
            self._x.copy_(x, non_blocking=True)
            self._y.copy_(y, non_blocking=True)
            self.replays += 1
            return self._replay()
        if self._replay is not None and key[-1] != self._key[-1]:
            self._drop()  # the learning rate is baked into the graph's optimizer kernel
        if self._replay is not None:
            return self._eager(x, y)  # another shape (an epoch's last batch): the graph stays for the next full one
        self._in_a_row = self._in_a_row + 1 if key == self._key else 1
        self._key = key
        loss = self._eager(x, y)
        if self._in_a_row >= self.warmup:
            self._record(x, y)
        return loss

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self._on_side_stream():
            return self.step(x, y)

    def _record(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Capture the step on buffers shaped as x and y. Capturing runs nothing, so no step is taken here."""
        self._x, self._y = torch.empty_like(x), torch.empty_like(y)
        # Gradients set to None first: the captured backward then allocates them in the graph's own memory.
        self.opt.zero_grad(set_to_none=True)
        try:
            with _capturable(self.opt):
                self._replay = self.capture(lambda: self.step(self._x, self._y))
        except Exception as exc:  # a model whose step cannot be captured: say so, and why (CUDA's first line of it)
            self._drop()
            why = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
            raise ZooError(f"--cuda-graph: this model's step cannot be captured as a CUDA graph ({why}); train without it") from None
        self.captures += 1

    def _drop(self) -> None:
        self._replay, self._x, self._y, self._key, self._in_a_row = None, None, None, None, 0

    @contextlib.contextmanager
    def _on_side_stream(self) -> Iterator[None]:
        """Steps before a capture run on a side stream, as torch's graph capture asks, so that what they set up lazily
        is not tied to the stream the capture uses."""
        if not self.side_stream:
            yield
            return
        if self._stream is None:
            self._stream = torch.cuda.Stream()
        stream = self._stream
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            yield
        torch.cuda.current_stream().wait_stream(stream)
