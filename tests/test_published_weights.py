"""The registry cannot drift from the weights: hashes, parameter counts and losses are recomputed."""

from __future__ import annotations

import json

import pytest
from helpers import run_zoo

import zoo
from zoo import published, registry
from zoo.api import DEFAULT_VAL_FRAC

LESSON = ["char3", "char-loop", "char-concat", "char-rnn", "char-seq", "char-seq-identity"]
ENTRIES = published.load()


def test_every_lesson_model_ships_weights():
    assert set(LESSON) <= set(ENTRIES)
    for name in LESSON:
        assert published.bundled_path(ENTRIES[name]) is not None, name


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_registry_entry_is_true(name, nietzsche_cache):
    entry = ENTRIES[name]
    folder = published.bundled_path(entry)
    assert folder is not None
    assert published.mismatched_files(folder, entry) == []
    assert {"model.safetensors", "config.json", "README.md"} <= set(entry.files)
    m = zoo.load(folder)
    assert m.num_params == entry.num_params == registry.get_model(name).num_params
    val = entry.metric("val_loss")
    assert val is not None and val.dataset == "nietzsche" and val.split == m.config["split"]
    assert val.val_frac == m.config.get("val_frac", DEFAULT_VAL_FRAC)  # and evaluate() holds out the same share
    assert m.evaluate()["val_loss"] == pytest.approx(val.value, abs=1e-3)
    assert entry.recipe.startswith(f"zoo train {name}")
    card = (folder / "README.md").read_text()
    assert "library_name: zoo" in card and f"{val.value:.4f}" in card


@pytest.mark.parametrize("name", ["char-rnn", "char-awd-lstm"])  # float32 and float16 bundles
def test_sample_offline_from_bundled_weights(name):
    proc = run_zoo("sample", name, "--prompt", "for thos", "--length", "200", "--seed", "0", env={"HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("for thos") and len(proc.stdout.strip()) >= 200
    words = proc.stdout.split()
    assert sum(w.strip(".,;:!?\"'") in {"the", "and", "of", "to", "is", "that", "in"} for w in words) >= 5  # trained, not random


def test_list_pretrained_shows_the_lesson_models_with_their_loss():
    proc = run_zoo("list", "--pretrained")
    assert proc.returncode == 0, proc.stderr
    for name in LESSON:
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith(name + " "))
        assert f"yes ({ENTRIES[name].metric('val_loss').value:.3f})" in line


@pytest.mark.parametrize(("name", "half"), [("char-rnn", False), ("char-awd-lstm", True)])
def test_bundled_cards_say_how_to_use_them_offline_and_how_they_are_stored(name, half):
    """The shipped README.md is what card_text writes (registry hash), and it tells the truth about the files."""
    from zoo.publish import card_text

    entry = published.load()[name]
    folder = published.bundled_path(entry)
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert card == card_text(folder, repo_id=entry.repo, license=entry.license, bundled=True)
    assert f"`zoo sample {name} " in card and f"zoo pull {entry.repo}" in card
    assert ("stored in float16" in card) is half


def test_the_bundled_char_awd_lstm_meets_issue_22s_goal():
    """<= 1.25 nats/char on the held-out last 10% of Nietzsche within 30 minutes of training, from the one command
    its registry recipe names. The registry test recomputes the figure from the stored weights; this holds it to
    the goal, so weights retrained to a worse figure and re-pinned fail here."""
    entry = ENTRIES["char-awd-lstm"]
    loss = entry.metric("val_loss")
    assert loss.value <= 1.25 and (loss.dataset, loss.split, loss.val_frac) == ("nietzsche", "tail", 0.1)
    assert entry.recipe == "zoo train char-awd-lstm --seed 0 --val-frac 0.1 --amp"
    history = json.loads((published.bundled_path(entry) / "training.json").read_text())["history"]
    assert len(history) == registry.get_model("char-awd-lstm").epochs  # the whole recipe, not a budget-cut run
    assert sum(h["seconds"] for h in history) / 60 <= 30
