"""Shared fixtures: an isolated zoo cache and run folder, corpora, a CLI runner."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

# Tests use tiny models, where a second thread only adds synchronisation; subprocesses inherit it.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
SHARED_NIETZSCHE = REPO.parent / "shared" / "data" / "nietzsche.txt"

# The fixture distributions' own tests run against their installed copies (tests/test_third_party_transformer.py),
# never collected from the source tree, where their plugins are not installed.
collect_ignore_glob = ["fixtures/*"]


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """Each test gets its own cache and never touches the network or ~/.cache."""
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("ZOO_CACHE_DIR", str(cache))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    monkeypatch.setenv("ZOO_PROGRESS", "0")
    monkeypatch.delenv("ZOO_LOAD_PLUGINS", raising=False)
    monkeypatch.delenv("ZOO_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("ZOO_REGISTRY", raising=False)
    monkeypatch.delenv("ZOO_DATASET_MIRROR", raising=False)
    yield cache


@pytest.fixture
def nietzsche_cache(_isolated_env) -> Path:
    """The lesson's corpus seeded into the cache, as if downloaded."""
    if not SHARED_NIETZSCHE.exists():
        pytest.skip("../shared/data/nietzsche.txt is not present")
    dest = _isolated_env / "datasets" / "nietzsche.txt"
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(SHARED_NIETZSCHE, dest)
    return dest


@pytest.fixture
def small_corpus(tmp_path) -> Path:
    """About 20,000 characters of real English prose (from CPython's pydoc topics)."""
    from helpers import write_prose

    return write_prose(tmp_path / "small.txt", 20_000)


@pytest.fixture
def hub(tmp_path):
    """A Hub-compatible server on 127.0.0.1 (tests/hubserver.py), stopped after the test."""
    from hubserver import start_hub

    with start_hub(tmp_path) as server:
        yield server
