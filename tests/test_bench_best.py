"""bench/best.py (issue 22): the table reads each run's curve at the right minutes, and its rows measure what
they say: the recipe row is the registered model as the registry's recipe trains it, each ablation row one lever."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # as for the scripts there

import best  # noqa: E402

from zoo import published, registry  # noqa: E402


def test_the_loss_at_a_mark_is_the_last_epoch_finished_by_then():
    curve = [(100.0, 2.0), (700.0, 1.5), (1300.0, 1.4)]
    assert best.curve_at(curve, 50) is None  # no epoch yet
    assert best.curve_at(curve, 300) == 2.0
    assert best.curve_at(curve, 700) == 1.5  # finished exactly then
    assert best.curve_at(curve, 1200) == 1.5
    assert best.curve_at(curve, 1800) == 1.4


def test_the_recipe_row_trains_what_the_registry_ships():
    recipe = best.ABLATION[0]
    entry = published.load()[best.AWD]
    assert recipe.spec() is registry.get_model(best.AWD)  # no change: the registered spec itself
    assert ("--amp" in entry.recipe.split()) is bool(recipe.amp)
    assert best.LEADERBOARD[-1] == dataclasses.replace(recipe, lever="")  # one run serves both tables
    assert best.RECIPE_EPOCHS == registry.get_model(best.AWD).epochs


@pytest.mark.parametrize("row", best.ABLATION[1:], ids=lambda r: r.name)
def test_each_ablation_row_changes_one_lever(row):
    base, recipe = registry.get_model(best.AWD), best.ABLATION[0]
    spec = row.spec()
    changed = {f.name for f in dataclasses.fields(spec) if getattr(spec, f.name) != getattr(base, f.name)} - {"name", "plugin"}
    changed |= {"amp"} if row.amp != recipe.amp else set()
    assert len(changed) == 1, changed
    assert spec.name == row.name != base.name  # trains under its own name, beside the registered model
