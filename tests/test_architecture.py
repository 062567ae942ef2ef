"""The core's structure, held against the code: layers that import downward only, no import cycles, one owner of
the run folder's file names, small signatures, and a task a plugin can add without touching zoo/.

The layer order is written here and in docs/architecture.md (a test below keeps the two the same).
"""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import pytest

import zoo
from zoo import plugins as zoo_plugins
from zoo import registry

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "zoo"

# Bottom to top. A module may import modules of its own layer or of a lower one, never of a higher one.
LAYERS = {
    "base": ["zoo", "zoo.errors", "zoo.checks", "zoo.fileio", "zoo.progress", "zoo.allocator", "zoo.hookspecs", "zoo.spec",
             "zoo.options", "zoo.card"],
    "data": ["zoo.data", "zoo.data.vocab", "zoo.data.sources", "zoo.data.table", "zoo.data.batching"],
    "run folder": ["zoo.runlock", "zoo.rundir"],
    "plugins": ["zoo.plugins"],
    "registry": ["zoo.registry", "zoo.published", "zoo.hub"],
    "compute": ["zoo.model", "zoo.runtime", "zoo.losses", "zoo.recurrence", "zoo.cudagraph", "zoo.distributed", "zoo.sampling",
                "zoo.checkpoint"],
    "tasks": ["zoo.tasks", "zoo.tasks.base", "zoo.tasks.charlm", "zoo.tasks.table"],
    "trainer": ["zoo.trainer"],
    "pipeline": ["zoo.pipeline"],
    "api": ["zoo.api"],
    "above the api": ["zoo.publish", "zoo.explanation", "zoo.compare"],
    "top": ["zoo.cli", "zoo.testing", "zoo.__main__"],
}  # fmt: skip
LEVEL = {module: i for i, modules in enumerate(LAYERS.values()) for module in modules}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ZOO.rglob("*.py"))}


def _imports(module: str) -> set[str]:
    """The zoo modules `module` imports, at the top or inside functions (`from zoo import x` is zoo.x when x is one)."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.split(".")[0] == "zoo":
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in MODULES)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "zoo")
    found.discard(module)
    return found


def test_every_module_of_zoo_has_a_layer():
    assert set(MODULES) - set(LEVEL) == set(), "place each new module in a layer (LAYERS here, and docs/architecture.md)"
    assert set(LEVEL) - set(MODULES) == set(), "a layer names a module that no longer exists"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    upward = sorted(m for m in _imports(module) if LEVEL[m] > LEVEL[module])
    assert not upward, f"{module} ({_layer(module)}) imports {', '.join(f'{m} ({_layer(m)})' for m in upward)}"


def _layer(module: str) -> str:
    return list(LAYERS)[LEVEL[module]]


def test_no_import_cycles_counting_imports_inside_functions():
    graph = {m: _imports(m) for m in MODULES}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                pytest.fail("import cycle: " + " -> ".join([*path[path.index(n) :], n]))
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_the_layers_are_the_ones_docs_architecture_draws():
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    drawn = re.findall(r"^\s*\d+\s+(.+?)\s{2,}(.+)$", text.split("```")[1], flags=re.M)
    assert [(name, mods.split()) for name, mods in reversed(drawn)] == [
        (name, [m.removeprefix("zoo.") if m != "zoo" else "zoo" for m in mods]) for name, mods in LAYERS.items()
    ]


def test_the_run_folders_file_names_are_written_in_zoo_rundir_only():
    from zoo import rundir

    names = {rundir.CONFIG, rundir.RUN, rundir.WEIGHTS, rundir.TRAINING, rundir.LOSS_PLOT, rundir.CARD, rundir.CHECKPOINT,
             rundir.OPTIMIZER, rundir.STATE}  # fmt: skip
    found = []
    for module, path in MODULES.items():
        if module == "zoo.rundir":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{module}:{node.lineno} {node.value!r}")
    assert not found, "use zoo.rundir's names: " + ", ".join(found)


def test_no_core_function_takes_more_than_eight_parameters():
    allowed = {
        ("zoo.api", "train"),  # the public facade: its keywords are zoo.train's documented API
        ("zoo.recurrence", "forward"),  # torch.autograd.Function.forward: torch passes each input as an argument
        ("zoo.sampling", "sample"),  # the sampler's documented keywords (LoadedModel.sample's)
        ("zoo.sampling", "sample_by_rerunning"),
        ("zoo.sampling", "sample_uncached"),  # the reference for a cache model: sample's keywords, without on_text
    }
    found = []
    for module, path in MODULES.items():
        if module in ("zoo.cli",):  # click commands take one parameter per option
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                n = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) - (1 if a.args and a.args[0].arg in ("self", "cls") else 0)
                if n > 8 and (module, node.name) not in allowed:
                    found.append(f"{module}.{node.name} ({n})")
    assert not found, "take an options object instead: " + ", ".join(found)


def test_the_cli_knows_zoo_trains_own_keywords_from_one_declaration():
    from zoo import api

    assert set(api.TRAIN_KEYWORDS) == set(inspect.signature(api.train).parameters) - {"name"}


# --- a task a plugin brings ----------------------------------------------------------------------------


@pytest.fixture
def line_fit_plugin(monkeypatch):
    from _task_plugin import LineFitPlugin

    for var in ("ZOO_LOAD_PLUGINS", "ZOO_DISABLE_PLUGINS", "ZOO_REGISTRY"):
        monkeypatch.delenv(var, raising=False)
    zoo_plugins.reset()
    zoo_plugins.host().register(LineFitPlugin(), name="line-fit-plugin")
    try:
        yield
    finally:
        zoo_plugins.reset()


def _zoo(capsys, *argv: str) -> tuple[int, str, str]:
    from zoo.cli import main

    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_plugin_adds_a_task_and_zoo_train_trains_it(line_fit_plugin, tmp_path, capsys):
    assert registry.get_task("line-fit").plugin == "line-fit-plugin"
    code, out, err = _zoo(capsys, "train", "line-fit", "--out", str(tmp_path / "run"), "--quiet")
    assert code == 0, err
    assert "line-fit: val_loss" in out and "after epoch 4" in out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["task"], config["points"], config["hparams"]) == ("line-fit", 400, {"scale": 1.0})
    history = json.loads((tmp_path / "run" / "training.json").read_text())["history"]
    assert len(history) == 4 and history[-1]["val_loss"] < history[0]["val_loss"]
    assert history[-1]["points_per_s"] > 0  # the task's own unit

    m = zoo.load(tmp_path / "run")
    assert type(m).__name__ == "FittedLine" and m.evaluate()["val_loss"] < 0.5

    code, out, err = _zoo(capsys, "train", "--resume", str(tmp_path / "run"), "--epochs", "6", "--quiet")
    assert code == 0, err
    assert len(json.loads((tmp_path / "run" / "training.json").read_text())["history"]) == 6


def test_a_task_the_plugin_does_not_register_is_one_line(line_fit_plugin, tmp_path, capsys):
    zoo_plugins.reset()  # the plugin gone: its run folder names a task nobody provides
    code, _, err = _zoo(capsys, "info", "line-fit")
    assert code == 1 and err.startswith("zoo: error: unknown model 'line-fit'")
