"""Benchmark (issue 22): the best character model per CPU-minute, on the held-out last 10% of Nietzsche.

Each row trains one model with its recipe (seed 0, the first 90% of the text, original case, zoo's
vocabulary built from the whole text before the split) for at most BUDGET seconds of wall time, the
per-epoch validation and checkpoints included, and is evaluated after every epoch on the held-out tail:
the last 10%, no training window of which reaches into it. The table gives, per row, the held-out loss
of the weights the run had after 5, 10, 20 and 30 minutes of training (the last epoch finished by then,
in the same run; training minutes leave validation out), the final loss in nats and bits per character,
epochs, training chars/s, and the run's wall-clock and CPU minutes.

Two tables:
- the leaderboard (default): the registered models, each with its own recipe;
- the ablation (`--ablation`): char-awd-lstm's recipe against the same recipe with one lever changed.

    .venv/bin/python bench/best.py --ablation --rows recipe --out runs/best   # the chosen recipe (~30 min)
    .venv/bin/python bench/best.py --out runs/best                            # the leaderboard (~2.5 h)
    .venv/bin/python bench/best.py --smoke                                    # CI: tiny models, seconds

With --out, finished rows are kept there (DIR/ROW/bench.json) and a later call reuses them, so a long table
can be measured in parts. Exit status: 1 if a row failed or gave a non-finite loss; 2 for bad arguments.
Whether 1.25 was reached is printed, not turned into the exit status: it depends on the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lesson6 import DATA_HELP, default_data, held_out_curve, json_folder_missing, machine
from safetensors.torch import load_file

import zoo
from zoo import Stage, hookimpl, registry
from zoo.data.sources import resolve
from zoo.errors import ZooError
from zoo.testing import registered_plugin

LN2 = math.log(2)
MARKS = (5, 10, 20, 30)  # training minutes
GOAL = 1.25
VAL_FRAC = 0.1


@dataclass(frozen=True)
class Row:
    """One line of a table: a registered model, optionally with some of its spec's fields changed."""

    name: str  # the row's name, and the name its changed spec registers under
    model: str  # the registered model it starts from
    lever: str = ""  # what this row changes, for the ablation table
    changes: dict[str, Any] = field(default_factory=dict)  # ModelSpec fields; "hparams" merges into the spec's
    amp: bool | None = None  # zoo.train(amp=...): None is zoo's default (off on the CPU)

    def spec(self) -> Any:
        base = registry.get_model(self.model)
        changes = dict(self.changes)
        if "hparams" in changes:
            changes["hparams"] = {**base.hparams, **changes["hparams"]}
        return dataclasses.replace(base, name=self.name, plugin="", **changes) if self.name != self.model else base


MODELS = ("char-rnn", "char-gru", "char-lstm", "char-transformer", "char-awd-lstm")
LEADERBOARD = [Row(m, m, amp=True if m == "char-awd-lstm" else None) for m in MODELS]

AWD = "char-awd-lstm"
RECIPE_EPOCHS = 33  # the recipe's epochs in all: the flat-rate row trains as many (a test holds the two equal)
ABLATION = [
    Row(AWD, AWD, "the recipe: bf16 autocast, batches of 32, dropouts 0.4/0.2, 33 epochs stepped down", amp=True),
    Row(
        "28-epochs",
        AWD,
        "28 epochs (2e-3 x 14, 1e-3 x 6, 5e-4 x 4, 2.5e-4 x 4)",
        {"recipe": (Stage(lr=2e-3, epochs=14), Stage(lr=1e-3, epochs=6), Stage(lr=5e-4, epochs=4), Stage(lr=2.5e-4, epochs=4))},
        amp=True,
    ),
    Row("light-dropout", AWD, "weight and hidden dropout 0.2/0.1", {"hparams": {"weight_p": 0.2, "hidden_p": 0.1}}, amp=True),
    Row("float32", AWD, "float32 instead of bf16 autocast", amp=False),
    Row("batch-64", AWD, "batches of 64 streams instead of 32", {"batch_size": 64}, amp=True),
    Row("flat-lr", AWD, "the rate held at 2e-3", {"recipe": (Stage(lr=2e-3, epochs=RECIPE_EPOCHS),)}, amp=True),
]


class _Registers:
    def __init__(self, spec: Any) -> None:
        self._spec = spec

    @hookimpl
    def zoo_register_models(self, register: Any) -> None:
        register(self._spec)


class KeepLast:
    """Training callback: keeps the last `n` epochs' weights (DIR/epochs/NNN.safetensors) for the averaged figure."""

    def __init__(self, n: int) -> None:
        self.n = n

    def on_epoch_end(self, run: Any, epoch: int, metrics: dict[str, float]) -> None:
        folder = Path(run.out_dir) / "epochs"
        folder.mkdir(exist_ok=True)
        shutil.copyfile(Path(run.out_dir) / "model.safetensors", folder / f"{epoch:03d}.safetensors")
        for old in sorted(folder.glob("*.safetensors"))[: -self.n]:
            old.unlink()


def averaged_loss(run_dir: Path, n: int) -> float | None:
    """The held-out loss of the mean of the last `n` epochs' weights (SWA over the run's end: a lever measured
    without training again); None for a run of fewer epochs."""
    files = sorted((run_dir / "epochs").glob("*.safetensors"))[-n:]
    if n < 2 or len(files) < n:
        return None
    m = zoo.load(run_dir)
    weights = [load_file(f) for f in files]
    mean = {k: torch.stack([w[k].double() for w in weights]).mean(0).to(weights[0][k].dtype) for k in weights[0]}
    m.model.load_state_dict(mean, strict=False)  # a tied decoder follows the embedding it shares
    return m.evaluate()["val_loss"]


def trained(spec: Any, amp: bool | None) -> dict[str, Any]:
    """What a row trains, as kept in its bench.json: a kept row is reused only for the same."""
    return {
        "model": spec.name,
        "hparams": spec.hparams,
        "batch_size": spec.batch_size,
        "recipe": [[stage.lr, stage.epochs] for stage in spec.recipe],
        "amp": amp,
    }


def curve_at(curve: list[tuple[float, float]], seconds: float) -> float | None:
    """The held-out loss of the last epoch finished within `seconds` of training; None before the first."""
    done = [loss for spent, loss in curve if spent <= seconds]
    return done[-1] if done else None


def run_row(row: Row, data: str, out: Path, budget: float, seed: int, tiny: bool, average: int) -> dict[str, Any]:
    result: dict[str, Any] = {"row": row.name, "model": row.model, "lever": row.lever}
    kept = out / row.name / "bench.json"
    spec = row.spec()
    if kept.exists():
        found = json.loads(kept.read_text())
        if found.get("trained") != trained(spec, row.amp):
            return {**result, "error": f"{kept.parent} holds a run of another recipe; delete it or choose another --out"}
        print(f"  {row.name}: kept from {kept}", file=sys.stderr)
        return {**found, **result}  # labelled as this table labels it
    if tiny:
        spec = dataclasses.replace(spec, name=f"{row.name}-tiny", plugin="", hparams={**spec.hparams, **spec.tiny})
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        changed = spec.name != row.model  # a changed spec trains under its own name, registered while it runs
        with registered_plugin(_Registers(spec), f"bench-best-{spec.name}") if changed else contextlib.nullcontext():
            m = zoo.train(
                spec.name, data=data, split="tail", val_frac=VAL_FRAC, max_seconds=budget, seed=seed,
                out=out / row.name, quiet=True, amp=row.amp, callbacks=[KeepLast(average)],
            )  # fmt: skip
            curve, state = held_out_curve(m, out / row.name)
            wall_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
            # what `zoo eval RUN` prints: float32, whatever the run trained in (bf16 autocast validates in bf16)
            final = zoo.load(out / row.name).evaluate()["val_loss"]
            averaged = averaged_loss(out / row.name, average)
        losses = [v for _, v in curve]
        if not all(math.isfinite(v) for v in losses):
            raise ZooError(f"non-finite held-out loss: {losses}")
        result.update(
            trained=trained(spec, row.amp),
            params=m.num_params,
            epochs=round(state["global_step"] / state["steps_per_epoch"], 2) if state.get("steps_per_epoch") else len(curve),
            chars_per_s=state["trained_items"] / max(1e-9, state["trained_seconds"]),
            trained_s=state["trained_seconds"],
            wall_s=wall_s,
            cpu_s=cpu_s,
            at={str(mark): curve_at(curve, mark * 60) for mark in MARKS},
            final=final,
            averaged=averaged,
            averaged_over=average,
            curve=curve,
            machine=machine(),
        )
        kept.write_text(json.dumps(result, indent=1))
    except Exception as exc:  # report it; the exit status says it failed
        result["error"] = f"{type(exc).__name__}: {exc}"
    print(f"  {row.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return result


def fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict[str, Any]], ablation: bool) -> None:
    first = "lever" if ablation else "model"
    width = max([len(first)] + [len(r["lever"] if ablation else r["row"]) for r in rows])
    marks = " ".join(f"{f'{m} min':>7}" for m in MARKS)
    header = (
        f"{first:<{width}} {'params':>9} {'epochs':>6} {'chars/s':>7} {marks} {'final':>7} {'bits':>6} {'averaged':>8} "
        f"{'train min':>9} {'wall min':>8} {'CPU min':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        label = r["lever"] if ablation else r["row"]
        if "error" in r:
            print(f"{label:<{width}} FAILED: {r['error']}")
            continue
        at = " ".join(f"{fmt(r['at'][str(m)]):>7}" for m in MARKS)
        print(
            f"{label:<{width}} {r['params']:>9,} {r['epochs']:>6} {r['chars_per_s']:>7,.0f} {at} {r['final']:>7.4f} "
            f"{r['final'] / LN2:>6.4f} {fmt(r['averaged']):>8} {r['trained_s'] / 60:>9.1f} {r['wall_s'] / 60:>8.1f} {r['cpu_s'] / 60:>7.1f}"
        )
    print(f"(nats/char on the held-out last {VAL_FRAC:.0%} of the text after 5-30 minutes of training, validation")
    print(" excluded: the last epoch finished by then, in the same run; final: where the run ended, as `zoo eval` gives")
    print(" it, in nats and bits; averaged: the mean of the last epochs' weights, evaluated the same way)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help=DATA_HELP)
    parser.add_argument("--ablation", action="store_true", help="the ablation table of char-awd-lstm's recipe")
    parser.add_argument("--rows", help="comma-separated row names (default: every row of the table)")
    parser.add_argument("--budget", type=float, default=1800.0, help="seconds of wall time per row (default 1800)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2: the 2-core VM's figures)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--average", type=int, default=4, help="the averaged column: the mean of the last N epochs' weights (default 4)")
    parser.add_argument("--out", type=Path, help="keep the runs here and reuse finished rows (default: a temporary folder)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the figures as JSON")
    parser.add_argument("--smoke", action="store_true", help="CI check: tiny models on the first 30,000 characters, seconds each")
    args = parser.parse_args(argv)
    if json_folder_missing(args.json):
        return 2
    table = ABLATION if args.ablation else LEADERBOARD
    wanted = args.rows.split(",") if args.rows else [r.name for r in table]
    rows = [r for r in table if r.name in wanted]
    if len(rows) != len(set(wanted)) or args.budget <= 0:
        print(f"best.py: rows are {', '.join(r.name for r in table)}; --budget must be positive", file=sys.stderr)
        return 2
    args.data = args.data or default_data(args.smoke)
    try:
        text = resolve(args.data, "nietzsche", registry.datasets()).read_text()
    except ZooError as exc:
        print(f"best.py: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(1 if args.smoke else args.threads)
    budget = 3.0 if args.smoke else args.budget
    with tempfile.TemporaryDirectory(prefix="zoo-best-") as tmp:
        data = args.data
        if args.smoke:
            data = str(Path(tmp) / "slice.txt")
            Path(data).write_text(text[:30_000], encoding="utf-8")
        out = Path(tmp) / "runs" if args.smoke or not args.out else args.out
        print(f"{machine()}; budget {budget:.0f} s per row", file=sys.stderr)
        results = [run_row(r, data, out, budget, args.seed, args.smoke, args.average) for r in rows]
    print_table(results, args.ablation)
    ok = [r for r in results if "error" not in r]
    if ok and not args.smoke:
        best = min(ok, key=lambda r: r["final"])
        met = best["final"] <= GOAL and best["wall_s"] <= 1800
        print(f"\ngoal: held-out <= {GOAL} nats/char within 30 minutes: {'met' if met else 'not met'} "
              f"(best: {best['row']} {best['final']:.4f} after {best['wall_s'] / 60:.1f} wall minutes)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "budget": budget, "rows": results}, indent=1))
    return 1 if len(ok) < len(results) else 0


if __name__ == "__main__":
    sys.exit(main())
