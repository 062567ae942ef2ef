"""Checks for plugin authors: zoo train's first-batch shape check, hparams vs builder, tiny in zoo info, hook typos.

Issue 20, items 3 and 9: the model's output on a first batch, the spec's hyper-parameter names against its builder's
signature, zoo info's test settings, and "did you mean" for a misspelt hook. The models are in-process plugins (the
zoo_plugin fixture) built from tests/_kit_models.py; every refused run must leave no --out folder behind.
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import pluggy
import pytest
import torch
from _kit_models import SpecPlugin as _Plugin
from _kit_models import kit_spec
from helpers import one_error, zoo_in_process

import zoo
from zoo import plugins as zoo_plugins
from zoo.errors import ZooError
from zoo.model import check_builder_params
from zoo.tasks.charlm import STATEFUL_RESULT, output_problem
from zoo.testing import ContractError, check_model

WINDOWS_EVERY = zoo.Batching(kind="windows", length=8, stride=1, targets="every")
WINDOWS_NEXT = zoo.Batching(kind="windows", length=8, stride=1, targets="next")
STREAMS = zoo.Batching(kind="streams", length=8)
SEQ_HPARAMS = {"n_fac": 42, "n_hidden": 256, "identity_init": False, "nonlinearity": "tanh"}


def _spec(name: str, **changes) -> zoo.ModelSpec:
    """The kit's char-rnn spec at its tiny size (these tests train it), `changes` applied."""
    return kit_spec(name, **{"hparams": {"n_fac": 4, "n_hidden": 16}, "tiny": {}, **changes})




def _train(capsys, name: str, data, out) -> tuple[int, str, str]:
    return zoo_in_process(capsys, "train", name, "--data", str(data), "--out", str(out), "--device", "cpu", "--epochs", "1", "--quiet")


# --- item 3: the first batch's output is checked before any file is written -------------------------------------

# (model, spec changes, what the one line must say: the actual shape, then the expected one)
WRONG_LAYOUTS = [
    ("time-major", {"builder": "_kit_models:TimeMajorLogits", "hparams": SEQ_HPARAMS, "batching": WINDOWS_EVERY},
     r"gave logits of shape \(8, 3, (\d+)\); .*every position, so logits must be \[batch, length, vocab\] = \(3, 8, \1\)"),
    ("next-only", {"batching": WINDOWS_EVERY},
     r"gave logits of shape \(3, (\d+)\); .*every position, so logits must be \[batch, length, vocab\] = \(3, 8, \1\)"),
    ("every-for-next", {"builder": "zoo_lesson6.models:CharSeqRnn", "hparams": SEQ_HPARAMS},
     r"gave logits of shape \(3, 8, (\d+)\); .*the next character only, so logits must be \[batch, vocab\] = \(3, \1\)"),
    ("stateful-logits-only", {"builder": "_kit_models:StatefulLogitsOnly", "batching": STREAMS, "split": "tail"},
     re.escape(STATEFUL_RESULT)),
]  # fmt: skip


@pytest.mark.parametrize(("name", "changes", "message"), WRONG_LAYOUTS, ids=[w[0] for w in WRONG_LAYOUTS])
def test_train_refuses_a_wrong_output_layout_in_one_line_before_writing(zoo_plugin, capsys, small_corpus, tmp_path, name, changes, message):
    zoo_plugin(_Plugin(_spec(f"chk-{name}", **changes)))
    out = tmp_path / "run"
    line = one_error(*_train(capsys, f"chk-{name}", small_corpus, out)[::2])
    assert re.search(message, line), line
    assert f"model 'chk-{name}'" in line
    assert not out.exists()


def test_zoo_train_from_python_refuses_the_time_major_layout(zoo_plugin, small_corpus, tmp_path):
    zoo_plugin(_Plugin(_spec("chk-py", **WRONG_LAYOUTS[0][1])))
    out = tmp_path / "run"
    with pytest.raises(ZooError, match=r"logits must be \[batch, length, vocab\]"):
        zoo.train("chk-py", data=str(small_corpus), out=str(out), device="cpu", epochs=1, quiet=True)
    assert not out.exists()


@pytest.mark.parametrize(
    ("builder", "batching", "shape"),
    [("CharRnn", WINDOWS_NEXT, (3, 11)), ("CharSeqRnn", WINDOWS_EVERY, (3, 8, 11)), ("CharSeqRnn", STREAMS, (3, 8, 11))],
)
def test_the_right_layout_passes_and_leaves_the_model_in_training_mode(builder, batching, shape):
    from zoo_lesson6 import models

    model = getattr(models, builder)(11, n_fac=4, n_hidden=8)
    x = torch.randint(0, 11, (3, 8))
    assert output_problem(model, x, batching, 11) is None
    assert model.training
    assert tuple(model(x).shape) == shape


def test_the_kit_applies_the_same_shape_rule(zoo_plugin, tmp_path):
    zoo_plugin(_Plugin(_spec("chk-kit", **WRONG_LAYOUTS[0][1])))
    with pytest.raises(ContractError, match=r"\[forward\] forward\(x\) on x of shape \(3, 8\) gave logits of shape \(8, 3, \d+\)"):
        check_model("chk-kit", checks=["forward"], workdir=tmp_path)


# --- item 9: spec hyper-parameters against the builder's signature ------------------------------------------------


def test_train_refuses_a_hyper_parameter_the_builder_does_not_take(zoo_plugin, capsys, tmp_path):
    zoo_plugin(_Plugin(_spec("chk-typo", hparams={"n_fac": 4, "n_hiden": 16})))
    out = tmp_path / "run"
    # refused before the data is read: the missing file is never reached
    line = one_error(*_train(capsys, "chk-typo", tmp_path / "no-such.txt", out)[::2])
    assert "model 'chk-typo'" in line and "'n_hiden' (did you mean n_hidden?)" in line, line
    assert "zoo_lesson6.models:CharRnn (it takes: vocab_size, n_fac, n_hidden)" in line, line
    assert not out.exists()


def test_the_kit_spec_check_names_the_misnamed_hyper_parameter(zoo_plugin, tmp_path):
    zoo_plugin(_Plugin(_spec("chk-kit-typo", hparams={"n_fac": 4, "hidden": 16})))
    with pytest.raises(ContractError, match=r"\[spec\] .*hyper-parameter 'hidden' .*not a parameter of its builder"):
        check_model("chk-kit-typo", checks=["spec"], workdir=tmp_path)


def _takes_anything(vocab_size, **hparams):
    return None


def _takes_some(vocab_size, *, width=1):
    return None


def test_a_builder_with_kwargs_takes_any_name_and_keyword_only_names_count():
    check_builder_params(_spec("chk-any", hparams={"whatever": 1}), _takes_anything)
    check_builder_params(_spec("chk-kw", hparams={"width": 2}), _takes_some)
    with pytest.raises(ZooError, match=r"'depth'.* is not a parameter .*\(it takes: vocab_size, width\)"):
        check_builder_params(_spec("chk-kw", hparams={"depth": 2}), _takes_some)


def test_info_shows_the_tiny_test_settings(zoo_plugin, capsys):
    zoo_plugin(_Plugin(_spec("chk-tiny", hparams={"n_fac": 42, "n_hidden": 256}, tiny={"n_hidden": 8}), _spec("chk-no-tiny")))
    code, out, _ = zoo_in_process(capsys, "info", "chk-tiny")
    assert code == 0 and re.search(r"^  test settings +n_hidden=8 \(tiny", out, re.M), out
    code, out, _ = zoo_in_process(capsys, "info", "chk-no-tiny")
    assert code == 0 and re.search(r"^  test settings +-$", out, re.M), out


# --- item 9: a misspelt hook says which one was meant ------------------------------------------------------------


class _Misspelt:
    @zoo.hookimpl
    def zoo_register_modles(self, register):
        pass


def test_registering_a_misspelt_hook_says_did_you_mean():
    meant = r"unknown hook 'zoo_register_modles' in plugin 'typo' \(did you mean zoo_register_models\?\)"
    with pytest.raises(pluggy.PluginValidationError, match=meant):
        zoo_plugins.host().register(_Misspelt(), name="typo")
    assert "typo" not in zoo_plugins.host().infos


def test_an_installed_plugin_with_a_misspelt_hook_is_skipped_with_did_you_mean(monkeypatch, capsys):
    entry = SimpleNamespace(name="typo", dist=None, load=_Misspelt)
    monkeypatch.setattr(zoo_plugins.metadata, "entry_points", lambda group: [entry] if group == zoo_plugins.ENTRY_POINT_GROUP else [])
    host = zoo_plugins.PluginHost()
    host.load_entry_points()
    err = capsys.readouterr().err
    assert "plugin 'typo' failed to load" in err and "did you mean zoo_register_models?" in err, err
    assert host.infos["typo"].error.endswith("(did you mean zoo_register_models?)")
