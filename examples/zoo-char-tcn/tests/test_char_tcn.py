"""char-tcn against zoo's model contract (zoo.testing comes with zoo as a pytest plugin)."""

import dataclasses

import pytest
import zoo
from zoo.testing import CHECKS, check_model, tiny_text

from zoo_char_tcn import NAME, SPEC

NIETZSCHE_VOCAB = 85  # the spec's dataset: 84 distinct characters and the \0 padding


def test_zoo_lists_the_model_with_this_plugin():
    specs = {s.name: s for s in zoo.list_models(tag="cnn")}
    assert specs[NAME].plugin == "char-tcn"
    assert specs[NAME].summary == SPEC.summary


@pytest.mark.parametrize("check", CHECKS)
def test_contract(check, tmp_path):
    check_model(NAME, checks=[check], workdir=tmp_path, vocab_size=NIETZSCHE_VOCAB)


class WideKernel:
    """A variant with 5 taps and 2 layers, registered for one test only with the zoo_plugin fixture."""

    @zoo.hookimpl
    def zoo_register_models(self, register):
        tiny = {**SPEC.tiny, "kernel_size": 5, "n_layers": 2, "dropout": 0.0}
        register(dataclasses.replace(SPEC, name="char-tcn-wide", tiny=tiny, num_params=None))


def test_a_variant_registered_for_one_test(zoo_plugin, tmp_path):
    zoo_plugin(WideKernel())
    results = check_model("char-tcn-wide", checks=["build", "forward", "step", "train_step", "sampling"], workdir=tmp_path)
    assert set(results.values()) == {"ok"}


def test_epoch_end_hook_appends_a_sample(tmp_path):
    """zoo.train runs the plugin's zoo_on_epoch_end hook, which writes samples.txt into the run directory."""
    data = tmp_path / "tiny.txt"
    data.write_text(tiny_text(), encoding="utf-8")
    overrides = [f"{k}={v}" for k, v in SPEC.tiny.items()]
    model = zoo.train(NAME, epochs=2, data=str(data), overrides=overrides, out=tmp_path / "run", device="cpu", quiet=True)
    lines = (model.path / "samples.txt").read_text(encoding="utf-8").splitlines()
    assert [line.split(" (")[0] for line in lines] == ["epoch 1", "epoch 2"]
