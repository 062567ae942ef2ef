"""`zoo plot MODEL --column C`: a categorical column's learned embedding on its first two principal components.

Each point is one value of the column (row 0 of the embedding, kept for missing or unseen
values, is left out), labelled with the value; values that have an order (years, months,
days) are joined in that order, so a cycle such as the months shows as a loop.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from zoo import rundir
from zoo.errors import ZooError

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def latest_run(name: str, base: Path = Path("runs")) -> Path | None:
    """The newest complete run of model `name` under `base` (runs/NAME, runs/NAME-2, ...), by number."""
    runs = []
    for d in base.glob(f"{name}*"):
        m = re.fullmatch(re.escape(name) + r"(?:-(\d+))?", d.name)
        if m and rundir.is_model(d):
            runs.append((int(m.group(1) or 1), d))
    return max(runs)[1] if runs else None


def find_model(model: str) -> tuple[Any, bool]:
    """(the model, whether it is a run directory): a run directory, else the latest run of a model name,
    else what zoo.load finds (the Hub cache, bundled weights)."""
    from zoo import api

    path = Path(model)
    if not rundir.has_config(path) and "/" not in model:
        run = latest_run(model)
        if run is not None:
            path = run
    if rundir.has_config(path):
        return api.load(path), True
    try:
        return api.load(model), False
    except ZooError as exc:
        if "no trained weights" in str(exc):
            raise ZooError(f"{exc}; `zoo plot` looks in runs/{model}* for the latest run") from None
        raise


def labels(column: str, values: list) -> list[str]:
    """The values as text; months and weekdays by name when the column is one and the values fit."""
    low = column.lower()
    if low == "month" and all(isinstance(v, int) and 1 <= v <= 12 for v in values):
        return [MONTHS[v - 1] for v in values]
    if low in ("dayofweek", "weekday") and all(isinstance(v, int) and 1 <= v <= 7 for v in values):
        return [WEEKDAYS[v - 1] for v in values]
    return [str(v) for v in values]


def principal_components(weights: Any, k: int = 2) -> tuple[Any, Any]:
    """The rows of `weights` projected on their first `k` principal components, and each component's share of the variance."""
    import numpy as np

    centred = weights - weights.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    pcs = centred @ vt[:k].T
    if pcs.shape[1] < k:  # a one-dimensional embedding: the second axis is empty
        pcs = np.hstack([pcs, np.zeros((len(pcs), k - pcs.shape[1]))])
    var = s**2
    share = var / var.sum() if var.sum() > 0 else var
    return pcs, np.pad(share[:k], (0, max(0, k - len(share[:k]))))


def plot_embedding(m: Any, column: str, out: Path) -> Path:
    """Write the PNG of `column`'s embedding of the table model `m`; returns its path."""
    import numpy as np

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ZooError("zoo plot needs matplotlib: pip install 'lesson6-zoo[plot]'") from None
    cats = m.columns["categorical"]
    if column not in cats:
        known = ", ".join(cats) or "none"
        raise ZooError(f"--column {column}: not a categorical column of {m.name} (its categorical columns: {known})")
    values = cats[column]
    if len(values) < 2:
        raise ZooError(f"--column {column}: it has {len(values)} value; nothing to compare")
    weights = m.model.embedding(column).cpu().numpy()[1 : len(values) + 1].astype(np.float64)
    pcs, share = principal_components(weights)
    text = labels(column, values)
    ordered = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)

    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    if ordered:
        loop = column.lower() in ("month", "dayofweek", "weekday")
        idx = list(range(len(values))) + ([0] if loop else [])
        ax.plot(pcs[idx, 0], pcs[idx, 1], color="grey", lw=0.8, alpha=0.6, zorder=1)
    colours = np.arange(len(values)) if ordered else None
    ax.scatter(pcs[:, 0], pcs[:, 1], c=colours, cmap="viridis" if ordered else None, s=36, zorder=2)
    size = 10 if len(values) <= 20 else 8 if len(values) <= 60 else 6
    for (px, py), label in zip(pcs, text):
        ax.annotate(label, (px, py), xytext=(4, 3), textcoords="offset points", fontsize=size)
    ax.set_xlabel(f"first principal component ({share[0]:.0%} of the variance)")
    ax.set_ylabel(f"second principal component ({share[1]:.0%})")
    dim = weights.shape[1]
    where = Path(str(m.config.get("data", m.spec.dataset))).name
    ax.set_title(f"{m.name}: the {dim}-d embedding of {column} ({len(values)} values, {where})", fontsize=11)
    ax.grid(alpha=0.3)
    ax.margins(0.12)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ZooError(f"cannot write {out} ({exc.strerror})") from None
    finally:
        plt.close(fig)
    return out


def plot_command(model: str, column: str, out: str | None) -> Path:
    m, is_run = find_model(model)
    if not hasattr(m.model, "embedding"):
        raise ZooError(f"{m.name} is a {m.spec.task} model without embeddings of table columns; zoo plot shows those of entity-embeddings")
    default = f"embedding-{re.sub(r'[^A-Za-z0-9_.-]', '_', column)}.png"  # beside a run; else here (never into the Hub cache)
    path = Path(out) if out else (Path(m.path) / default if is_run else Path(default))
    if path.suffix.lower() != ".png":
        raise ZooError(f"--out {path}: give a .png path")
    return plot_embedding(m, column, path)
