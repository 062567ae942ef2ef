"""`zoo new-plugin`'s package after its author changes the architecture, the kit's num_params line, and its meta check.

The scaffolded plugin is generated, its model rewritten as docs/plugins.md suggests (a hyper-parameter renamed, a
layer added, the spec kept in step except for num_params), pip-installed offline into a throwaway directory and its
own generated tests run against it in a subprocess, as in an author's checkout.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _kit_models import SpecPlugin as _Plugin
from _kit_models import kit_spec as _spec
from _plugin_helpers import install_sources, ok, parse_table, run_pytest, run_zoo

from zoo.testing import ContractError, check_model

NAME = "deep-gru"
PACKAGE = "zoo_deep_gru"

# The author's new architecture: n_fac renamed n_emb, a second GRU layer (n_layers), the state kept batch first.
DEEP_MODEL = '''"""A deeper GRU: the scaffold's model with a second layer and its embedding width renamed."""

from __future__ import annotations

import torch
from torch import nn


class CharGRU(nn.Module):
    def __init__(self, vocab_size: int, n_emb: int = 24, n_hidden: int = 128, n_layers: int = 2) -> None:
        super().__init__()
        self.n_hidden, self.n_layers = n_hidden, n_layers
        self.e = nn.Embedding(vocab_size, n_emb)
        self.rnn = nn.GRU(n_emb, n_hidden, num_layers=n_layers, batch_first=True)
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def init_state(self, batch_size: int) -> torch.Tensor:
        return self.l_out.weight.new_zeros(batch_size, self.n_layers, self.n_hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.e(x), self.init_state(x.shape[0]).transpose(0, 1).contiguous())
        return self.l_out(out)

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out, h = self.rnn(self.e(x)[:, None], h.transpose(0, 1).contiguous())
        return self.l_out(out[:, 0]), h.transpose(0, 1)
'''

SPEC_EDITS = {
    'hparams={"n_fac": 32, "n_hidden": 128}': 'hparams={"n_emb": 24, "n_hidden": 128, "n_layers": 2}',
    'tiny={"n_fac": 4, "n_hidden": 16}': 'tiny={"n_emb": 4, "n_hidden": 16, "n_layers": 2}',
}


def _pydoc_vocab() -> int:
    from zoo.data.sources import PydocTopics
    from zoo.data.vocab import Vocab

    return len(Vocab.from_text(PydocTopics().read_text()))


def _gru_count(vocab: int, n_emb: int, n_hidden: int, n_layers: int) -> int:
    """Parameters of embedding -> nn.GRU -> linear, counted by hand: 3 gates of weights and two biases a layer."""
    gru = sum(3 * (n_hidden * (n_emb if layer == 0 else n_hidden) + n_hidden * n_hidden + 2 * n_hidden) for layer in range(n_layers))
    return vocab * n_emb + gru + n_hidden * vocab + vocab


def _num_params_line(plugin_file: Path) -> str:
    return re.search(r"num_params=[0-9_]+", plugin_file.read_text()).group(0)


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    """The scaffold's plugin, generated, its architecture changed and installed; its generated tests run once."""
    root = tmp_path_factory.mktemp("scaffold")
    ok(run_zoo("new-plugin", NAME, "--dir", str(root / "src")))
    source = root / "src" / f"zoo-{NAME}"
    generated_line = _num_params_line(source / PACKAGE / "__init__.py")
    (source / PACKAGE / "model.py").write_text(DEEP_MODEL)
    plugin = source / PACKAGE / "__init__.py"
    text = plugin.read_text()
    for old, new in SPEC_EDITS.items():
        assert old in text, f"the template no longer has {old}"
        text = text.replace(old, new)
    plugin.write_text(text)
    site = install_sources({NAME: source}, root / "sites")[NAME]
    elsewhere = root / "elsewhere"  # not the source folder: the package comes from the installed copy
    elsewhere.mkdir()
    out = run_pytest(site.parent / f"{NAME}-src" / "tests", [site], cwd=elsewhere).communicate(timeout=240)[0]
    return {"site": site, "elsewhere": elsewhere, "out": out, "generated_line": generated_line}


def test_the_scaffold_writes_the_template_models_parameter_count(deep):
    assert deep["generated_line"] == f"num_params={_gru_count(_pydoc_vocab(), 32, 128, 1)}"


def test_generated_tests_follow_a_changed_architecture(deep):
    """Every generated test reads the registered spec: only num_params, now stale, fails, naming the new count."""
    out = deep["out"]
    failed = [ln.split("::", 1)[1].split(" - ")[0] for ln in out.splitlines() if ln.startswith("FAILED ")]
    assert failed == ["test_contract[num_params]"], out
    assert re.search(r"\b1 failed, 13 passed\b", out), out  # the other 11 checks and the 2 other tests
    right = _gru_count(_pydoc_vocab(), 24, 128, 2)
    assert f"change it to num_params={right} in the ModelSpec of '{NAME}' in " in out, out
    assert f"{PACKAGE}/__init__.py" in out, out


def test_the_fixed_count_is_listed_and_passes_the_kit(deep):
    """The author writes the number the kit gave: `zoo list` shows it and the num_params check passes."""
    right = _gru_count(_pydoc_vocab(), 24, 128, 2)
    installed = deep["site"] / PACKAGE / "__init__.py"
    installed.write_text(installed.read_text().replace(_num_params_line(installed), f"num_params={right}"))
    rows = {row["name"]: row for row in parse_table(ok(run_zoo("list", NAME, pythonpath=[deep["site"]])).stdout)}
    assert rows[NAME]["params"] == f"{right:,}"
    tests = deep["site"].parent / f"{NAME}-src" / "tests" / "test_model.py"
    out = run_pytest(Path(f"{tests}::test_contract[num_params]"), [deep["site"]], cwd=deep["elsewhere"]).communicate(timeout=120)[0]
    assert re.search(r"\b1 passed\b", out), out


# --- the kit's num_params and meta checks, in process -------------------------------------------------------






def _char_rnn_count(vocab: int) -> int:
    n_fac, n_hidden = 42, 256
    return vocab * n_fac + n_hidden * n_fac + n_hidden * n_hidden + 2 * n_hidden + n_hidden * vocab + vocab


def test_a_missing_num_params_fails_with_the_line_to_add(zoo_plugin):
    zoo_plugin(_Plugin(_spec("kit-uncounted")))
    with pytest.raises(ContractError, match="the spec declares no num_params") as info:
        check_model("kit-uncounted", checks=["num_params"])
    plugin_file = Path(__file__).with_name("_kit_models.py")  # where the plugin's class is written
    assert f"add num_params={_char_rnn_count(_pydoc_vocab())} to the ModelSpec of 'kit-uncounted' in {plugin_file}" in str(info.value)


def test_a_wrong_num_params_names_the_exact_count(zoo_plugin):
    zoo_plugin(_Plugin(_spec("kit-miscounted", num_params=12345)))
    with pytest.raises(ContractError, match=f"change it to num_params={_char_rnn_count(_pydoc_vocab())} in the ModelSpec"):
        check_model("kit-miscounted", checks=["num_params"])


@pytest.mark.parametrize(
    ("builder", "message"),
    [
        ("_kit_models:ItemInInit", r"cannot build the model on torch.device\('meta'\) \(.*item\(\) cannot be called on meta.*no \.item"),
        ("_kit_models:NumpyBuffer", r"torch.device\('meta'\), prior is still on the CPU: .*not torch.from_numpy"),
    ],
    ids=["item-in-init", "numpy-buffer"],
)
def test_meta_check_says_what_to_change(zoo_plugin, tmp_path, builder, message):
    zoo_plugin(_Plugin(_spec("kit-not-meta", builder=builder)))
    with pytest.raises(ContractError, match=message):
        check_model("kit-not-meta", checks=["meta"], workdir=tmp_path)
    assert check_model("kit-not-meta", checks=["forward"], workdir=tmp_path) == {"forward": "ok"}  # only meta fails


def test_meta_check_passes_a_model_built_from_factory_functions(zoo_plugin, tmp_path):
    zoo_plugin(_Plugin(_spec("kit-meta-ok")))
    assert check_model("kit-meta-ok", checks=["meta"], workdir=tmp_path) == {"meta": "ok"}
