"""The models, datasets, tasks and pinned weights that loaded plugins registered, looked up by name or wildcard.

Collected once per plugin host and generation (a plugin registered or removed in process makes a new one), so
nothing below has to tell this module to forget.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo import published, rundir
from zoo.data.sources import lookup
from zoo.errors import ZooError, did_you_mean, warn
from zoo.plugins import PluginHost, host
from zoo.spec import BUILTIN_TASKS, ModelSpec, TaskSpec


@dataclass
class Registry:
    models: dict[str, ModelSpec] = field(default_factory=dict)
    datasets: dict[str, Any] = field(default_factory=dict)
    tasks: dict[str, TaskSpec] = field(default_factory=lambda: {t.name: t for t in BUILTIN_TASKS})
    conflicts: list[str] = field(default_factory=list)  # one line each, for `zoo plugins` and a warning
    ambiguous: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, name) two plugins claim -> why refused
    owners: dict[tuple[str, str], tuple[str, bool]] = field(default_factory=dict)  # (kind, name) -> (plugin, zoo's own?)
    weights: dict[str, published.PublishedWeights] = field(default_factory=dict)  # what plugins pin (zoo_register_weights)
    pin_clashes: dict[str, str] = field(default_factory=dict)  # a model two plugins pin -> why neither pin is used
    warned_pins: set[str] = field(default_factory=set)  # pin clashes already said in a warning
    warned: bool = False


_cache: tuple[PluginHost, int, Registry] | None = None


def reset() -> None:
    """Collect again on next use (tests that change what a plugin registers)."""
    global _cache
    _cache = None


def _claim(reg: Registry, h: PluginHost, kind: str, name: str, plugin_name: str, table: dict[str, Any]) -> bool:
    """Whether `plugin_name` may have `name` among the registry's `kind`s: the one rule for every name.

    A name zoo's own plugins (or zoo itself) registered stays theirs, whatever order the plugins load in; a later
    claim is refused. A name two other plugins claim is neither's: it is refused, with the reason, on every path
    (listing, training, sampling, resuming, evaluating), and every other name still works.
    """
    key = (kind, name)
    if key in reg.ambiguous:
        return False
    if key not in reg.owners:
        reg.owners[key] = (plugin_name, h.is_builtin(plugin_name))
        return True
    owner, builtin = reg.owners[key]
    clash = f"{kind} {name!r} is registered by two plugins, {owner!r} and {plugin_name!r}"
    if builtin:
        reg.conflicts.append(
            f"{clash}; zoo's own {owner!r} keeps it and the {kind} of {plugin_name!r} is not used: "
            f"rename that {kind} in its plugin, or disable the plugin with ZOO_DISABLE_PLUGINS={plugin_name}"
        )
        return False
    message = f"{clash}; neither is used: disable one with ZOO_DISABLE_PLUGINS={plugin_name} or ZOO_DISABLE_PLUGINS={owner}"
    reg.conflicts.append(message)
    reg.ambiguous[key] = message
    table.pop(name, None)  # `table` is the registry's `kind`s: the first claimant's entry goes too
    return False


def _collect(h: PluginHost) -> Registry:
    reg = Registry()
    reg.owners.update({("task", name): ("zoo", True) for name in reg.tasks})

    def model_register(plugin_name: str):
        def register(spec: ModelSpec) -> None:
            if not isinstance(spec, ModelSpec):
                raise TypeError(f"register() takes a zoo.ModelSpec, got {type(spec).__name__}")
            if _claim(reg, h, "model", spec.name, plugin_name, reg.models):
                reg.models[spec.name] = spec.with_plugin(plugin_name)
                if plugin_name in h.infos:
                    h.infos[plugin_name].models.append(spec.name)

        return register

    def dataset_register(plugin_name: str):
        def register(source: Any) -> None:
            name = getattr(source, "name", None)
            if not name:
                raise TypeError("register() takes a dataset source with a .name")
            if _claim(reg, h, "dataset", name, plugin_name, reg.datasets):
                reg.datasets[name] = source
                if plugin_name in h.infos:
                    h.infos[plugin_name].datasets.append(name)

        return register

    def task_register(plugin_name: str):
        def register(task: TaskSpec) -> None:
            if not isinstance(task, TaskSpec):
                raise TypeError(f"register() takes a zoo.TaskSpec, got {type(task).__name__}")
            if _claim(reg, h, "task", task.name, plugin_name, reg.tasks):
                reg.tasks[task.name] = task.with_plugin(plugin_name)

        return register

    def weights_register(plugin_name: str):
        def register(pins: Any) -> None:
            for name, entry in published.plugin_pins(pins, plugin_name).items():  # all validated before any is kept
                _pin(reg, name, entry)

        return register

    h.call_each("zoo_register_tasks", register=task_register)
    h.call_each("zoo_register_models", register=model_register)
    h.call_each("zoo_register_datasets", register=dataset_register)
    h.call_each("zoo_register_weights", register=weights_register)
    return reg


def _pin_clash(name: str, first: str, second: str) -> str:
    return (
        f"the weights of {name!r} are pinned twice, in {first} and in {second}; neither pin is used: remove one "
        "(or disable one plugin with ZOO_DISABLE_PLUGINS)"
    )


def _pin(reg: Registry, name: str, entry: published.PublishedWeights) -> None:
    """Keep a plugin's pin for `name`, unless another plugin pins it too: then neither (a pin decides which bytes
    are trusted, so no order of loading may pick one)."""
    if name in reg.pin_clashes:
        return
    other = reg.weights.pop(name, None)
    if other is None:
        reg.weights[name] = entry
        return
    reg.pin_clashes[name] = _pin_clash(name, other.origin, entry.origin)  # said by published_weights/published_entry


def get() -> Registry:
    """What the plugins registered, conflicts included and not yet warned about (`zoo plugins` shows them)."""
    global _cache
    h = host()
    if _cache is None or _cache[0] is not h or _cache[1] != h.generation:
        _cache = (h, h.generation, _collect(h))
    return _cache[2]


def _checked() -> Registry:
    """The registry, its conflicts said once (one warning line each) to whoever uses a name first."""
    reg = get()
    if reg.conflicts and not reg.warned:
        reg.warned = True
        for conflict in reg.conflicts:
            warn(conflict)
    return reg


def _refuse_ambiguous(reg: Registry, kind: str, name: str) -> None:
    why = reg.ambiguous.get((kind, name))
    if why is not None:
        raise ZooError(why)


def list_models(pattern: str | None = None, tag: str | None = None) -> list[ModelSpec]:
    """Registered models whose name matches the shell-style `pattern`, sorted by name."""
    specs = sorted(_checked().models.values(), key=lambda s: s.name)
    if pattern:
        specs = [s for s in specs if fnmatch.fnmatchcase(s.name, pattern)]
    if tag:
        specs = [s for s in specs if tag in s.tags]
    return specs


def get_model(name: str) -> ModelSpec:
    """The spec registered as `name`: what `zoo train NAME`, `zoo info NAME` and every run folder's config use."""
    spec = find_model(name)
    if spec is None:
        raise ZooError(f"unknown model {name!r}{did_you_mean(name, sorted(_checked().models))}; see `zoo list`")
    return spec


def find_model(name: str) -> ModelSpec | None:
    """The spec registered as `name`, None if no plugin registers it; a name two plugins claim is an error."""
    reg = _checked()
    _refuse_ambiguous(reg, "model", name)
    return reg.models.get(name)


def get_dataset(name: str) -> Any:
    reg = _checked()
    _refuse_ambiguous(reg, "dataset", name)
    return lookup(name, reg.datasets)


def datasets() -> dict[str, Any]:
    """Every registered dataset by name (what `--data NAME` may name)."""
    return _checked().datasets


def get_task(name: str) -> TaskSpec:
    reg = _checked()
    _refuse_ambiguous(reg, "task", name)
    tasks = reg.tasks
    if name not in tasks:
        raise ZooError(f"unknown task {name!r} (known: {', '.join(sorted(tasks))}); is the plugin that provides it installed?")
    return tasks[name]


def _clashes(reg: Registry, own: dict[str, published.PublishedWeights], origin: Path) -> dict[str, str]:
    """Every model whose weights are pinned twice (by two plugins, or by zoo's registry.toml and a plugin) -> why."""
    clashes = dict(reg.pin_clashes)
    for name in sorted(own.keys() & reg.weights.keys()):
        clashes[name] = _pin_clash(name, str(origin), reg.weights[name].origin)
    return clashes


def published_weights(path: Path | None = None) -> dict[str, published.PublishedWeights]:
    """The weights zoo publishes (its registry.toml: ZOO_REGISTRY or `path`) and those that plugins pin, merged.

    A model pinned twice is left out, with one warning (`published_entry` refuses it by name); every other pin
    stands. ZOO_REGISTRY replaces zoo's own file only: the plugins' pins are merged with whichever file it is.
    """
    reg = _checked()
    own = published.load(path)
    clashes = _clashes(reg, own, path or published.default_path())
    for why in clashes.values():
        if why not in reg.warned_pins:  # once per process: listing may merge more than once
            reg.warned_pins.add(why)
            warn(why)
    merged = {**own, **reg.weights}
    return {name: entry for name, entry in sorted(merged.items()) if name not in clashes}


def published_entry(name: str, path: Path | None = None) -> published.PublishedWeights | None:
    """The pinned weights of model `name` (zoo's or a plugin's), None if none; a model pinned twice is an error."""
    reg = _checked()
    own = published.load(path)
    why = _clashes(reg, own, path or published.default_path()).get(name)
    if why is not None:
        raise ZooError(why)
    return own.get(name) or reg.weights.get(name)


def install_hint(config: dict[str, Any]) -> str:
    """What to do when no installed plugin registers the model a config.json names: install the distribution it
    records (its name is checked by zoo.rundir; an older config records none)."""
    found = rundir.provenance(config)
    if found is None:
        return "install the plugin that provides it (see `zoo plugins`)"
    dist = found[0]
    if any(info.distribution == dist for info in host().infos.values()):  # installed: disabled, broken, or older
        return f"{dist} is installed but registers no such model here: see `zoo plugins`, or pip install --upgrade {dist}"
    return f"install the distribution that provides it: pip install {dist}"
