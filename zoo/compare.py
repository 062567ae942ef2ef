"""`zoo compare`: train several models under the same wall-clock budget and rank them.

Every model is trained with the same leak-free validation (the contiguous end of the text,
the last `val_frac` of it, 20% by default) and evaluated in nats and bits per character.
Training runs in a few chunks (each a resume of the last), so each model gets a curve of
held-out loss against training time (the trainer's own count: setup, validation and checkpoints
are left out). A finished comparison run with the same budget, data (by the text's sha256, not
its path) and `val_frac` is reused, not trained again; an unfinished one is resumed. A run made
with another budget or data, or that held out a different fraction, is refused (its training may
have seen the new held-out text).
"""

from __future__ import annotations

import fnmatch
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zoo import api, explanation, pipeline, registry, rundir
from zoo.data.sources import resolve
from zoo.errors import ZooError, warn
from zoo.fileio import atomic_write_bytes, atomic_write_json, read_json
from zoo.options import DEFAULT_VAL_FRAC, check_val_frac, percent
from zoo.progress import Progress
from zoo.spec import ModelSpec
from zoo.tasks import LoadedModel
from zoo.tasks.charlm import text_sha256
from zoo.trainer import TrainingInterrupted

CHUNKS = 4
PAGE = "compare.html"  # beside compare.png: the leaderboard and one held-out text coloured by each model's surprise
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


@dataclass(frozen=True)
class Settings:
    """What every model of one comparison trains and is measured with."""

    budget: float  # training seconds per model
    data: str | None  # as given: a dataset name, a file, or None (each model's own dataset)
    device: str
    quiet: bool
    val_frac: float


def data_sha256(spec: ModelSpec, data: str | None) -> str:
    """The sha256 of the text `spec` would train on with `data` (what run.json records): a comparison is keyed on
    it, not on how the data was named (the same relative path may hold another file, one file has many paths)."""
    return text_sha256(resolve(data, spec.dataset, registry.datasets()).read_text())


def _check_same_comparison(out: Path, recorded: dict[str, Any], settings: Settings, sha: str) -> None:
    """A run in `out` made for another budget or data cannot stand for this comparison: refuse, keep it."""
    recorded_sha = _recorded_sha256(out, recorded)
    if recorded.get("budget", settings.budget) != settings.budget:  # its curve was measured in chunks of another length
        wanted = f"a {recorded['budget']:g} s budget, not {settings.budget:g} s"
    elif recorded_sha is not None and recorded_sha != sha:
        wanted = f"data of sha256 {recorded_sha[:12]}…, not {sha[:12]}… ({settings.data or 'the default'!r} now)"
    else:
        return
    raise ZooError(f"{out} holds a comparison run made with {wanted}; choose another --out (or delete that folder to train it again)")


def _recorded_sha256(out: Path, recorded: dict[str, Any]) -> str | None:
    """The sha256 of the data the comparison run in `out` trained on: its run.json's, else what compare recorded."""
    sha = rundir.read_run(out).get("data_sha256") if rundir.holds_run(out) else recorded.get("data_sha256")
    return sha if isinstance(sha, str) else None


def _finished_entry(out: Path, settings: Settings, sha: str) -> Entry | None:
    """The entry of a finished comparison run in `out` made with these settings and data; None if there is none."""
    done = out / RESULT
    if not done.exists():
        return None
    record = read_json(done)
    if rundir.holds_run(out):
        _check_same_comparison(out, record, settings, sha)
    same = record.get("budget") == settings.budget and _recorded_sha256(out, record) == sha
    if same and record.get("val_frac", DEFAULT_VAL_FRAC) == settings.val_frac:  # older records held out 0.2
        return Entry(**record["entry"])
    return None


def _refuse_other_fraction(out: Path, val_frac: float) -> None:
    held = rundir.read_config(out).get("val_frac", DEFAULT_VAL_FRAC)
    if held != val_frac:  # its training saw text that is now held out, or lacks text it may train on
        raise ZooError(
            f"{out} holds a run that held out {percent(held)} of the text, not {percent(val_frac)}; "
            f"choose another --out (or delete that folder to train it again)"
        )


def _curve_so_far(out: Path, settings: Settings, sha: str) -> list[tuple[float, float]]:
    """The curve an interrupted comparison run measured before it stopped ([] for a new run)."""
    if not rundir.holds_run(out):
        return []
    progress = read_json(out / PROGRESS) if (out / PROGRESS).exists() else {}
    _check_same_comparison(out, progress, settings, sha)  # (progress files from before it kept no budget)
    return [tuple(p) for p in progress.get("curve", [])] if rundir.has_checkpoint(out) else []


def _train_chunk(name: str, epochs: int, out: Path, settings: Settings) -> LoadedModel:
    """Train the comparison run in `out` for one chunk of the budget (a new run, or a resume of it)."""
    chunk = settings.budget / CHUNKS  # each chunk trains for this long
    try:
        if rundir.holds_run(out):
            return api.train(resume=out, epochs=epochs, device=settings.device, max_seconds=chunk, quiet=settings.quiet)
        return api.train(
            name, data=settings.data, split="tail", val_frac=settings.val_frac, epochs=epochs, device=settings.device, out=out,
            max_seconds=chunk, quiet=settings.quiet,
        )  # fmt: skip
    except TrainingInterrupted as exc:  # `zoo train --resume` of this run would train its 1,000 epochs, not the budget
        raise TrainingInterrupted(exc.said, "Continue the comparison by running the same zoo compare again") from None


def _trained_seconds(out: Path) -> float:
    """Seconds the run in `out` has spent in its training loops so far: setup, validation and checkpoints not counted
    (the trainer's own count, kept in its checkpoint)."""
    seconds = rundir.read_checkpoint_state(out).get("trained_seconds")
    return float(seconds) if isinstance(seconds, (int, float)) else 0.0


def run_one(name: str, out: Path, settings: Settings, sha: str, position: tuple[int, int] = (1, 1)) -> Entry:
    """Train (or reuse, or finish) model `name`'s comparison run in `out`; its entry. `sha` is the data's sha256,
    `position` which model of how many this is (shown while it trains)."""
    which = f"{name} ({position[0]} of {position[1]})"
    reused = _finished_entry(out, settings, sha)
    if reused is not None:
        _say(f"compare: {which}: the finished run in {out} is reused")
        return reused
    if rundir.holds_run(out):
        _refuse_other_fraction(out, settings.val_frac)
    curve = _curve_so_far(out, settings, sha)
    spec = registry.get_model(name)
    _say(f"compare: {which}: training for {settings.budget:g} s" + (f", resumed in {out}" if curve else ""))
    bar = Progress(CHUNKS, desc=which, unit="chunk")
    bar.update(len(curve))
    m = None
    try:
        while len(curve) < CHUNKS:
            m = _train_chunk(name, max(spec.epochs, 1000), out, settings)  # the budget, not the recipe, ends training
            loss = m.evaluate(data=settings.data, split="tail", val_frac=settings.val_frac)["val_loss"]
            curve.append((_trained_seconds(out), loss))
            progress = {"curve": curve, "budget": settings.budget, "data": settings.data, "data_sha256": sha}
            atomic_write_json(out / PROGRESS, progress)
            bar.update(1, loss=f"{loss:.3f}")
    finally:
        bar.close()  # the line is cleared for what comes next: the result, or why it stopped
    if m is None:
        m = api.load(out)
    result = m.evaluate(data=settings.data, split="tail", val_frac=settings.val_frac)
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
    record = {"budget": settings.budget, "data": settings.data, "data_sha256": sha, "val_frac": settings.val_frac}
    atomic_write_json(out / RESULT, {**record, "entry": asdict(entry)})
    _say(f"compare: {name} done: held-out {entry.val_loss:.4f} nats/char after {entry.epochs_done:.2f} epochs")
    return entry


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


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
    settings = Settings(budget, data, device, quiet, val_frac)
    shas: dict[str, str] = {}  # by the dataset each model defaults to: the text is read once
    entries = []
    for k, s in enumerate(specs, 1):
        sha = shas[s.dataset] = shas.get(s.dataset) or data_sha256(s, data)
        entries.append(run_one(s.name, Path(out) / s.name, settings, sha, (k, len(specs))))
    entries.sort(key=lambda e: e.val_loss)
    plot(entries, Path(out) / "compare.png", budget, val_frac)
    write_page(entries, Path(out), settings, specs[0])
    return entries


def sample_text(spec: ModelSpec, settings: Settings) -> str:
    """The first characters of the held-out tail of the text the models trained on: what none of them saw."""
    text = resolve(settings.data, spec.dataset, registry.datasets()).read_text()
    tail = text[int(len(text) * (1 - settings.val_frac)) :]
    return tail[: explanation.COMPARE_SAMPLE]


def write_page(entries: list[Entry], out: Path, settings: Settings, spec: ModelSpec) -> None:
    """OUT/compare.html: the leaderboard, and the same held-out text coloured by each model's surprise, side by side."""
    text = sample_text(spec, settings)
    try:
        results = [explanation.compute(api.load(out / e.model), text, top_k=1, with_states=False) for e in entries]
    except ZooError as exc:  # a held-out text too short for a model's window: the leaderboard stands without the page
        warn(f"{out / PAGE} not written: {exc}")
        return
    rows = [
        {"#": i, "model": e.model, "params": f"{e.params:,}", "epochs": f"{e.epochs_done:.2f}", "nats/char": f"{e.val_loss:.4f}",
         "bits/char": f"{e.val_bpc:.4f}", "reference": "-" if e.reference is None else f"{e.reference:.3f}"}
        for i, e in enumerate(entries, 1)
    ]  # fmt: skip
    note = f"the first {len(text):,} characters of the held-out {percent(settings.val_frac)} of the text"
    page = explanation.render_compare(f"zoo compare: {settings.budget:g} s per model", rows, results, note)
    atomic_write_bytes(out / PAGE, page.encode("utf-8"))


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
    ax.set_xlabel("training time (s): setup, validation and checkpoints not counted")
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
