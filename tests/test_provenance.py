"""Provenance (distribution and version behind a model, `pip install` hints) and per-model default prompts.

A fake third-party distribution (a dist-info folder and a module, no pip) is put on sys.path in process, or on
PYTHONPATH for a subprocess; "removing the plugin" takes it off again.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
from helpers import one_error, run_zoo, zoo_in_process

import zoo
from zoo import plugins, registry
from zoo.data.vocab import Vocab
from zoo.errors import ZooError
from zoo.publish import card_text
from zoo.tasks.charlm import default_prompt

DIST, VERSION, PLUGIN, MODEL = "zoo-prov", "1.2.3", "prov", "prov-rnn"
TINY = ("n_fac=4", "n_hidden=8")
PLUGIN_SOURCE = f"""
import zoo


@zoo.hookimpl
def zoo_register_models(register):
    register(zoo.ModelSpec(name="{MODEL}", summary="A third party's model.", builder="zoo_lesson6.models:CharRnn",
                           hparams={{"n_fac": 42, "n_hidden": 64}}, dataset="pydoc-topics"))
"""
UPPER = "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG; WHO SAW IT? NOBODY.\n" * 150  # no lower-case letter at all


def _fake_distribution(root: Path) -> Path:
    """A folder that, on sys.path, holds the installed distribution zoo-prov 1.2.3 with the entry point prov."""
    site = root / "site"
    info = site / f"zoo_prov-{VERSION}.dist-info"
    info.mkdir(parents=True)
    (site / "zoo_prov_plugin.py").write_text(PLUGIN_SOURCE, encoding="utf-8")
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {VERSION}\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[zoo]\n{PLUGIN} = zoo_prov_plugin\n", encoding="utf-8")
    return site


def _reload_plugins() -> None:
    plugins.reset()
    registry.reset()


@pytest.fixture
def site(tmp_path, monkeypatch):
    """zoo-prov installed (on sys.path) for this process; yields its folder and a function that uninstalls it."""
    folder = _fake_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(folder))
    _reload_plugins()

    def uninstall() -> None:
        sys.path.remove(str(folder))
        sys.modules.pop("zoo_prov_plugin", None)
        _reload_plugins()

    try:
        yield folder, uninstall
    finally:
        sys.modules.pop("zoo_prov_plugin", None)
        _reload_plugins()


def _train(name: str, data: Path, out: Path) -> zoo.api.TrainedModel:
    return zoo.train(name, data=str(data), out=out, max_steps=2, batch_size=32, quiet=True, device="cpu", overrides=TINY)


def _config(run: Path) -> dict:
    return json.loads((run / "config.json").read_text(encoding="utf-8"))


# --- provenance ----------------------------------------------------------------------------------------------


def test_a_third_party_model_records_its_distribution_in_config_and_card(site, small_corpus, tmp_path):
    run = tmp_path / "run"
    _train(MODEL, small_corpus, run)
    config = _config(run)
    assert (config["plugin"], config["distribution"], config["plugin_version"]) == (PLUGIN, DIST, VERSION)
    card = card_text(run)
    assert f"- code: the plugin `{PLUGIN}` of the distribution `{DIST}` {VERSION} (`pip install {DIST}`)" in card
    assert f"pip install {zoo.DISTRIBUTION} {DIST}\n" in card  # the "Use" section installs it


def test_without_its_plugin_load_eval_and_sample_say_what_to_pip_install(site, small_corpus, tmp_path, capsys):
    run = tmp_path / "run"
    _train(MODEL, small_corpus, run)
    site[1]()
    assert MODEL not in registry.get().models
    with pytest.raises(ZooError, match=f"version {VERSION}.*not installed; install the distribution that provides it: pip install {DIST}$"):
        zoo.load(run)
    for command in ("eval", "sample"):
        line = one_error(*zoo_in_process(capsys, command, str(run))[::2])
        assert line.endswith(f"pip install {DIST}"), line


def test_pull_without_the_plugin_warns_at_once_and_eval_says_pip_install(site, small_corpus, tmp_path, hub):
    run = tmp_path / "run"
    _train(MODEL, small_corpus, run)
    env = hub.env(HF_HOME=str(tmp_path / "hf-home"))
    pushed = run_zoo("push", str(run), "--repo", "alice/prov-rnn", env={**env, "PYTHONPATH": str(site[0])})
    assert pushed.returncode == 0, pushed.stderr
    pulled = run_zoo("pull", "alice/prov-rnn", env=env)  # without the plugin
    assert pulled.returncode == 0 and "Traceback" not in pulled.stderr, pulled.stderr
    said = [ln for ln in pulled.stderr.splitlines() if f"'{MODEL}'" in ln]
    assert len(said) == 1 and said[0].startswith("zoo: warning: ") and f"pip install {DIST}" in said[0], pulled.stderr
    evaluated = run_zoo("eval", "alice/prov-rnn", env=env)
    assert evaluated.returncode != 0 and "Traceback" not in evaluated.stderr
    assert [ln for ln in evaluated.stderr.splitlines() if ln.strip()][-1].endswith(f"pip install {DIST}"), evaluated.stderr


class _NotebookPlugin:
    @zoo.hookimpl
    def zoo_register_models(self, register):
        register(zoo.ModelSpec(name="nb-rnn", summary="From a notebook.", builder="zoo_lesson6.models:CharRnn",
                               hparams={"n_fac": 42, "n_hidden": 64}, prompt="Th"))


@pytest.fixture
def notebook():
    _reload_plugins()
    plugins.host().register(_NotebookPlugin(), name="notebook")
    registry.reset()
    try:
        yield
    finally:
        _reload_plugins()


def test_a_plugin_registered_in_process_records_no_distribution_to_install(notebook, small_corpus, tmp_path):
    run = tmp_path / "run"
    m = _train("nb-rnn", small_corpus, run)
    assert m.config["distribution"] == ""  # "(in process)" is nothing pip can install
    card = card_text(run)
    assert f"```\npip install {zoo.DISTRIBUTION}\n```" in card and "- code:" not in card
    assert m.config["prompt"] == m.default_prompt == "Th"  # the spec's own prompt, where the text has it


def _unknown_model_run(tmp_path: Path, **changes) -> Path:
    """A run folder whose config.json (the bundled char-rnn's, which records no provenance) is changed by `changes`."""
    from zoo import published

    bundled = published.bundled_path(published.load()["char-rnn"])
    run = tmp_path / "edited"
    run.mkdir()
    config = {**_config(bundled), "model": "gone-rnn", **changes}
    (run / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (run / "model.safetensors").write_bytes((bundled / "model.safetensors").read_bytes())
    return run


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({}, "install the plugin that provides it (see `zoo plugins`)"),  # an older config: no provenance
        ({"distribution": "--index-url=http://evil.example x"}, "install the plugin that provides it (see `zoo plugins`)"),
        ({"distribution": "lesson6-zoo"}, "lesson6-zoo is installed but registers no such model here"),
    ],
    ids=["older config", "not a distribution name", "installed distribution"],
)
def test_what_a_config_without_usable_provenance_says(tmp_path, capsys, changes, said):
    line = one_error(*zoo_in_process(capsys, "sample", str(_unknown_model_run(tmp_path, **changes)))[::2])
    assert said in line and "evil" not in line, line


# --- default prompts -----------------------------------------------------------------------------------------


def test_an_upper_case_corpus_samples_and_its_card_use_line_works_without_a_prompt(tmp_path, capsys):
    corpus = tmp_path / "upper.txt"
    corpus.write_text(UPPER, encoding="utf-8")
    run = tmp_path / "run"
    m = _train("char-rnn", corpus, run)
    assert m.config["prompt"] == "THE QUIC"  # the lesson's "for thos" has letters this text lacks
    code, out, err = zoo_in_process(capsys, "sample", str(run), "--length", "20", "--seed", "0")
    assert code == 0 and out.startswith("THE QUIC") and len(out) > 20, err
    card = card_text(run)
    use = next(ln for ln in card.splitlines() if ln.startswith("zoo sample "))
    assert use == f'zoo sample {run} --prompt "THE QUIC" --seed 0'
    assert "## Sample (temperature 0.8, seed 0)\n\n```\nTHE QUIC" in card  # not silently dropped
    code, out, err = zoo_in_process(capsys, *shlex.split(use)[1:])
    assert code == 0 and out.startswith("THE QUIC"), err


def test_an_older_config_without_a_prompt_keeps_the_lessons():
    m = zoo.load("char-rnn")  # the bundled config.json records no prompt
    assert "prompt" not in m.config and m.default_prompt == "for thos"


def test_a_prompt_outside_the_vocabulary_in_config_is_refused_in_one_line(tmp_path, capsys):
    corpus = tmp_path / "upper.txt"
    corpus.write_text(UPPER, encoding="utf-8")
    run = tmp_path / "run"
    _train("char-rnn", corpus, run)
    (run / "config.json").write_text(json.dumps({**_config(run), "prompt": "for thos"}), encoding="utf-8")
    line = one_error(*zoo_in_process(capsys, "sample", str(run))[::2])
    assert "config.json: 'prompt' must be 1 to 256 characters of the model's vocabulary" in line


def test_the_default_prompt_is_the_specs_then_the_lessons_then_the_texts_start():
    spec = zoo.ModelSpec(name="x", summary="x", builder="m:f", prompt="Zz")
    lesson = zoo.ModelSpec(name="y", summary="y", builder="m:f")
    text = "\n\n  ALL \"QUOTED\" $TEXT\nAND MORE"
    assert default_prompt(spec, Vocab.from_text("Zz for those")) == "Zz"
    assert default_prompt(spec, Vocab.from_text("for those")) == "for thos"
    assert default_prompt(lesson, Vocab.from_text(text), text) == 'ALL "QUO'  # the first line that has any, 8 characters
    assert default_prompt(lesson, Vocab.from_text("AB C")) == "A"  # an older config: no text to take it from
    with pytest.raises(ValueError, match="prompt"):
        zoo.ModelSpec(name="z", summary="z", builder="m:f", prompt="")


def test_a_prompt_with_shell_characters_is_quoted_in_the_card():
    from zoo.card import _shell_word

    assert _shell_word("for thos") == '"for thos"'
    assert shlex.split(_shell_word('ALL "QUO')) == ['ALL "QUO']
    assert shlex.split(_shell_word("$HOME `x`")) == ["$HOME `x`"]
