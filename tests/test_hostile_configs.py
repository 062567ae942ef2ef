"""Hostile configs and corpora: a downloaded or hand-edited config.json, the data it names, and every corpus read.

Part of the suite of hostile inputs (issue 19, items 2, 3, 4 and parts of 8 and 17): a config that sizes a model
beyond its weights is refused before any memory is allocated; a config's batching is checked against its model's spec;
a downloaded config's "data" names a registered dataset, never a file on this machine; reading a corpus or a JSON file
is bounded (regular files only, a size checked before reading); a vocabulary with a lone surrogate is one line;
ZOO_DATASET_MIRROR may be a folder, and its credentials are never printed.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.server
import importlib
import json
import os
import shutil
import threading
from pathlib import Path

import pytest
import torch
from helpers import one_error as one_line
from helpers import one_line_error, run_zoo
from helpers import zoo_in_process as cli
from hubserver import start_hub
from safetensors.torch import load_file, save_file

import zoo
from zoo import registry, tasks
from zoo.checkpoint import VOCAB_METADATA, save_weights, state_shapes, vocab_sha256
from zoo.data.sources import DownloadedText, FileText
from zoo.errors import ZooError
from zoo.pipeline import base_config, meta_model
from zoo.tasks.charlm import encode

REPO = Path(__file__).resolve().parents[1]
BUNDLED_CHAR_RNN = REPO / "plugins" / "zoo_lesson6" / "weights" / "char-rnn"


# --- helpers ---------------------------------------------------------------------------------------------------






def edit_config(folder: Path, change) -> Path:
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def char_rnn(tmp_path) -> Path:
    """A copy of the bundled char-rnn weights: a model folder as a pull leaves it (config.json, model.safetensors)."""
    folder = tmp_path / "char-rnn"
    shutil.copytree(BUNDLED_CHAR_RNN, folder)
    return folder


def table_folder(root: Path) -> Path:
    """An entity-embeddings model folder (three small columns), written without training."""
    spec = registry.get_model("entity-embeddings")
    columns = {
        "categorical": {"city": ["a", "b", "c"], "month": [1, 2, 3]},
        "continuous": {"year": {"mean": 2000.0, "std": 5.0}},
        "target": {"name": "sales", "log": True, "median": 10.0, "min": 1.0, "max": 3.0},
    }
    hparams = {**spec.hparams, **spec.tiny}
    config = {**base_config(spec, hparams, "random", "txhousing"), "columns": columns}
    root.mkdir(parents=True)
    save_weights(root / "model.safetensors", tasks.get(spec.task).build(spec, hparams, config))
    (root / "config.json").write_text(json.dumps(config))
    return root


def spy_builder(monkeypatch, target: str, refuse_real: bool = False) -> list[str]:
    """Wrap the model class `target` ("module.Class"): the device each build ran on is appended to the list returned.

    With `refuse_real`, a build on a real device fails the test before it allocates anything.
    """
    module_name, attr = target.rsplit(".", 1)
    module = importlib.import_module(module_name)
    real = getattr(module, attr)
    devices: list[str] = []

    def builder(**kwargs):
        device = torch.empty(0).device.type  # what torch.device("meta") as a context makes of a new tensor
        devices.append(device)
        if refuse_real and device != "meta":
            raise AssertionError(f"{attr} was built on {device} before its shapes were checked against the weights")
        return real(**kwargs)

    monkeypatch.setattr(module, attr, builder)
    return devices


# --- item 2: the config sizes nothing before the weights' header agrees ------------------------------------------

EVERY_CODE_POINT = ["\0"] + [chr(i) for i in range(1, 0x110000) if not 0xD800 <= i <= 0xDFFF]

OVERSIZED = {
    "n_hidden 60000 (a 14.4 GB matrix)": (lambda c: c["hparams"].update(n_hidden=60_000), "(expected (60000, 60000))"),
    "every Unicode code point as the vocabulary": (lambda c: c.update(vocab=EVERY_CODE_POINT), "(expected (1112064, 42))"),
}


@pytest.mark.parametrize("case", list(OVERSIZED))
def test_a_config_sized_beyond_its_weights_is_refused_before_anything_is_allocated(char_rnn, monkeypatch, case):
    change, expected = OVERSIZED[case]
    edit_config(char_rnn, change)
    devices = spy_builder(monkeypatch, "zoo_lesson6.models.CharRnn", refuse_real=True)
    with pytest.raises(ZooError, match="model.safetensors: weights do not fit the model: wrong shape") as info:
        zoo.load(char_rnn)
    assert expected in str(info.value)
    assert devices == ["meta"]  # sized on the meta device only: no real tensor was made


def test_a_config_too_large_even_for_the_meta_device_is_refused_without_a_real_build(char_rnn, monkeypatch):
    # The embedding (10**6 x 84) fits; the recurrent layer overflows: built for real, the first would be allocated.
    edit_config(char_rnn, lambda c: c["hparams"].update(n_fac=10**6, n_hidden=10**13))
    devices = spy_builder(monkeypatch, "zoo_lesson6.models.CharRnn", refuse_real=True)
    with pytest.raises(ZooError, match=r"config.json: model 'char-rnn' cannot be built with the hyper-parameters .*overflow"):
        zoo.load(char_rnn)
    assert devices == ["meta"]


def test_a_fitting_config_is_built_once_on_meta_and_once_for_real(char_rnn, monkeypatch):
    devices = spy_builder(monkeypatch, "zoo_lesson6.models.CharRnn")
    m = zoo.load(char_rnn)
    assert devices == ["meta", "cpu"] and m.device.type == "cpu"
    assert isinstance(m.sample("The ", 5, seed=0), str)


def test_a_table_config_with_a_huge_category_is_refused_before_anything_is_allocated(tmp_path, monkeypatch):
    folder = edit_config(table_folder(tmp_path / "ee"), lambda c: c["columns"]["categorical"].update(city=list(range(5_000_000))))
    devices = spy_builder(monkeypatch, "zoo_tabular.model.EntityEmbeddingNet", refuse_real=True)
    with pytest.raises(ZooError, match=r"weights do not fit the model: wrong shape embeds.city.weight \(4, 2\) \(expected \(5000001, "):
        zoo.load(folder)
    assert devices == ["meta"]


def test_a_resumed_run_whose_config_was_enlarged_is_refused_before_anything_is_allocated(small_corpus, tmp_path, monkeypatch):
    out = tmp_path / "run"
    zoo.train("char-rnn", data=str(small_corpus), out=out, max_steps=2, batch_size=64, overrides=("n_hidden=16",), quiet=True)
    edit_config(out, lambda c: c["hparams"].update(n_hidden=60_000))
    devices = spy_builder(monkeypatch, "zoo_lesson6.models.CharRnn", refuse_real=True)
    with pytest.raises(ZooError, match=r"checkpoint/model.safetensors: weights do not fit the model: .*\(expected \(60000, 60000\)\)"):
        zoo.train(resume=out, quiet=True)
    assert devices == ["meta"]


def test_a_builder_that_cannot_build_on_meta_still_loads(char_rnn, monkeypatch):
    """The check before allocating is a pre-check: a third-party builder that needs real tensors loads as before."""
    module = importlib.import_module("zoo_lesson6.models")
    real = module.CharRnn

    def needs_real_tensors(**kwargs):
        torch.zeros(1).item()  # NotImplementedError / RuntimeError on the meta device
        return real(**kwargs)

    monkeypatch.setattr(module, "CharRnn", needs_real_tensors)
    assert isinstance(zoo.load(char_rnn).sample("The ", 5, seed=0), str)


@pytest.fixture(scope="module")
def table_columns(tmp_path_factory) -> dict:
    return json.loads((table_folder(tmp_path_factory.mktemp("table") / "ee") / "config.json").read_text())["columns"]


@pytest.mark.parametrize("name", sorted(registry.get().models))
def test_every_registered_model_builds_on_meta_with_the_shapes_of_a_real_build(name, table_columns):
    """So the check before allocating is made for every model zoo ships, and never refuses weights that fit."""
    spec = registry.get_model(name)
    task = tasks.get(spec.task)
    hparams = {**spec.hparams, **spec.tiny}
    if spec.task == "char-lm":
        config = {"vocab": ["\0", *"abcdefghij"], "batching": dataclasses.asdict(spec.batching)}
    else:  # a regression model takes continuous columns only
        config = {"columns": table_columns if spec.task == "tabular-regression" else {**table_columns, "categorical": {}}}
    shell = meta_model(task, spec, {**config, "hparams": hparams})
    assert shell is not None, f"{name} cannot be built on the meta device, so its config is not checked before allocating"
    assert state_shapes(shell) == state_shapes(task.build(spec, hparams, config))


# --- item 3: a config's batching is checked against its spec ------------------------------------------------------

BATCHING = {
    "length 100000": ({"length": 100_000}, "length must be at most 65536, got 100000"),
    "length 10**7": ({"length": 10**7}, "length must be at most 65536"),
    "length 2.5": ({"length": 2.5}, "length must be a whole number, got 2.5"),
    "length '8'": ({"length": "8"}, "length must be a whole number, got '8'"),
    "stride 0": ({"stride": 0}, "stride must be at least 1, got 0"),
    "unknown kind": ({"kind": "tokens"}, "unknown kind 'tokens'; known: windows, streams"),
    "unknown key": ({"window": 8}, "unknown key 'window'; known: kind, length, stride, targets"),
    "targets every": ({"targets": "every"}, "does not match model 'char-rnn': targets 'every' (its spec's: 'next')"),
    "kind streams": ({"kind": "streams"}, "does not match model 'char-rnn': kind 'streams' (its spec's: 'windows')"),
    "length 9": ({"length": 9}, "does not match model 'char-rnn': length 9 (its spec's: 8)"),
}


@pytest.mark.parametrize("case", list(BATCHING))
@pytest.mark.parametrize("command", ["sample", "eval"])
def test_a_config_batching_that_is_not_its_models_is_one_line(capsys, char_rnn, case, command):
    change, expected = BATCHING[case]
    edit_config(char_rnn, lambda c: c["batching"].update(change))
    args = ("--length", "3") if command == "sample" else ("--data", str(BUNDLED_CHAR_RNN / "README.md"))
    line = one_line(*cli(capsys, command, str(char_rnn), *args)[::2])
    assert f"{char_rnn}/config.json: 'batching'" in line and expected in line, line


def test_a_config_whose_task_is_not_its_models_is_one_line(capsys, char_rnn):
    edit_config(char_rnn, lambda c: c.update(model="linreg-sgd"))  # a char-lm config naming a regression model
    line = one_line(*cli(capsys, "sample", str(char_rnn))[::2])
    assert "config.json: 'task' is 'char-lm', but linreg-sgd is a regression model" in line


def test_table_columns_of_the_wrong_types_are_one_line(capsys, tmp_path):
    folder = edit_config(table_folder(tmp_path / "ee"), lambda c: c["columns"]["continuous"]["year"].update(std="wide"))
    line = one_line(*cli(capsys, "eval", str(folder))[::2])
    assert "config.json: 'columns' continuous 'year': needs a finite 'mean' and a positive 'std'" in line


# --- item 8: a lone surrogate in a vocabulary ----------------------------------------------------------------------


def test_a_vocabulary_with_a_lone_surrogate_is_one_line(capsys, char_rnn):
    """The weights carry the fingerprint of that same vocabulary: only the surrogate is wrong."""
    config = json.loads((char_rnn / "config.json").read_text())
    config["vocab"][-1] = "\ud800"
    (char_rnn / "config.json").write_text(json.dumps(config))
    weights = load_file(char_rnn / "model.safetensors")
    save_file(weights, char_rnn / "model.safetensors", metadata={"format": "pt", VOCAB_METADATA: vocab_sha256(config["vocab"])})
    for command in ("sample", "eval"):
        line = one_line(*cli(capsys, command, str(char_rnn))[::2])
        assert "config.json: a vocabulary must be characters of text; it holds the lone surrogate '\\ud800'" in line


# --- item 4: a downloaded config's data is a dataset name, never a path here ----------------------------------------


@pytest.fixture
def as_downloaded(monkeypatch):
    """Make `zoo.load("alice/NAME")` find `folder` in the Hub cache, as if pulled."""

    def use(folder: Path) -> str:
        monkeypatch.setattr(zoo.hub, "find_weights", lambda name: (folder, "hub cache") if name == "alice/model" else None)
        return "alice/model"

    return use


def test_a_downloaded_config_naming_a_file_here_is_never_read(char_rnn, as_downloaded, tmp_path, monkeypatch):
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n" * 50)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("the author's corpus, by the name a push records\n" * 50)
    for data in (str(secret), "corpus.txt"):
        edit_config(char_rnn, lambda c, data=data: c.update(data=data))
        model = zoo.load(as_downloaded(char_rnn))
        with pytest.raises(ZooError, match=f"names the data {data!r}, which is no registered dataset; zoo reads no file a download names"):
            model.evaluate()


def test_a_downloaded_config_naming_a_dataset_or_the_users_own_data_still_evaluates(char_rnn, as_downloaded, tmp_path):
    edit_config(char_rnn, lambda c: c.update(data="pydoc-topics"))
    model = zoo.load(as_downloaded(char_rnn))
    with pytest.raises(ZooError, match="characters the model's vocabulary lacks"):  # it read pydoc-topics: the name is fine
        model.evaluate()
    own = tmp_path / "mine.txt"
    own.write_text("the user's own text, named on the command line. " * 100)
    assert model.evaluate(data=str(own))["val_loss"] > 0  # --data the user gives is the user's choice


def test_a_local_run_folder_keeps_its_path(char_rnn, tmp_path):
    own = tmp_path / "mine.txt"
    own.write_text("the user's own text, recorded by path in a run they made. " * 100)
    edit_config(char_rnn, lambda c: c.update(data=str(own)))
    assert zoo.load(char_rnn).evaluate()["val_loss"] > 0


def test_a_snapshot_folder_in_the_hub_cache_given_as_a_path_is_a_download(char_rnn, tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    snapshot = cache / "models--alice--model" / "snapshots" / ("0" * 40)
    shutil.copytree(edit_config(char_rnn, lambda c: c.update(data=str(tmp_path / "x.txt"))), snapshot)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    with pytest.raises(ZooError, match="zoo reads no file a download names"):
        zoo.load(snapshot).evaluate()


def test_a_downloaded_table_config_naming_a_path_is_never_read(tmp_path, as_downloaded):
    folder = edit_config(table_folder(tmp_path / "ee"), lambda c: c.update(data=str(tmp_path)))
    with pytest.raises(ZooError, match="which is no registered dataset"):
        zoo.load(as_downloaded(folder)).evaluate()


def test_zoo_eval_of_a_pulled_repo_whose_config_names_a_fifo_is_one_line(tmp_path):
    """Through the real CLI and huggingface_hub against a local Hub: a FIFO would hang the read for ever."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    config = json.loads((BUNDLED_CHAR_RNN / "config.json").read_text())
    config["data"] = str(fifo)
    hub = start_hub(tmp_path)
    try:
        hub.create_repo("mallory/char-rnn")
        files = {f: (BUNDLED_CHAR_RNN / f).read_bytes() for f in ("model.safetensors", "README.md", "training.json")}
        hub.commit("mallory/char-rnn", {**files, "config.json": json.dumps(config).encode()})
        env = hub.env(HF_HOME=str(tmp_path / "hf-home"))
        pulled = run_zoo("pull", "mallory/char-rnn", env=env, timeout=120)
        assert pulled.returncode == 0, pulled.stderr
        line = one_line_error(run_zoo("eval", "mallory/char-rnn", env=env, timeout=120))
        assert f"names the data {str(fifo)!r}, which is no registered dataset" in line
    finally:
        hub.stop()


# --- item 4: every corpus read is bounded -------------------------------------------------------------------------


def test_a_fifo_as_data_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    line = one_line_error(run_zoo("train", "char-rnn", "--data", str(fifo), "--out", str(tmp_path / "r"), timeout=120))
    assert f"{fifo}: cannot be read (it is a FIFO, not a text file)" in line
    assert not (tmp_path / "r").exists()


def test_a_device_as_data_is_refused_before_reading():
    with pytest.raises(ZooError, match="/dev/null: cannot be read \\(it is a character device, not a text file\\)"):
        FileText(Path("/dev/null")).read_text()  # /dev/zero and /dev/urandom alike: never read until memory runs out


def test_a_corpus_over_the_cap_is_refused_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:  # sparse: no time or disk spent on it
        f.truncate((1 << 20) + 1)
    monkeypatch.setenv("ZOO_MAX_CORPUS_MB", "1")
    with pytest.raises(
        ZooError, match="big.txt: 1,048,577 bytes, more than the 1,048,576 zoo reads; a larger text needs ZOO_MAX_CORPUS_MB"
    ):
        FileText(big).read_text()


def test_the_default_cap_is_stated_and_a_bad_setting_is_one_line(tmp_path, monkeypatch):
    from zoo.data import sources

    assert sources.max_corpus_bytes() == 64 << 20
    small = tmp_path / "small.txt"
    small.write_text("a small text")
    monkeypatch.setenv("ZOO_MAX_CORPUS_MB", "lots")
    with pytest.raises(ZooError, match="ZOO_MAX_CORPUS_MB must be a whole number of megabytes"):
        FileText(small).read_text()


def test_a_config_json_that_is_a_fifo_or_huge_is_one_line(tmp_path, char_rnn):
    (char_rnn / "config.json").unlink()
    os.mkfifo(char_rnn / "config.json")
    line = one_line_error(run_zoo("eval", str(char_rnn), timeout=120))
    assert "config.json: cannot be read (it is a FIFO, not a JSON file)" in line
    (char_rnn / "config.json").unlink()
    with open(char_rnn / "config.json", "wb") as f:
        f.truncate(65 << 20)  # sparse
    with pytest.raises(ZooError, match="config.json: 68,157,440 bytes, more than the 67,108,864 zoo reads"):
        zoo.load(char_rnn)


def test_encoding_a_corpus_matches_the_vocabulary_and_names_an_unknown_character():
    from zoo.data.vocab import Vocab

    text = "plain ASCII, é, 漢字 and 😀 " * 10
    vocab = Vocab.from_text(text)
    assert encode(vocab, text).tolist() == vocab.encode(text)
    wide = Vocab(["\0", *map(chr, range(0x4E00, 0x4E00 + 300))])  # over 256: four bytes an id
    sample = "".join(map(chr, range(0x4E00, 0x4E00 + 300, 7)))
    ids = encode(wide, sample)
    assert ids.dtype == torch.int32 and ids.tolist() == wide.encode(sample)
    with pytest.raises(ZooError, match="character '😀' is not in the model's vocabulary"):
        encode(wide, sample + "😀")


# --- item 17 and 8: ZOO_DATASET_MIRROR as a folder, and its credentials -------------------------------------------

BODY = ("Supposing that Truth is a woman--what then? " * 400).encode()


def mirrored_source() -> DownloadedText:
    return DownloadedText(
        name="tiny", summary="", url="https://example.invalid/tiny.txt", sha256=hashlib.sha256(BODY).hexdigest(), filename="tiny.txt"
    )


@pytest.mark.parametrize("form", ["plain path", "file URL"])
def test_the_mirror_may_be_a_folder_given_as_a_path_or_a_file_url(tmp_path, monkeypatch, form):
    folder = tmp_path / "mirror"
    folder.mkdir()
    (folder / "tiny.txt").write_bytes(BODY)
    monkeypatch.setenv("ZOO_DATASET_MIRROR", str(folder) if form == "plain path" else folder.as_uri())
    assert mirrored_source().read_text() == BODY.decode()  # ZOO_OFFLINE=1 (conftest): a folder here needs no network


def test_a_mirror_folder_without_the_file_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATASET_MIRROR", str(tmp_path))
    with pytest.raises(ZooError, match=f"{tmp_path}/tiny.txt: no such file"):
        mirrored_source().fetch()


class AuthServer:
    """A local HTTP mirror that serves BODY only to Basic authentication as alice:s3cret."""

    def __init__(self) -> None:
        self.authorizations: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                auth = self.headers.get("Authorization")
                outer.authorizations.append(auth)
                ok = auth == "Basic " + base64.b64encode(b"alice:s3cret").decode()
                body = BODY if ok else b"no"
                self.send_response(200 if ok else 401)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def auth_server(monkeypatch):
    monkeypatch.delenv("ZOO_OFFLINE")
    server = AuthServer()
    yield server
    server.stop()


def test_mirror_credentials_are_sent_as_basic_authentication(auth_server, monkeypatch):
    monkeypatch.setenv("ZOO_DATASET_MIRROR", f"http://alice:s3cret@127.0.0.1:{auth_server.port}/")
    assert mirrored_source().read_text() == BODY.decode()
    assert auth_server.authorizations == ["Basic " + base64.b64encode(b"alice:s3cret").decode()]


@pytest.mark.parametrize("where", ["refused", "unreachable", "not a port"])
def test_mirror_credentials_never_reach_an_error(auth_server, monkeypatch, where):
    host = {"refused": f"127.0.0.1:{auth_server.port}", "unreachable": "127.0.0.1:9", "not a port": "127.0.0.1:port"}[where]
    password = "wrong-s3cret" if where == "refused" else "s3cret"
    monkeypatch.setenv("ZOO_DATASET_MIRROR", f"http://alice:{password}@{host}/")
    with pytest.raises(ZooError) as info:
        mirrored_source().fetch()
    message = str(info.value)
    assert "s3cret" not in message and "alice" not in message, message
    assert f"http://***@{host}/tiny.txt" in message


def test_a_download_over_the_cap_is_refused_and_leaves_nothing(auth_server, monkeypatch, _isolated_env):
    monkeypatch.setenv("ZOO_DATASET_MIRROR", f"http://alice:s3cret@127.0.0.1:{auth_server.port}/")
    monkeypatch.setattr("zoo.data.sources.max_corpus_bytes", lambda: len(BODY) - 1)
    with pytest.raises(ZooError, match=f"{len(BODY):,} bytes, more than the {len(BODY) - 1:,} zoo reads"):
        mirrored_source().fetch()
    assert not any((_isolated_env / "datasets").iterdir())


def test_a_batching_scheme_takes_whole_numbers_only():
    """A plugin's spec (or a Python caller) cannot hand the batching code a float either."""
    for bad in ({"length": 2.5}, {"stride": 1.0}, {"length": True}):
        with pytest.raises(ValueError, match="length and stride must be whole numbers >= 1"):
            zoo.Batching(**bad)
