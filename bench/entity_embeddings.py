"""Benchmark: the paper's table (Guo & Berkhahn 2016, table 4) for the entity-embeddings model's data set.

Trains entity-embeddings with zoo (its recipe; --epochs to change it), then fits scikit-learn's
k-nearest neighbours, random forest and gradient boosted trees twice on the same training rows:

  one-hot     each categorical column one-hot encoded (its values seen in training), plus the
              normalised continuous columns;
  embeddings  each categorical column replaced by its learned embedding vector, plus the same
              continuous columns;

and reports, for the same held-out rows (the model's validation split), the mean absolute
percentage error of exp(prediction) (every learner fits the log of the target, as the network
does), beside the paper's figures for Rossmann and the MAPE of predicting the training median.

    .venv/bin/pip install -e '.[bench,tabular]'
    .venv/bin/python bench/entity_embeddings.py                   # txhousing, offline
    .venv/bin/python bench/entity_embeddings.py --data DIR        # Rossmann's train.csv + store.csv
    .venv/bin/python bench/entity_embeddings.py --smoke           # CI: 1 epoch, small forests

scikit-learn runs on one core (n_jobs=1) unless --jobs says otherwise. --max-rows subsamples the
training rows the scikit-learn learners see (for Rossmann's 800,000; the network sees them all).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from zoo_tabular import PAPER_MAPE

import zoo
from zoo.tasks.table import mape


def features(m, ids: np.ndarray, cont: np.ndarray, kind: str) -> np.ndarray:
    """The learners' inputs: one-hot or embedded categorical columns, then the continuous ones."""
    parts = []
    for j, column in enumerate(m.columns["categorical"]):
        if kind == "one-hot":
            n = len(m.columns["categorical"][column]) + 1
            parts.append(np.eye(n, dtype=np.float32)[ids[:, j]])
        else:
            parts.append(m.model.embedding(column).cpu().numpy()[ids[:, j]])
    parts.append(cont)
    return np.hstack(parts)


def _row(cells) -> None:
    print("  ".join(cells).rstrip())


def learners(smoke: bool, jobs: int, seed: int) -> dict:
    from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
    from sklearn.neighbors import KNeighborsRegressor

    trees = 20 if smoke else 200
    return {
        "KNN": lambda: KNeighborsRegressor(n_neighbors=10, weights="distance", n_jobs=jobs),
        "random forest": lambda: RandomForestRegressor(n_estimators=trees, min_samples_leaf=2, n_jobs=jobs, random_state=seed),
        "gradient boosted trees": lambda: HistGradientBoostingRegressor(max_iter=50 if smoke else 500, random_state=seed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="txhousing (default) or a directory with Rossmann's train.csv and store.csv")
    parser.add_argument("--epochs", type=int, help="epochs of the network (default: its recipe)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="network hyper-parameters")
    parser.add_argument("--max-rows", type=int, help="subsample the training rows the scikit-learn learners see")
    parser.add_argument("--jobs", type=int, default=1, help="scikit-learn's n_jobs")
    parser.add_argument("--smoke", action="store_true", help="1 epoch, small ensembles: checks that everything runs")
    args = parser.parse_args(argv)
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("the benchmark needs scikit-learn: pip install 'lesson6-zoo[bench]'", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, args.jobs))
    epochs = 1 if args.smoke else args.epochs

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zoo-bench-ee-") as tmp:
        m = zoo.train(
            "entity-embeddings", data=args.data, epochs=epochs, seed=args.seed, overrides=args.overrides,
            out=Path(tmp) / "run", device="cpu", quiet=True,
        )  # fmt: skip
        net_seconds = time.perf_counter() - t0
        d = m.prepare()  # the same split and encoding as training
        (ids, cont), logy = d.train.x, d.train.y
        ids, cont, logy = ids.numpy(), cont.numpy(), logy.numpy()
        trn, val = d.train_rows, d.val_rows
        rng = np.random.default_rng(args.seed)
        if args.max_rows and len(trn) > args.max_rows:
            trn = np.sort(rng.choice(trn, args.max_rows, replace=False))
        y_val = d.table.columns[d.table.target][val]
        net = m.evaluate()
        rows = []
        for kind in ("one-hot", "embeddings"):
            x = features(m, ids, cont, kind)
            for name, make in learners(args.smoke, args.jobs, args.seed).items():
                t = time.perf_counter()
                model = make().fit(x[trn], logy[trn])
                rows.append((name, kind, mape(np.exp(model.predict(x[val])), y_val), time.perf_counter() - t, x.shape[1]))

    table = d.table
    print(
        f"entity-embeddings benchmark: {table.name}, {len(table):,} rows ({len(d.train_rows):,} training, {len(val):,} validation, "
        f"{m.config['split']} split), seed {args.seed}; MAPE on the validation rows"
    )
    print(f"categorical: {', '.join(f'{c} ({len(v)})' for c, v in m.columns['categorical'].items())}; "
          f"continuous: {', '.join(m.columns['continuous']) or '-'}; target: log {table.target}")  # fmt: skip
    widths = (24, 9, 11, 22)
    head = ("learner", "one-hot", "embeddings", "paper (Rossmann)")
    _row(h.ljust(w) for h, w in zip(head, widths))
    _row("-" * w for w in widths)
    by = {(r[0], r[1]): r for r in rows}
    for name in ("KNN", "random forest", "gradient boosted trees"):
        paper = PAPER_MAPE[name]
        cells = (name, f"{by[name, 'one-hot'][2]:.3f}", f"{by[name, 'embeddings'][2]:.3f}", f"{paper[0]:.3f} -> {paper[1]:.3f}")
        _row(c.ljust(w) for c, w in zip(cells, widths))
    paper = PAPER_MAPE["neural network"]
    cells = ("neural network (zoo)", "-", f"{net['val_mape']:.3f}", f"{paper[0]:.3f} -> {paper[1]:.3f}")
    _row(c.ljust(w) for c, w in zip(cells, widths))
    _row(c.ljust(w) for c, w in zip(("training median", f"{net['median_mape']:.3f}", f"{net['median_mape']:.3f}", "-"), widths))
    print()
    print(f"inputs: one-hot {by['KNN', 'one-hot'][4]} columns, embeddings {by['KNN', 'embeddings'][4]} columns; "
          f"network {m.num_params:,} parameters, {len(m.history)} epochs, {net_seconds:.1f} s; "
          + ", ".join(f"{r[0]} ({r[1]}) {r[3]:.1f} s" for r in rows))  # fmt: skip
    bad = [r for r in rows if not np.isfinite(r[2])] + ([net] if not np.isfinite(net["val_mape"]) else [])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
