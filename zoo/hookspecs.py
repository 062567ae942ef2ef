"""Every hook a zoo plugin can implement. Plugin authors: see docs/plugins.md.

A plugin is a module (or object) registered under the entry-point group "zoo"; it
implements any of these hooks with the `zoo.hookimpl` decorator.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")


@hookspec
def zoo_register_models(register: Callable[[Any], None]) -> None:
    """Call `register(spec)` once per `zoo.ModelSpec` the plugin provides."""


@hookspec
def zoo_register_datasets(register: Callable[[Any], None]) -> None:
    """Call `register(source)` once per dataset source (see `zoo.data.sources.TextSource`)."""


@hookspec
def zoo_register_tasks(register: Callable[[Any], None]) -> None:
    """Call `register(task)` once per `zoo.TaskSpec` the plugin provides: a kind of model zoo trains, evaluates and
    loads through the plugin's own `zoo.tasks.Task` (see docs/plugins.md)."""


@hookspec
def zoo_register_weights(register: Callable[[Any], None]) -> None:
    """Call `register(pins)` with the path of a TOML file in registry.toml's schema (docs/registry.md), or such a
    table already parsed: the plugin's published weights, pinned by sha256, merged with zoo's own. `zoo publish`
    pins a revision in that file (a parsed table has none to write to)."""


@hookspec
def zoo_register_commands(cli: Any) -> None:
    """Add commands to the `zoo` click group: `@cli.command()`."""


@hookspec
def zoo_on_train_start(run: Any) -> None:
    """Training is about to start (or resume). `run` is a `zoo.trainer.RunInfo`."""


@hookspec
def zoo_on_epoch_end(run: Any, epoch: int, metrics: dict[str, float]) -> None:
    """An epoch ended and its checkpoint is on disk. `epoch` counts from 1.

    `metrics` has trn_loss, val_loss, val_acc, seconds, chars_per_s and lr (for a char model;
    other tasks have their own metrics, e.g. val_mape and rows_per_s: see `zoo.tasks`).
    """


@hookspec
def zoo_on_train_end(run: Any, history: list[dict[str, float]]) -> None:
    """Training finished (not called when it was interrupted)."""
