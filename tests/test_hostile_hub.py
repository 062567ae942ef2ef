"""Hostile pulls: Hub servers that hang, trickle, cut or lie, corrupt repositories, registries and unstable hashes.

Every server here is tests/hubserver.py on 127.0.0.1, started and stopped by the test; `zoo pull` runs as a
subprocess (huggingface_hub reads HF_ENDPOINT when it is imported) with deadlines of a few seconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import one_line_error, run_zoo, write_prose

import zoo
from zoo import published
from zoo.checkpoint import save_weights, tensors_to_bytes
from zoo.errors import ZooError
from zoo.hub import safetensors_header

REPO_ID = "alice/tiny"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny char-rnn run: its files are what the fake Hub serves."""
    root = tmp_path_factory.mktemp("hostile-runs")
    corpus = root / "corpus.txt"
    write_prose(corpus, 6_000)
    out = root / "run"
    zoo.train("char-rnn", data=str(corpus), epochs=1, max_steps=2, batch_size=32, seed=0, out=out, overrides=("n_hidden=8",), quiet=True)
    return out




def files_of(run: Path, **replace: bytes) -> dict[str, bytes]:
    files = {name: (run / name).read_bytes() for name in ("model.safetensors", "config.json")}
    return {**files, **replace}


def seed(hub, run: Path, **replace: bytes) -> str:
    """REPO_ID on the fake Hub with the run's files (some replaced); the commit sha."""
    hub.create_repo(REPO_ID)
    return hub.commit(REPO_ID, files_of(run, **replace))


def pull(hub, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    full = hub.env(HF_HOME=str(tmp_path / "hf-home"), **env)
    return run_zoo("pull", *args, env=full, timeout=120)  # the subprocess timeout only guards against a hang


def cached(tmp_path: Path, name: str) -> list[Path]:
    """Snapshot entries named `name` in the Hub cache that a later command could load."""
    return [p for p in (tmp_path / "hf-home").rglob(name) if "snapshots" in p.parts and p.exists()]


# --- item 9: servers that hang, trickle or cut -------------------------------------------------------------------


def test_a_server_that_never_answers_gives_up_at_the_deadline(hub, trained, tmp_path):
    seed(hub, trained)
    hub.inject("hang")
    line = one_line_error(pull(hub, tmp_path, REPO_ID, "--timeout", "2"))
    tip = "set ZOO_HUB_TIMEOUT or --timeout to wait longer"
    assert line == f"zoo: error: pull {REPO_ID}: the Hub at {hub.url} did not answer within 2 s; {tip}"


def test_a_hanging_head_says_the_hub_did_not_answer_not_offline(hub, trained, tmp_path):
    seed(hub, trained)
    hub.inject("hang", method="HEAD")
    line = one_line_error(pull(hub, tmp_path, REPO_ID, ZOO_HUB_TIMEOUT="2"))
    assert "did not answer" in line and hub.url in line and "HF_HUB_OFFLINE" not in line


def test_a_trickling_download_stops_at_the_deadline(hub, trained, tmp_path):
    seed(hub, trained)
    hub.inject("trickle", method="GET", path="/resolve/", every=0.5)
    line = one_line_error(pull(hub, tmp_path, REPO_ID, "--timeout", "2"))
    assert "did not finish within 2 s" in line
    assert not cached(tmp_path, "model.safetensors")


def test_a_connection_cut_mid_file_is_one_line_and_keeps_nothing(hub, trained, tmp_path):
    seed(hub, trained)
    hub.inject("cut", method="GET", path="model.safetensors", after=100)
    line = one_line_error(pull(hub, tmp_path, REPO_ID, "--timeout", "60"))
    assert "connection to the Hub" in line and "was cut" in line
    assert not cached(tmp_path, "model.safetensors")


def test_a_file_shorter_than_the_size_the_hub_advertised_is_one_line(hub, trained, tmp_path):
    seed(hub, trained)
    good = (trained / "model.safetensors").read_bytes()
    hub.tamper(REPO_ID, "model.safetensors", good[:-64])
    line = one_line_error(pull(hub, tmp_path, REPO_ID))
    assert "Consistency check failed" in line and "model.safetensors" in line
    assert not cached(tmp_path, "model.safetensors")


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan", "inf"])
def test_a_bad_timeout_is_one_line(hub, tmp_path, value):
    line = one_line_error(pull(hub, tmp_path, REPO_ID, ZOO_HUB_TIMEOUT=value))
    assert "ZOO_HUB_TIMEOUT must be a number of seconds" in line


def test_pull_help_documents_the_timeout():
    out = run_zoo("pull", "--help").stdout
    assert "--timeout" in out and "ZOO_HUB_TIMEOUT" in out


# --- item 11: the hashes the server advertised ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["model.safetensors", "config.json"])  # an LFS file (sha256), a git file (blob id)
def test_a_file_unlike_its_advertised_hash_is_refused_and_deleted(hub, trained, tmp_path, name):
    seed(hub, trained)
    good = (trained / name).read_bytes()
    flipped = good[:-2] + bytes([good[-2] ^ 0x01]) + good[-1:]  # same length: only a hash tells
    hub.tamper(REPO_ID, name, flipped)
    line = one_line_error(pull(hub, tmp_path, REPO_ID))
    assert f"{name} failed the check against the hash the Hub advertised" in line
    assert not cached(tmp_path, name)
    assert all(p.read_bytes() != flipped for p in (tmp_path / "hf-home").rglob("*") if p.is_file())


# --- item 10: corrupt repositories -----------------------------------------------------------------------------------


def test_a_truncated_weights_file_is_refused_and_not_left_for_sample(hub, trained, tmp_path):
    good = (trained / "model.safetensors").read_bytes()
    seed(hub, trained, **{"model.safetensors": good[: len(good) // 2]})  # the Hub's own metadata agrees: no size check helps
    line = one_line_error(pull(hub, tmp_path, REPO_ID))
    assert "model.safetensors: truncated or corrupt" in line and "deleted from the Hub cache" in line
    assert not cached(tmp_path, "model.safetensors") and not cached(tmp_path, "config.json")
    sampled = run_zoo("sample", REPO_ID, env=hub.env(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="1"))
    assert "zoo pull" in one_line_error(sampled)  # not pulled: pulling again says why


def test_weights_that_do_not_fit_the_config_are_refused(hub, trained, tmp_path):
    config = json.loads((trained / "config.json").read_text())
    config["hparams"]["n_hidden"] = 9  # the file holds n_hidden=8
    seed(hub, trained, **{"config.json": json.dumps(config).encode()})
    line = one_line_error(pull(hub, tmp_path, REPO_ID))
    assert "weights do not fit the model" in line and "deleted from the Hub cache" in line
    assert not cached(tmp_path, "model.safetensors")


def test_an_unreadable_config_is_refused(hub, trained, tmp_path):
    seed(hub, trained, **{"config.json": b"{not json"})
    line = one_line_error(pull(hub, tmp_path, REPO_ID))
    assert "config.json: not valid JSON" in line


def test_a_repository_that_is_not_a_zoo_model_does_not_send_sample_back_to_pull(hub, tmp_path):
    hub.create_repo(REPO_ID)
    hub.commit(REPO_ID, {"README.md": b"# a text model, not zoo's\n"})
    assert "not a zoo model" in one_line_error(pull(hub, tmp_path, REPO_ID))
    sampled = run_zoo("sample", REPO_ID, env=hub.env(HF_HOME=str(tmp_path / "hf-home")))
    line = one_line_error(sampled)
    assert "not a zoo model" in line and "zoo pull" not in line


def test_a_good_repository_pulls_and_stays_pulled(hub, trained, tmp_path):
    seed(hub, trained)
    pulled = pull(hub, tmp_path, REPO_ID)
    assert pulled.returncode == 0, pulled.stderr
    folder = Path(pulled.stdout.strip())
    assert (folder / "model.safetensors").read_bytes() == (trained / "model.safetensors").read_bytes()
    again = run_zoo("pull", REPO_ID, env=hub.env(HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="1"))
    assert again.returncode == 0 and again.stdout == pulled.stdout, again.stderr


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda raw: raw[:-1], "truncated or corrupt"),
        (lambda raw: raw + b"\0" * 8, "truncated or corrupt"),
        (lambda raw: raw[:4], "truncated or not a safetensors file"),
        (lambda raw: (10**9).to_bytes(8, "little") + raw[8:], "truncated or not a safetensors file"),
        (lambda raw: raw.replace(b'"F32"', b'"F99"', 1), "malformed"),
        (lambda raw: raw.replace(b'"shape":[', b'"shape":[2,', 1), "does not fit"),
        (lambda raw: raw[:8] + b"[" + raw[9:], "not valid JSON"),
    ],
)
def test_the_header_check_finds_corrupt_safetensors_without_loading_them(trained, tmp_path, damage, message):
    path = tmp_path / "model.safetensors"
    raw = (trained / "model.safetensors").read_bytes()
    assert set(safetensors_header(trained / "model.safetensors")) == set(zoo.load(trained).model.state_dict())
    path.write_bytes(damage(raw))
    with pytest.raises(ZooError, match=message):
        safetensors_header(path)


def test_overlapping_tensors_are_refused(tmp_path):
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    text = json.dumps(header).encode()
    path = tmp_path / "x.safetensors"
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"\0" * 12)
    with pytest.raises(ZooError, match="does not start where the one before it ends"):
        safetensors_header(path)


# --- item 6: registry file names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../victim", "/etc/passwd", "a/../../b", "*.json", ".hidden", "a\\..\\b", "", "ok/", "x\n"])
def test_registry_file_names_must_stay_inside_the_snapshot(tmp_path, name):
    sha = "0" * 64
    reg = tmp_path / "registry.toml"
    reg.write_text(
        f'schema = 1\n[weights.char-rnn]\nrepo = "a/b"\nlicense = "mit"\nrecipe = "r"\nnum_params = 1\nmetrics = []\n'
        f"[weights.char-rnn.files]\n{json.dumps(name)} = \"{sha}\"\n"
    )
    with pytest.raises(ZooError, match="is not a plain file name inside the repository"):
        published.load(reg)


def test_a_registry_cannot_make_pull_delete_a_file_outside_the_cache(hub, trained, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    commit = seed(hub, trained)
    depth = len((tmp_path / "hf-home" / "hub" / "models--alice--tiny" / "snapshots" / commit).relative_to(tmp_path).parts)
    escape = "../" * depth + "victim.txt"
    sha = hashlib.sha256((trained / "model.safetensors").read_bytes()).hexdigest()
    reg = tmp_path / "registry.toml"
    reg.write_text(
        f'schema = 1\n[weights.char-rnn]\nrepo = "{REPO_ID}"\nrevision = "{commit}"\nlicense = "mit"\nrecipe = "r"\n'
        f'num_params = 1\nmetrics = []\n[weights.char-rnn.files]\n"model.safetensors" = "{sha}"\n"{escape}" = "{"0" * 64}"\n'
    )
    line = one_line_error(pull(hub, tmp_path, "char-rnn", ZOO_REGISTRY=str(reg)))
    assert "not a plain file name" in line
    assert victim.read_text() == "keep me"


def test_a_corrupt_snapshot_with_nested_files_is_deleted_whole_in_one_line(hub, trained, tmp_path):
    """A registry may list files in folders: a failed check deletes them too (a folder made unlink() raise)."""
    files = files_of(trained, **{"config.json": b"{not json", "notes/about.txt": b"nested"})
    hub.create_repo(REPO_ID)
    commit = hub.commit(REPO_ID, files)
    pins = "".join(f'"{name}" = "{hashlib.sha256(data).hexdigest()}"\n' for name, data in files.items())
    reg = tmp_path / "registry.toml"
    reg.write_text(
        f'schema = 1\n[weights.char-rnn]\nrepo = "{REPO_ID}"\nrevision = "{commit}"\nlicense = "mit"\nrecipe = "r"\n'
        f"num_params = 1\nmetrics = []\n[weights.char-rnn.files]\n{pins}"
    )
    line = one_line_error(pull(hub, tmp_path, "char-rnn", ZOO_REGISTRY=str(reg)))
    assert "config.json: not valid JSON" in line and "deleted from the Hub cache" in line
    assert not cached(tmp_path, "about.txt") and not cached(tmp_path, "model.safetensors")


# --- item 12: reproducible hashes ----------------------------------------------------------------------------------


def test_safetensors_bytes_do_not_depend_on_metadata_order():
    tensors = {"b": torch.arange(6.0).reshape(2, 3), "a": torch.zeros(4, dtype=torch.float16)}
    metadata = {f"key{i}": f"value{i}" for i in range(8)}  # safetensors orders these at random: 8! orders
    first = tensors_to_bytes(tensors, metadata)
    assert all(tensors_to_bytes(tensors, dict(reversed(metadata.items()))) == first for _ in range(5))
    header = json.loads(first[8 : 8 + int.from_bytes(first[:8], "little")])
    assert list(header["__metadata__"]) == sorted(metadata)


_SAVE = """
import sys, torch
from zoo.checkpoint import save_weights, tag_vocab
torch.manual_seed(0)
model = tag_vocab(torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 5)), list("abcde"))
save_weights(sys.argv[1], model)
"""


def test_the_same_weights_give_the_same_file_in_two_processes(tmp_path):
    paths = []
    for seed_value in ("1", "2"):
        path = tmp_path / f"w{seed_value}.safetensors"
        env = {**os.environ, "PYTHONHASHSEED": seed_value}
        subprocess.run([sys.executable, "-c", _SAVE, str(path)], env=env, check=True, timeout=120)
        paths.append(path)
    here = tmp_path / "here.safetensors"
    torch.manual_seed(0)
    from zoo.checkpoint import tag_vocab

    save_weights(here, tag_vocab(torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 5)), list("abcde")))
    assert paths[0].read_bytes() == paths[1].read_bytes() == here.read_bytes()


def test_ctrl_c_during_a_pull_leaves_no_deadline_for_later_hub_calls():
    """A pull interrupted while it waits (Ctrl-C in a notebook) must not leave its deadline to cut later requests."""
    import _thread
    import threading
    import time

    from zoo import hub as zoo_hub

    threading.Timer(0.2, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        zoo_hub._within(30, lambda: time.sleep(1))
    for _ in range(50):  # the interrupted pull's thread finishes its work, then the deadline goes
        if zoo_hub._current is None:
            break
        time.sleep(0.1)
    assert zoo_hub._current is None
