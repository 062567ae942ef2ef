"""Benchmark (issue 20): how fast the bundled char-transformer samples, through its key/value cache and without it.

Both paths follow the same window rule (zoo.sampling): each prediction sees the characters since the window's
start, which restarts from the last W // 2 characters when W would be passed. The cached path extends a
key/value cache by one character per step (the model's NumPy kernel at batch 1 on the CPU, torch otherwise); the
uncached one (`zoo.sampling.sample_uncached`) runs forward over the whole window for every character. The same seed
must give the same text on both: the benchmark checks it and fails if not. The goal (issue 20): >= 5,000 chars/s at
temperature 0.8, batch 1, on a 2-core CPU.

    .venv/bin/python bench/transformer.py                  # the figures (~1 minute)
    .venv/bin/python bench/transformer.py --smoke          # CI: a few hundred characters, seconds
    .venv/bin/python bench/transformer.py --json out.json

Exit status: 1 if the texts differ or a path failed; 2 for bad arguments. Whether the goal was reached is printed,
not turned into the exit status: it depends on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lesson6 import json_folder_missing, machine
from perf import load, median

import zoo
from zoo import sampling

MODEL = "char-transformer"
PROMPT = "for thos"
TEMPERATURE = 0.8
GOAL = 5000  # chars/s, cached, batch 1, temperature 0.8
# (label, samples, characters per sample): batch 1 runs the NumPy kernel, 16 samples torch's extend
FULL = {"configs": [("T=0.8, batch 1", 1, 2000), ("T=0.8, 16 samples", 16, 500)], "repeats": 5}
SMOKE = {"configs": [("T=0.8, batch 1", 1, 200), ("T=0.8, 16 samples", 16, 100)], "repeats": 1}


def paths(m: Any) -> dict[str, Callable[[int, int, int], list[str]]]:
    """The two ways to sample `m`, as (samples, chars, seed) -> texts."""

    def cached(n: int, chars: int, seed: int) -> list[str]:
        texts = m.sample(PROMPT, chars, temperature=TEMPERATURE, seed=seed, num_samples=n)
        return [texts] if isinstance(texts, str) else texts  # one sample comes back as a string

    def uncached(n: int, chars: int, seed: int) -> list[str]:
        return sampling.sample_uncached(
            m.model, m.vocab, PROMPT, chars, context=m.context, temperature=TEMPERATURE, seed=seed, num_samples=n
        )

    return {"cached (zoo sample)": cached, "uncached (forward per char)": uncached}


def bench(m: Any, label: str, n: int, chars: int, repeats: int) -> list[dict[str, Any]]:
    methods = paths(m)
    texts = {name: run(n, chars, 0) for name, run in methods.items()}  # untimed: first-call costs, and the check
    same = len({tuple(t) for t in texts.values()}) == 1
    times: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    for rep in range(repeats):
        for name in names[rep % 2 :] + names[: rep % 2]:  # interleaved, the order alternating
            t = time.perf_counter()
            methods[name](n, chars, rep)
            times[name].append(time.perf_counter() - t)
    return [
        {"config": label, "method": name, "samples": n, "chars": chars, "chars_per_s": n * chars / median(times[name]),
         "runs_s": times[name], "same_text": same}
        for name in names
    ]  # fmt: skip


def print_rows(rows: list[dict[str, Any]], repeats: int) -> None:
    header = f"{'':<34} {'method':<28} {'chars/s':>9}"
    print(header)
    print("-" * len(header))
    last = None
    for r in rows:
        label = f"{r['config']} ({r['chars']:,} chars)" if r["config"] != last else ""
        last = r["config"]
        print(f"{label:<34} {r['method']:<28} {r['chars_per_s']:>9,.0f}")
    print(f"({MODEL}, bundled weights, prompt {PROMPT!r}; median of {repeats} interleaved repeats; with 16 samples chars/s counts all 16)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1: what a sampler at batch 1 needs)")
    parser.add_argument("--repeats", type=int, help="timed runs per path (default 5; smoke 1)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures as JSON to OUT")
    parser.add_argument("--smoke", action="store_true", help="CI check: a few hundred characters, one repeat")
    args = parser.parse_args(argv)
    if json_folder_missing(args.json):
        return 2
    plan = dict(SMOKE if args.smoke else FULL)
    repeats = plan["repeats"] if args.repeats is None else args.repeats
    if repeats < 1 or args.threads < 1:
        print("--repeats and --threads must be at least 1", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    info = machine()
    print(
        f"machine: {info['cpu_count']} CPUs ({info['cpu']}), torch {info['torch']} with {args.threads} thread(s), "
        f"python {info['python']}, zoo {info['zoo']}, {info['date']}; {load()}"
    )
    m = zoo.load(MODEL)
    print(f"{MODEL}: {m.num_params:,} parameters, window {m.context}; {'smoke' if args.smoke else 'full'} mode\n")
    rows = [row for label, n, chars in plan["configs"] for row in bench(m, label, n, chars, repeats)]
    print_rows(rows, repeats)
    print(f"({load()} after)")
    batch1 = next(r for r in rows if r["samples"] == 1 and r["method"].startswith("cached"))
    met = batch1["chars_per_s"] >= GOAL
    verdict = f"{'met' if met else 'not met'} ({batch1['chars_per_s']:,.0f} chars/s)"
    print(f"\ngoal: cached sampling >= {GOAL:,} chars/s at T={TEMPERATURE}, batch 1: {verdict}")
    different = sorted({r["config"] for r in rows if not r["same_text"]})
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "threads": args.threads, "smoke": args.smoke, "rows": rows, "goal_met": met}, indent=2) + "\n"
        )
    if different:
        print(f"FAIL the cached and uncached paths gave different text for the same seed: {', '.join(different)}")
        return 1
    print("cached and uncached: the same text for the same seed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
