"""The Task interface: what a kind of model learns, and so how zoo reads its data, trains, evaluates and loads it.

A task is registered as a `zoo.TaskSpec` (zoo's own in `zoo.spec.BUILTIN_TASKS`, a plugin's through the
`zoo_register_tasks` hook) naming a subclass of `Task`. The run pipeline (zoo.pipeline) calls, for a new run:

    plan(spec, opts, base)                  the task's own checks of the options, on the common `Plan`
    prepare(spec, plan, data, datasets)     read and check the data: a `Prepared` (batches, config keys, id, sha256)
    build(spec, hparams, config)            a fresh model, sized from the data (a vocabulary, a table's columns)
    check_model(model, spec, device, ...)   refuse what this model cannot do (before any file is written)
    check_output(model, spec, prepared, device)  refuse a model whose output on a first small batch is not what
                                            the loss needs (its shape), in one line (before any file is written)
    run_options(plan)                       the task's own keys of run.json's "options"

and while training (zoo.trainer), for every batch and epoch:

    loss(out, y)                        the mean loss of one batch
    evaluate(model, batches, device)    {"val_loss": ..., and one per `columns` entry}
    count(x, y)                         how many `unit`s a batch holds (characters, rows)

and for a run folder (zoo.rundir): `check_config(path, config)` (the task's keys of config.json),
`reread(...)` (the same data again, to resume) and `result(...)` (what `zoo.train`/`zoo.load` return: a
`TrainedModel`). Capabilities are declared as class attributes, never sniffed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.model import count_params, import_object
from zoo.rundir import read_history
from zoo.spec import ModelSpec


def to_device(x: Any, device: torch.device) -> Any:
    """A tensor, or a tuple/list of tensors (a table's categorical and continuous inputs), on `device`."""
    if isinstance(x, (tuple, list)):
        return type(x)(to_device(t, device) for t in x)
    return x.to(device, non_blocking=True)


@dataclass
class Plan:
    """A new run's options, resolved and checked: what the pipeline and the task's `prepare` work from."""

    hparams: dict[str, Any]
    lrs: list[float]
    batch_size: int
    split: str
    seed: int
    device: torch.device
    train_options: dict[str, Any] = field(default_factory=dict)  # the spec's own, resolved
    val_frac: float | None = None  # tasks that hold out a chosen fraction (char-lm)


@dataclass
class Prepared:
    """A task's data, ready to train on: the batches and what config.json and run.json record of them.

    `train` and `val` are batches (`len()`, `rows`, `epoch(seed, epoch, start_step, rank, world)`); a task may
    leave them to `make`, which `batches()` calls once the run's folder is claimed. `detail` is the task's own.
    """

    name: str  # what the training header calls the data
    data_id: str  # config.json's "data": a registered name, or a file's path
    sha256: str  # of the data read (run.json's "data_sha256")
    config: dict[str, Any]  # the task's keys of config.json
    detail: Any = None
    train: Any = None
    val: Any = None
    make: Callable[[], tuple[Any, Any]] | None = None

    def batches(self) -> tuple[Any, Any]:
        if self.train is None and self.make is not None:
            self.train, self.val = self.make()
        return self.train, self.val


class Task:
    """One task's data path, loss and metrics; see the module docstring."""

    name = ""  # the registered name (set from the TaskSpec)
    unit = "rows"  # what the throughput counts
    loss_label = "loss"  # the y-axis of loss.png
    columns: tuple[tuple[str, int, str], ...] = ()  # (metric, width, format) after val_loss in the epoch table
    # Declared capabilities:
    fuses_loss = False  # a model may compute this task's loss itself (`fused_loss`: forward(x, targets=y))
    distributed = False  # trains under torchrun
    own_options: frozenset[str] = frozenset()  # zoo.train options only this task's models take ("val_frac", "cuda_graph")

    # --- a new run ---

    def plan(self, spec: ModelSpec, opts: Any, base: Plan) -> Plan:
        """The task's own checks and choices on top of the common ones in `base`."""
        return base

    def prepare(self, spec: ModelSpec, plan: Plan, data: Any, datasets: dict[str, Any]) -> Prepared:
        raise NotImplementedError

    def build(self, spec: ModelSpec, hparams: dict[str, Any], config: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def check_model(self, model: nn.Module, spec: ModelSpec, device: torch.device, opts: Any, distributed: bool) -> None:
        """Refuse what this model cannot do with these options, before any file is written."""

    def check_output(self, model: nn.Module, spec: ModelSpec, prepared: Prepared, device: torch.device) -> None:
        """Refuse a model whose output on a few rows of the first training batch does not fit the loss (a wrong
        shape or layout), in one line naming the expected and the actual shape. Called once the batches exist,
        before any file of the run is written."""

    def data_line(self, prepared: Prepared, plan: Plan) -> str:
        """The training header's account of the data: "N chars, vocab V, …" or "N rows, …"."""
        return prepared.name

    def run_options(self, plan: Plan) -> dict[str, Any]:
        """The task's own keys of run.json's "options" (the pipeline records the common ones)."""
        return {}

    def notes(self, prepared: Prepared) -> list[str]:
        """Lines printed after the header (e.g. a baseline to beat)."""
        return []

    # --- a run folder ---

    def check_config(self, path: Path, config: dict[str, Any]) -> None:
        """Refuse a config.json that lacks or garbles this task's keys (one line naming the key)."""

    def check_against(self, path: Path, config: dict[str, Any], spec: ModelSpec) -> None:
        """Refuse a config.json whose task keys contradict the registered spec it names (one line naming the key)."""

    def reread(self, spec: ModelSpec, config: dict[str, Any], record: dict[str, Any], datasets: dict[str, Any], run_dir: Path) -> Prepared:
        """The run's data again, exactly as it trained on it, to resume (refused if it changed)."""
        raise NotImplementedError

    def result(self, spec: ModelSpec, model: nn.Module, config: dict[str, Any], path: Path | None) -> TrainedModel:
        raise NotImplementedError

    # --- every batch and epoch ---

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, batches: Any, device: torch.device, amp: bool = False) -> dict[str, float]:
        raise NotImplementedError

    def count(self, x: Any, y: torch.Tensor) -> int:
        return int(y.shape[0])


class TrainedModel:
    """What `zoo.train` and `zoo.load` return: a model with its spec, config and run folder, whatever its task."""

    def __init__(self, spec: ModelSpec, model: nn.Module, config: dict[str, Any], path: Path | None = None) -> None:
        self.spec = spec
        self.model = model
        self.config = config
        self.path = path
        self.history = read_history(path)
        self.partial: dict[str, float] | None = None  # where a run stopped mid-epoch, if it did
        self.downloaded = False  # its folder came from the Hub: config.json's "data" names a dataset, never a file here

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_params(self) -> int:
        return count_params(self.model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> TrainedModel:
        from zoo.runtime import resolve_device

        self.model.to(resolve_device(device) if isinstance(device, str) else device)
        return self

    def trained_on(self) -> str:
        """What to evaluate on when no data is given: the data config.json names, or the spec's default dataset.

        A downloaded model's config names a registered dataset or nothing: its author's path (or a hostile one such as
        /dev/urandom or /etc/passwd) is never read on this machine.
        """
        from zoo import registry

        data = self.config.get("data") or self.spec.dataset
        if self.downloaded and (not isinstance(data, str) or data not in registry.datasets()):
            raise ZooError(
                f"{self.name} was downloaded, and its config.json names the data {data!r}, which is no registered dataset; "
                "zoo reads no file a download names: pass --data with the text or table to evaluate on"
            )
        return data

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        raise NotImplementedError

    def sample(self, *args: Any, **kwargs: Any) -> Any:
        raise ZooError(f"{self.name} is a {self.spec.task} model; `zoo sample` is for character models (`zoo eval` evaluates it)")

    @property
    def default_prompt(self) -> str:
        """What `sample` continues when given no prompt (character models; others refuse to sample)."""
        return self.sample()

    def report(self) -> str:
        """The line `zoo train` ends with."""
        last = self.history[-1]
        return f"{self.name}: val_loss {last['val_loss']:.4f} after epoch {int(last['epoch'])}; weights in {self.path}"


_instances: dict[str, Task] = {}


def get(name: str) -> Task:
    """The task registered as `name`, its implementation imported and built once."""
    from zoo import registry

    spec = registry.get_task(name)
    task = _instances.get(spec.implementation)
    if task is None:
        cls = import_object(spec.implementation, f"task {spec.name!r}", "implementation")
        if not (isinstance(cls, type) and issubclass(cls, Task)):
            raise ZooError(f"task {spec.name!r}: its implementation {spec.implementation!r} is not a zoo.tasks.Task subclass")
        task = _instances[spec.implementation] = cls()
        task.name = spec.name
    return task
