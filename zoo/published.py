"""registry.toml: the weights zoo publishes, pinned and hashed. Schema: docs/registry.md.

Read with the standard library only (no torch), validated on load: a malformed file
raises one ZooError that names the key and the problem.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from zoo import rundir
from zoo.errors import ZooError
from zoo.fileio import read_bounded, sha256_file

SCHEMA_VERSION = 1
MAX_PINS_BYTES = 1 << 20  # a plugin's pins file: a few tables per model, far below this
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HEX40 = re.compile(r"^[0-9a-f]{40}$")
# What the Hub accepts as a repository id, OWNER/NAME (huggingface_hub.utils.validate_repo_id checks the rest)
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
# A file of a published model: a plain name inside the snapshot (zoo pull downloads it there, and deletes it there
# when its hash is wrong), so no "..", no absolute path, no glob, no hidden file; folders of such names at most.
_FILE_PART = re.compile(r"[A-Za-z0-9_][\w.-]{0,127}", re.ASCII)


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    dataset: str
    split: str
    val_frac: float | None = None  # the share of the text held out; None: not recorded (the lesson's 0.2)


@dataclass(frozen=True)
class PublishedWeights:
    model: str
    repo: str
    revision: str | None  # None until `zoo publish` has pushed the weights and pinned the commit
    license: str
    recipe: str
    num_params: int
    files: dict[str, str] = field(default_factory=dict)
    metrics: tuple[Metric, ...] = ()
    bundled: str | None = None  # "package:folder" of a copy that ships inside an installed package
    origin: str = "registry.toml"  # where it is pinned, for messages: zoo's registry.toml or a plugin's file
    plugin: str | None = None  # the plugin that ships the pin (None: zoo's own registry.toml)
    pin_file: Path | None = None  # the plugin's TOML file, where `zoo publish` pins the revision (None: a table)

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)


def default_path() -> Path:
    """ZOO_REGISTRY, else the registry.toml shipped beside the package."""
    env = os.environ.get("ZOO_REGISTRY")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent / "registry.toml"


def _need(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise ZooError(f"{where}.{key} is missing")
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        article = "an" if want[0] in "aeiou" else "a"
        raise ZooError(f"{where}.{key} must be {article} {want}, got {value!r}")
    return value


def _as_float(value: int | float, where: str) -> float:
    try:
        return float(value)
    except OverflowError:  # a TOML integer too large for a float
        raise ZooError(f"{where} is too large for a number") from None


def is_plain_file_name(name: str) -> bool:
    """Whether `name` names a file inside a folder, and nothing outside it: relative, no "..", no glob characters."""
    parts = name.split("/")
    return len(parts) <= 8 and all(_FILE_PART.fullmatch(part) for part in parts)


def _parse_entry(model: str, table: Any, origin: str) -> PublishedWeights:
    where = f"{origin}: weights.{model}"
    if not isinstance(table, dict):
        raise ZooError(f"{where} must be a table")
    known = {"repo", "revision", "license", "recipe", "num_params", "files", "metrics", "bundled"}
    for key in table:
        if key not in known:
            raise ZooError(f"{where}.{key} is not a known key (known: {', '.join(sorted(known))})")
    repo = _need(table, "repo", str, where)
    if not REPO_ID.fullmatch(repo):
        raise ZooError(f"{where}.repo must look like OWNER/NAME, got {repo!r}")
    revision = _need(table, "revision", str, where) if "revision" in table else None
    if revision is not None and not _HEX40.match(revision):
        raise ZooError(f"{where}.revision must be a 40-character commit hash, got {revision!r}")
    bundled = _need(table, "bundled", str, where) if "bundled" in table else None
    if bundled is not None and not re.match(r"^[A-Za-z_][\w.]*:[\w./-]+$", bundled):
        raise ZooError(f"{where}.bundled must look like 'package:folder', got {bundled!r}")
    files = _need(table, "files", dict, where)
    if not files:
        raise ZooError(f"{where}.files is empty")
    for fname, digest in files.items():
        if not is_plain_file_name(fname):
            raise ZooError(f"{where}.files: {fname!r} is not a plain file name inside the repository")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise ZooError(f"{where}.files.{fname} must be a sha256 of 64 hex characters, got {digest!r}")
    num_params = _need(table, "num_params", int, where)
    if num_params <= 0:
        raise ZooError(f"{where}.num_params must be positive")
    metrics = []
    for i, m in enumerate(_need(table, "metrics", list, where)):
        mw = f"{where}.metrics[{i}]"
        if not isinstance(m, dict):
            raise ZooError(f"{mw} must be a table")
        unknown = sorted(set(m) - {"name", "value", "dataset", "split", "val_frac"})
        if unknown:
            raise ZooError(f"{mw}.{unknown[0]} is not a known key (known: dataset, name, split, val_frac, value)")
        val_frac = None
        if "val_frac" in m:
            val_frac = _as_float(_need(m, "val_frac", (int, float), mw), f"{mw}.val_frac")
            if not 0 < val_frac < 1:
                raise ZooError(f"{mw}.val_frac must be between 0 and 1 (exclusive), got {val_frac:g}")
        metrics.append(
            Metric(
                name=_need(m, "name", str, mw),
                value=_as_float(_need(m, "value", (int, float), mw), f"{mw}.value"),
                dataset=_need(m, "dataset", str, mw),
                split=_need(m, "split", str, mw),
                val_frac=val_frac,
            )
        )
    return PublishedWeights(
        model=model,
        repo=repo,
        revision=revision,
        license=_need(table, "license", str, where),
        recipe=_need(table, "recipe", str, where),
        num_params=num_params,
        files=dict(files),
        metrics=tuple(metrics),
        bundled=bundled,
        origin=origin,
    )


def load(path: Path | None = None) -> dict[str, PublishedWeights]:
    """Parse and validate zoo's registry.toml (ZOO_REGISTRY, or `path`); {} when the file does not exist, unless
    ZOO_REGISTRY names it. The pins plugins ship are not in it: `zoo.registry.published_weights()` merges them."""
    path = path or default_path()
    if not path.exists():
        if os.environ.get("ZOO_REGISTRY") and Path(os.environ["ZOO_REGISTRY"]) == path:  # asked for, not found
            raise ZooError(f"ZOO_REGISTRY={path}: no such file")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ZooError(f"{path}: cannot be read ({exc})") from None
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:  # also: an integer of 4300+ digits, nesting too deep
        raise ZooError(f"{path}: not valid TOML ({exc})") from None
    return parse(data, "registry.toml")


def parse(data: Any, origin: str) -> dict[str, PublishedWeights]:
    """The entries of a parsed registry (registry.toml's schema), validated; errors begin with `origin`."""
    if not isinstance(data, dict):
        raise ZooError(f"{origin}: must be a table with the keys schema and weights")
    schema = data.get("schema")
    if schema != SCHEMA_VERSION:
        raise ZooError(f"{origin}: schema must be {SCHEMA_VERSION}, got {schema!r}")
    for key in data:
        if key not in ("schema", "weights"):
            raise ZooError(f"{origin}: top-level key {key!r} is not known (known: schema, weights)")
    weights = data.get("weights", {})
    if not isinstance(weights, dict):
        raise ZooError(f"{origin}: weights must be a table")
    return {name: _parse_entry(name, table, origin) for name, table in weights.items()}


def plugin_pins(pins: Any, plugin: str) -> dict[str, PublishedWeights]:
    """The entries a plugin ships (`zoo_register_weights`): the path of a TOML file in registry.toml's schema, or
    such a table already parsed; validated as zoo's own. A file is read bounded, like anything zoo did not write."""
    if isinstance(pins, dict):
        return {name: replace(e, plugin=plugin) for name, e in parse(pins, f"the pins of plugin {plugin!r}").items()}
    if not isinstance(pins, (str, os.PathLike)):
        raise ZooError(f"plugin {plugin!r}: register() takes the path of a TOML file or a parsed table, got {type(pins).__name__}")
    path = Path(pins)
    origin = f"{path} (plugin {plugin!r})"
    raw = read_bounded(path, MAX_PINS_BYTES, "a TOML file")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ZooError(f"{origin}: not UTF-8 text ({exc.reason})") from None
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as exc:
        raise ZooError(f"{origin}: not valid TOML ({exc})") from None
    return {name: replace(e, plugin=plugin, pin_file=path) for name, e in parse(data, origin).items()}


def bundled_path(entry: PublishedWeights) -> Path | None:
    """The folder of the copy of `entry` that ships inside an installed package, if any."""
    if not entry.bundled:
        return None
    import importlib.resources

    package, _, folder = entry.bundled.partition(":")
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        return None
    path = Path(str(root.joinpath(folder)))
    return path if rundir.has_config(path) else None


def sha256_of(path: Path) -> str:
    return sha256_file(path)


def mismatched_files(folder: Path, entry: PublishedWeights) -> list[str]:
    """The files of `entry` that are missing from `folder` or whose sha256 differs from the registry's."""
    bad = []
    for name, digest in entry.files.items():
        path = folder / name
        if not path.is_file() or sha256_of(path) != digest:
            bad.append(name)
    return bad


def set_revision(model: str, revision: str, path: Path | None = None) -> None:
    """Pin `revision` for `model` in registry.toml (or the plugin's pins file `path`), keeping the rest as written."""
    if not _HEX40.match(revision):
        raise ZooError(f"not a commit hash: {revision!r}")
    path = (path or default_path()).resolve()
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = f"[weights.{model}]"
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == header)
    except StopIteration:
        raise ZooError(f"{path.name} has no {header} table") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    new = f'revision = "{revision}"\n'
    for i in range(start + 1, end):
        if lines[i].split("=")[0].strip() == "revision":
            lines[i] = new
            break
    else:
        lines.insert(start + 1, new)
    from zoo.fileio import atomic_write_bytes

    atomic_write_bytes(path, "".join(lines).encode("utf-8"))
    load(path)  # what was written must still validate
