"""`zoo compare`: train several models under the same wall-clock budget and rank them.

Every model is trained with the same leak-free validation (the contiguous end of the text,
the last `val_frac` of it, 20% by default) and evaluated in nats and bits per character.
Training runs in a few chunks (each a resume of the last), so each model gets a curve of
held-out loss against training time. A finished comparison run with the same budget, data
and `val_frac` is reused, not trained again; an unfinished one is resumed. A run that held out
a different fraction is refused (its training may have seen the new held-out text).
"""

from __future__ import annotations

import fnmatch
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zoo import api, pipeline, registry, rundir
from zoo.errors import ZooError
from zoo.fileio import atomic_write_bytes, atomic_write_json, read_json
from zoo.options import DEFAULT_VAL_FRAC, check_val_frac, percent
from zoo.spec import ModelSpec
from zoo.tasks import LoadedModel
from zoo.trainer import TrainingInterrupted

CHUNKS = 4
RESULT = "compare.json"  # a finished comparison run's entry, beside the run's own files
PROGRESS = "compare.progress.json"  # the curve so far of one still training


@dataclass
class Entry:
    model: str
    params: int
    epochs_done: float
    s_per_epoch: float | None
    chars_per_s: float | None
    val_loss: float
    val_bpc: float
    reference: float | None
    curve: list[tuple[float, float]]  # (training seconds so far, held-out loss)


def _progress(m: LoadedModel) -> tuple[float, float | None, float | None]:
    """Epochs done (fractional), seconds per epoch and items per second, from the run's checkpoint."""
    st = rundir.read_checkpoint_state(m.path)
    per_epoch = st.get("steps_per_epoch") or 0
    epochs = st["global_step"] / per_epoch if per_epoch else float(st["epoch"])
    seconds = st.get("trained_seconds") or 0.0
    s_per_epoch = seconds / epochs if epochs and seconds else None
    rate = st.get("trained_items", 0) / seconds if seconds else None
    return epochs, s_per_epoch, rate


def _check_same_comparison(out: Path, recorded: dict[str, Any], budget: float, data: str | None) -> None:
    """A run in `out` made for another budget or data cannot stand for this comparison: refuse, keep it."""
    if recorded.get("budget", budget) != budget:  # its curve was measured in chunks of another length
        wanted = f"a {recorded['budget']:g} s budget, not {budget:g} s"
    elif recorded.get("data", data) != data:
        wanted = f"data {recorded['data'] or 'the default'!r}, not {data or 'the default'!r}"
    else:
        return
    raise ZooError(f"{out} holds a comparison run made with {wanted}; choose another --out (or delete that folder to train it again)")


def run_one(name: str, out: Path, budget: float, data: str | None, device: str, quiet: bool, val_frac: float = DEFAULT_VAL_FRAC) -> Entry:
    done = out / RESULT
    if done.exists():
        record = read_json(done)
        same = record.get("budget") == budget and record.get("data") == data
        if same and record.get("val_frac", DEFAULT_VAL_FRAC) == val_frac:  # older records held out 0.2
            return Entry(**{k: v for k, v in record["entry"].items()})
        if rundir.holds_run(out):
            _check_same_comparison(out, record, budget, data)
    if rundir.holds_run(out):
        held = rundir.read_config(out).get("val_frac", DEFAULT_VAL_FRAC)
        if held != val_frac:  # its training saw text that is now held out, or lacks text it may train on
            raise ZooError(
                f"{out} holds a run that held out {percent(held)} of the text, not {percent(val_frac)}; "
                f"choose another --out (or delete that folder to train it again)"
            )
    spec = registry.get_model(name)
    chunk = budget / CHUNKS  # each chunk trains for this long; setup and evaluation are not counted
    curve: list[tuple[float, float]] = []
    spent = 0.0
    if rundir.has_checkpoint(out) and (out / PROGRESS).exists():
        progress = read_json(out / PROGRESS)
        _check_same_comparison(out, progress, budget, data)  # (progress files from before it kept no budget)
        curve = [tuple(p) for p in progress.get("curve", [])]
        spent = progress.get("spent", 0.0)
    m = None
    while len(curve) < CHUNKS:
        t0 = time.perf_counter()
        epochs = max(spec.epochs, 1000)  # the budget, not the recipe, ends training
        try:
            if rundir.holds_run(out):
                m = api.train(resume=out, epochs=epochs, device=device, max_seconds=chunk, quiet=quiet)
            else:
                m = api.train(
                    name, data=data, split="tail", val_frac=val_frac, epochs=epochs, device=device, out=out, max_seconds=chunk,
                    quiet=quiet,
                )  # fmt: skip
        except TrainingInterrupted as exc:  # `zoo train --resume` of this run would train its 1,000 epochs, not the budget
            raise TrainingInterrupted(exc.said, "Continue the comparison by running the same zoo compare again") from None
        spent += time.perf_counter() - t0
        loss = m.evaluate(data=data, split="tail", val_frac=val_frac)["val_loss"]
        curve.append((spent, loss))
        atomic_write_json(out / PROGRESS, {"curve": curve, "spent": spent, "budget": budget, "data": data})
    if m is None:
        m = api.load(out)
    result = m.evaluate(data=data, split="tail", val_frac=val_frac)
    epochs_done, s_per_epoch, rate = _progress(m)
    entry = Entry(
        model=name,
        params=m.num_params,
        epochs_done=round(epochs_done, 2),
        s_per_epoch=s_per_epoch,
        chars_per_s=rate,
        val_loss=result["val_loss"],
        val_bpc=result["val_bpc"],
        reference=_final_reference(spec, m),
        curve=[list(p) for p in curve],
    )
    atomic_write_json(done, {"budget": budget, "data": data, "val_frac": val_frac, "entry": asdict(entry)})
    print(f"compare: {name} done: held-out {entry.val_loss:.4f} nats/char after {entry.epochs_done:.2f} epochs", file=sys.stderr)
    return entry


def _final_reference(spec: ModelSpec, m: LoadedModel) -> float | None:
    """The spec's last published validation loss, when the run trained on the corpus it was measured on."""
    refs = pipeline.reference_losses(spec, m.config.get("data"), m.run_record.get("data_sha256"))
    return next((r for r in reversed(refs) if r is not None), None)


def compare(
    pattern: str = "char-*",
    budget: float = 120.0,
    data: str | None = None,
    device: str = "auto",
    out: Path = Path("runs/compare"),
    quiet: bool = True,
    val_frac: float = DEFAULT_VAL_FRAC,
) -> list[Entry]:
    if budget <= 0:
        raise ZooError("--budget must be positive")
    val_frac = check_val_frac(val_frac)
    specs = [s for s in registry.list_models() if fnmatch.fnmatchcase(s.name, pattern) and s.task == "char-lm"]
    if not specs:
        raise ZooError(f"no character models match {pattern!r}; see `zoo list`")
    entries = [run_one(s.name, Path(out) / s.name, budget, data, device, quiet, val_frac) for s in specs]
    entries.sort(key=lambda e: e.val_loss)
    plot(entries, Path(out) / "compare.png", budget, val_frac)
    return entries


def table(entries: list[Entry]) -> str:
    def f(v: float | None, fmt: str) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    cols = ("params", "epochs", "s/epoch", "chars/s", "nats/char", "bits/char", "reference")
    head = f"{'#':>2}  {'model':<18} {cols[0]:>10} {cols[1]:>7} {cols[2]:>8} " + " ".join(f"{c:>9}" for c in cols[3:])
    rows = [head, "-" * len(head)]
    for i, e in enumerate(entries, 1):
        rows.append(
            f"{i:>2}  {e.model:<18} {e.params:>10,} {e.epochs_done:>7.2f} {f(e.s_per_epoch, '.1f'):>8} {f(e.chars_per_s, ',.0f'):>9} "
            f"{e.val_loss:>9.4f} {e.val_bpc:>9.4f} {f(e.reference, '.3f'):>9}"
        )
    return "\n".join(rows)


def plot(entries: list[Entry], path: Path, budget: float, val_frac: float = DEFAULT_VAL_FRAC) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    import io

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for e in entries:
        xs, ys = zip(*e.curve) if e.curve else ((), ())
        ax.plot(xs, ys, "o-", label=f"{e.model} ({e.val_loss:.3f})")
    ax.set_xlabel("wall time spent training (s), evaluation not counted")
    ax.set_ylabel(f"held-out loss, last {percent(val_frac)} (nats/char)")
    ax.set_title(f"zoo compare: {budget:g} s per model")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buf.getvalue())
