"""The plugin system: third-party distributions found through entry points, broken and clashing plugins,
ZOO_LOAD_PLUGINS / ZOO_DISABLE_PLUGINS, and plugins registered in process.

The fixture distributions in tests/fixtures/ are pip-installed (offline) into a throwaway directory once per
session and put on PYTHONPATH of a `zoo` subprocess, so they are found exactly as an installed plugin would be:
through their .dist-info entry points. The shared .venv is never touched.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
from _plugin_helpers import BUILTIN_MODELS, BUILTIN_PLUGINS, FIXTURES, ok, one_error_line, parse_table, run_zoo, stderr_lines

import zoo
from zoo import plugins as zoo_plugins
from zoo import registry

EXAMPLE, BROKEN, DUPE = "zoo-example-plugin", "zoo-broken-plugin", "zoo-dupe-plugin"
BROKEN_ERROR = "RuntimeError: zoo-broken-plugin is broken on purpose"


@pytest.fixture(scope="session")
def sites(tmp_path_factory):
    """The three fixture distributions, each pip-installed into its own directory."""
    from _plugin_helpers import install_distributions

    return install_distributions([EXAMPLE, BROKEN, DUPE], tmp_path_factory.mktemp("plugin-sites"))


def _names(proc) -> list[str]:
    return [row["name"] for row in parse_table(ok(proc).stdout)]


def _plugins_json(proc) -> dict:
    data = json.loads(ok(proc).stdout)
    return data


def _by_name(data: dict) -> dict[str, dict]:
    return {p["name"]: p for p in data["plugins"]}


# --- a third-party plugin installed as a real distribution ------------------------------------------------


def test_fixture_is_a_real_installed_distribution(sites):
    dist_infos = list(sites[EXAMPLE].glob("zoo_example_plugin-0.3.1.dist-info"))
    assert len(dist_infos) == 1, list(sites[EXAMPLE].iterdir())
    entry_points = (dist_infos[0] / "entry_points.txt").read_text()
    assert re.search(r"^\[zoo\]\s*^example = zoo_example_plugin$", entry_points, re.M), entry_points
    assert (sites[EXAMPLE] / "zoo_example_plugin" / "__init__.py").exists()
    # The build happened in a copy: the fixture source stays clean.
    assert not (FIXTURES / EXAMPLE / "build").exists()
    assert not list((FIXTURES / EXAMPLE).glob("*.egg-info"))


def test_third_party_model_is_listed_with_its_plugin(sites):
    proc = ok(run_zoo("list", pythonpath=[sites[EXAMPLE]]))
    rows = {row["name"]: row for row in parse_table(proc.stdout)}
    assert set(rows) == {*BUILTIN_MODELS, "example-rnn"}
    assert rows["example-rnn"]["plugin"] == "example"
    assert rows["example-rnn"]["task"] == "char-lm"
    assert rows["char-rnn"]["plugin"] == "char-rnn"
    assert proc.stderr == ""


def test_third_party_model_without_the_plugin_is_absent():
    assert "example-rnn" not in _names(run_zoo("list"))


def test_third_party_model_in_json_and_info(sites):
    listed = {m["name"]: m for m in json.loads(ok(run_zoo("list", "--json", pythonpath=[sites[EXAMPLE]])).stdout)}
    assert listed["example-rnn"]["plugin"] == "example"
    assert listed["example-rnn"]["tags"] == ["example"]
    assert listed["example-rnn"]["num_params"] is None

    info = ok(run_zoo("info", "example-rnn", pythonpath=[sites[EXAMPLE]])).stdout
    assert info.startswith("example-rnn: Example plugin:")
    assert re.search(r"^\s+plugin\s+example$", info, re.M), info
    assert re.search(r"^\s+builder\s+zoo_lesson6\.models:CharRnn$", info, re.M), info
    assert "n_hidden=64" in info


def test_plugins_table_shows_distribution_version_and_hooks(sites):
    rows = {row["plugin"]: row for row in parse_table(ok(run_zoo("plugins", pythonpath=[sites[EXAMPLE]])).stdout)}
    assert set(rows) == {*BUILTIN_PLUGINS, "example"}
    example = rows["example"]
    assert example["distribution"] == "zoo-example-plugin"
    assert example["version"] == "0.3.1"
    assert example["hooks"] == "register_commands, register_models"
    assert example["provides"] == "example-rnn"
    assert example["status"] == "ok"
    assert rows["char-rnn"]["distribution"] == zoo.DISTRIBUTION == "lesson6-zoo"
    assert rows["corpora"]["provides"] == "nietzsche, pydoc-topics"


def test_plugins_json_shows_distribution_version_and_hooks(sites):
    data = _plugins_json(run_zoo("plugins", "--json", pythonpath=[sites[EXAMPLE]]))
    assert data["conflicts"] == []
    plugins = _by_name(data)
    assert plugins["example"] == {
        "name": "example",
        "distribution": "zoo-example-plugin",
        "version": "0.3.1",
        "hooks": ["zoo_register_commands", "zoo_register_models"],
        "models": ["example-rnn"],
        "datasets": [],
        "error": None,
    }
    assert plugins["char-rnn"]["distribution"] == zoo.DISTRIBUTION
    assert plugins["char-rnn"]["version"] == zoo.__version__
    assert plugins["char-rnn"]["hooks"] == ["zoo_register_models"]


def test_plugin_command_runs(sites):
    proc = ok(run_zoo("hello-example", "--name", "tester", pythonpath=[sites[EXAMPLE]]))
    assert proc.stdout == "hello tester from zoo-example-plugin\n"
    help_text = ok(run_zoo("--help", pythonpath=[sites[EXAMPLE]])).stdout
    assert re.search(r"^\s+hello-example\s+Say hello from the example plugin\.", help_text, re.M), help_text


def test_plugin_command_absent_without_the_plugin():
    proc = run_zoo("hello-example")
    assert proc.returncode == 2
    assert "No such command 'hello-example'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_disabling_a_third_party_plugin_removes_its_model_and_command(sites):
    names = _names(run_zoo("list", pythonpath=[sites[EXAMPLE]], ZOO_DISABLE_PLUGINS="example"))
    assert sorted(names) == sorted(BUILTIN_MODELS)
    assert run_zoo("hello-example", pythonpath=[sites[EXAMPLE]], ZOO_DISABLE_PLUGINS="example").returncode == 2


def test_loading_only_a_third_party_plugin(sites):
    assert _names(run_zoo("list", pythonpath=[sites[EXAMPLE]], ZOO_LOAD_PLUGINS="example")) == ["example-rnn"]


def test_same_distribution_twice_on_the_path_is_loaded_once(sites, tmp_path):
    copy = tmp_path / "site-copy"
    shutil.copytree(sites[EXAMPLE], copy)
    proc = ok(run_zoo("list", pythonpath=[sites[EXAMPLE], copy]))
    assert _names(proc).count("example-rnn") == 1
    assert proc.stderr == ""


# --- a plugin that fails to import -----------------------------------------------------------------------


def test_broken_plugin_is_skipped_with_one_warning(sites):
    proc = ok(run_zoo("list", pythonpath=[sites[BROKEN]]))
    assert sorted(_names(proc)) == sorted(BUILTIN_MODELS)
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("zoo: warning:")
    assert "'broken'" in lines[0]
    assert BROKEN_ERROR in lines[0]


def test_broken_plugin_does_not_hide_other_third_party_plugins(sites):
    proc = ok(run_zoo("list", pythonpath=[sites[BROKEN], sites[EXAMPLE]]))
    assert "example-rnn" in _names(proc)
    assert len(stderr_lines(proc)) == 1, proc.stderr
    assert ok(run_zoo("hello-example", pythonpath=[sites[BROKEN], sites[EXAMPLE]])).stdout.startswith("hello world")


def test_broken_plugin_error_in_plugins_json(sites):
    data = _plugins_json(run_zoo("plugins", "--json", pythonpath=[sites[BROKEN]]))
    broken = _by_name(data)["broken"]
    assert broken["error"] == BROKEN_ERROR
    assert broken["distribution"] == "zoo-broken-plugin"
    assert broken["version"] == "0.0.1"
    assert broken["hooks"] == [] and broken["models"] == []
    assert all(p["error"] is None for name, p in _by_name(data).items() if name != "broken")


def test_broken_plugin_status_in_plugins_table(sites):
    rows = {row["plugin"]: row for row in parse_table(ok(run_zoo("plugins", pythonpath=[sites[BROKEN]])).stdout)}
    assert rows["broken"]["status"] == f"FAILED: {BROKEN_ERROR}"
    assert rows["char-rnn"]["status"] == "ok"


def test_disabled_broken_plugin_is_not_imported(sites):
    proc = ok(run_zoo("list", pythonpath=[sites[BROKEN]], ZOO_DISABLE_PLUGINS="broken"))
    assert proc.stderr == ""


# --- two plugins registering the same model name ---------------------------------------------------------


def _clash_names(line: str) -> set[str]:
    match = re.search(r"registered by two plugins, '([^']+)' and '([^']+)'", line)
    assert match, line
    return set(match.groups())


@pytest.mark.parametrize("args", [("list",), ("info", "char-rnn"), ("list", "--json")])
def test_duplicate_model_name_keeps_zoos_own_with_one_warning_naming_both_plugins(sites, args):
    proc = ok(run_zoo(*args, pythonpath=[sites[DUPE]]))  # one clashing plugin does not stop zoo (issues 19 and 20)
    lines = stderr_lines(proc)
    assert len(lines) == 1 and lines[0].startswith("zoo: warning: model 'char-rnn'"), proc.stderr
    assert _clash_names(lines[0]) == {"char-rnn", "dupe"}
    assert "ZOO_DISABLE_PLUGINS=dupe" in lines[0]
    assert "impostor" not in proc.stdout.lower()


def test_duplicate_model_name_is_reported_by_zoo_plugins(sites):
    proc = ok(run_zoo("plugins", pythonpath=[sites[DUPE]]))
    rows = {row["plugin"]: row for row in parse_table(proc.stdout)}
    assert rows["dupe"]["distribution"] == "zoo-dupe-plugin"
    conflict = [ln for ln in stderr_lines(proc) if ln.startswith("conflict:")]
    assert len(conflict) == 1 and _clash_names(conflict[0]) == {"char-rnn", "dupe"}

    data = _plugins_json(run_zoo("plugins", "--json", pythonpath=[sites[DUPE]]))
    assert len(data["conflicts"]) == 1 and _clash_names(data["conflicts"][0]) == {"char-rnn", "dupe"}


def test_disabling_one_of_the_clashing_plugins_resolves_the_clash(sites):
    proc = ok(run_zoo("list", pythonpath=[sites[DUPE]], ZOO_DISABLE_PLUGINS="dupe"))
    rows = {row["name"]: row for row in parse_table(proc.stdout)}
    assert rows["char-rnn"]["plugin"] == "char-rnn"


# --- ZOO_LOAD_PLUGINS / ZOO_DISABLE_PLUGINS ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["char-rnn,corpora", " char-rnn , corpora ,"])
def test_load_plugins_loads_only_those(value):
    proc = ok(run_zoo("list", ZOO_LOAD_PLUGINS=value))
    assert _names(proc) == ["char-rnn"]
    assert proc.stderr == ""
    data = _plugins_json(run_zoo("plugins", "--json", ZOO_LOAD_PLUGINS=value))
    assert sorted(_by_name(data)) == ["char-rnn", "corpora"]
    datasets = [row["dataset"] for row in parse_table(ok(run_zoo("datasets", ZOO_LOAD_PLUGINS=value)).stdout)]
    assert "nietzsche" in datasets


def test_load_plugins_without_corpora_has_no_datasets():
    proc = ok(run_zoo("datasets", ZOO_LOAD_PLUGINS="char-rnn"))
    assert parse_table(proc.stdout) == []
    line = one_error_line(run_zoo("eval", "char-rnn", "--data", "pydoc-topics", ZOO_LOAD_PLUGINS="char-rnn"))
    assert line == "zoo: error: unknown dataset 'pydoc-topics': no plugin loaded registers any dataset (see `zoo plugins`)"


def test_disable_plugins_blocks_those():
    names = _names(run_zoo("list", ZOO_DISABLE_PLUGINS="char-rnn"))
    assert sorted(names) == sorted(set(BUILTIN_MODELS) - {"char-rnn"})
    names = _names(run_zoo("list", ZOO_DISABLE_PLUGINS="char-rnn,char3"))
    assert sorted(names) == sorted(set(BUILTIN_MODELS) - {"char-rnn", "char3"})


def test_disable_wins_over_load():
    assert _names(run_zoo("list", ZOO_LOAD_PLUGINS="char-rnn,char3", ZOO_DISABLE_PLUGINS="char3")) == ["char-rnn"]


def test_load_plugins_naming_an_uninstalled_plugin_warns():
    proc = ok(run_zoo("list", ZOO_LOAD_PLUGINS="char-rnn,no-such-plugin"))
    assert _names(proc) == ["char-rnn"]
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("zoo: warning:")
    assert "ZOO_LOAD_PLUGINS" in lines[0] and "'no-such-plugin'" in lines[0]


# --- plugins registered in process (tests, notebooks) -----------------------------------------------------


class _DupePlugin:
    @zoo.hookimpl
    def zoo_register_models(self, register):
        register(zoo.ModelSpec(name="char-rnn", summary="An in-process impostor.", builder="zoo_lesson6.models:CharRnn"))


class _NewModelPlugin:
    @zoo.hookimpl
    def zoo_register_models(self, register):
        register(zoo.ModelSpec(name="notebook-rnn", summary="From a notebook.", builder="zoo_lesson6.models:CharRnn", tags=("nb",)))


class _BadArgPlugin:
    @zoo.hookimpl
    def zoo_register_models(self, register):
        register({"name": "not-a-spec"})


class _RaisingPlugin:
    @zoo.hookimpl
    def zoo_register_models(self, register):
        raise ValueError("this hook always fails")


@pytest.fixture
def in_process(monkeypatch):
    """A fresh plugin host; yields register(plugin, name); unregisters and resets afterwards, whatever happens."""
    for var in ("ZOO_LOAD_PLUGINS", "ZOO_DISABLE_PLUGINS", "ZOO_REGISTRY"):
        monkeypatch.delenv(var, raising=False)
    zoo_plugins.reset()
    names: list[str] = []

    def register(plugin, name: str):
        zoo_plugins.host().register(plugin, name=name)
        names.append(name)
        registry.reset()  # the registry caches what plugins registered; collect again
        return zoo_plugins.host()

    try:
        yield register
    finally:
        try:
            for name in names:
                if zoo_plugins.host().pm.get_plugin(name) is not None:
                    zoo_plugins.host().unregister(name)
        finally:
            zoo_plugins.reset()


def test_in_process_duplicate_names_both_plugins(in_process, capsys):
    in_process(_DupePlugin(), "notebook-dupe")
    specs = {s.name: s for s in registry.list_models()}
    assert specs["char-rnn"].plugin == "char-rnn"  # zoo's own keeps the name
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and message.startswith("zoo: warning: ")
    assert _clash_names(message) == {"char-rnn", "notebook-dupe"}
    assert "ZOO_DISABLE_PLUGINS=notebook-dupe" in message
    assert registry.get_model("char-rnn").summary == specs["char-rnn"].summary != "An in-process impostor."


def test_unregister_and_reset_clear_the_clash(in_process, capsys):
    in_process(_DupePlugin(), "notebook-dupe")
    registry.list_models()
    assert "registered by two plugins" in capsys.readouterr().err
    zoo_plugins.host().unregister("notebook-dupe")
    zoo_plugins.reset()
    specs = {s.name: s for s in registry.list_models()}
    assert set(specs) == set(BUILTIN_MODELS)
    assert specs["char-rnn"].plugin == "char-rnn"
    assert "notebook-dupe" not in zoo_plugins.host().infos
    assert capsys.readouterr().err == ""


def test_in_process_plugin_model_is_registered(in_process):
    host = in_process(_NewModelPlugin(), "notebook")
    spec = registry.get_model("notebook-rnn")
    assert spec.plugin == "notebook"
    assert [s.name for s in zoo.list_models(tag="nb")] == ["notebook-rnn"]
    info = host.infos["notebook"]
    assert info.distribution == "(in process)"
    assert info.hooks == ["zoo_register_models"]
    assert info.models == ["notebook-rnn"]


def test_register_with_a_wrong_type_is_pinned_on_the_plugin(in_process, capsys):
    host = in_process(_BadArgPlugin(), "bad-arg")
    names = {s.name for s in registry.list_models()}
    assert names == set(BUILTIN_MODELS)  # the others are unaffected
    assert "TypeError" in host.infos["bad-arg"].error and "zoo.ModelSpec" in host.infos["bad-arg"].error
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(warnings) == 1 and "'bad-arg'" in warnings[0]


def test_a_raising_hook_is_pinned_on_its_plugin(in_process, capsys):
    host = in_process(_RaisingPlugin(), "raiser")
    assert {s.name for s in registry.list_models()} == set(BUILTIN_MODELS)
    assert host.infos["raiser"].error == "zoo_register_models raised ValueError: this hook always fails"
    assert host.infos["char-rnn"].error == ""
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(warnings) == 1 and "'raiser'" in warnings[0] and "this hook always fails" in warnings[0]


class _ExitingPlugin:
    @zoo.hookimpl
    def zoo_register_models(self, register):
        raise SystemExit("first line\nsecond line")


def test_a_hook_that_calls_sys_exit_is_pinned_on_its_plugin_in_one_line(in_process, capsys):
    host = in_process(_ExitingPlugin(), "exiter")
    assert {s.name for s in registry.list_models()} == set(BUILTIN_MODELS)  # zoo goes on
    assert host.infos["exiter"].error == "zoo_register_models raised SystemExit: first line / second line"
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(warnings) == 1 and "'exiter'" in warnings[0]


def test_a_plugin_that_exits_on_import_is_skipped(tmp_path, monkeypatch, capsys):
    from importlib.metadata import EntryPoint

    (tmp_path / "zoo_exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    exiting = EntryPoint(name="exits", value="zoo_exits_on_import", group="zoo")
    real = zoo_plugins.metadata.entry_points
    monkeypatch.setattr(zoo_plugins.metadata, "entry_points", lambda **kw: [*real(**kw), exiting])
    for var in ("ZOO_LOAD_PLUGINS", "ZOO_DISABLE_PLUGINS"):
        monkeypatch.delenv(var, raising=False)
    zoo_plugins.reset()
    try:
        assert {s.name for s in registry.list_models()} == set(BUILTIN_MODELS)
        assert zoo_plugins.host().infos["exits"].error == "SystemExit: 3"
        assert "plugin 'exits' failed to load and was skipped (SystemExit: 3)" in capsys.readouterr().err
    finally:
        zoo_plugins.reset()


def test_entry_point_plugins_come_from_installed_metadata(in_process):
    infos = zoo_plugins.host().infos
    assert set(BUILTIN_PLUGINS) <= set(infos)
    assert all(infos[name].distribution == zoo.DISTRIBUTION and infos[name].version == zoo.__version__ for name in BUILTIN_PLUGINS)
    assert infos["corpora"].hooks == ["zoo_register_datasets"]


class _PathDatasetPlugin:
    """A corpus object that happens to carry a `path`: it is still recorded by its name."""

    class Corpus:
        name = "notes-corpus"
        summary = "a plugin's corpus with a path attribute"

        def __init__(self, path):
            self.path = path

        def read_text(self):
            return self.path.read_text(encoding="utf-8")

    def __init__(self, path):
        self.corpus = self.Corpus(path)

    @zoo.hookimpl
    def zoo_register_datasets(self, register):
        register(self.corpus)


def test_a_registered_dataset_is_recorded_by_name_even_with_a_path_attribute(in_process, small_corpus, tmp_path):
    in_process(_PathDatasetPlugin(small_corpus), "notes")
    m = zoo.train("char-rnn", data="notes-corpus", out=tmp_path / "r", max_steps=2, quiet=True, device="cpu",
                  overrides=["n_hidden=8", "n_fac=4"])  # fmt: skip
    assert m.config["data"] == "notes-corpus"
    assert json.loads((tmp_path / "r" / "run.json").read_text())["options"]["data"] == "notes-corpus"
