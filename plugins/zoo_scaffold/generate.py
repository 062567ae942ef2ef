"""The files of a new plugin package, from the templates beside this module (string.Template, $$-escaped)."""

from __future__ import annotations

import re
import types
from importlib import resources
from pathlib import Path
from string import Template

from zoo import DISTRIBUTION, __version__
from zoo.errors import UsageError, ZooError, warn

NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")

# template file -> path in the new package ({package} is the import package's name)
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "gitignore.tmpl": ".gitignore",
    "plugin.py.tmpl": "{package}/__init__.py",
    "model.py.tmpl": "{package}/model.py",
    "test_model.py.tmpl": "tests/test_model.py",
}


def check_name(name: str) -> None:
    if name.startswith("zoo-") or name.startswith("zoo_"):
        raise UsageError(f"NAME is the plugin's name, without the zoo- prefix (the distribution will be zoo-{name[4:]})")
    if not NAME_RE.match(name) or len(name) > 40:
        raise UsageError(f"invalid plugin name {name!r}: use lowercase letters, digits and single hyphens, starting with a letter")
    from zoo import registry
    from zoo.plugins import host

    if name in host().infos:
        raise ZooError(f"a plugin named {name!r} is already installed; choose another name")
    models = registry.get().models
    if name in models:
        raise ZooError(f"a model named {name!r} is already registered (by plugin {models[name].plugin!r}); choose another name")


def render(name: str) -> dict[str, str]:
    """{relative path: text} of the package for plugin `name`, its spec's num_params counted from its model."""
    package = "zoo_" + name.replace("-", "_")
    values = {"name": name, "dist": f"zoo-{name}", "package": package, "zoo_version": __version__, "zoo_distribution": DISTRIBUTION}
    draft = _substitute({**values, "num_params": "None"})
    num_params = count_template_params(draft[f"{package}/__init__.py"], draft[f"{package}/model.py"], package)
    return _substitute({**values, "num_params": str(num_params)})  # "None" when it could not be counted


def _substitute(values: dict[str, str]) -> dict[str, str]:
    templates = resources.files("zoo_scaffold") / "templates"
    return {
        path.format(package=values["package"]): Template((templates / tmpl).read_text(encoding="utf-8")).substitute(values)
        for tmpl, path in FILES.items()
    }


def count_template_params(plugin_source: str, model_source: str, package: str) -> int | None:
    """The parameter count of the generated model at its spec's defaults and the spec's dataset's vocabulary.

    Both sources are zoo's own templates, rendered: run here as the modules they will be once installed. The model
    is built on the meta device, so counting allocates nothing.
    """
    import torch

    from zoo import registry
    from zoo.data.vocab import Vocab
    from zoo.model import count_params

    plugin = _module_from(plugin_source, package)
    spec = plugin.SPEC
    builder = getattr(_module_from(model_source, f"{package}.model"), spec.builder.partition(":")[2])
    source = registry.get().datasets.get(spec.dataset)
    if source is None:  # e.g. ZOO_DISABLE_PLUGINS=corpora: the kit's num_params check will give the line to write
        warn(f"the spec's num_params is left None: its dataset {spec.dataset!r} is not registered, so it cannot be counted")
        return None
    vocab_size = len(Vocab.from_text(source.read_text()))
    with torch.device("meta"):
        return count_params(builder(vocab_size=vocab_size, **spec.hparams))


def _module_from(source: str, name: str) -> types.ModuleType:
    """A module run from `source` without entering sys.modules (the package is not installed yet)."""
    module = types.ModuleType(name)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


def generate(name: str, parent: Path) -> tuple[Path, list[Path]]:
    """Write the package zoo-NAME under `parent`; returns its folder and the files written."""
    check_name(name)
    root = Path(parent) / f"zoo-{name}"
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ZooError(f"{root} already exists and is not empty; choose another --dir or remove it")
    files = render(name)
    written = []
    try:
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            written.append(path)
    except OSError as exc:
        raise ZooError(f"cannot write {root} ({exc.strerror})") from None
    return root, written
