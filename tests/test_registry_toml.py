"""registry.toml (zoo/published.py): validated on load, one clear error line per problem; valid entries
show up in `zoo list`, `zoo list --pretrained` and `zoo info`. ZOO_REGISTRY points zoo at the file under test."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _plugin_helpers import BUILTIN_MODELS, ok, one_error_line, parse_table, run_zoo

import zoo
from zoo import published, registry
from zoo.errors import ZooError

SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
REV = "0123456789abcdef0123456789abcdef01234567"

VALID = f"""\
schema = 1

[weights.char-rnn]
repo = "zoo-lesson6/char-rnn"
revision = "{REV}"
license = "MIT"
recipe = "zoo train char-rnn --seed 0"
num_params = 102215
files = {{ "model.safetensors" = "{SHA}", "config.json" = "{SHA}" }}

[[weights.char-rnn.metrics]]
name = "val_loss"
value = 1.52
dataset = "nietzsche"
split = "random"

[[weights.char-rnn.metrics]]
name = "val_acc"
value = 0.5
dataset = "nietzsche"
split = "random"
"""

# An entry with no val_loss metric: the weights column says a bare "yes".
CHAR3_NO_METRICS = f"""
[weights.char3]
repo = "zoo-lesson6/char3"
revision = "{REV}"
license = "MIT"
recipe = "zoo train char3"
num_params = 102215
files = {{ "model.safetensors" = "{SHA}" }}
metrics = []
"""


def _write(tmp_path: Path, text: str | bytes) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "registry.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _replace(old: str, new: str) -> str:
    assert old in VALID, old
    return VALID.replace(old, new, 1)


FILES = f'files = {{ "model.safetensors" = "{SHA}", "config.json" = "{SHA}" }}'
METRIC0 = 'value = 1.52\ndataset = "nietzsche"\nsplit = "random"\n'
W = "weights.char-rnn"

# (id, file text, what the one error line must contain)
BROKEN = [
    ("malformed-toml", "schema = 1\n[weights.char-rnn\nrepo = 'x'\n", "not valid TOML"),
    ("missing-license", _replace('license = "MIT"\n', ""), f"{W}.license is missing"),
    ("missing-files", _replace(FILES + "\n", ""), f"{W}.files is missing"),
    (
        "sha256-short",
        _replace(f'"model.safetensors" = "{SHA}"', f'"model.safetensors" = "{SHA[:63]}"'),
        f"{W}.files.model.safetensors must be a sha256",
    ),
    ("sha256-not-hex", _replace(f'"config.json" = "{SHA}"', f'"config.json" = "{"g" * 64}"'), f"{W}.files.config.json must be a sha256"),
    ("sha256-not-a-string", _replace(f'"config.json" = "{SHA}"', '"config.json" = 12'), f"{W}.files.config.json must be a sha256"),
    ("files-empty", _replace(FILES, "files = {}"), f"{W}.files is empty"),
    ("revision-branch", _replace(f'revision = "{REV}"', 'revision = "main"'), f"{W}.revision must be a 40-character commit hash"),
    ("revision-short", _replace(f'revision = "{REV}"', f'revision = "{REV[:12]}"'), f"{W}.revision must be a 40-character commit hash"),
    (
        "unknown-key",
        _replace('license = "MIT"\n', 'license = "MIT"\nhomepage = "https://example.org"\n'),
        f"{W}.homepage is not a known key",
    ),
    ("unknown-top-level-key", "extra = 1\n" + VALID, "top-level key 'extra' is not known"),
    ("schema-missing", VALID.replace("schema = 1\n", ""), "schema must be 1, got None"),
    ("schema-2", VALID.replace("schema = 1", "schema = 2"), "schema must be 1, got 2"),
    ("repo-not-owner-name", _replace('repo = "zoo-lesson6/char-rnn"', 'repo = "char-rnn"'), f"{W}.repo must look like OWNER/NAME"),
    ("num-params-string", _replace("num_params = 102215", 'num_params = "102215"'), f"{W}.num_params must be an int"),
    ("num-params-bool", _replace("num_params = 102215", "num_params = true"), f"{W}.num_params must be an int"),
    ("num-params-zero", _replace("num_params = 102215", "num_params = 0"), f"{W}.num_params must be positive"),
    ("metric-missing-split", _replace(METRIC0, METRIC0.replace('split = "random"\n', "")), f"{W}.metrics[0].split is missing"),
    ("metric-value-string", _replace("value = 0.5", 'value = "0.5"'), f"{W}.metrics[1].value must be an int or float"),
    ("metric-val-frac-1", _replace(METRIC0, METRIC0 + "val_frac = 1\n"), f"{W}.metrics[0].val_frac must be between 0 and 1"),
    ("metric-val-frac-string", _replace(METRIC0, METRIC0 + 'val_frac = "0.1"\n'), f"{W}.metrics[0].val_frac must be an int or float"),
    ("metric-unknown-key", _replace(METRIC0, METRIC0 + "seed = 3\n"), f"{W}.metrics[0].seed is not a known key"),
    ("entry-not-a-table", 'schema = 1\n[weights]\nchar-rnn = "yes"\n', f"{W} must be a table"),
    ("weights-not-a-table", 'schema = 1\nweights = "none"\n', "weights must be a table"),
    ("not-utf8", b"schema = 1\n# \xff\xfe\n", "cannot be read"),
]

# The problems the CLI is checked on end to end (the rest are checked in process, which is faster).
CLI_CASES = {"malformed-toml", "missing-license", "sha256-short", "revision-branch", "unknown-key"}


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in BROKEN])
def test_load_rejects_with_one_line_naming_the_problem(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(ZooError) as info:
        published.load(path)
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(("text", "expected"), [pytest.param(t, e, id=i) for i, t, e in BROKEN if i in CLI_CASES])
def test_zoo_list_fails_with_one_line_naming_the_problem(tmp_path, text, expected):
    path = _write(tmp_path, text)
    proc = run_zoo("list", ZOO_REGISTRY=str(path))
    line = one_error_line(proc)
    assert line.startswith("zoo: error:")
    assert expected in line
    assert proc.stdout == ""


def test_a_registry_that_zoo_registry_names_must_exist(tmp_path):
    line = one_error_line(run_zoo("list", ZOO_REGISTRY=str(tmp_path / "missing.toml")))
    assert line == f"zoo: error: ZOO_REGISTRY={tmp_path / 'missing.toml'}: no such file"  # not an empty registry, silently


def test_zoo_info_fails_on_a_broken_registry_too(tmp_path):
    path = _write(tmp_path, _replace(f'revision = "{REV}"', 'revision = "main"'))
    line = one_error_line(run_zoo("info", "char-rnn", ZOO_REGISTRY=str(path)))
    assert "weights.char-rnn.revision" in line


def test_malformed_toml_error_names_the_file(tmp_path):
    path = _write(tmp_path, "schema = 1\n[weights.char-rnn\n")
    line = one_error_line(run_zoo("list", ZOO_REGISTRY=str(path)))
    assert str(path) in line


def test_valid_registry_parses(tmp_path):
    weights = published.load(_write(tmp_path, VALID + CHAR3_NO_METRICS))
    assert set(weights) == {"char-rnn", "char3"}
    w = weights["char-rnn"]
    assert w.model == "char-rnn"
    assert w.repo == "zoo-lesson6/char-rnn"
    assert w.revision == REV
    assert w.num_params == 102215
    assert w.files == {"model.safetensors": SHA, "config.json": SHA}
    assert w.metric("val_loss") == published.Metric(name="val_loss", value=1.52, dataset="nietzsche", split="random")
    assert w.metric("val_acc").value == 0.5
    assert w.metric("nope") is None
    assert weights["char3"].metrics == ()
    with_frac = published.load(_write(tmp_path, _replace(METRIC0, METRIC0 + "val_frac = 0.1\n")))
    assert with_frac["char-rnn"].metric("val_loss").val_frac == 0.1


def test_env_var_selects_the_file(tmp_path, monkeypatch):
    path = _write(tmp_path, VALID)
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    assert published.default_path() == path
    assert set(published.load()) == {"char-rnn"}


def test_missing_registry_file_means_no_weights_unless_zoo_registry_names_it(tmp_path, monkeypatch):
    missing = tmp_path / "nope.toml"
    monkeypatch.delenv("ZOO_REGISTRY", raising=False)
    assert published.load(missing) == {}
    monkeypatch.setenv("ZOO_REGISTRY", str(missing))
    with pytest.raises(ZooError, match="no such file"):
        published.load()


def test_zoo_list_shows_published_weights(tmp_path):
    path = _write(tmp_path, VALID + CHAR3_NO_METRICS)
    rows = {row["name"]: row for row in parse_table(ok(run_zoo("list", ZOO_REGISTRY=str(path))).stdout)}
    assert set(rows) == set(BUILTIN_MODELS)
    assert rows["char-rnn"]["weights"] == "yes (1.520)"
    assert rows["char3"]["weights"] == "yes"
    assert {rows[n]["weights"] for n in BUILTIN_MODELS if n not in ("char-rnn", "char3")} == {"no"}


def test_zoo_list_pretrained_shows_only_models_with_weights(tmp_path):
    path = _write(tmp_path, VALID)
    rows = parse_table(ok(run_zoo("list", "--pretrained", ZOO_REGISTRY=str(path))).stdout)
    assert [row["name"] for row in rows] == ["char-rnn"]

    listed = json.loads(ok(run_zoo("list", "--pretrained", "--json", ZOO_REGISTRY=str(path))).stdout)
    assert [m["name"] for m in listed] == ["char-rnn"]
    assert listed[0]["pretrained"] is True
    assert listed[0]["pretrained_val_loss"] == 1.52


def test_zoo_list_pretrained_with_no_weights_fails_in_one_line(tmp_path):
    path = _write(tmp_path, "schema = 1\n[weights]\n")
    line = one_error_line(run_zoo("list", "--pretrained", ZOO_REGISTRY=str(path)))
    assert "with weights" in line


def test_zoo_info_shows_repo_and_metrics(tmp_path):
    path = _write(tmp_path, VALID)
    out = ok(run_zoo("info", "char-rnn", ZOO_REGISTRY=str(path))).stdout
    # Top-level fields are indented by two spaces, the weights' sub-fields by four.
    assert re.search(rf"^  weights +zoo-lesson6/char-rnn @ {REV[:12]}$", out, re.M), out
    assert re.search(r"^    license +MIT$", out, re.M), out
    assert re.search(r"^    recipe +zoo train char-rnn --seed 0$", out, re.M), out
    assert re.search(r"^    val_loss +1\.5200 \(nietzsche, random\)$", out, re.M), out
    assert re.search(r"^    val_acc +0\.5000 \(nietzsche, random\)$", out, re.M), out
    other = ok(run_zoo("info", "char3", ZOO_REGISTRY=str(path))).stdout
    assert re.search(r"^  weights +none published$", other, re.M), other
    held = _write(tmp_path / "held", _replace(METRIC0, METRIC0 + "val_frac = 0.1\n"))
    out = ok(run_zoo("info", "char-rnn", ZOO_REGISTRY=str(held))).stdout
    assert re.search(r"^    val_loss +1\.5200 \(nietzsche, random 10%\)$", out, re.M), out
    assert "zoo-lesson6" not in other
    assert "trained with" not in out  # no bundled copy, so no run.json to read it from


@pytest.mark.parametrize("name", ["char3", "char-seq"])
def test_zoo_info_says_which_zoo_trained_the_bundled_weights(name, monkeypatch):
    monkeypatch.delenv("ZOO_REGISTRY", raising=False)
    run = json.loads((published.bundled_path(published.load()[name]) / "run.json").read_text())
    out = ok(run_zoo("info", name)).stdout
    want = f"zoo {run['versions']['zoo']}, git {run['git_revision'][:7]} ({run['device']})"
    assert re.search(rf"^    trained with +{re.escape(want)}$", out, re.M), out


def test_shipped_registry_is_valid_and_names_registered_models(monkeypatch):
    monkeypatch.delenv("ZOO_REGISTRY", raising=False)
    shipped = Path(zoo.__file__).resolve().parent / "registry.toml"
    assert published.default_path().resolve() == shipped.resolve()
    assert shipped.exists()
    weights = published.load(shipped)
    known = {s.name for s in registry.list_models()}
    assert set(weights) <= known, f"registry.toml publishes weights for unregistered models: {set(weights) - known}"
