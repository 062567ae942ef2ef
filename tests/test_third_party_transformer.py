"""A third-party transformer plugin, written from docs/plugins.md alone (tests/fixtures/zoo-char-attn), end to end.

The distribution is pip-installed offline into a throwaway folder once for this module and put on PYTHONPATH of
`zoo` subprocesses, as users' zoo finds it: through its entry point. Then: `zoo list`, its own kit tests, `zoo train`
on its own dataset, `zoo push` to the fake Hub (tests/hubserver.py), `zoo pull` into a fresh cache, `zoo sample`
and `zoo eval` of the pulled copy, a proof that sampling went through its key/value cache, and what a user without
the plugin is told.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _plugin_helpers import FIXTURES, ok, one_error_line, parse_table, run_pytest, run_zoo

from zoo.testing import CHECKS

DIST, PLUGIN, MODEL, DATASET, REPO_ID = "zoo-char-attn", "char-attn", "char-attn", "keeper-notes", "alice/char-attn"
# Small enough to train in a few seconds, still the declared architecture: 2 layers, 4 heads, context 32.
TRAIN = ("--max-steps", "30", "--batch-size", "32", "--set", "n_embd=32", "--seed", "0")

# Loads the pulled model, counts the calls sampling makes to its forward and extend, and compares the cached text
# with zoo.sampling.sample_uncached's for the same seed (argv: repo, length).
COUNT_CALLS = """
import json, sys
import zoo
from zoo.sampling import sample_uncached

loaded = zoo.load(sys.argv[1])
model, length, calls = loaded.model, int(sys.argv[2]), {"forward": 0, "extend": 0, "extended": 0}


def counted(name, method):
    def wrapper(x, *args, **kwargs):
        calls[name] += 1
        calls["extended"] += x.shape[1] if name == "extend" else 0
        return method(x, *args, **kwargs)
    return wrapper


model.forward, model.extend = counted("forward", model.forward), counted("extend", model.extend)
cached = loaded.sample(length=length, seed=0)
counts = dict(calls)
uncached = sample_uncached(model, loaded.vocab, loaded.config["prompt"], length, context=loaded.context, seed=0)[0]
print(json.dumps({**counts, "context": loaded.context, "cached": cached, "uncached": uncached}))
"""


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("char-attn")


@pytest.fixture(scope="module")
def site(root) -> Path:
    from _plugin_helpers import install_distributions

    return install_distributions([DIST], root / "sites")[DIST]


@pytest.fixture(scope="module")
def hub(root):
    from hubserver import start_hub

    with start_hub(root / "hub") as server:
        yield server


def env(root: Path, cache: str, hub=None) -> dict[str, str]:
    """What every subprocess runs with: its own zoo cache (module fixtures come before conftest's per-test one)."""
    base = {"ZOO_CACHE_DIR": str(root / cache), "ZOO_OFFLINE": "1", "ZOO_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    return {**base, **(hub.env(HF_HOME=str(root / "hf-home")) if hub is not None else {})}


@pytest.fixture(scope="module")
def run(site, root) -> Path:
    """char-attn trained briefly with `zoo train` on its own dataset (the spec's default)."""
    out = root / "runs" / MODEL
    ok(run_zoo("train", MODEL, *TRAIN, "--out", str(out), pythonpath=[site], timeout=120, **env(root, "train-cache")))
    return out


@pytest.fixture(scope="module")
def pulled(site, root, run, hub) -> dict[str, str]:
    """The run pushed to the fake Hub and pulled into a fresh cache; the environment that sees that cache."""
    pull_env = env(root, "fresh-cache", hub)
    ok(run_zoo("push", str(run), "--repo", REPO_ID, pythonpath=[site], **env(root, "push-cache", hub)))
    assert not (root / "fresh-cache").exists()
    ok(run_zoo("pull", REPO_ID, pythonpath=[site], **pull_env))
    return pull_env


def test_zoo_lists_char_attn_from_its_plugin(site, root):
    proc = ok(run_zoo("list", pythonpath=[site], **env(root, "list-cache")))
    rows = {row["name"]: row for row in parse_table(proc.stdout)}
    assert rows[MODEL]["plugin"] == PLUGIN and rows[MODEL]["dataset"] == DATASET
    assert rows[MODEL]["params"] == "108,465"
    datasets = ok(run_zoo("datasets", pythonpath=[site], **env(root, "list-cache"))).stdout
    assert DATASET in datasets


def test_the_plugin_passes_the_kit_with_its_own_tests(site, root):
    """The fixture's tests/test_model.py (zoo.testing's CHECKS, as `zoo new-plugin` writes them) against the install."""
    elsewhere = root / "elsewhere"  # not the source folder: the package comes from the installed copy
    elsewhere.mkdir(exist_ok=True)
    out = run_pytest(FIXTURES / DIST / "tests", [site], cwd=elsewhere).communicate(timeout=240)[0]
    summary = out.strip().splitlines()[-1]
    assert "passed" in summary and not any(word in summary for word in ("failed", "error", "skipped")), out
    passed = {line.split("::", 1)[1] for line in out.splitlines() if line.startswith("PASSED ")}
    assert {f"test_contract[{check}]" for check in CHECKS} <= passed, out


def test_training_records_the_plugin_and_the_dataset_by_name(run):
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert (config["model"], config["plugin"], config["distribution"]) == (MODEL, PLUGIN, DIST)
    assert config["data"] == DATASET  # the name, never the file's path inside the installed package
    notes = FIXTURES / DIST / "zoo_char_attn" / "data" / "notes.txt"
    recorded = json.loads((run / "run.json").read_text(encoding="utf-8"))["data_sha256"]
    assert recorded == hashlib.sha256(notes.read_bytes()).hexdigest()
    assert (run / "model.safetensors").is_file()


def test_the_pulled_copy_samples_the_same_text_for_the_same_seed(site, pulled):
    first = ok(run_zoo("sample", REPO_ID, "--seed", "0", "--length", "300", pythonpath=[site], **pulled)).stdout
    again = ok(run_zoo("sample", REPO_ID, "--seed", "0", "--length", "300", pythonpath=[site], **pulled)).stdout
    assert first == again and len(first.strip()) >= 300
    other = ok(run_zoo("sample", REPO_ID, "--seed", "1", "--length", "300", pythonpath=[site], **pulled)).stdout
    assert other != first


def test_the_pulled_copy_samples_through_its_cache(site, pulled):
    """About one one-position extend per character, no forward, and the uncached reference's text."""
    length = 300
    proc = subprocess.run(
        [sys.executable, "-c", COUNT_CALLS, REPO_ID, str(length)],
        capture_output=True,
        text=True,
        env={**_environ(site), **pulled},
        timeout=120,
    )
    counts = json.loads(ok(proc).stdout)
    assert counts["forward"] == 0, counts
    # One extend per character, plus one per restart (every context - context // 2 + 1 characters) and the prompt.
    restarts = length // (counts["context"] - counts["context"] // 2 + 1) + 1
    assert length <= counts["extend"] <= length + restarts + 1, counts
    assert counts["extended"] <= length + restarts * counts["context"], counts
    assert counts["cached"] == counts["uncached"] and len(counts["cached"]) == length


def test_eval_of_the_pulled_copy_reads_the_plugins_dataset(site, pulled):
    proc = ok(run_zoo("eval", REPO_ID, "--json", pythonpath=[site], **pulled))
    result = json.loads(proc.stdout)
    # The held-out 20% of the 45k-character corpus the plugin ships: about 2,250 windows of 32 characters.
    assert 2000 < result["rows"] < 2500 and result["chars"] == 32 * result["rows"], result
    assert 0 < result["val_loss"] < 4, result


def test_without_the_plugin_sampling_says_what_to_pip_install(pulled):
    line = one_error_line(run_zoo("sample", REPO_ID, "--seed", "0", **pulled))
    assert line.startswith("zoo: error: ") and line.endswith(f"pip install {DIST}"), line


def _environ(site: Path) -> dict[str, str]:
    from _plugin_helpers import zoo_env

    return zoo_env([site])
