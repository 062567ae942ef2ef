"""Finding and loading plugins: entry points in the group "zoo", loaded crash-proof.

A plugin that fails to import is skipped with one warning line on stderr and kept,
with its error, for `zoo plugins`. ZOO_LOAD_PLUGINS=a,b loads only those plugins;
ZOO_DISABLE_PLUGINS=a,b blocks those.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from zoo import DISTRIBUTION, hookspecs
from zoo.errors import did_you_mean, first_line, warn

ENTRY_POINT_GROUP = "zoo"
BUILTIN_DISTRIBUTION = DISTRIBUTION  # zoo's own plugins come with it: their names (models, datasets, commands) stand


@dataclass
class PluginInfo:
    name: str
    distribution: str = ""
    version: str = ""
    hooks: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def builtin(self) -> bool:
        return self.distribution == BUILTIN_DISTRIBUTION

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "hooks": self.hooks,
            "models": self.models,
            "datasets": self.datasets,
            "error": self.error or None,
        }


def _env_list(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None:
        return None
    return {p.strip() for p in raw.split(",") if p.strip()}


class PluginHost:
    """The pluggy manager plus what zoo learned about each plugin while loading it."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("zoo")
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self.generation = 0  # bumped whenever the registered plugins change: what they registered must be collected again

    def load_entry_points(self) -> None:
        only = _env_list("ZOO_LOAD_PLUGINS")
        blocked = _env_list("ZOO_DISABLE_PLUGINS") or set()
        seen: dict[str, str] = {}  # plugin name -> distribution that provided it
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):  # sys.path order: first wins
            if (only is not None and ep.name not in only) or ep.name in blocked:
                continue
            dist = ep.dist
            dist_name = dist.metadata["Name"] if dist else ""
            if ep.name in seen:
                if seen[ep.name] != dist_name:  # another distribution claims the same plugin name
                    warn(f"plugin name {ep.name!r} is provided by both {seen[ep.name]!r} and {dist_name!r}; {dist_name!r} was skipped")
                continue  # else: the same distribution visible twice on sys.path
            seen[ep.name] = dist_name
            info = PluginInfo(name=ep.name, distribution=dist_name, version=dist.version if dist else "")
            self.infos[ep.name] = info
            try:
                plugin = ep.load()
                self.pm.register(plugin, name=ep.name)
                self.check_hooks()  # a misspelled zoo_* hook is an error, not silence
            except (Exception, SystemExit) as exc:  # a broken plugin (even one that calls sys.exit) must not take zoo down
                if self.pm.is_registered(self.pm.get_plugin(ep.name)):
                    self.pm.unregister(name=ep.name)
                info.error = first_line(exc)
                warn(f"plugin {ep.name!r} failed to load and was skipped ({info.error})")
                continue
            info.hooks = self._hook_names(ep.name)
        self.infos = dict(sorted(self.infos.items()))
        if only:
            for missing in sorted(only - set(self.infos)):
                warn(f"ZOO_LOAD_PLUGINS names {missing!r}, which is not installed")

    def register(self, plugin: Any, name: str) -> None:
        """Register an in-process plugin object (tests, notebooks)."""
        self.pm.register(plugin, name=name)
        try:
            self.check_hooks()
        except pluggy.PluginValidationError:
            self.pm.unregister(name=name)
            raise
        self.infos[name] = PluginInfo(name=name, distribution="(in process)", hooks=self._hook_names(name))
        self.generation += 1

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self.infos.pop(name, None)
        self.generation += 1

    def check_hooks(self) -> None:
        """Refuse a hook implementation that no hook specification declares (a misspelt `zoo_*` name), as pluggy's
        check_pending does, naming the plugin and the hook it probably meant."""
        callers = {name: caller for name, caller in vars(self.pm.hook).items() if not name.startswith("_")}
        known = sorted(name for name, caller in callers.items() if caller.has_spec())
        for name, caller in callers.items():
            for impl in [] if caller.has_spec() else caller.get_hookimpls():
                if not impl.optionalhook:
                    # the hooks share their long prefixes ("zoo_register_"): a low cutoff would offer all of them
                    message = f"unknown hook {name!r} in plugin {impl.plugin_name!r}{did_you_mean(name, known, cutoff=0.85)}"
                    raise pluggy.PluginValidationError(impl.plugin, message)

    def _hook_names(self, name: str) -> list[str]:
        plugin = self.pm.get_plugin(name)
        if plugin is None:
            return []
        return sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])

    def is_builtin(self, name: str) -> bool:
        info = self.infos.get(name)
        return info is not None and info.builtin

    def call_each(self, hook_name: str, after: Callable[[str], None] | None = None, **kwargs_for: Any) -> None:
        """Call `hook_name` on each plugin separately, so a failure is pinned on its plugin: zoo's own plugins
        first, so that what they register comes first whatever the order of sys.path; then `after(plugin name)`.

        `kwargs_for` values may be callables taking the plugin name (to build per-plugin
        arguments such as a `register` callback that knows who is registering).
        """
        caller = getattr(self.pm.hook, hook_name)
        impls = caller.get_hookimpls()
        for impl in sorted(impls, key=lambda i: not self.is_builtin(i.plugin_name)):  # stable: in load order otherwise
            # pluggy lets an implementation take only some of the hook's arguments
            kwargs = {k: (v(impl.plugin_name) if k == "register" else v) for k, v in kwargs_for.items() if k in impl.argnames}
            try:
                impl.function(**kwargs)
            except (Exception, SystemExit) as exc:
                info = self.infos.setdefault(impl.plugin_name, PluginInfo(name=impl.plugin_name))
                info.error = f"{hook_name} raised {first_line(exc)}"
                warn(f"plugin {impl.plugin_name!r}: {info.error}")
            if after is not None:
                after(impl.plugin_name)


_host: PluginHost | None = None


def host() -> PluginHost:
    """The process-wide plugin host, created and loaded on first use."""
    global _host
    if _host is None:
        _host = PluginHost()
        _host.load_entry_points()
    return _host


def reset() -> None:
    """Forget loaded plugins, and so what they registered (tests; a changed environment)."""
    global _host
    _host = None
