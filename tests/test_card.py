"""zoo.card.render: a model card is a pure function of recorded metadata (no folder, no model, no torch), and the
Hub modules keep their layering: card renders, hub downloads, publish (above zoo.api) gathers and uploads."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest
from _plugin_helpers import REPO, zoo_env

from zoo.card import MARKER, render

CHAR_META = {
    "kind": "char-lm",
    "name": "char-demo",
    "summary": "A hand-written card: no model folder behind it.",
    "tags": ["lesson6", "rnn"],
    "license": "mit",
    "repo_id": "alice/char-demo",
    "num_params": 102215,
    "hparams": {"n_fac": 42, "n_hidden": 256},
    "history": [
        {"epoch": 1, "lr": 0.001, "trn_loss": 2.1, "val_loss": 1.98761, "val_acc": 0.41234, "seconds": 12.34},
        {"epoch": 2, "lr": 0.0001, "trn_loss": 1.7, "val_loss": 1.56789, "val_acc": 0.54321, "seconds": 11.0},
    ],
    "command": "zoo train char-demo --seed 0",
    "trained": {"epochs": 2, "minutes": 0.389, "machine": "AMD EPYC (2 logical cores, 2 torch threads)", "autocast": "bf16"},
    "install": ["lesson6-zoo"],
    "dataset": "nietzsche",
    "split": "random",
    "held_out": "20%",
    "vocab_size": 85,
    "float16": True,
    "reference": {"source": "a lesson", "note": "", "val_loss": [None, 1.547]},
    "bundled": True,
    "model_dir": "/nowhere/char-demo",
    "sample_prompt": "for thos",
    "sample": "e who know the truth",
}

TABLE_META = {
    "kind": "table",
    "name": "table-demo",
    "summary": "A hand-written table card.",
    "tags": ["tabular"],
    "license": "apache-2.0",
    "repo_id": None,
    "num_params": 30773,
    "hparams": {"layers": "32,16"},
    "history": [{"epoch": 1, "lr": 0.001, "trn_loss": 0.5, "val_loss": 0.25, "val_mape": 12.5, "seconds": 1.5}],
    "command": "zoo train table-demo --seed 0",
    "install": ["lesson6-zoo", "zoo-table-demo"],
    "task": "tabular-regression",
    "loss_label": "mean squared error",
    "dataset": "txhousing",
    "split": "random",
    "columns": {"categorical": {"city": ["a", "b", "c"]}, "continuous": ["year"], "target": {"name": "sales", "log": True}},
}


def _check_char_card(card: str) -> None:
    assert card.startswith("---\n") and MARKER in card
    assert "\n# char-demo\n" in card  # the title
    assert "- name: char-demo" in card and "license: mit" in card and "- nietzsche" in card
    assert "- parameters: 102,215" in card and "- vocabulary: 85 characters" in card
    assert "- hyper-parameters: n_fac=42, n_hidden=256" in card
    assert "validation: random 20% of windows, seed 42 (the lesson's)" in card
    assert "stored in float16" in card
    assert "value: 1.5679" in card and "value: 0.5432" in card  # the last epoch's figures, in the YAML
    assert "| 2 | 0.0001 | 1.7000 | 1.5679 | 0.5432 | 1.547 | 11.0 |" in card  # and in the table, with the lesson's
    assert "| 1 | 0.001 | 2.1000 | 1.9876 | 0.4123 | - | 12.3 |" in card
    assert "Reference figures: a lesson." in card
    # the held-out figure in bits too (1.56789 / ln 2), and what it cost: minutes of training and the machine
    assert "- held-out: 1.5679 nats/char (2.2620 bits/char), next-character accuracy 0.5432, on the random 20%" in card
    assert "- training: 2 epochs, 0.4 minutes (validation excluded) on AMD EPYC (2 logical cores, 2 torch threads), bf16 autocast" in card
    assert "## Use\n\n```\npip install lesson6-zoo\n```\n" in card  # the distribution on PyPI, not `zoo`
    assert 'zoo ships these weights: `zoo sample char-demo --prompt "for thos" --seed 0`' in card
    assert "zoo pull alice/char-demo" in card and "/nowhere" not in card
    assert "## Sample (temperature 0.8, seed 0)\n\n```\nfor those who know the truth\n```\n" in card


def test_render_needs_no_model_folder_and_no_torch():
    code = (
        "import json, sys; from zoo.card import render; card = render(json.loads(sys.argv[1])); "
        "print(json.dumps({'card': card, 'torch': 'torch' in sys.modules, 'api': 'zoo.api' in sys.modules}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(CHAR_META)], capture_output=True, text=True, env=zoo_env(), cwd=REPO, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["torch"] is False and out["api"] is False
    _check_char_card(out["card"])
    assert out["card"] == render(CHAR_META)  # the same in this process, where torch is loaded


@pytest.mark.parametrize("meta", [CHAR_META, TABLE_META], ids=["char-lm", "table"])
def test_render_is_pure(meta):
    before = copy.deepcopy(meta)
    first, second = render(meta), render(meta)
    assert first == second
    assert meta == before  # the dict is not changed
    assert render(copy.deepcopy(meta)) == first  # the text depends on the values, not on the object


def test_the_metadata_picks_what_the_card_says():
    no_sample = render({**CHAR_META, "sample": None, "bundled": False, "repo_id": None, "float16": False, "reference": None})
    assert "## Sample" not in no_sample and "float16" not in no_sample and "Reference figures" not in no_sample
    assert '```\nzoo sample /nowhere/char-demo --prompt "for thos" --seed 0\n```' in no_sample
    tail = render({**CHAR_META, "split": "tail", "held_out": "10%", "history": [], "trained": None})
    assert "validation: last 10% of the text" in tail and "## Training" not in tail and "model-index" not in tail
    assert "- held-out:" not in tail and "- training:" not in tail  # nothing trained, nothing claimed
    older = render({**CHAR_META, "trained": {"epochs": 1, "minutes": None, "machine": None, "autocast": None}})
    assert "- training: 1 epoch\n" in older  # a run.json that recorded neither
    table = render(TABLE_META)
    assert "\n# table-demo\n" in table and "pipeline_tag: tabular-regression" in table and "- tabular-regression" in table
    assert "- categorical columns (values seen in training): city (3)" in table and "- target: log of sales" in table
    assert "name: mean squared error" in table and "| 1 | 0.001 | 0.5 | 0.25 | 12.5 | 1.5 |" in table
    assert "pip install lesson6-zoo zoo-table-demo\nzoo pull table-demo\nzoo eval table-demo" in table
    with pytest.raises(ValueError, match="unknown card kind"):
        render({**CHAR_META, "kind": "image"})
