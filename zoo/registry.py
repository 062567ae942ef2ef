"""The models and datasets that loaded plugins registered, looked up by name or wildcard."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError
from zoo.plugins import host
from zoo.spec import ModelSpec


@dataclass
class Registry:
    models: dict[str, ModelSpec] = field(default_factory=dict)
    datasets: dict[str, Any] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)


_registry: Registry | None = None


def reset() -> None:
    global _registry
    _registry = None


def _collect() -> Registry:
    h = host()
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

    h.call_each("zoo_register_models", register=model_register)
    h.call_each("zoo_register_datasets", register=dataset_register)
    return reg


def get() -> Registry:
    global _registry
    if _registry is None:
        _registry = _collect()
    return _registry


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


def did_you_mean(name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def get_model(name: str) -> ModelSpec:
    models = _checked().models
    if name not in models:
        raise ZooError(f"unknown model {name!r}{did_you_mean(name, sorted(models))}; see `zoo list`")
    return models[name]


def get_dataset(name: str) -> Any:
    datasets = _checked().datasets
    if name not in datasets:
        if not datasets:  # e.g. ZOO_LOAD_PLUGINS left out the plugin that registers them
            raise ZooError(f"unknown dataset {name!r}: no plugin loaded registers any dataset (see `zoo plugins`)")
        raise ZooError(f"unknown dataset {name!r}{did_you_mean(name, sorted(datasets))}; known: {', '.join(sorted(datasets))}")
    return datasets[name]
