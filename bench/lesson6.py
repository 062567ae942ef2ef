"""Benchmark: every Lesson 6 model, trained with its lesson recipe, against the lesson's figures and a plain PyTorch loop.

For each model (zoo first, then plain, so machine noise hits both alike):
  zoo    `zoo.train(name, data=..., seed=...)`, the recipe from the model's spec;
  plain  the same architecture as the lesson wrote it (bench/plain_models.py; same
         parameters, so the same seed gives the same initial weights), trained by the simple loop
         below: the lesson's windows and targets materialised as tensors, a random 20% of
         the rows held out, torch.randperm each epoch, minibatches of 512 gathered by
         indexing, Adam, F.cross_entropy, loss.item() every step. It runs in a process of its
         own (`PlainProcess`), as any PyTorch program would: zoo's trainer tunes the memory
         allocator of its process (zoo.allocator), which a plain loop in the same process
         would inherit.

The table shows the parameter count, seconds per epoch, training throughput (input
characters per second: rows * window length, training loop only, validation excluded),
zoo's validation loss per epoch, the lesson's final figure, |final - lesson| and whether
the run is within TOLERANCE of it (a lower loss always passes), and zoo's throughput as a
ratio of the plain loop's.

    .venv/bin/python bench/lesson6.py                       # all six models, full recipes
    .venv/bin/python bench/lesson6.py --models 'char-rnn'   # one model (fnmatch pattern)
    .venv/bin/python bench/lesson6.py --smoke               # CI: 30k characters, 1 epoch each

Exit status: full mode, 1 if a model misses the lesson's figure by more than TOLERANCE;
smoke mode, 1 if a model failed to run or produced a non-finite loss or ratio.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fnmatch
import json
import math
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from plain_models import plain_model
from torch import nn

import zoo
from zoo import allocator, registry
from zoo.data.batching import SPLIT_SEED, epoch_generator
from zoo.data.sources import resolve
from zoo.errors import ZooError
from zoo.model import build
from zoo.runtime import cpu_name
from zoo.spec import ModelSpec

TOLERANCE = 0.03  # nats/char above the lesson's figure
BATCH_SIZE = 512
VAL_FRAC = 0.2
SMOKE_CHARS = 30_000
SHARED_NIETZSCHE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nietzsche.txt"
DATA_HELP = (
    "corpus: a text file or a zoo dataset name (default: ../shared's nietzsche.txt, else the nietzsche dataset; smoke: pydoc-topics)"
)


def default_data(smoke: bool) -> str:
    """The lesson's corpus from ../shared when it is there; else the nietzsche dataset (downloaded once), or in smoke
    mode the offline pydoc-topics, so that the smoke runs never need the network."""
    if SHARED_NIETZSCHE.exists():
        return str(SHARED_NIETZSCHE)
    return "pydoc-topics" if smoke else "nietzsche"


@dataclass
class LoopResult:
    """One training run (zoo's or the plain loop's)."""

    trn_loss: list[float] = field(default_factory=list)  # mean over each epoch's batches
    val_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0  # training loops only, summed over epochs
    chars: int = 0  # input characters trained on, summed over epochs

    @property
    def chars_per_s(self) -> float:
        return self.chars / self.seconds if self.seconds > 0 else math.nan

    @property
    def s_per_epoch(self) -> float:
        return self.seconds / len(self.val_loss) if self.val_loss else math.nan


@dataclass
class ModelResult:
    model: str
    params: int = 0
    epochs: int = 0
    zoo: LoopResult | None = None
    plain: LoopResult | None = None
    lesson: float | None = None  # the lesson's final figure
    lesson_of: str = "val"  # which loss the lesson reported: "val", or "trn" (char3)
    error: str | None = None

    def final_of(self, run: LoopResult | None) -> float:
        """A run's final loss of the kind the lesson reported."""
        if run is None:
            return math.nan
        losses = run.trn_loss if self.lesson_of == "trn" else run.val_loss
        return losses[-1] if losses else math.nan

    @property
    def final(self) -> float:
        return self.final_of(self.zoo)

    @property
    def diff(self) -> float:
        return abs(self.final - self.lesson) if self.lesson is not None else math.nan

    @property
    def within(self) -> bool:
        return self.lesson is not None and self.final - self.lesson <= TOLERANCE  # lower is always fine

    @property
    def ratio(self) -> float:
        """zoo chars/s divided by plain chars/s."""
        if self.zoo is None or self.plain is None:
            return math.nan
        return self.zoo.chars_per_s / self.plain.chars_per_s

    def as_json(self) -> dict[str, object]:
        out = asdict(self)
        for side in ("zoo", "plain"):
            run = getattr(self, side)
            if run is not None:
                out[side].update(chars_per_s=run.chars_per_s, s_per_epoch=run.s_per_epoch)
        out.update(
            final=self.final,
            plain_final=self.final_of(self.plain),
            diff=self.diff,
            within=self.within,
            ratio=self.ratio,
            tolerance=TOLERANCE,
        )
        return out


# ---------------------------------------------------------------------------------------
# zoo


def run_zoo(spec: ModelSpec, data: str, seed: int, epochs: int | None, amp: bool = False) -> tuple[LoopResult, int]:
    """zoo.train; `amp`: bf16 autocast on the CPU, where it has native bfloat16 (a warning and float32 elsewhere)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{spec.name}-") as tmp:
        m = zoo.train(spec.name, data=data, seed=seed, out=Path(tmp) / "run", epochs=epochs, quiet=True, amp=amp or None)
    result = LoopResult(
        trn_loss=[h["trn_loss"] for h in m.history],
        val_loss=[h["val_loss"] for h in m.history],
        seconds=sum(h["seconds"] for h in m.history),
        chars=round(sum(h["chars_per_s"] * h["seconds"] for h in m.history)),
    )
    return result, m.num_params


# ---------------------------------------------------------------------------------------
# plain PyTorch: the lesson's loop, written out


def run_plain(spec: ModelSpec, text: str, seed: int, epoch_lrs: list[float]) -> LoopResult:
    # The lesson's vocabulary: the sorted characters with "\0" first.
    chars = ["\0", *sorted(set(text) - {"\0"})]
    stoi = {c: i for i, c in enumerate(chars)}
    idx = torch.tensor([stoi[c] for c in text])

    # Every window of `length` characters, one each `stride`; the target is the next
    # character, or (targets "every") the window shifted by one.
    length, stride = spec.batching.length, spec.batching.stride
    starts = torch.arange(0, len(idx) - length, stride)
    xs = idx[starts[:, None] + torch.arange(length)]
    ys = idx[starts[:, None] + torch.arange(1, length + 1)] if spec.batching.targets == "every" else idx[starts + length]

    torch.manual_seed(seed)  # as zoo.train does, so both start from the same weights
    model = lesson_model(spec, vocab_size=len(chars))

    # A random 20% of the rows for validation: the rows zoo's random split holds out (a permutation with a fixed
    # seed, SPLIT_SEED), so that both sides validate on the same windows and their losses differ only by training.
    rows = torch.randperm(len(xs), generator=torch.Generator().manual_seed(SPLIT_SEED))
    n_val = int(len(xs) * VAL_FRAC)
    val_rows, trn_rows = rows[:n_val], rows[n_val:].sort().values

    opt = torch.optim.Adam(model.parameters(), lr=epoch_lrs[0])
    result = LoopResult()
    for epoch, lr in enumerate(epoch_lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        model.train()
        loss_sum = 0.0
        t0 = time.perf_counter()
        # zoo's shuffle of this epoch (a permutation seeded by seed and epoch), so that both sides see the same
        # batches in the same order: their losses then differ only by how each computes the same function.
        order = trn_rows[torch.randperm(len(trn_rows), generator=epoch_generator(seed, epoch))]
        for i in range(0, len(order), BATCH_SIZE):
            batch = order[i : i + BATCH_SIZE]
            x, y = xs[batch], ys[batch]
            logits = model(x)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(batch)
        result.seconds += time.perf_counter() - t0
        result.chars += len(order) * length
        result.trn_loss.append(loss_sum / len(order))
        result.val_loss.append(plain_val_loss(model, xs[val_rows], ys[val_rows]))
    return result


def is_lesson_model(spec: ModelSpec) -> bool:
    return spec.task == "char-lm" and spec.batching.kind == "windows" and spec.builder.startswith("zoo_lesson6.models:")


def lesson_model(spec: ModelSpec, vocab_size: int) -> nn.Module:
    """The spec's architecture as the lesson wrote it (bench/plain_models.py), for the plain loop."""
    assert is_lesson_model(spec), f"{spec.name}: not a lesson model ({spec.builder})"
    return plain_model(spec.builder.partition(":")[2], vocab_size=vocab_size, **spec.hparams)


@torch.no_grad()
def plain_val_loss(model: nn.Module, xs: torch.Tensor, ys: torch.Tensor, batch_size: int = 2048) -> float:
    model.eval()
    total = 0.0
    for i in range(0, len(xs), batch_size):
        logits = model(xs[i : i + batch_size])
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ys[i : i + batch_size].reshape(-1), reduction="sum").item()
    return total / ys.numel()


def warm_up(specs: list[ModelSpec], sides: tuple[str, ...] = ("plain", "zoo"), vocab_size: int = 85, steps: int = 3) -> None:
    """A few steps of each architecture on random data, so the first model timed does not pay torch's start-up costs."""
    for spec in specs:
        for side in sides:
            model = lesson_model(spec, vocab_size) if side == "plain" else build(spec, vocab_size)
            opt = torch.optim.Adam(model.parameters())
            x = torch.randint(vocab_size, (BATCH_SIZE, spec.batching.length))
            for _ in range(steps):
                logits = model(x)
                loss = F.cross_entropy(logits.reshape(-1, vocab_size), torch.zeros(logits.numel() // vocab_size, dtype=torch.long))
                opt.zero_grad()
                loss.backward()
                opt.step()


def _plain_worker_start(names: list[str], threads: int) -> None:
    torch.set_num_threads(threads)
    warm_up([registry.get_model(name) for name in names], sides=("plain",))


def _plain_worker_run(name: str, text: str, seed: int, epoch_lrs: list[float]) -> LoopResult:
    return run_plain(registry.get_model(name), text, seed, epoch_lrs)


def _plain_worker_allocator() -> bool | None:
    return allocator.tuned()


class PlainProcess:
    """The plain loop's runs, in a process of their own (spawned, with this process's torch thread count).

    Why: zoo's trainer keeps freed memory in its process for reuse (zoo.allocator) from its first run on,
    for good. A plain loop run in the same process would inherit that; in its own process it runs with
    the allocator any PyTorch program has, and zoo is credited with the page faults it avoids, as with
    its other choices (fused Adam, ...). The process is warmed up once and used for every plain run.
    """

    def __init__(self, specs: list[ModelSpec]) -> None:
        # An executor, not a multiprocessing.Pool: a worker that fails to start is an error here, not a restart loop.
        self._pool = ProcessPoolExecutor(
            1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_plain_worker_start,
            initargs=([s.name for s in specs], torch.get_num_threads()),
        )

    def run(self, spec: ModelSpec, text: str, seed: int, epoch_lrs: list[float]) -> LoopResult:
        return self._pool.submit(_plain_worker_run, spec.name, text, seed, epoch_lrs).result()

    def allocator_tuned(self) -> bool | None:
        """zoo.allocator's state in the plain process: None, never tried there."""
        return self._pool.submit(_plain_worker_allocator).result()

    def __enter__(self) -> PlainProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown()


# ---------------------------------------------------------------------------------------
# the benchmark


def bench_model(
    spec: ModelSpec, data: str, text: str, seed: int, smoke: bool, plain: PlainProcess | None, amp: bool = False
) -> ModelResult:
    ref = spec.reference
    res = ModelResult(model=spec.name)
    if ref is not None:
        res.lesson, res.lesson_of = (ref.final_val, "val") if ref.final_val is not None else (ref.final_trn, "trn")
    epoch_lrs = spec.epoch_lrs()[:1] if smoke else spec.epoch_lrs()
    res.epochs = len(epoch_lrs)
    try:
        res.zoo, res.params = run_zoo(spec, data, seed, epochs=1 if smoke else None, amp=amp)
        if plain is not None:
            res.plain = plain.run(spec, text, seed, epoch_lrs)
    except Exception as exc:  # report it in the table; the exit status says it failed
        res.error = f"{type(exc).__name__}: {exc}"
    return res


def held_out_curve(m: Any, run_dir: Path) -> tuple[list[tuple[float, float]], dict[str, Any]]:
    """A finished or budget-stopped run's held-out loss after each epoch against its training seconds so far
    (validation excluded), and its checkpoint's state.json. A run stopped mid-epoch adds the figure of the weights
    it ended with, which the history has not seen."""
    curve, spent = [], 0.0
    for h in m.history:
        spent += h["seconds"]
        curve.append((spent, h["val_loss"]))
    state = json.loads((run_dir / "checkpoint" / "state.json").read_text())
    if m.partial is not None or not curve:
        curve.append((state["trained_seconds"], m.evaluate()["val_loss"]))
    return curve, state


def json_folder_missing(path: Path | None) -> bool:
    """Whether `--json PATH` names a file in a folder that does not exist (said on stderr): found out before the
    benchmark spends minutes measuring, not after."""
    if path is not None and not path.parent.is_dir():
        print(f"--json {path}: no folder {path.parent}", file=sys.stderr)
        return True
    return False


def machine() -> dict[str, object]:
    return {
        "date": dt.date.today().isoformat(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "zoo": zoo.__version__,
    }


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def kilo(value: float) -> str:
    return fmt(value / 1000, ".0f") + "k" if math.isfinite(value) else "-"


def print_table(results: list[ModelResult], smoke: bool) -> None:
    header = (
        f"{'model':<18} {'params':>8} {'ep':>2} {'s/epoch':>7} {'chars/s':>8} {'plain':>8} {'zoo/plain':>9}  "
        f"{'lesson':>10} {'final':>6} {'|diff|':>6} {'ok':>4}  {'plain final':>11}  val loss per epoch (zoo)"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        if r.error is not None:
            print(f"{r.model:<18} FAILED: {r.error}")
            continue
        assert r.zoo is not None
        lesson = f"{r.lesson:.3f} {r.lesson_of}" if r.lesson is not None else "-"
        ok = "-" if smoke else ("yes" if r.within else "NO")
        plain_final = fmt(r.final_of(r.plain), ".3f")
        per_epoch = " ".join(f"{v:.3f}" for v in r.zoo.val_loss)
        print(
            f"{r.model:<18} {r.params:>8,} {r.epochs:>2} {fmt(r.zoo.s_per_epoch, '.1f'):>7} {kilo(r.zoo.chars_per_s):>8} "
            f"{kilo(r.plain.chars_per_s) if r.plain else '-':>8} {fmt(r.ratio, '.2f'):>9}  "
            f"{lesson:>10} {fmt(r.final, '.3f'):>6} {fmt(r.diff, '.3f'):>6} {ok:>4}  {plain_final:>11}  {per_epoch}"
        )


def problems(results: list[ModelResult], smoke: bool, skip_plain: bool) -> list[str]:
    """Why the run fails: in smoke mode a model that did not run cleanly; in full mode one that misses the lesson."""
    found = []
    for r in results:
        if r.error is not None or r.zoo is None:
            found.append(f"{r.model}: did not run ({r.error})")
            continue
        losses = r.zoo.trn_loss + r.zoo.val_loss + (r.plain.trn_loss + r.plain.val_loss if r.plain else [])
        if len(r.zoo.val_loss) != r.epochs or not all(math.isfinite(v) for v in losses):
            found.append(f"{r.model}: missing or non-finite losses")
        if not skip_plain and not (math.isfinite(r.ratio) and r.ratio > 0):
            found.append(f"{r.model}: no zoo/plain throughput ratio")
        if not smoke and not r.within:
            found.append(f"{r.model}: final {r.lesson_of} loss {r.final:.3f} is more than {TOLERANCE} above the lesson's {r.lesson}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help=DATA_HELP)
    parser.add_argument("--models", default="*", help="fnmatch pattern of model names (default: all lesson models)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-plain", action="store_true", help="train only with zoo (no plain loop, no ratio)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON to OUT")
    parser.add_argument("--smoke", action="store_true", help=f"CI check: first {SMOKE_CHARS:,} characters, 1 epoch per model")
    parser.add_argument(
        "--threads", type=int, help="torch.set_num_threads (default: torch's own, or 1 with --smoke; 1 is steadier on a busy machine)"
    )
    parser.add_argument("--amp", action="store_true", help="zoo trains with --amp (bf16 autocast on a CPU with native bf16)")
    args = parser.parse_args(argv)
    if json_folder_missing(args.json):
        return 2
    args.data = args.data or default_data(args.smoke)
    threads = args.threads if args.threads is not None else (1 if args.smoke else None)
    if threads is not None:
        torch.set_num_threads(threads)

    specs = [s for s in registry.list_models(tag="lesson6") if is_lesson_model(s) and fnmatch.fnmatchcase(s.name, args.models)]
    if not specs:
        print(f"no lesson model matches {args.models!r}", file=sys.stderr)
        return 2
    info = machine()
    print(
        f"machine: {info['cpu_count']} CPUs ({info['cpu']}), torch {info['torch']} with {info['torch_threads']} threads, "
        f"python {info['python']}, {info['date']}"
    )

    try:
        text = resolve(args.data, "nietzsche", registry.datasets()).read_text()
    except ZooError as exc:
        print(f"--data {args.data}: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        data = args.data
        if args.smoke:
            text = text[:SMOKE_CHARS]
            data = str(Path(tmp) / "smoke.txt")
            Path(data).write_text(text, encoding="utf-8")
        amp = "; zoo with --amp (bf16 autocast), the plain loop in float32" if args.amp else ""
        print(f"data: {args.data}{', its start' if args.smoke else ''}: {len(text):,} chars; seed {args.seed}{amp}")
        with contextlib.ExitStack() as stack:
            plain = None if args.skip_plain else stack.enter_context(PlainProcess(specs))
            warm_up(specs, sides=("zoo",))
            results = []
            for spec in specs:
                t0 = time.perf_counter()
                results.append(bench_model(spec, data, text, args.seed, args.smoke, plain, args.amp))
                print(f"  {spec.name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)

    print()
    print_table(results, args.smoke)
    found = problems(results, args.smoke, args.skip_plain)
    if args.json:
        report = {"machine": info, "data": args.data, "chars": len(text), "seed": args.seed, "smoke": args.smoke}
        args.json.write_text(json.dumps({**report, "results": [r.as_json() for r in results], "problems": found}, indent=2) + "\n")
    print()
    if found:
        print("\n".join(f"FAIL {p}" for p in found))
    else:
        print("smoke: every model ran cleanly" if args.smoke else f"every model within {TOLERANCE} of the lesson")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
