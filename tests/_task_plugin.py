"""A plugin that brings a task of its own: "line-fit", a one-column regression y = w*x + b, with its model and data.

Nothing in zoo/ knows about it: it is registered through the zoo_register_tasks hook and trained by `zoo train`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import zoo
from zoo.errors import ZooError
from zoo.tasks import Plan, Prepared, Task, TrainedModel

SLOPE, INTERCEPT = 2.0, -1.0


class Points:
    """y = 2x - 1 on 400 points of x in [0, 1), without noise: a fit can get its loss near zero."""

    name = "line-points"
    summary = "400 points of y = 2x - 1 (a test dataset)"

    def xy(self) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.linspace(0, 1, 400)
        return x, SLOPE * x + INTERCEPT


class Batches:
    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> None:
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self) -> int:
        return -(-len(self.x) // self.batch_size)

    @property
    def rows(self) -> int:
        return len(self.x)

    def epoch(self, seed: int = 0, epoch: int = 0, start_step: int = 0, rank: int = 0, world: int = 1):
        g = torch.Generator().manual_seed(seed * 1000 + epoch)
        order = torch.randperm(len(self.x), generator=g)
        for step in range(start_step, len(self)):
            idx = order[step * self.batch_size : (step + 1) * self.batch_size]
            yield self.x[idx, None], self.y[idx]


class LineFit(nn.Module):
    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 1)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1) * self.scale


class FittedLine(TrainedModel):
    def evaluate(self, **_: Any) -> dict[str, float]:
        x, y = Points().xy()
        with torch.no_grad():
            return {"val_loss": F.mse_loss(self.model(x[:, None]), y).item()}


class LineFitTask(Task):
    unit = "points"
    loss_label = "mean squared error"

    def _split(self, batch_size: int) -> tuple[Batches, Batches]:
        x, y = Points().xy()
        cut = int(len(x) * 0.8)  # the last fifth held out
        return Batches(x[:cut], y[:cut], batch_size), Batches(x[cut:], y[cut:], 4096)

    def prepare(self, spec: zoo.ModelSpec, plan: Plan, data: Any, datasets: dict[str, Any]) -> Prepared:
        source = datasets[data or spec.dataset]
        train, val = self._split(plan.batch_size)
        return Prepared(source.name, source.name, "0" * 64, {"points": train.rows + val.rows}, None, train, val)

    def build(self, spec: zoo.ModelSpec, hparams: dict[str, Any], config: dict[str, Any]) -> nn.Module:
        return LineFit(**hparams)

    def data_line(self, prepared: Prepared, plan: Plan) -> str:
        return f"{prepared.train.rows} training points, {prepared.val.rows} held out"

    def check_config(self, path: Path, config: dict[str, Any]) -> None:
        if not isinstance(config.get("points"), int):
            raise ZooError(f"{path}: 'points' must be a whole number")

    def reread(self, spec: zoo.ModelSpec, config: dict[str, Any], record: dict[str, Any], datasets: dict[str, Any], run_dir: Path) -> Prepared:  # noqa: E501
        train, val = self._split(record["options"]["batch_size"])
        return Prepared(spec.dataset, spec.dataset, "0" * 64, {}, None, train, val)

    def result(self, spec: zoo.ModelSpec, model: nn.Module, config: dict[str, Any], path: Path | None) -> TrainedModel:
        return FittedLine(spec, model, config, path)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out.float(), y)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, batches: Any, device: torch.device, amp: bool = False) -> dict[str, float]:
        x, y = batches.x[:, None].to(device), batches.y.to(device)
        return {"val_loss": F.mse_loss(model(x).float(), y).item()}


class LineFitPlugin:
    @zoo.hookimpl
    def zoo_register_tasks(self, register):
        register(zoo.TaskSpec("line-fit", "one column -> one target, least squares (a test task)", "_task_plugin:LineFitTask"))

    @zoo.hookimpl
    def zoo_register_models(self, register):
        register(
            zoo.ModelSpec(
                name="line-fit",
                summary="y = w*x + b by SGD (a model of a plugin's own task)",
                builder="_task_plugin:LineFit",
                task="line-fit",
                dataset="line-points",
                hparams={"scale": 1.0},
                recipe=(zoo.Stage(lr=0.5, epochs=4),),
                batch_size=32,
                optimizer="sgd",
            )
        )

    @zoo.hookimpl
    def zoo_register_datasets(self, register):
        register(Points())
