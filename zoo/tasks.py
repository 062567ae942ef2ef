"""Tasks: what a model learns, and so how zoo trains, evaluates, saves and loads it.

A `ModelSpec` names its task (`spec.task`, one of `zoo.spec.TASKS`); `get(name)` returns the
`Task` that the Trainer and `zoo.api` consult:

    loss(out, y)                        the training loss of one batch
    evaluate(model, batches, device)    validation metrics: {"val_loss": ..., and one per `columns` entry}
    columns                             (metric, width, format) shown after val_loss in the epoch table
    unit, count(x, y)                   what the throughput counts (characters, rows)
    loss_label                          the y-axis of loss.png

The tasks:

- "char-lm": the next character (cross-entropy, accuracy). Its data path is zoo.api's:
  text, vocabulary, windows (zoo.data.batching).
- "regression": a table's continuous columns -> its target, mean squared error (linreg-sgd).
  Inputs are used as they are, so fitted weights stay in the data's units.
- "tabular-regression": the categorical columns as ids (for embeddings) and the continuous
  ones normalised -> the log of a positive target; MSE on the log, and the mean absolute
  percentage error (MAPE) of exp(prediction) (entity-embeddings).

The two table tasks share one data path, in this module: a `zoo.data.table.Table` is split
(random or tail 20%), described from its training rows (category lists, means and standard
deviations: `config.json["columns"]`), encoded to tensors and batched (`TableBatches`, whose
x is a tensor, or a tuple (categorical ids, continuous) for "tabular-regression"). The
builder is called as `builder(**build_kwargs(columns), **hparams)`. A spec may name a `fit`
function that trains instead of zoo's Trainer (linreg-sgd's hand-written loops); it gets a
`FitContext` and returns the history. If that function has an attribute `validate_options`
(a callable taking the resolved training options), it is called before anything is written.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo import checks, runlock
from zoo.data.table import Table, load_table, split_rows
from zoo.errors import ZooError
from zoo.spec import ModelSpec

# --- the Task interface -----------------------------------------------------------------------------------


def to_device(x: Any, device: torch.device) -> Any:
    """A tensor, or a tuple/list of tensors (a table's categorical and continuous inputs), on `device`."""
    if isinstance(x, (tuple, list)):
        return type(x)(to_device(t, device) for t in x)
    return x.to(device, non_blocking=True)


class Task:
    """The loss, metrics and table columns of one task; see the module docstring."""

    name = ""
    unit = "rows"
    loss_label = "loss"
    columns: tuple[tuple[str, int, str], ...] = ()

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, batches: Any, device: torch.device, amp: bool = False) -> dict[str, float]:
        raise NotImplementedError

    def count(self, x: Any, y: torch.Tensor) -> int:
        return int(y.shape[0])


class CharLMTask(Task):
    name = "char-lm"
    unit = "chars"
    loss_label = "cross-entropy (nats/char)"
    columns = (("val_acc", 7, ".3f"),)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        from zoo.trainer import loss_fn

        return loss_fn(out, y)

    def evaluate(self, model: nn.Module, batches: Any, device: torch.device, amp: bool = False) -> dict[str, float]:
        from zoo.trainer import evaluate

        loss, acc = evaluate(model, batches, device, amp)
        return {"val_loss": loss, "val_acc": acc}

    def count(self, x: Any, y: torch.Tensor) -> int:
        return int(x.numel())


class TableTask(Task):
    """A regression on a Table: MSE on the (optionally log-) target; MAPE when the target is logged."""

    def __init__(self, name: str, *, embed: bool, log_target: bool, normalize: bool, loss_label: str) -> None:
        self.name = name
        self.embed = embed  # categorical columns become ids, x = (ids, continuous)
        self.log_target = log_target
        self.normalize = normalize
        self.loss_label = loss_label
        self.columns = (("val_mape", 8, ".4f"),) if log_target else ()

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


TASKS: dict[str, Task] = {
    "char-lm": CharLMTask(),
    "regression": TableTask("regression", embed=False, log_target=False, normalize=False, loss_label="mean squared error"),
    "tabular-regression": TableTask(
        "tabular-regression", embed=True, log_target=True, normalize=True, loss_label="mean squared error of log(target)"
    ),
}


def get(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ZooError(f"unknown task {name!r} (known: {', '.join(TASKS)})") from None


def table_task(spec: ModelSpec) -> TableTask:
    task = get(spec.task)
    if not isinstance(task, TableTask):
        raise ZooError(f"{spec.name} is a {spec.task} model, not a table model")
    return task


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


# --- training -------------------------------------------------------------------------------------------


def check_options(spec: ModelSpec, options: dict[str, Any] | None) -> dict[str, Any]:
    """The spec's training options (`spec.train_options`) with the given ones (None: not given) applied."""
    given = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(given) - set(spec.train_options))
    if unknown:
        flag = "--" + unknown[0].replace("_", "-")
        takes = f"its options: {', '.join('--' + k.replace('_', '-') for k in spec.train_options)}" if spec.train_options else "it has none"
        raise ZooError(f"{flag}: not an option of {spec.name} ({takes})")
    return {**spec.train_options, **given}


@dataclass
class FitContext:
    """What a spec's `fit` function gets: the model, the data, the options, and zoo's Trainer at hand."""

    spec: ModelSpec
    task: TableTask
    model: nn.Module
    data: TableData
    epoch_lrs: list[float]
    seed: int
    device: torch.device
    out_dir: Path
    config: dict[str, Any]
    options: dict[str, Any]  # the spec's train_options, resolved
    given: dict[str, Any] = field(default_factory=dict)  # what the caller passed explicitly: epochs, lr, max_steps
    amp: bool = False
    quiet: bool = False
    callbacks: list[Any] | None = None

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def trainer(self, train: Any = None) -> Any:
        """zoo's Trainer for this run (`train`: other training batches, e.g. a wrapper that records each step)."""
        from zoo.plugins import host
        from zoo.trainer import RunInfo, Trainer

        run = RunInfo(name=self.spec.name, out_dir=self.out_dir, config=self.config, device=str(self.device), epochs=len(self.epoch_lrs))
        reference = list(self.spec.reference.val_loss) if self.spec.reference else []
        return Trainer(
            self.model, train if train is not None else self.data.train, self.data.val, self.epoch_lrs,
            seed=self.seed, device=self.device, out_dir=self.out_dir, run=run, amp=self.amp, hook=host().pm.hook,
            callbacks=self.callbacks, reference=reference, quiet=self.quiet, task=self.task, optimizer=self.spec.optimizer,
        )  # fmt: skip

    def run_trainer(self, train: Any = None) -> list[dict[str, float]]:
        return self.trainer(train).fit(max_steps=self.given.get("max_steps"), max_seconds=self.given.get("max_seconds"))


def _default_fit(ctx: FitContext) -> list[dict[str, float]]:
    return ctx.run_trainer()


def _fit_function(spec: ModelSpec) -> Any:
    """The spec's `fit` ("module:function"), imported when training starts; zoo's Trainer if it names none."""
    if not spec.fit:
        return _default_fit

    from zoo.model import import_object

    return import_object(spec.fit, f"model {spec.name!r}", "fit function")


def train(
    spec: ModelSpec,
    *,
    epochs: int | None,
    lr: float | None,
    batch_size: int | None,
    device: str,
    data: str | None,
    seed: int,
    out: str | Path | None,
    overrides: list[str] | tuple[str, ...],
    split: str | None,
    max_steps: int | None,
    amp: bool | None,
    quiet: bool,
    callbacks: list[Any] | None,
    options: dict[str, Any] | None,
    max_seconds: float | None = None,
) -> TaskModel:
    """zoo.api.train for the table tasks: the same options, the same run directory."""
    from zoo import api, distributed
    from zoo.model import build, count_params, parse_overrides, resolve_amp, resolve_device

    task = table_task(spec)
    if distributed.from_env().enabled:
        raise ZooError(f"{spec.name} is a {spec.task} model: it trains in one process; run it without torchrun")
    hparams = parse_overrides(spec, list(overrides))
    resolved = check_options(spec, options)
    lrs = api.epoch_lrs(spec, epochs, lr)
    batch_size = spec.batch_size if batch_size is None else batch_size
    split = split or spec.split
    fit = _fit_function(spec)
    if callable(getattr(fit, "validate_options", None)):  # refuse bad options before a run directory exists
        fit.validate_options(resolved)
    dev = resolve_device(device)
    table = load_table(data, spec.dataset)
    prepared = prepare(task, table, split, batch_size)
    data_id = str(Path(data).expanduser().resolve()) if data is not None and Path(data).expanduser().exists() else table.name

    out_dir = api.claim_out_dir(spec, out)
    config = {**api.base_config(spec, hparams, split, data_id), "columns": prepared.columns}
    run_options = {
        **api.record_lrs(lrs),
        "batch_size": batch_size,
        "seed": seed,
        "device": str(dev),
        "amp": amp,
        "data": data_id,
        "split": split,
        "overrides": list(overrides),
        "train_options": resolved,
    }
    torch.manual_seed(seed)
    model = build(spec, None, hparams, **task.build_kwargs(prepared.columns))
    run_options["amp"] = amp = resolve_amp(amp, model, dev)
    api.start_run(out_dir, config, api.run_record(spec, run_options, dev, table.sha256))
    ctx = FitContext(
        spec, task, model, prepared, lrs, seed, dev, out_dir, config, resolved,
        given={"epochs": epochs, "lr": lr, "max_steps": max_steps, "max_seconds": max_seconds}, amp=amp, quiet=quiet, callbacks=callbacks,
    )  # fmt: skip
    ctx.say(
        f"training {spec.name} ({count_params(model):,} parameters) on {table.name}: {len(table):,} rows, "
        f"{len(table.categorical)} categorical + {len(table.continuous)} continuous columns -> {table.target}, "
        f"{prepared.train.rows:,} training rows, {prepared.val.rows:,} validation rows ({split} split), "
        f"{api.device_note(dev, amp)}, output {out_dir}"
    )
    if task.log_target:
        median = prepared.columns["target"]["median"]
        y_val = table.columns[table.target][prepared.val_rows]
        ctx.say(f"predicting the training median ({median:g}) for every row: validation MAPE {mape(median, y_val):.4f}")
    return _fit(fit, ctx)


def _fit(fit: Any, ctx: FitContext) -> TaskModel:
    from zoo.checkpoint import atomic_write_json, save_weights

    try:
        history = fit(ctx)
        save_weights(ctx.out_dir / "model.safetensors", ctx.model)
        if history:
            atomic_write_json(ctx.out_dir / "training.json", {"history": history})
    except OSError as exc:
        raise ZooError(f"cannot write to {ctx.out_dir} ({exc.strerror}); the last complete checkpoint is kept") from None
    return TaskModel(ctx.spec, ctx.model, ctx.config, ctx.out_dir)


def resume(run_dir: Path, config: dict[str, Any], *, name, epochs, device, max_steps, quiet, callbacks, max_seconds=None) -> TaskModel:
    """zoo.api's --resume for the table tasks: the same data, split and encoding; the checkpoint's weights and optimizer."""
    from zoo import api, distributed
    from zoo.checkpoint import atomic_write_json, find_checkpoint, load_checkpoint, read_json
    from zoo.model import build, resolve_device, resumed_amp

    record = read_json(run_dir / "run.json")
    spec = api._spec_for(config, run_dir)
    if name is not None and name != spec.name:
        raise ZooError(f"{run_dir} is a run of {spec.name!r}, not {name!r}")
    task = table_task(spec)
    if distributed.from_env().enabled:
        raise ZooError(f"{spec.name} is a {spec.task} model: it trains in one process; run it without torchrun")
    runlock.lock(run_dir)  # released when zoo.train returns
    options = record.get("options", {})
    ckpt = find_checkpoint(run_dir)
    lrs = api.recorded_lrs(options)
    if epochs is not None:
        lrs = api.extend_lrs(lrs, epochs)
    dev = resolve_device(device)
    table = load_table(options["data"], spec.dataset)
    if record.get("data_sha256") and table.sha256 != record["data_sha256"]:
        raise ZooError(f"the data {options['data']!r} changed since the run started; cannot resume {run_dir} exactly")
    prepared = prepare(task, table, config["split"], options["batch_size"], columns=config["columns"])
    model = build(spec, None, config["hparams"], **task.build_kwargs(config["columns"]))
    ctx = FitContext(
        spec, task, model, prepared, lrs, options["seed"], dev, run_dir, config, options.get("train_options", {}),
        given={"max_steps": max_steps, "max_seconds": max_seconds}, amp=resumed_amp(options, dev), quiet=quiet, callbacks=callbacks,
    )  # fmt: skip
    trainer = ctx.trainer()
    state = load_checkpoint(ckpt, trainer.model, trainer.opt)
    trainer.state.restore(state)
    api.refuse_finished(run_dir, trainer, lrs)
    options.update(api.record_lrs(lrs))
    atomic_write_json(run_dir / "run.json", {**record, "options": options})
    ctx.say(api.resuming_line(spec.name, run_dir, trainer))
    try:
        trainer.fit(max_steps=max_steps, max_seconds=max_seconds)
    except OSError as exc:
        raise ZooError(f"cannot write to {run_dir} ({exc.strerror}); the last complete checkpoint is kept") from None
    return TaskModel(spec, trainer.model, config, run_dir)


# --- a trained table model ----------------------------------------------------------------------------------


def load_dir(path: Path, config: dict[str, Any], device: str = "cpu") -> TaskModel:
    from zoo import api
    from zoo.checkpoint import load_weights
    from zoo.model import build, resolve_device

    spec = api._spec_for(config, path)
    task = table_task(spec)
    if not isinstance(config.get("columns"), dict):
        raise ZooError(f"{path}/config.json: a {spec.task} model needs its 'columns'")
    try:
        model = build(spec, None, config["hparams"], **task.build_kwargs(config["columns"]))
    except (TypeError, KeyError) as exc:
        raise ZooError(f"{path}/config.json: its hyper-parameters or columns do not fit {spec.name} ({exc})") from None
    load_weights(path / "model.safetensors", model)
    model.to(resolve_device(device))
    model.eval()
    return TaskModel(spec, model, config, path)


class TaskModel:
    """A trained model of a table task with its config: predict, evaluate; what zoo.load returns for one."""

    def __init__(self, spec: ModelSpec, model: nn.Module, config: dict[str, Any], path: Path | None = None) -> None:
        from zoo.fileio import read_history

        self.spec = spec
        self.task = table_task(spec)
        self.model = model
        self.config = config
        self.path = path
        self.history = read_history(path)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def columns(self) -> dict[str, Any]:
        return self.config["columns"]

    @property
    def num_params(self) -> int:
        from zoo.model import count_params

        return count_params(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> TaskModel:
        from zoo.model import resolve_device

        self.model.to(resolve_device(device) if isinstance(device, str) else device)
        return self

    def table(self, data: str | None = None) -> Table:
        """The table this model was trained on (or `data`)."""
        return load_table(data if data is not None else self.config.get("data"), self.spec.dataset)

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

    def sample(self, *args: Any, **kwargs: Any) -> Any:
        raise ZooError(f"{self.name} is a {self.spec.task} model; `zoo sample` is for character models (`zoo eval` evaluates it)")

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
