"""Tables: the data of the tasks that are not text ("regression", "tabular-regression").

A plugin registers a table source through the `zoo_register_datasets` hook, as it would a
corpus; a table source has a `name`, a one-line `summary` and `load_table(path=None) ->
Table`, and may have `accepts(path) -> bool` to claim a `--data DIR` it can read (Rossmann's
train.csv + store.csv, say). Importable without torch; the columns are NumPy arrays.

Validation splits (the same names as for text):
- "random": a random 20% of the rows, chosen with a fixed seed;
- "tail": the latest 20% of the rows by the table's `order` (a time key such as the date),
  or by row order if it has none: the honest estimate for forecasting.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ZooError, did_you_mean
from zoo.options import DEFAULT_VAL_FRAC

SPLIT_SEED = 42


@dataclass
class Table:
    """Rows as columns of equal length: raw categorical values, floats (NaN = missing), a target.

    `categorical` columns may hold any hashable values (strings, ints); `continuous` and
    `target` columns are float arrays. `order` is a sortable time key for the "tail" split.
    `sha256` identifies the bytes the table was read from (recorded in run.json).
    """

    name: str
    columns: dict[str, Any]
    categorical: tuple[str, ...]
    continuous: tuple[str, ...]
    target: str
    order: Any = None
    sha256: str = ""

    def __post_init__(self) -> None:
        import numpy as np

        self.categorical = tuple(self.categorical)
        self.continuous = tuple(self.continuous)
        missing = [c for c in (*self.categorical, *self.continuous, self.target) if c not in self.columns]
        if missing:
            raise ZooError(f"table {self.name}: no column {', '.join(map(repr, missing))}")
        lengths = {len(v) for v in self.columns.values()}
        if len(lengths) != 1:
            raise ZooError(f"table {self.name}: columns of different lengths {sorted(lengths)}")
        for c in (*self.continuous, self.target):
            self.columns[c] = np.asarray(self.columns[c], dtype=np.float64)
        for c in self.categorical:
            self.columns[c] = np.asarray(self.columns[c], dtype=object)

    def __len__(self) -> int:
        return len(self.columns[self.target])

    def subset(self, rows: Any) -> Table:
        """The table restricted to `rows` (an index array), e.g. to predict on some rows only."""
        cols = {k: v[rows] for k, v in self.columns.items()}
        order = None if self.order is None else self.order[rows]
        return Table(self.name, cols, self.categorical, self.continuous, self.target, order, self.sha256)


def split_rows(table: Table, split: str) -> tuple[Any, Any]:
    """(training rows, validation rows) as sorted index arrays; see the module docstring."""
    import numpy as np

    n = len(table)
    n_val = max(1, int(round(n * DEFAULT_VAL_FRAC)))
    if n - n_val < 1:
        raise ZooError(f"table {table.name} has {n} rows: too few to hold out a validation set")
    if split == "random":
        perm = np.random.default_rng(SPLIT_SEED).permutation(n)
        val = np.sort(perm[:n_val])
    elif split == "tail":
        key = np.arange(n) if table.order is None else np.asarray(table.order)
        val = np.sort(np.argsort(key, kind="stable")[n - n_val :])
    else:
        raise ZooError(f"--split {split}: unknown (known: random, tail)")
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask), val


def sha256_bytes(*chunks: bytes) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()


def table_sources(datasets: dict[str, Any]) -> dict[str, Any]:
    """The tables among the registered `datasets`."""
    return {name: src for name, src in datasets.items() if callable(getattr(src, "load_table", None))}


def load_table(data: str | Path | None, default: str, datasets: dict[str, Any]) -> Table:
    """A `--data` value to a Table: the name of a table among the registered `datasets`, or a path some table source accepts."""
    sources = table_sources(datasets)
    value = str(data) if data is not None else default
    if value in sources:
        return sources[value].load_table()
    path = Path(value).expanduser()
    if path.exists():
        for src in sources.values():
            accepts = getattr(src, "accepts", None)
            if callable(accepts) and accepts(path):
                return src.load_table(path)
        readers = [f"{name} ({src.summary})" for name, src in sorted(sources.items()) if callable(getattr(src, "accepts", None))]
        raise ZooError(f"--data {value}: no installed table source reads it" + (f"; known: {'; '.join(readers)}" if readers else ""))
    if value in datasets:
        raise ZooError(f"--data {value}: a text corpus, not a table; tables: {', '.join(sorted(sources)) or 'none installed'}")
    if "/" in value or value.startswith((".", "~")) or path.suffix:  # meant as a path, not a name
        raise ZooError(f"--data {value}: no such file or folder")
    known = sorted(sources)
    raise ZooError(f"unknown table {value!r}{did_you_mean(value, known)}; known: {', '.join(known) or 'none'}, or a path")
