"""The models, datasets and tasks that loaded plugins registered, looked up by name or wildcard.

Collected once per plugin host and generation (a plugin registered or removed in process makes a new one), so
nothing below has to tell this module to forget.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

from zoo.data.sources import lookup
from zoo.errors import ZooError, did_you_mean
from zoo.plugins import PluginHost, host
from zoo.spec import BUILTIN_TASKS, ModelSpec, TaskSpec


@dataclass
class Registry:
    models: dict[str, ModelSpec] = field(default_factory=dict)
    datasets: dict[str, Any] = field(default_factory=dict)
    tasks: dict[str, TaskSpec] = field(default_factory=lambda: {t.name: t for t in BUILTIN_TASKS})
    conflicts: list[str] = field(default_factory=list)


_cache: tuple[PluginHost, int, Registry] | None = None


def reset() -> None:
    """Collect again on next use (tests that change what a plugin registers)."""
    global _cache
    _cache = None


def _collect(h: PluginHost) -> Registry:
    reg = Registry()

    def model_register(plugin_name: str):
        def register(spec: ModelSpec) -> None:
            if not isinstance(spec, ModelSpec):
                raise TypeError(f"register() takes a zoo.ModelSpec, got {type(spec).__name__}")
            if spec.name in reg.models:
                other = reg.models[spec.name].plugin
                reg.conflicts.append(
                    f"model {spec.name!r} is registered by two plugins, {other!r} and {plugin_name!r}; "
                    f"disable one with ZOO_DISABLE_PLUGINS={plugin_name}"
                )
                return
            reg.models[spec.name] = spec.with_plugin(plugin_name)
            if plugin_name in h.infos:
                h.infos[plugin_name].models.append(spec.name)

        return register

    def dataset_register(plugin_name: str):
        def register(source: Any) -> None:
            name = getattr(source, "name", None)
            if not name:
                raise TypeError("register() takes a dataset source with a .name")
            if name in reg.datasets:
                reg.conflicts.append(f"dataset {name!r} is registered by two plugins; the second is {plugin_name!r}")
                return
            reg.datasets[name] = source
            if plugin_name in h.infos:
                h.infos[plugin_name].datasets.append(name)

        return register

    def task_register(plugin_name: str):
        def register(task: TaskSpec) -> None:
            if not isinstance(task, TaskSpec):
                raise TypeError(f"register() takes a zoo.TaskSpec, got {type(task).__name__}")
            if task.name in reg.tasks:
                other = reg.tasks[task.name].plugin or "zoo"
                reg.conflicts.append(f"task {task.name!r} is registered by two plugins, {other!r} and {plugin_name!r}")
                return
            reg.tasks[task.name] = task.with_plugin(plugin_name)

        return register

    h.call_each("zoo_register_tasks", register=task_register)
    h.call_each("zoo_register_models", register=model_register)
    h.call_each("zoo_register_datasets", register=dataset_register)
    return reg


def get() -> Registry:
    global _cache
    h = host()
    if _cache is None or _cache[0] is not h or _cache[1] != h.generation:
        _cache = (h, h.generation, _collect(h))
    return _cache[2]


def _checked() -> Registry:
    reg = get()
    if reg.conflicts:
        raise ZooError(reg.conflicts[0])
    return reg


def list_models(pattern: str | None = None, tag: str | None = None) -> list[ModelSpec]:
    """Registered models whose name matches the shell-style `pattern`, sorted by name."""
    specs = sorted(_checked().models.values(), key=lambda s: s.name)
    if pattern:
        specs = [s for s in specs if fnmatch.fnmatchcase(s.name, pattern)]
    if tag:
        specs = [s for s in specs if tag in s.tags]
    return specs


def get_model(name: str) -> ModelSpec:
    models = _checked().models
    if name not in models:
        raise ZooError(f"unknown model {name!r}{did_you_mean(name, sorted(models))}; see `zoo list`")
    return models[name]


def get_dataset(name: str) -> Any:
    return lookup(name, _checked().datasets)


def datasets() -> dict[str, Any]:
    """Every registered dataset by name (what `--data NAME` may name)."""
    return _checked().datasets


def get_task(name: str) -> TaskSpec:
    tasks = _checked().tasks
    if name not in tasks:
        raise ZooError(f"unknown task {name!r} (known: {', '.join(sorted(tasks))}); is the plugin that provides it installed?")
    return tasks[name]
