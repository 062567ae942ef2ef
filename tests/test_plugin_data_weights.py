"""Plugins' datasets on files (zoo.FileDataset: recorded by name) and plugins' pinned weights (zoo_register_weights).

A fake distribution `zoo-notes` (a package and its .dist-info on PYTHONPATH, as pip lays them out) registers a
model, a corpus in a file inside its package, and a TOML file of pins; the same module is registered in process to
train. Pushes and pulls go to the fake Hub on 127.0.0.1 (tests/hubserver.py), in subprocesses, because
huggingface_hub reads HF_ENDPOINT when it is imported.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import textwrap
from pathlib import Path

import pytest
from helpers import one_error, one_line_error, run_zoo, write_prose, zoo_in_process

import zoo
from zoo import plugins as zoo_plugins
from zoo import registry
from zoo.errors import ZooError

PLUGIN = """
from pathlib import Path

import zoo

HERE = Path(__file__).resolve().parent
NOTES = zoo.FileDataset(name="notes", path=HERE / "data" / "notes.txt", summary="the author's notes")
SPEC = zoo.ModelSpec(name="notes-rnn", summary="A small RNN on the notes.", builder="zoo_lesson6.models:CharRnn",
                     dataset="notes", hparams={"n_fac": 4, "n_hidden": 8}, batch_size=64)


@zoo.hookimpl
def zoo_register_models(register):
    register(SPEC)


@zoo.hookimpl
def zoo_register_datasets(register):
    register(NOTES)


@zoo.hookimpl
def zoo_register_weights(register):
    if (HERE / "pins.toml").exists():
        register(HERE / "pins.toml")
"""
PUBLISHED = ("model.safetensors", "config.json", "training.json", "README.md")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_site(root: Path, corpus: Path) -> Path:
    """`root/site`: the package zoo_notes (its plugin module, its corpus) and its .dist-info naming the entry point."""
    site = root / "site"
    pkg = site / "zoo_notes"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    shutil.copyfile(corpus, pkg / "data" / "notes.txt")
    info = site / "zoo_notes-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-notes\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text("[zoo]\nzoo_notes = zoo_notes\n", encoding="utf-8")
    return site


def _in_process(site: Path):
    """The plugin module of `site`, imported by path (not left on sys.path) and registered in this process."""
    spec = importlib.util.spec_from_file_location("zoo_notes_in_process", site / "zoo_notes" / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fresh_host(monkeypatch):
    """A fresh plugin host; yields register(plugin, name); everything registered is gone afterwards."""
    zoo_plugins.reset()
    registry.reset()

    def register(plugin, name: str) -> None:
        zoo_plugins.host().register(plugin, name=name)
        registry.reset()

    try:
        yield register
    finally:
        zoo_plugins.reset()
        registry.reset()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The plugin's site, and a run of its model trained in process on its FileDataset (the spec's default data)."""
    root = tmp_path_factory.mktemp("notes")
    corpus = root / "corpus.txt"
    write_prose(corpus, 12_000)
    site = _make_site(root, corpus)
    zoo_plugins.reset()
    try:
        zoo_plugins.host().register(_in_process(site), name="zoo_notes")
        registry.reset()
        zoo.train("notes-rnn", epochs=1, lr=1e-2, seed=0, out=root / "run", device="cpu", quiet=True)
    finally:
        zoo_plugins.reset()
        registry.reset()
    return site, root / "run"


# --- item 1: a corpus in a local file -------------------------------------------------------------------------


def test_a_file_dataset_is_recorded_by_name_and_its_text_by_sha256(trained):
    site, run = trained
    config = json.loads((run / "config.json").read_text())
    record = json.loads((run / "run.json").read_text())
    assert config["data"] == "notes"  # the name, never the author's path
    assert record["options"]["data"] == "notes"
    assert record["data_sha256"] == _sha(site / "zoo_notes" / "data" / "notes.txt")


def test_a_pushed_model_on_a_file_dataset_evaluates_after_a_pull(hub, trained, tmp_path):
    site, run = trained
    env = hub.env(HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(site))
    pushed = run_zoo("push", str(run), "--repo", "alice/notes-rnn", env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(hub.repo("alice/notes-rnn").files("main")["config.json"])["data"] == "notes"
    assert run_zoo("pull", "alice/notes-rnn", env=env).returncode == 0
    evaluated = run_zoo("eval", "alice/notes-rnn", env=env)
    assert evaluated.returncode == 0, evaluated.stderr  # was: "…notes.txt: no such file"
    assert "val_loss" in evaluated.stdout or "loss" in evaluated.stdout


def test_a_file_dataset_reads_bounded_and_keeps_to_its_pin(tmp_path, monkeypatch):
    text = tmp_path / "notes.txt"
    text.write_text("x" * ((1 << 20) + 1), encoding="utf-8")
    monkeypatch.setenv("ZOO_MAX_CORPUS_MB", "1")
    with pytest.raises(ZooError, match="ZOO_MAX_CORPUS_MB"):
        zoo.FileDataset("notes", text, "too large").read_text()
    monkeypatch.delenv("ZOO_MAX_CORPUS_MB")
    pinned = zoo.FileDataset("notes", text, "pinned", sha256=_sha(text))
    assert len(pinned.read_text()) == (1 << 20) + 1
    text.write_text("another text", encoding="utf-8")
    with pytest.raises(ZooError, match="sha256"):
        pinned.read_text()


@pytest.mark.parametrize("name", ["", "a/b", "../notes", "my notes", "x" * 65])
def test_a_file_dataset_name_is_a_name_not_a_path(name, tmp_path):
    with pytest.raises(ZooError, match="FileDataset name"):
        zoo.FileDataset(name, tmp_path / "notes.txt", "a corpus")


# --- item 6: plugins' pinned weights --------------------------------------------------------------------------


def _ship_pins(site: Path, run: Path, repo: str) -> Path:
    """The run as the plugin's bundled weights, and its pins.toml (no revision yet) next to its module."""
    from zoo.publish import write_card

    folder = site / "zoo_notes" / "weights" / "notes-rnn"
    folder.mkdir(parents=True)
    for f in ("model.safetensors", "config.json", "training.json"):
        shutil.copyfile(run / f, folder / f)
    write_card(folder, repo_id=repo)
    files = ", ".join(f'"{f}" = "{_sha(folder / f)}"' for f in PUBLISHED)
    pins = site / "zoo_notes" / "pins.toml"
    pins.write_text(
        f'schema = 1\n\n[weights.notes-rnn]\nrepo = "{repo}"\nlicense = "mit"\nrecipe = "zoo train notes-rnn --seed 0"\n'
        f'num_params = {zoo.load(run).num_params}\nbundled = "zoo_notes:weights/notes-rnn"\nmetrics = []\nfiles = {{ {files} }}\n',
        encoding="utf-8",
    )
    return pins


def test_a_plugin_publishes_pins_and_pulls_are_checked_against_them(hub, trained, tmp_path, fresh_host):
    site, run = trained
    site = Path(shutil.copytree(site, tmp_path / "site"))  # its own copy: this test writes pins.toml
    fresh_host(_in_process(site), "zoo_notes")  # the card and the parameter count load the model
    pins = _ship_pins(site, run, "acme/notes-rnn")
    env = hub.env(HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(site))
    listed = run_zoo("list", "--pretrained", env=env)
    assert "notes-rnn" in listed.stdout and listed.stderr == "", listed.stderr

    published = run_zoo("publish", "notes-rnn", env=env)
    assert published.returncode == 0, published.stderr
    pinned = hub.repo("acme/notes-rnn").resolve("main")
    assert f'revision = "{pinned}"' in pins.read_text()  # zoo publish pins it in the plugin's own file

    pulled = run_zoo("pull", "notes-rnn", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stderr == ""  # hash-checked against the pins: no "not in registry.toml" warning
    assert pinned in pulled.stdout

    good = (run / "model.safetensors").read_bytes()
    bad = good[:-1] + bytes([good[-1] ^ 0xFF])  # same length: only the pinned sha256 tells
    assert hub.tamper("acme/notes-rnn", "model.safetensors", bad) >= 1
    cold = {**env, "HF_HOME": str(tmp_path / "cold")}
    line = one_line_error(run_zoo("pull", "notes-rnn", env=cold))
    assert "model.safetensors" in line and "sha256" in line and str(pins) in line


class _TablePins:
    """Pins given as a parsed table, for a model of zoo's own registry.toml (char-rnn) and one of its own."""

    def __init__(self, *names: str) -> None:
        entry = {"repo": "acme/x", "license": "mit", "recipe": "zoo train x", "num_params": 1, "metrics": [],
                 "files": {"config.json": "0" * 64}}  # fmt: skip
        self.table = {"schema": 1, "weights": {name: dict(entry) for name in names}}

    @zoo.hookimpl
    def zoo_register_weights(self, register):
        register(self.table)


def test_a_pin_of_a_model_zoo_pins_is_one_line_naming_both(fresh_host, capsys):
    fresh_host(_TablePins("char-rnn", "tables-only"), "acme")
    line = one_error(*zoo_in_process(capsys, "pull", "char-rnn")[::2])
    assert "pinned twice" in line and "registry.toml" in line and "plugin 'acme'" in line
    pins = registry.published_weights()  # every other pin stands: zoo's and the plugin's
    assert "char-rnn" not in pins and "char3" in pins and pins["tables-only"].plugin == "acme"


def test_two_plugins_pinning_one_model_is_one_line_naming_both(fresh_host, capsys):
    fresh_host(_TablePins("twice"), "acme")
    fresh_host(_TablePins("twice"), "other")
    capsys.readouterr()
    line = one_error(*zoo_in_process(capsys, "pull", "twice")[::2])
    assert "pinned twice" in line and "plugin 'acme'" in line and "plugin 'other'" in line


def test_a_malformed_pins_file_is_one_warning_naming_it(fresh_host, tmp_path, capsys):
    bad = tmp_path / "pins.toml"
    bad.write_text('schema = 1\n[weights.x]\nrepo = "not a repo"\n', encoding="utf-8")

    class BadPins:
        @zoo.hookimpl
        def zoo_register_weights(self, register):
            register(bad)

    fresh_host(BadPins(), "broken")
    pins = registry.published_weights()
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "broken" in err and "weights.x.repo" in err and "pins.toml" in err
    assert "x" not in pins and "char3" in pins


def test_zoo_publish_refuses_pins_given_as_a_table(fresh_host, capsys):
    fresh_host(_TablePins("tables-only"), "acme")
    line = one_error(*zoo_in_process(capsys, "publish", "tables-only")[::2])
    assert "as a table" in line and "TOML file" in line


def test_zoo_registry_replaces_zoos_own_file_only(fresh_host, tmp_path, monkeypatch):
    own = tmp_path / "registry.toml"
    own.write_text("schema = 1\n", encoding="utf-8")
    monkeypatch.setenv("ZOO_REGISTRY", str(own))
    fresh_host(_TablePins("tables-only"), "acme")
    assert list(registry.published_weights()) == ["tables-only"]
