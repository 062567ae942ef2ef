"""Performance benchmark (issue 10): training against the plain loop, sampling, start-up, memory.

Four sections, all measured in the same run:

  train    for each lesson model, zoo's training throughput beside the plain PyTorch loop of
           bench/lesson6.py (imported from it, not copied; it runs in a process of its own,
           see lesson6.PlainProcess) and their ratio. Each side trains
           one epoch on a slice of the corpus sized to exactly STEPS batches of 512, with the
           model's first learning rate; the sides alternate (zoo, plain, zoo, plain, ...) and
           the figures are medians. Also the fraction of the matmul ceiling each side reaches:
           the training FLOPs of one batch (counted by torch.utils.flop_counter on the model)
           times batches per second, over the best rate of a float32 matmul of the model's
           recurrent shape [512, H] @ [H, H] measured here at the same thread count.
  sample   char-rnn with its bundled weights (zoo.load("char-rnn")), 2,000 characters from a
           prompt: (i) the lesson's method, re-running the 8-character window through the
           lesson's model code (bench/plain_models.py, the same weights) per character with
           torch.multinomial; (ii) nn.RNN carrying the state
           through model.step (also torch.multinomial; it never resets the state, so it is a
           speed reference, not the lesson's prediction); (iii) zoo's sampler,
           LoadedModel.sample; (iv) zoo's torch loop, what the sampler runs on other devices.
           Temperature 0.8 at batch 1, greedy at batch 1, and 16 samples at once (full mode:
           also temperature 0.8 at torch's default thread count); medians of interleaved
           repeats, and each method's ratio to (i).
  startup  `zoo --help` and `zoo list` wall time, median of interleaved runs (subprocesses).
  memory   peak resident memory of `zoo train NAME --max-steps N` on the corpus, one
           subprocess per model (resource.getrusage(RUSAGE_CHILDREN).ru_maxrss of a wrapper
           process whose only child is the training run); beside it, a process that only
           imports torch and zoo.

    .venv/bin/python bench/perf.py                       # everything (~6 min on 2 cores)
    .venv/bin/python bench/perf.py --smoke               # CI: small slice, few steps and repeats (~25 s)
    .venv/bin/python bench/perf.py --sections sample,startup --json perf.json

Exit status: 1 if a section failed or produced a missing or non-finite figure; 2 for bad
arguments. The goals of issue 10 are printed as met or not, but do not set the exit status:
the figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lesson6 import (
    BATCH_SIZE,
    DATA_HELP,
    VAL_FRAC,
    PlainProcess,
    default_data,
    fmt,
    is_lesson_model,
    json_folder_missing,
    kilo,
    lesson_model,
    machine,
    run_zoo,
    warm_up,
)
from torch.utils.flop_counter import FlopCounterMode

import zoo
from zoo import registry, sampling
from zoo.data.sources import resolve
from zoo.data.vocab import Vocab
from zoo.errors import ZooError
from zoo.model import build, uses_fused_loss
from zoo.spec import ModelSpec

SECTIONS = ("train", "sample", "startup", "memory")
PROMPT = "for thos"  # the lesson's prompt
# (steps per training run, training runs per side, chars per sample at batch 1 and with 16 samples, sampling repeats,
#  sampling also at torch's default thread count, start-up runs, memory steps)
FULL = {
    "steps": 100, "repeats": 3, "length": 2000, "many_length": 2000, "sample_repeats": 7, "default_threads": True,
    "startup_runs": 7, "memory_steps": 30,
}  # fmt: skip
SMOKE = {
    "steps": 8, "repeats": 1, "length": 2000, "many_length": 500, "sample_repeats": 3, "default_threads": False,
    "startup_runs": 3, "memory_steps": 5,
}  # fmt: skip
DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice, before main() sets --threads
GOALS = {"train_ratio": 1.5, "sample_chars_per_s": 20_000, "sample_ratio": 10.0, "startup_s": 0.5}


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


# ---------------------------------------------------------------------------------------
# training


def train_slice(text: str, spec: ModelSpec, steps: int) -> str:
    """The start of `text` with exactly `steps` training batches of BATCH_SIZE rows after the validation rows are taken out."""
    rows = round(steps * BATCH_SIZE / (1 - VAL_FRAC))
    b = spec.batching
    n_chars = b.length + (rows - 1) * b.stride + 1  # window starts range(0, n_chars - length, stride): `rows` of them
    if n_chars > len(text):
        raise ZooError(f"{spec.name}: {steps} steps need {n_chars:,} characters; the corpus has {len(text):,}")
    return text[:n_chars]


def _addmm_inplace_flops(self_shape: Any, a_shape: Any, b_shape: Any, *args: Any, **kwargs: Any) -> int:
    """torch's counter knows addmm but not its in-place form, which zoo.recurrence uses."""
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


def text_batch(text: str, vocab: Vocab, length: int, seed: int) -> torch.Tensor:
    """BATCH_SIZE windows of `length` characters of `text` at random starts: a batch as training sees one."""
    ids = torch.tensor(vocab.encode(text))
    starts = torch.randint(0, len(ids) - length, (BATCH_SIZE,), generator=torch.Generator().manual_seed(seed))
    return ids[starts[:, None] + torch.arange(length)]


def step_flops(model: torch.nn.Module, x: torch.Tensor, vocab_size: int, targets_every: bool) -> int:
    """Floating-point operations of one training batch x (forward and backward), as torch's flop counter counts them.

    The counter sees the matrix products inside zoo's autograd functions too, so each side is credited
    with the work it actually does: zoo's algebra does fewer FLOPs for the same result (and how many fewer
    depends on the text: steps shared by rows with the same prefix are computed once, so x is real text).
    """
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: _addmm_inplace_flops}) as counter:
        if uses_fused_loss(model):  # as the trainer calls it
            y = torch.zeros(x.shape if targets_every else x.shape[:1], dtype=torch.long)
            model(x, targets=y).backward()
        else:
            logits = model(x)
            F.cross_entropy(logits.reshape(-1, vocab_size), torch.zeros(logits.numel() // vocab_size, dtype=torch.long)).backward()
    return counter.get_total_flops()


def matmul_ceiling(m: int, k: int, n: int, bursts: int = 9, burst_s: float = 0.05) -> float:
    """The best float32 rate (FLOP/s) of [m, k] @ [k, n] over several short bursts: a ceiling, so the best one counts."""
    a, b, c = torch.randn(m, k), torch.randn(k, n), torch.empty(m, n)
    best = 0.0
    for _ in range(bursts):
        t0, done = time.perf_counter(), 0
        while time.perf_counter() - t0 < burst_s:
            torch.mm(a, b, out=c)
            done += 1
        best = max(best, 2 * m * k * n * done / (time.perf_counter() - t0))
    return best


def bench_training(specs: list[ModelSpec], text: str, seed: int, steps: int, repeats: int, amp: bool = False) -> list[dict[str, Any]]:
    ceilings: dict[int, float] = {}  # the matmul ceiling per hidden size
    rows = []
    with PlainProcess(specs) as plain:
        warm_up(specs, sides=("zoo",))
        for spec in specs:
            t0 = time.perf_counter()
            try:
                rows.append(bench_model_training(spec, text, seed, steps, repeats, plain, ceilings, amp))
            except Exception as exc:  # report it; the exit status says it failed
                rows.append({"model": spec.name, "steps": steps, "error": f"{type(exc).__name__}: {exc}"})
            print(f"  train {spec.name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return rows


def bench_model_training(
    spec: ModelSpec, text: str, seed: int, steps: int, repeats: int, plain: PlainProcess, ceilings: dict[int, float], amp: bool = False
) -> dict[str, Any]:
    part = train_slice(text, spec, steps)
    hidden = spec.hparams.get("n_hidden", 256)
    if hidden not in ceilings:
        ceilings[hidden] = matmul_ceiling(BATCH_SIZE, hidden, hidden)
    vocab = Vocab.from_text(part)
    vocab_size = len(vocab)
    x = text_batch(part, vocab, spec.batching.length, seed)
    every = spec.batching.targets == "every"
    zoo_flops = step_flops(build(spec, vocab_size), x, vocab_size, every)
    plain_flops = step_flops(lesson_model(spec, vocab_size), x, vocab_size, every)
    zoo_cps, plain_cps = [], []
    with tempfile.TemporaryDirectory(prefix=f"perf-{spec.name}-") as tmp:
        path = Path(tmp) / "slice.txt"
        path.write_text(part, encoding="utf-8")
        for _ in range(repeats):  # alternate, so that the machine's load hits both sides alike
            zoo_cps.append(run_zoo(spec, str(path), seed, epochs=1, amp=amp)[0].chars_per_s)
            plain_cps.append(plain.run(spec, part, seed, spec.epoch_lrs()[:1]).chars_per_s)
    chars_per_step = BATCH_SIZE * spec.batching.length
    row: dict[str, Any] = {
        "model": spec.name,
        "steps": steps,
        "chars": len(part),
        "zoo": median(zoo_cps),
        "plain": median(plain_cps),
        "ratio": median([z / p for z, p in zip(zoo_cps, plain_cps)]),  # the pairs ran back to back
        "zoo_runs": zoo_cps,
        "plain_runs": plain_cps,
        "zoo_gflop_per_step": zoo_flops / 1e9,
        "plain_gflop_per_step": plain_flops / 1e9,
        "ceiling_gflops": ceilings[hidden] / 1e9,
    }
    row["zoo_ms_per_step"] = 1000 * chars_per_step / row["zoo"]
    row["plain_ms_per_step"] = 1000 * chars_per_step / row["plain"]
    row["zoo_ceiling"] = zoo_flops * row["zoo"] / chars_per_step / ceilings[hidden]
    row["plain_ceiling"] = plain_flops * row["plain"] / chars_per_step / ceilings[hidden]
    return row


def print_training(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'model':<18} {'steps':>5} {'zoo chars/s':>11} {'plain':>8} {'zoo/plain':>9} {'zoo ms/step':>11} {'plain':>6} "
        f"{'GFLOP/step zoo':>14} {'plain':>5} {'ceiling':>9} {'zoo':>5} {'plain':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<18} FAILED: {r['error']}")
            continue
        print(
            f"{r['model']:<18} {r['steps']:>5} {kilo(r['zoo']):>11} {kilo(r['plain']):>8} {fmt(r['ratio'], '.2f'):>9} "
            f"{fmt(r['zoo_ms_per_step'], '.1f'):>11} {fmt(r['plain_ms_per_step'], '.1f'):>6} "
            f"{fmt(r['zoo_gflop_per_step'], '.2f'):>14} {fmt(r['plain_gflop_per_step'], '.2f'):>5} "
            f"{fmt(r['ceiling_gflops'], '.0f') + ' GF/s':>9} {fmt(100 * r['zoo_ceiling'], '.0f') + '%':>5} "
            f"{fmt(100 * r['plain_ceiling'], '.0f') + '%':>5}"
        )
    print("(chars/s: input characters per second of training loop; ceiling: best float32 [512, H] @ [H, H] matmul rate here;")
    print(" GFLOP/step: each side's own forward and backward FLOPs per batch (zoo's algebra does fewer for the same result);")
    print(" the last two columns: the fraction of the ceiling each side's own FLOPs reach)")


# ---------------------------------------------------------------------------------------
# sampling


def _choose(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """What the lesson did: torch.multinomial on the softmax (argmax when greedy)."""
    if temperature <= 0:
        return logits.argmax(-1)
    return torch.multinomial(F.softmax(logits / temperature, -1), 1)[:, 0]


@torch.inference_mode()
def lesson_rerun(model: torch.nn.Module, ids: list[int], length: int, temperature: float, n: int, context: int) -> torch.Tensor:
    """(i) The lesson's get_next_n: the whole window through model.forward for every new character."""
    x = torch.tensor([ids] * n)
    out = []
    for _ in range(length):
        logits = model(x[:, -context:])
        nxt = _choose(logits[:, -1] if logits.dim() == 3 else logits, temperature)
        x = torch.cat((x[:, 1 - context :], nxt[:, None]), 1)
        out.append(nxt)
    return torch.stack(out, 1)


@torch.inference_mode()
def rnn_step(model: torch.nn.Module, ids: list[int], length: int, temperature: float, n: int) -> torch.Tensor:
    """(ii) nn.RNN carrying its state: one model.step per character (the state is never reset to a window)."""
    h = model.init_state(n)
    for c in ids:
        logits, h = model.step(torch.full((n,), c), h)
    out = []
    for _ in range(length):
        nxt = _choose(logits, temperature)
        logits, h = model.step(nxt, h)
        out.append(nxt)
    return torch.stack(out, 1)


@torch.inference_mode()
def zoo_torch_loop(model: torch.nn.Module, ids: list[int], length: int, temperature: float, n: int, context: int, seed: int) -> Any:
    """(iv) zoo's sampler loop in torch (sampling._sample_stepping with the fused form): what runs on devices other than the CPU."""
    noise = sampling.Noise(torch.Generator().manual_seed(seed), length, n, model.l_out.out_features) if temperature > 0 else None
    draw = sampling.Draw(temperature, None, noise)
    return sampling._sample_stepping(sampling.stepper(model), ids, length, context, draw, n, torch.device("cpu"))


def bench_sampling(length: int, many_length: int, repeats: int, default_threads: bool) -> list[dict[str, Any]]:
    m = zoo.load("char-rnn")
    model, ctx = m.model.eval(), m.context
    lesson = lesson_model(m.spec, len(m.vocab))  # the lesson's code (bench/plain_models.py) with the same weights
    lesson.load_state_dict(model.state_dict())
    lesson.eval()
    ids = m.vocab.encode(PROMPT)
    threads = torch.get_num_threads()
    # (label, temperature, samples, chars per sample, torch threads)
    configs = [("T=0.8, batch 1", 0.8, 1, length, threads), ("greedy, batch 1", 0.0, 1, length, threads)]
    configs.append(("T=0.8, 16 samples", 0.8, 16, many_length, threads))
    if default_threads and DEFAULT_THREADS != threads:  # what `zoo sample` and a plain script get by default
        configs.append((f"T=0.8, batch 1, {DEFAULT_THREADS} threads", 0.8, 1, length, DEFAULT_THREADS))
    rows = []
    for label, temperature, n, chars, config_threads in configs:
        t0 = time.perf_counter()
        torch.set_num_threads(config_threads)
        methods: dict[str, Callable[[int], Any]] = {
            "lesson (forward per char)": lambda seed, t=temperature, n=n, c=chars: lesson_rerun(lesson, ids, c, t, n, ctx),
            "nn.RNN step": lambda seed, t=temperature, n=n, c=chars: rnn_step(model, ids, c, t, n),
            "zoo (LoadedModel.sample)": lambda seed, t=temperature, n=n, c=chars: m.sample(
                PROMPT, c, temperature=t, seed=seed, num_samples=n
            ),
            "zoo, torch loop": lambda seed, t=temperature, n=n, c=chars: zoo_torch_loop(model, ids, c, t, n, ctx, seed),
        }
        names = list(methods)
        for name in names:  # once each, untimed: first-call costs (the fused table, torch's kernels)
            torch.manual_seed(0)
            methods[name](0)
        times: dict[str, list[float]] = {name: [] for name in names}
        for rep in range(repeats):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:  # interleaved, the order rotating
                torch.manual_seed(rep)
                t = time.perf_counter()
                methods[name](rep)
                times[name].append(time.perf_counter() - t)
        torch.set_num_threads(threads)
        cps = {name: n * chars / median(times[name]) for name in names}
        base = cps[names[0]]
        for name in names:
            rows.append(
                {"config": label, "method": name, "chars": chars, "threads": config_threads, "chars_per_s": cps[name],
                 "ratio": cps[name] / base, "runs_s": times[name]}
            )  # fmt: skip
        print(f"  sample {label}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return rows


def print_sampling(rows: list[dict[str, Any]], repeats: int) -> None:
    header = f"{'':<32} {'method':<28} {'chars/s':>9} {'× lesson':>8}"
    print(header)
    print("-" * len(header))
    last = None
    for r in rows:
        label = f"{r['config']} ({r['chars']:,} chars)" if r["config"] != last else ""
        last = r["config"]
        print(f"{label:<32} {r['method']:<28} {fmt(r['chars_per_s'], ',.0f'):>9} {fmt(r['ratio'], '.1f'):>8}")
    print(f"(char-rnn, bundled weights, prompt {PROMPT!r}; median of {repeats} interleaved repeats; with 16 samples chars/s counts")
    print(" all 16; the lesson's method and nn.RNN step draw with torch.multinomial, zoo with seeded Gumbel noise)")


# ---------------------------------------------------------------------------------------
# start-up and memory


def zoo_executable() -> str:
    beside = Path(sys.executable).with_name("zoo")
    found = str(beside) if beside.exists() else shutil.which("zoo")
    if found is None:
        raise ZooError("no `zoo` executable beside this Python or on PATH; install zoo first")
    return found


def bench_startup(runs: int) -> list[dict[str, Any]]:
    exe = zoo_executable()
    commands = {"zoo --help": [exe, "--help"], "zoo list": [exe, "list"]}
    for cmd in commands.values():  # untimed: fills the disk cache
        subprocess.run(cmd, capture_output=True, check=True)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, cmd in commands.items():
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            times[name].append(time.perf_counter() - t)
    return [{"command": name, "median_s": median(ts), "min_s": min(ts), "runs_s": ts} for name, ts in times.items()]


def print_startup(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        print(f"{r['command']:<12} median {r['median_s']:.3f} s, min {r['min_s']:.3f} s over {len(r['runs_s'])} runs")


# A wrapper whose only child is the measured command: its RUSAGE_CHILDREN maxrss is that command's peak.
_PEAK = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, capture_output=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"  # noqa: E501


def peak_rss_mb(cmd: list[str], env: dict[str, str]) -> float:
    done = subprocess.run([sys.executable, "-c", _PEAK, *cmd], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise ZooError(f"{' '.join(cmd[:3])} … failed: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
    return int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def bench_memory(specs: list[ModelSpec], data: str, steps: int, threads: int) -> list[dict[str, Any]]:
    exe = zoo_executable()
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "ZOO_PROGRESS": "0"}
    rows = [{"model": "(import torch, zoo only)", "peak_mb": peak_rss_mb([sys.executable, "-c", "import torch, zoo.api"], env)}]
    with tempfile.TemporaryDirectory(prefix="perf-memory-") as tmp:
        for spec in specs:
            row: dict[str, Any] = {"model": spec.name, "steps": steps}
            cmd = [exe, "train", spec.name, "--data", data, "--max-steps", str(steps), "--device", "cpu", "-q"]
            try:
                row["peak_mb"] = peak_rss_mb([*cmd, "--out", str(Path(tmp) / spec.name)], env)
            except ZooError as exc:
                row["error"] = str(exc)
            rows.append(row)
            print(f"  memory {spec.name}: done", file=sys.stderr, flush=True)
    return rows


def print_memory(rows: list[dict[str, Any]], data: str, chars: int) -> None:
    for r in rows:
        if "error" in r:
            print(f"{r['model']:<26} FAILED: {r['error']}")
        else:
            steps = f"  ({r['steps']} steps)" if "steps" in r else ""
            print(f"{r['model']:<26} {r['peak_mb']:>7.0f} MB{steps}")
    print(f"(peak resident memory of `zoo train NAME --data {data} --max-steps N --device cpu -q`; the text has {chars:,} chars)")


# ---------------------------------------------------------------------------------------


def problems(report: dict[str, Any]) -> list[str]:
    """Why the run fails: a section that raised, a model that failed, or a missing or non-finite figure."""
    found = [f"{name}: {error}" for name, error in report.get("errors", {}).items()]
    for r in report.get("train", []):
        if "error" in r or not all(math.isfinite(r.get(k, math.nan)) and r[k] > 0 for k in ("zoo", "plain", "ratio", "zoo_ceiling")):
            found.append(f"train {r['model']}: {r.get('error', 'missing or non-finite figures')}")
    for r in report.get("sample", []):
        if not (math.isfinite(r["chars_per_s"]) and r["chars_per_s"] > 0):
            found.append(f"sample {r['config']} {r['method']}: no throughput")
    for r in report.get("startup", []):
        if not math.isfinite(r["median_s"]):
            found.append(f"startup {r['command']}: no time")
    for r in report.get("memory", []):
        if "error" in r or not r.get("peak_mb", 0) > 0:
            found.append(f"memory {r['model']}: {r.get('error', 'no figure')}")
    return found


def goals(report: dict[str, Any]) -> list[str]:
    lines = []
    train = [r for r in report.get("train", []) if "ratio" in r]
    if train:
        short = [f"{r['model']} {r['ratio']:.2f}" for r in train if not r["ratio"] >= GOALS["train_ratio"]]
        lines.append(
            f"training ≥ {GOALS['train_ratio']}× the plain loop: " + ("met" if not short else "not met (" + ", ".join(short) + ")")
        )
    zoo_row = next((r for r in report.get("sample", []) if r["config"] == "T=0.8, batch 1" and r["method"].startswith("zoo (")), None)
    if zoo_row is not None:
        ok = zoo_row["chars_per_s"] >= GOALS["sample_chars_per_s"] and zoo_row["ratio"] >= GOALS["sample_ratio"]
        lines.append(
            f"sampling ≥ {GOALS['sample_chars_per_s']:,} chars/s and ≥ {GOALS['sample_ratio']:.0f}× the lesson's method: "
            f"{'met' if ok else 'not met'} ({zoo_row['chars_per_s']:,.0f} chars/s, {zoo_row['ratio']:.1f}×)"
        )
    startup = report.get("startup", [])
    if startup:
        worst = max(r["median_s"] for r in startup)
        lines.append(
            f"start-up ≤ {GOALS['startup_s']} s: {'met' if worst <= GOALS['startup_s'] else 'not met'} (slowest median {worst:.3f} s)"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help=DATA_HELP)
    parser.add_argument("--models", default="*", help="fnmatch pattern of lesson model names, for train and memory (default: all)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads, here and in the memory runs (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, help="training batches per run (default 100; smoke 8)")
    parser.add_argument("--repeats", type=int, help="training runs per side (default 3; smoke 1)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures as JSON to OUT")
    parser.add_argument("--smoke", action="store_true", help="CI check: few steps and repeats; memory for char-rnn on the slice only")
    parser.add_argument("--amp", action="store_true", help="train: zoo with --amp (bf16 autocast on a CPU with native bf16)")
    args = parser.parse_args(argv)
    if json_folder_missing(args.json):
        return 2
    args.data = args.data or default_data(args.smoke)
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if not sections or any(s not in SECTIONS for s in sections):
        print(f"--sections: choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    plan = dict(SMOKE if args.smoke else FULL)
    plan.update({k: v for k, v in (("steps", args.steps), ("repeats", args.repeats)) if v is not None})
    if plan["steps"] < 1 or plan["repeats"] < 1 or args.threads < 1:
        print("--steps, --repeats and --threads must be at least 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    specs = [s for s in registry.list_models(tag="lesson6") if is_lesson_model(s) and fnmatch.fnmatchcase(s.name, args.models)]
    if not specs:
        print(f"no lesson model matches {args.models!r}", file=sys.stderr)
        return 2
    text = ""
    if {"train", "memory"} & set(sections):  # the others need no corpus
        try:
            text = resolve(args.data, "nietzsche", registry.datasets()).read_text()
        except ZooError as exc:
            print(f"--data {args.data}: {exc}", file=sys.stderr)
            return 2

    info = machine()
    print(
        f"machine: {info['cpu_count']} CPUs ({info['cpu']}), torch {info['torch']} with {torch.get_num_threads()} thread(s), "
        f"python {info['python']}, zoo {info['zoo']}, {info['date']}; {load()}"
    )
    corpus = f"data: {args.data}: {len(text):,} chars; " if text else ""
    amp = "; zoo trains with --amp (bf16 autocast), the plain loop in float32" if args.amp else ""
    print(f"{corpus}seed {args.seed}; {'smoke' if args.smoke else 'full'} mode{amp}")
    report: dict[str, Any] = {"machine": info, "threads": torch.get_num_threads(), "smoke": args.smoke, "amp": args.amp, "plan": plan}
    report["errors"] = {}
    loads = {}
    with tempfile.TemporaryDirectory(prefix="perf-data-") as tmp:
        for section in sections:
            print()
            try:
                if section == "train":
                    print(f"== training: {plan['steps']} batches of {BATCH_SIZE} per run, {plan['repeats']} run(s) per side, alternating")
                    report["train"] = bench_training(specs, text, args.seed, plan["steps"], plan["repeats"], args.amp)
                    print_training(report["train"])
                elif section == "sample":
                    print("== sampling")
                    report["sample"] = bench_sampling(plan["length"], plan["many_length"], plan["sample_repeats"], plan["default_threads"])
                    print_sampling(report["sample"], plan["sample_repeats"])
                elif section == "startup":
                    print("== start-up")
                    report["startup"] = bench_startup(plan["startup_runs"])
                    print_startup(report["startup"])
                elif section == "memory":
                    print("== memory")
                    mem_specs, data, chars = specs, args.data, len(text)
                    if args.smoke:  # one model, on a slice
                        spec = next((s for s in specs if s.name == "char-rnn"), specs[0])
                        part = train_slice(text, spec, plan["steps"])
                        data, chars, mem_specs = str(Path(tmp) / "slice.txt"), len(part), [spec]
                        Path(data).write_text(part, encoding="utf-8")
                    report["memory"] = bench_memory(mem_specs, data, plan["memory_steps"], args.threads)
                    print_memory(report["memory"], data, chars)
            except Exception as exc:  # the other sections still run; the exit status says it failed
                report["errors"][section] = f"{type(exc).__name__}: {exc}"
                print(f"FAILED: {report['errors'][section]}")
            loads[section] = load()
            print(f"({loads[section]} after this section)")
    report["load_after"] = loads

    found = problems(report)
    print()
    for line in goals(report):
        print(f"goal: {line}")
    if args.json:
        args.json.write_text(json.dumps({**report, "problems": found}, indent=2) + "\n")
    if found:
        print("\n".join(f"FAIL {p}" for p in found))
    else:
        print("every section ran cleanly")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
