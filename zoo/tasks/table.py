"""The table tasks: a table's columns -> its target.

- "regression": the continuous columns -> the target, mean squared error (linreg-sgd). Inputs are used as
  they are, so fitted weights stay in the data's units.
- "tabular-regression": the categorical columns as ids (for embeddings) and the continuous ones normalised
  -> the log of a positive target; MSE on the log, and the mean absolute percentage error (MAPE) of
  exp(prediction) (entity-embeddings).

Both share one data path: a `zoo.data.table.Table` is split (random or tail 20%), described from its
training rows (category lists, means and standard deviations: `config.json["columns"]`), encoded to
tensors and batched (`TableBatches`, whose x is a tensor, or a tuple (categorical ids, continuous) for
"tabular-regression"). The builder is called as `builder(**build_kwargs(columns), **hparams)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo import checks, registry
from zoo.data.table import Table, load_table, split_rows
from zoo.errors import ZooError
from zoo.model import build
from zoo.spec import ModelSpec
from zoo.tasks.base import Plan, Prepared, Task, TrainedModel, get, to_device


class TableTask(Task):
    """A regression on a Table: MSE on the (optionally log-) target; MAPE when the target is logged."""

    embed = False  # categorical columns become ids, x = (ids, continuous)
    log_target = False
    normalize = False
    loss_label = "mean squared error"

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out.float().reshape(-1), y.reshape(-1))

    @torch.no_grad()
    def predict(self, model: nn.Module, batches: Any, device: torch.device) -> torch.Tensor:
        """The model's outputs (on the log scale for a logged target) for every row of `batches`, in order."""
        was_training = model.training
        model.eval()
        try:
            outs = [model(to_device(x, device)).float().reshape(-1).cpu() for x, _ in batches.epoch()]
        finally:
            model.train(was_training)
        return torch.cat(outs) if outs else torch.zeros(0)

    def evaluate(self, model: nn.Module, batches: Any, device: torch.device, amp: bool = False) -> dict[str, float]:
        out = self.predict(model, batches, device).double()
        y = batches.y[batches.index].double()
        metrics = {"val_loss": F.mse_loss(out, y).item() if len(y) else math.nan}
        if self.log_target:
            metrics["val_mape"] = mape(out.exp(), y.exp())
        return metrics

    # data: describe, encode, build

    def describe(self, table: Table, rows: Any) -> dict[str, Any]:
        """config.json's "columns": what encoding and the builder need, learned from the training `rows` only.

        categorical: column -> its values in the training rows (id = position + 1; 0 = missing or unseen)
        continuous:  column -> mean and std of the training rows (missing values become the mean)
        target:      name, whether logged, and the training rows' median, min and max (of the logged target)
        """
        import numpy as np

        if self.embed is False and table.categorical:
            raise ZooError(f"task {self.name}: table {table.name} has categorical columns; this task takes continuous ones only")
        cats = {}
        for c in table.categorical:
            values = {_plain(v) for v in table.columns[c][rows] if not _missing(v)}
            cats[c] = sorted(values, key=lambda v: (isinstance(v, str), v))
        cont = {}
        for c in table.continuous:
            col = table.columns[c][rows]
            finite = col[np.isfinite(col)]
            mean = float(finite.mean()) if len(finite) else 0.0
            std = float(finite.std()) if len(finite) > 1 else 1.0
            cont[c] = {"mean": mean, "std": std if std > 0 else 1.0} if self.normalize else {"mean": 0.0, "std": 1.0}
        y = self._target(table)[rows]
        target = {
            "name": table.target,
            "log": self.log_target,
            "median": float(np.median(table.columns[table.target][rows])),
            "min": float(y.min()),
            "max": float(y.max()),
        }
        return {"categorical": cats, "continuous": cont, "target": target}

    def _target(self, table: Table) -> Any:
        import numpy as np

        y = table.columns[table.target]
        if not np.all(np.isfinite(y)):
            raise ZooError(f"table {table.name}: the target {table.target!r} has missing values; the table source must drop those rows")
        if self.log_target:
            if np.any(y <= 0):
                raise ZooError(f"table {table.name}: task {self.name} regresses the log of {table.target!r}, which must be positive")
            return np.log(y)
        return y

    def encode(self, table: Table, columns: dict[str, Any]) -> tuple[Any, torch.Tensor]:
        """(x, y) tensors of every row, encoded as `columns` (a config's) says."""
        import numpy as np

        missing = [c for c in (*columns["categorical"], *columns["continuous"]) if c not in table.columns]
        if missing:
            raise ZooError(f"table {table.name} lacks the column(s) {', '.join(missing)} this model was trained on")
        n = len(table)
        cont = np.zeros((n, len(columns["continuous"])), dtype=np.float32)
        for j, (c, stats) in enumerate(columns["continuous"].items()):
            col = (table.columns[c] - stats["mean"]) / stats["std"]
            cont[:, j] = np.where(np.isfinite(col), col, 0.0)
        y = torch.from_numpy(np.asarray(self._target(table), dtype=np.float32))
        if not self.embed:
            return torch.from_numpy(cont), y
        ids = np.zeros((n, len(columns["categorical"])), dtype=np.int64)
        for j, (c, values) in enumerate(columns["categorical"].items()):
            lookup = {v: i + 1 for i, v in enumerate(values)}
            ids[:, j] = [lookup.get(_plain(v), 0) for v in table.columns[c]]
        return (torch.from_numpy(ids), torch.from_numpy(cont)), y

    def build_kwargs(self, columns: dict[str, Any]) -> dict[str, Any]:
        """The data-dependent arguments of the builder (as vocab_size is for a char model)."""
        if not self.embed:
            return {"n_cont": len(columns["continuous"])}
        t = columns["target"]
        margin = 0.1 * (t["max"] - t["min"]) or 1.0
        return {
            "cardinalities": {c: len(v) + 1 for c, v in columns["categorical"].items()},
            "n_cont": len(columns["continuous"]),
            "y_range": (t["min"] - margin, t["max"] + margin),
        }


    # --- the run pipeline's steps ---

    def prepare(self, spec: ModelSpec, plan: Plan, data: Any, datasets: dict[str, Any]) -> Prepared:
        table = load_table(data, spec.dataset, datasets)
        prepared = prepare(self, table, plan.split, plan.batch_size)
        given = Path(data).expanduser() if data is not None else None
        data_id = str(given.resolve()) if given is not None and given.exists() else table.name
        return Prepared(table.name, data_id, table.sha256, {"columns": prepared.columns}, prepared, prepared.train, prepared.val)

    def build(self, spec: ModelSpec, hparams: dict[str, Any], config: dict[str, Any]) -> nn.Module:
        return build(spec, None, hparams, **self.build_kwargs(config["columns"]))

    def data_line(self, prepared: Prepared, plan: Plan) -> str:
        table, d = prepared.detail.table, prepared.detail
        return (
            f"{len(table):,} rows, {len(table.categorical)} categorical + {len(table.continuous)} continuous columns -> "
            f"{table.target}, {d.train.rows:,} training rows, {d.val.rows:,} validation rows ({plan.split} split)"
        )

    def run_options(self, plan: Plan) -> dict[str, Any]:
        return {"train_options": plan.train_options}

    def notes(self, prepared: Prepared) -> list[str]:
        if not self.log_target:
            return []
        d = prepared.detail
        median = d.columns["target"]["median"]
        y_val = d.table.columns[d.table.target][d.val_rows]
        return [f"predicting the training median ({median:g}) for every row: validation MAPE {mape(median, y_val):.4f}"]

    def check_config(self, path: Path, config: dict[str, Any]) -> None:
        if "columns" not in config:
            raise ZooError(f"{path}: lacks the key 'columns'")
        columns = config["columns"]
        if not isinstance(columns, dict):
            raise ZooError(f"{path}: 'hparams' and 'columns' must be objects")
        if not all(isinstance(columns.get(k), dict) for k in ("categorical", "continuous", "target")):
            raise ZooError(f"{path}: 'columns' needs the objects 'categorical', 'continuous' and 'target'")
        problem = columns_problem(columns)
        if problem:
            raise ZooError(f"{path}: 'columns' {problem}")

    def reread(self, spec: ModelSpec, config: dict[str, Any], record: dict[str, Any], datasets: dict[str, Any], run_dir: Path) -> Prepared:
        options = record.get("options", {})
        table = load_table(options["data"], spec.dataset, datasets)
        if record.get("data_sha256") and table.sha256 != record["data_sha256"]:
            raise ZooError(f"the data {options['data']!r} changed since the run started; cannot resume {run_dir} exactly")
        prepared = prepare(self, table, config["split"], options["batch_size"], columns=config["columns"])
        return Prepared(table.name, config.get("data", ""), table.sha256, {}, prepared, prepared.train, prepared.val)

    def result(self, spec: ModelSpec, model: nn.Module, config: dict[str, Any], path: Path | None) -> TrainedModel:
        return TaskModel(spec, model, config, path)


class RegressionTask(TableTask):
    loss_label = "mean squared error"


class TabularRegressionTask(TableTask):
    embed = True
    log_target = True
    normalize = True
    loss_label = "mean squared error of log(target)"
    columns = (("val_mape", 8, ".4f"),)


def columns_problem(columns: dict[str, Any]) -> str | None:
    """What is wrong with a config's "columns" (what `describe` writes), or None: read before encoding or building."""
    for name, values in columns["categorical"].items():
        if not isinstance(values, list) or not all(isinstance(v, (str, int, float)) for v in values):
            return f"categorical {name!r}: its values must be a list of strings or numbers"
    for name, stats in columns["continuous"].items():
        mean, std = (stats.get("mean"), stats.get("std")) if isinstance(stats, dict) else (None, None)
        if not (checks.is_number(mean, finite=True) and checks.is_number(std, finite=True) and std > 0):
            return f"continuous {name!r}: needs a finite 'mean' and a positive 'std'"
    target = columns["target"]
    missing = [k for k in ("median", "min", "max") if not checks.is_number(target.get(k), finite=True)]
    if missing or not isinstance(target.get("name"), str):
        return f"target: needs a 'name' and the numbers 'median', 'min' and 'max' ({', '.join(missing) or 'name'} missing or not one)"
    return None


def mape(pred: Any, y: Any) -> float:
    """Mean absolute percentage error, as a fraction: mean(|pred - y| / y)."""
    if len(y) == 0:
        return math.nan
    return float(((pred - y).abs() / y.abs()).mean()) if isinstance(y, torch.Tensor) else float((abs(pred - y) / abs(y)).mean())


def _missing(v: Any) -> bool:
    return v is None or v == "" or (isinstance(v, float) and math.isnan(v))


def _plain(v: Any) -> Any:
    """A NumPy scalar as the Python value JSON keeps (so ids survive config.json)."""
    return v.item() if hasattr(v, "item") else v


# --- batches of table rows --------------------------------------------------------------------------------


def _take(x: Any, idx: torch.Tensor) -> Any:
    return tuple(t[idx] for t in x) if isinstance(x, tuple) else x[idx]


class TableBatches:
    """Batches of the rows `index` of encoded tensors (x, y); the Trainer's batches contract.

    Shuffled batches (training) skip a last batch of a single row, which batch norm cannot train on.
    """

    def __init__(self, x: Any, y: torch.Tensor, index: torch.Tensor, batch_size: int, shuffle: bool) -> None:
        self.x = x
        self.y = y
        self.index = index
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.length = 1

    def __len__(self) -> int:
        n, bs = len(self.index), self.batch_size
        full, last = divmod(n, bs)
        return full + (1 if last > 1 or (last == 1 and not self.shuffle) else 0)

    @property
    def rows(self) -> int:
        return len(self.index)

    def all(self) -> tuple[Any, torch.Tensor]:
        """(x, y) of every row, in order."""
        return _take(self.x, self.index), self.y[self.index]

    def epoch(self, seed: int = 0, epoch: int = 0, start_step: int = 0, rank: int = 0, world: int = 1):
        """Batches of one epoch from batch `start_step` on; with `world` processes, the `rank`-th slice of each."""
        from zoo.data.batching import epoch_generator

        order = self.index[torch.randperm(len(self.index), generator=epoch_generator(seed, epoch))] if self.shuffle else self.index
        for step in range(start_step, len(self)):
            idx = order[step * self.batch_size : (step + 1) * self.batch_size]
            if world > 1:
                if len(idx) < world:
                    return
                idx = idx.tensor_split(world)[rank]
            yield _take(self.x, idx), self.y[idx]


@dataclass
class TableData:
    """A table, its split, its description (config "columns") and the batches built from them."""

    table: Table
    columns: dict[str, Any]
    train_rows: Any
    val_rows: Any
    train: TableBatches
    val: TableBatches


def prepare(task: TableTask, table: Table, split: str, batch_size: int, columns: dict[str, Any] | None = None) -> TableData:
    """Split `table`, describe it from its training rows (unless `columns` is given: a saved model's), batch it."""
    train_rows, val_rows = split_rows(table, split)
    columns = columns if columns is not None else task.describe(table, train_rows)
    x, y = task.encode(table, columns)
    train = TableBatches(x, y, torch.from_numpy(train_rows), batch_size, shuffle=True)
    val = TableBatches(x, y, torch.from_numpy(val_rows), max(batch_size, 4096), shuffle=False)
    return TableData(table, columns, train_rows, val_rows, train, val)


# --- a trained table model ----------------------------------------------------------------------------------


class TaskModel(TrainedModel):
    """A trained model of a table task with its config: predict, evaluate; what zoo.load returns for one."""

    def __init__(self, spec: ModelSpec, model: nn.Module, config: dict[str, Any], path: Path | None = None) -> None:
        super().__init__(spec, model, config, path)
        task = get(spec.task)
        if not isinstance(task, TableTask):
            raise ZooError(f"{spec.name} is a {spec.task} model, not a table model")
        self.task = task

    @property
    def columns(self) -> dict[str, Any]:
        return self.config["columns"]

    def table(self, data: str | None = None) -> Table:
        """The table this model was trained on (or `data`)."""
        return load_table(data if data is not None else self.trained_on(), self.spec.dataset, registry.datasets())

    def prepare(self, data: str | None = None, split: str | None = None, batch_size: int = 4096) -> TableData:
        """The table split and encoded as in training (the saved columns, not recomputed)."""
        return prepare(self.task, self.table(data), split or self.config.get("split", "random"), batch_size, columns=self.columns)

    def predict(self, table: Table, batch_size: int = 4096) -> Any:
        """Predictions of the target, in its units, for every row of `table` (a NumPy array)."""
        batch_size = checks.whole("batch_size", batch_size, 1)
        x, y = self.task.encode(table, self.columns)
        batches = TableBatches(x, y, torch.arange(len(table)), batch_size, shuffle=False)
        out = self.task.predict(self.model, batches, self.device).double()
        return (out.exp() if self.task.log_target else out).numpy()

    def evaluate(self, data: str | None = None, split: str | None = None, batch_size: int = 4096) -> dict[str, float]:
        """Validation metrics on the held-out rows of `data` (default: the training data); MAPE also for the median."""
        prepared = self.prepare(data, split, checks.whole("--batch-size", batch_size, 1))
        result = self.task.evaluate(self.model, prepared.val, self.device)
        if self.task.log_target:
            y_val = prepared.table.columns[prepared.table.target][prepared.val_rows]
            result["median_mape"] = mape(self.columns["target"]["median"], y_val)
        result["rows"] = prepared.val.rows
        return result

    def report(self) -> str:
        """The line `zoo train` ends with: the last validation metrics, the model's own description, where it is."""
        parts = []
        if self.history:
            last = self.history[-1]
            parts.append(f"val_loss {last['val_loss']:.4f}" + (f", MAPE {last['val_mape']:.4f}" if "val_mape" in last else ""))
        describe = getattr(self.model, "describe", None)
        if callable(describe):
            parts.append(str(describe()))
        parts.append(f"weights in {self.path}")
        return f"{self.name}: " + "; ".join(parts)
