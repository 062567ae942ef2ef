"""Benchmark (issue 20): a third-party cache model's sampling speed, cached against uncached.

The model is tests/fixtures/zoo-char-attn (a causal character transformer written from docs/plugins.md alone:
2 layers, 4 heads, 64-dim, 32 learned positions), registered in process with zoo.testing.registered_plugin from
its source folder, trained briefly on its own dataset, then sampled at temperature 0.8, batch 1:

- **cached**: `LoadedModel.sample`, which runs the model's `init_cache` / `extend` (zoo/sampling.py);
- **uncached**: `zoo.sampling.sample_uncached`, `forward` over the whole window for every character.

Each is timed `--repeats` times (the best is reported, in characters per second), after one warm-up. Both must give
the same text for the same seed (the contract's test of the cache); speed is printed, never turned into the exit
status (it depends on the machine and its load).

    .venv/bin/python bench/third_party.py                 # full: 20,000 cached and 2,000 uncached characters
    .venv/bin/python bench/third_party.py --smoke         # CI: seconds

Exit status: 1 if the cached and the uncached text differ, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import zoo
from zoo.sampling import sample_uncached
from zoo.testing import registered_plugin

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "zoo-char-attn"
MODEL, TEMPERATURE = "char-attn", 0.8


def best_rate(draw: Callable[[], str], length: int, repeats: int) -> tuple[float, str]:
    """Characters per second of the fastest of `repeats` calls of `draw` (after a warm-up), and its text."""
    text = draw()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        text = draw()
        best = min(best, time.perf_counter() - start)
    return length / best, text


def measure(m: zoo.tasks.LoadedModel, cached_len: int, uncached_len: int, repeats: int) -> dict[str, float | bool]:
    prompt = m.config["prompt"]
    cached, cached_text = best_rate(lambda: m.sample(prompt, length=cached_len, temperature=TEMPERATURE, seed=0), cached_len, repeats)

    def uncached_draw() -> str:
        return sample_uncached(m.model, m.vocab, prompt, uncached_len, context=m.context, temperature=TEMPERATURE, seed=0)[0]

    uncached, uncached_text = best_rate(uncached_draw, uncached_len, repeats)
    same = m.sample(prompt, length=uncached_len, temperature=TEMPERATURE, seed=0) == uncached_text
    return {"cached": cached, "uncached": uncached, "same_text": same and len(cached_text) == cached_len}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CI mode: a few training steps, short samples")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per path (default 3, smoke 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (1 if args.smoke else 3)
    if repeats < 1 or args.threads < 1:
        parser.error("--repeats and --threads must be at least 1")
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(FIXTURE))  # the plugin's source folder, as an editable install would put it
    import zoo_char_attn

    steps, cached_len, uncached_len = (5, 300, 100) if args.smoke else (300, 20_000, 2_000)
    with registered_plugin(zoo_char_attn, name=MODEL), tempfile.TemporaryDirectory(prefix="zoo-bench-") as tmp:
        zoo.train(MODEL, max_steps=steps, batch_size=64, seed=0, out=Path(tmp) / MODEL, quiet=True, device="cpu")
        m = zoo.load(Path(tmp) / MODEL)
        result = measure(m, cached_len, uncached_len, repeats)
    print(f"{MODEL} ({m.num_params:,} params, context {m.context}), temperature {TEMPERATURE}, batch 1, {args.threads} thread(s)")
    print(f"  cached    {result['cached']:>9,.0f} chars/s  ({cached_len:,} chars, best of {repeats})")
    print(f"  uncached  {result['uncached']:>9,.0f} chars/s  ({uncached_len:,} chars, best of {repeats})")
    print(f"  cached / uncached: {result['cached'] / result['uncached']:.1f}x; same text for the same seed: {result['same_text']}")
    return 0 if result["same_text"] else 1


if __name__ == "__main__":
    sys.exit(main())
