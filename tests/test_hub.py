"""push / pull / publish / sample through the real huggingface_hub client, against a local Hub server."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from helpers import one_line_error, run_zoo, write_prose

import zoo

FILES = ("model.safetensors", "config.json", "README.md", "training.json")




@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two small trained char-rnn runs (different seeds) on real prose."""
    root = tmp_path_factory.mktemp("runs")
    corpus = root / "corpus.txt"
    write_prose(corpus, 15_000)
    runs = []
    for seed in (0, 1):
        out = root / f"run{seed}"
        zoo.train(
            "char-rnn", data=str(corpus), epochs=1, lr=1e-2, batch_size=64, seed=seed, out=out, overrides=("n_hidden=24",), quiet=True
        )
        runs.append(out)
    return runs


def env_for(hub, tmp_path, **extra):
    return hub.env(HF_HOME=str(tmp_path / "hf-home"), **extra)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bundle_as_package(run: Path, root: Path, name: str = "char-rnn") -> tuple[Path, Path]:
    """A package `zoo_testweights` that ships `run` as bundled weights, and a registry.toml naming it."""
    pkg = root / "site" / "zoo_testweights"
    folder = pkg / "weights" / name
    folder.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for f in ("model.safetensors", "config.json", "training.json"):
        shutil.copyfile(run / f, folder / f)
    from zoo.publish import write_card

    write_card(folder, repo_id=f"zoo-test/{name}")
    files = ", ".join(f'"{f}" = "{sha(folder / f)}"' for f in FILES)
    reg = root / "registry.toml"
    reg.write_text(
        f"""schema = 1

[weights.{name}]
repo = "zoo-test/{name}"
license = "mit"
recipe = "zoo train {name} --seed 0"
num_params = {zoo.load(run).num_params}
bundled = "zoo_testweights:weights/{name}"
files = {{ {files} }}

[[weights.{name}.metrics]]
name = "val_loss"
value = 2.5
dataset = "pydoc-topics"
split = "random"
"""
    )
    return root / "site", reg


def test_push_then_pull_into_an_empty_cache_is_byte_identical(hub, trained, tmp_path):
    env = env_for(hub, tmp_path)
    pushed = run_zoo("push", str(trained[0]), "--repo", "alice/char-rnn-small", "--message", "first", env=env)
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.strip().startswith(hub.url) and "alice/char-rnn-small" in pushed.stdout
    stored = hub.repo("alice/char-rnn-small").files("main")
    assert {"model.safetensors", "config.json", "README.md", "training.json", "run.json"} <= set(stored)
    assert "checkpoint/state.json" not in stored and not any("optimizer" in f for f in stored)
    card = stored["README.md"].decode()
    assert "library_name: zoo" in card and "model-index" in card and "zoo train char-rnn" in card

    pulled = run_zoo("pull", "alice/char-rnn-small", env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert "not in registry.toml" in pulled.stderr  # no pinned hashes for an unregistered repo
    folder = Path(pulled.stdout.strip())
    for f in ("model.safetensors", "training.json"):
        assert (folder / f).read_bytes() == (trained[0] / f).read_bytes(), f
    import json

    local, hubs = json.loads((trained[0] / "config.json").read_text()), json.loads((folder / "config.json").read_text())
    assert hubs == {**local, "data": Path(local["data"]).name}  # the corpus by name, not this machine's folders
    a = run_zoo("sample", "alice/char-rnn-small", "--seed", "3", "--length", "80", "--prompt", "The ", env=env)
    b = run_zoo("sample", str(trained[0]), "--seed", "3", "--length", "80", "--prompt", "The ", env=env)
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout


def test_publish_pins_a_revision_and_pull_keeps_to_it(hub, trained, tmp_path):
    site, reg = bundle_as_package(trained[0], tmp_path)
    env = env_for(hub, tmp_path, PYTHONPATH=str(site), ZOO_REGISTRY=str(reg))
    listed = run_zoo("list", "--pretrained", env=env)
    assert "char-rnn" in listed.stdout and "2.500" in listed.stdout
    offline = run_zoo("sample", "char-rnn", "--seed", "0", "--length", "40", env=env)
    assert offline.returncode == 0, offline.stderr  # bundled weights, before any publishing

    pub = run_zoo("publish", "char-rnn", env=env)
    assert pub.returncode == 0, pub.stderr
    pinned = zoo.published.load(reg)["char-rnn"].revision
    assert pinned == hub.repo("zoo-test/char-rnn").resolve("main")

    # a newer push to the same repo must not change what the pinned pull gets
    newer = run_zoo("push", str(trained[1]), "--repo", "zoo-test/char-rnn", env=env)
    assert newer.returncode == 0, newer.stderr
    assert hub.repo("zoo-test/char-rnn").resolve("main") != pinned
    pulled = run_zoo("pull", "char-rnn", env=env)
    assert pulled.returncode == 0, pulled.stderr
    folder = Path(pulled.stdout.strip())
    assert pinned in str(folder)
    assert (folder / "model.safetensors").read_bytes() == (trained[0] / "model.safetensors").read_bytes()
    sampled = run_zoo("sample", "char-rnn", "--seed", "0", "--length", "40", env=env)
    assert sampled.stdout == offline.stdout

    # offline with a warm cache: still works; and a cold cache says what is wrong
    warm = run_zoo("pull", "char-rnn", env={**env, "HF_HUB_OFFLINE": "1"})
    assert warm.returncode == 0, warm.stderr
    cold = run_zoo("pull", "char-rnn", env={**env, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "cold")})
    assert "not in the local Hub cache" in one_line_error(cold)


def test_a_tampered_file_is_refused_and_not_kept(hub, trained, tmp_path):
    site, reg = bundle_as_package(trained[0], tmp_path)
    env = env_for(hub, tmp_path, PYTHONPATH=str(site), ZOO_REGISTRY=str(reg))
    assert run_zoo("publish", env=env).returncode == 0
    good = (trained[0] / "model.safetensors").read_bytes()
    bad = good[:-1] + bytes([good[-1] ^ 0xFF])  # same length: only a hash check can tell
    assert hub.tamper("zoo-test/char-rnn", "model.safetensors", bad) >= 1
    line = one_line_error(run_zoo("pull", "char-rnn", env=env))
    assert "sha256" in line and "model.safetensors" in line
    cached = list((tmp_path / "hf-home").rglob("model.safetensors"))
    assert all(p.read_bytes() != bad for p in cached if p.exists())
    # sampling falls back to the verified bundled copy, never the bad file
    s = run_zoo("sample", "char-rnn", "--seed", "0", "--length", "20", env=env)
    assert s.returncode == 0, s.stderr


def test_a_cached_copy_spoilt_after_pulling_is_deleted_with_a_warning(hub, trained, tmp_path):
    site, reg = bundle_as_package(trained[0], tmp_path)
    env = env_for(hub, tmp_path, PYTHONPATH=str(site), ZOO_REGISTRY=str(reg))
    assert run_zoo("publish", env=env).returncode == 0
    assert run_zoo("pull", "char-rnn", env=env).returncode == 0
    (cached,) = [p.resolve() for p in (tmp_path / "hf-home").rglob("model.safetensors")]
    cached.write_bytes(cached.read_bytes()[:-1] + b"\0")  # bit rot, or a hand edit, after a good pull
    s = run_zoo("sample", "char-rnn", "--seed", "0", "--length", "20", env=env)
    assert s.returncode == 0, s.stderr
    warned = [ln for ln in s.stderr.splitlines() if ln.strip()]
    assert len(warned) == 1 and "model.safetensors failed the sha256 check" in warned[0] and "bundled copy" in warned[0]
    assert not cached.exists()


def test_pushing_with_no_token_at_all_says_so(hub, trained, tmp_path):
    env = {**env_for(hub, tmp_path), "HF_TOKEN": ""}  # and nothing saved under HF_HOME
    line = one_line_error(run_zoo("push", str(trained[0]), "--repo", "alice/x", env=env))
    assert line == "zoo: error: push: no Hub token; pass --token, set HF_TOKEN, or log in with `hf auth login`"


def test_wrong_token_and_missing_repo_are_one_line_each(hub, trained, tmp_path):
    env = env_for(hub, tmp_path)
    bad = run_zoo("push", str(trained[0]), "--repo", "alice/x", "--token", "hf_wrong_token_123", env=env)
    line = one_line_error(bad)
    assert "401" in line and "hf_wrong_token_123" not in bad.stdout + bad.stderr
    missing = run_zoo("pull", "alice/does-not-exist", env=env)
    assert "does not exist" in one_line_error(missing)
    site, reg = bundle_as_package(trained[0], tmp_path)
    unpublished = {**env, "PYTHONPATH": str(site), "ZOO_REGISTRY": str(reg)}
    assert "not yet published" in one_line_error(run_zoo("pull", "char-rnn", env=unpublished))
    assert "did you mean" in one_line_error(run_zoo("pull", "char-rn", env=env))


def test_the_token_never_reaches_outputs_or_files(hub, trained, tmp_path):
    env = env_for(hub, tmp_path)
    pushed = run_zoo("push", str(trained[0]), "--repo", "alice/secret", "--token", hub.token, env={**env, "HF_TOKEN": ""})
    assert pushed.returncode == 0, pushed.stderr
    assert hub.token not in pushed.stdout + pushed.stderr
    for content in hub.repo("alice/secret").files("main").values():
        assert hub.token.encode() not in content


def test_a_pushed_run_does_not_carry_this_machines_folders(hub, trained, tmp_path):
    import json

    corpus = str(trained[0].parent / "corpus.txt")
    assert json.loads((trained[0] / "config.json").read_text())["data"] == corpus  # what the local run records
    env = env_for(hub, tmp_path)
    assert run_zoo("push", str(trained[0]), "--repo", "alice/paths", "--token", hub.token, env=env).returncode == 0
    files = hub.repo("alice/paths").files("main")
    assert all(corpus.encode() not in content and str(trained[0].parent).encode() not in content for content in files.values())
    assert json.loads(files["config.json"])["data"] == "corpus.txt"
    assert json.loads(files["run.json"])["options"]["data"] == "corpus.txt"
    assert (trained[0] / "config.json").read_text().count(corpus) == 1  # the local run is left as it was


def test_an_unreachable_hub_is_one_line(trained, tmp_path):
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "h"), "HF_HUB_DISABLE_XET": "1"}
    assert "cannot reach the Hub" in one_line_error(run_zoo("push", str(trained[0]), "--repo", "a/b", "--token", "t", env=env))
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    assert "pushing needs the Hub" in one_line_error(run_zoo("push", str(trained[0]), "--repo", "a/b", "--token", "t", env=offline))
