"""The `zoo` command's foundations: version, help, listing with wildcards/tags/JSON, one-line errors,
and listing commands that never import torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata

import pytest
from _plugin_helpers import (
    ATTENTION_MODELS,
    BEYOND_MODELS,
    BUILTIN_MODELS,
    CHAR_MODELS,
    LESSON_MODELS,
    REPO,
    TABLE_MODELS,
    ok,
    one_error_line,
    parse_table,
    run_zoo,
    zoo_env,
)

import zoo

CORE_COMMANDS = ["list", "info", "plugins", "datasets", "train", "eval", "sample"]
LIST_JSON_FIELDS = {
    "name",
    "plugin",
    "task",
    "num_params",
    "dataset",
    "summary",
    "tags",
    "reference_val_loss",
    "reference_trn_loss",
    "pretrained",
    "pretrained_val_loss",
}


def _names(proc) -> list[str]:
    return [row["name"] for row in parse_table(ok(proc).stdout)]


def test_version():
    proc = ok(run_zoo("--version"))
    assert proc.stdout == f"zoo, version {zoo.__version__} (distribution lesson6-zoo)\n"


def test_package_version_matches_distribution_metadata():
    assert zoo.__version__ == metadata.version(zoo.DISTRIBUTION)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_python_m_zoo_help(flag):
    out = ok(run_zoo(flag)).stdout
    assert out.startswith("Usage: zoo [OPTIONS] COMMAND [ARGS]...")
    commands = re.findall(r"^  (\S+)  ", out.split("Commands:", 1)[1], re.M)
    # In the order they were added (the data flow), not alphabetical.
    assert commands[: len(CORE_COMMANDS)] == CORE_COMMANDS


def test_no_arguments_shows_the_help_not_an_error():
    proc = run_zoo()
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    assert out.startswith("Usage: zoo [OPTIONS] COMMAND [ARGS]..."), out
    assert "zoo: error:" not in out
    assert "Commands:" in out


def test_missing_argument_is_a_usage_error():
    proc = run_zoo("info")
    assert proc.returncode == 2
    assert "Missing argument 'NAME'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_command_is_a_usage_error():
    proc = run_zoo("lsit")
    assert proc.returncode == 2
    assert "No such command 'lsit'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_list_shows_every_builtin_model_with_its_plugin():
    proc = ok(run_zoo("list"))
    rows = parse_table(proc.stdout)
    assert proc.stdout.splitlines()[0].split() == ["name", "plugin", "task", "params", "dataset", "lesson", "weights"]
    assert [r["name"] for r in rows] == sorted(BUILTIN_MODELS)
    by_name = {r["name"]: r for r in rows}
    assert all(by_name[n]["plugin"] == n for n in BUILTIN_MODELS)  # one plugin (entry point) per model
    assert by_name["char-rnn"]["params"] == "102,215"
    assert by_name["char-concat"]["params"] == "167,751"
    assert by_name["char-rnn"]["lesson"] == "1.547 val"


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("char*", list(CHAR_MODELS)),
        ("char-*", [n for n in CHAR_MODELS if n != "char3"]),  # 'char-*' needs the hyphen: not char3
        ("char-seq*", ["char-seq", "char-seq-identity"]),
        ("char?", ["char3"]),
        ("*-rnn", ["char-rnn"]),
        ("char-rnn", ["char-rnn"]),
    ],
)
def test_list_wildcards(pattern, expected):
    assert _names(run_zoo("list", pattern)) == sorted(expected)


def test_list_by_tag():
    assert _names(run_zoo("list", "--tag", "lesson6")) == sorted((*LESSON_MODELS, *TABLE_MODELS))
    assert _names(run_zoo("list", "--tag", "stateful")) == sorted(BEYOND_MODELS)
    assert _names(run_zoo("list", "char-seq*", "--tag", "lesson6")) == ["char-seq", "char-seq-identity"]


def test_list_unknown_tag_fails_in_one_line():
    line = one_error_line(run_zoo("list", "--tag", "no-such-tag"))
    assert "'no-such-tag'" in line


def test_list_json():
    listed = json.loads(ok(run_zoo("list", "--json")).stdout)
    assert [m["name"] for m in listed] == sorted(BUILTIN_MODELS)
    for m in listed:
        assert set(m) == LIST_JSON_FIELDS, m
        assert m["plugin"] == m["name"]
        assert m["task"] == {"entity-embeddings": "tabular-regression", "linreg-sgd": "regression"}.get(m["name"], "char-lm")
        assert ("stateful" if m["name"] in BEYOND_MODELS else "attention" if m["name"] in ATTENTION_MODELS else "lesson6") in m["tags"]
    rnn = next(m for m in listed if m["name"] == "char-rnn")
    assert rnn["num_params"] == 102215
    assert rnn["dataset"] == "nietzsche"
    assert rnn["reference_val_loss"] == pytest.approx(1.547)
    assert isinstance(rnn["pretrained"], bool)


def test_list_json_with_a_pattern():
    listed = json.loads(ok(run_zoo("list", "char-seq*", "--json")).stdout)
    assert [m["name"] for m in listed] == ["char-seq", "char-seq-identity"]


def test_list_no_match_fails_in_one_line():
    proc = run_zoo("list", "nomatch*")
    line = one_error_line(proc)
    assert line.startswith("zoo: error:")
    assert "'nomatch*'" in line
    assert proc.stdout == ""


def test_info_unknown_model_suggests_the_close_name():
    proc = run_zoo("info", "char-con")
    line = one_error_line(proc)
    assert proc.returncode == 1
    assert "unknown model 'char-con'" in line
    assert "did you mean char-concat" in line
    assert proc.stdout == ""


def test_info_unknown_model_with_nothing_close():
    line = one_error_line(run_zoo("info", "wavenet-xl"))
    assert "unknown model 'wavenet-xl'" in line
    assert "did you mean" not in line


def test_info_shows_the_spec():
    out = ok(run_zoo("info", "char-rnn")).stdout
    assert out.startswith("char-rnn: ")
    for pattern in [
        r"^  plugin +char-rnn$",
        r"^  builder +zoo_lesson6\.models:CharRnn$",
        r"^  parameters +102,215$",
        r"^  tags +lesson6, rnn$",
        r"^  recipe +lr 0\.001 for 4 epochs$",
        r"^  train it +zoo train char-rnn$",
        r"^    val loss/epoch +1\.837, 1\.668, 1\.586, 1\.547$",
        r"^  batching +windows of 8 characters starting at every character; predicts the next character$",
    ]:
        assert re.search(pattern, out, re.M), (pattern, out)


@pytest.mark.parametrize(
    ("name", "batching"),
    [
        ("char-seq", "windows of 8 characters starting every 8 characters; predicts the next character at every position"),
        ("char-gru", "contiguous streams, 32 characters a step, the state carried on; predicts every next character"),
    ],
)
def test_info_says_what_a_training_row_is_and_predicts(name, batching):
    out = ok(run_zoo("info", name)).stdout
    assert re.search(rf"^  batching +{re.escape(batching)}$", out, re.M), out


def test_datasets_lists_the_builtin_corpora():
    rows = parse_table(ok(run_zoo("datasets")).stdout)
    assert {"nietzsche", "pydoc-topics"} <= {r["dataset"] for r in rows}


def test_bad_option_value_is_a_usage_error_in_one_place():
    proc = run_zoo("train", "char-rnn", "--epochs", "0")
    assert proc.returncode == 2
    assert "must be positive" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- listing never imports torch ---------------------------------------------------------------------

_NO_TORCH = """
import json, sys
from zoo.cli import main
result = {}
for argv in json.loads(sys.argv[1]):
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code
    else:
        code = 0
    result[" ".join(argv)] = {"code": code, "torch": "torch" in sys.modules}
print("RESULT " + json.dumps(result))
"""


def _torch_after(commands: list[list[str]]) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", _NO_TORCH, json.dumps(commands)],
        capture_output=True,
        text=True,
        env=zoo_env(),
        cwd=REPO,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.parametrize(
    "argv",
    [
        ["list"],
        ["--help"],
        ["--version"],
        ["info", "char-rnn"],
        ["plugins"],
        ["plugins", "--json"],
        ["list", "char-*", "--json"],
        ["train", "--help"],
        ["datasets"],
    ],
    ids=lambda argv: " ".join(argv),
)
def test_listing_does_not_import_torch(argv):
    result = _torch_after([argv])[" ".join(argv)]
    assert result["code"] == 0
    assert result["torch"] is False


def test_pull_does_not_import_torch():
    # char-rnn's weights are bundled, not yet on the Hub: pull says so (exit 1) after reading the registry and the plugins
    result = _torch_after([["pull", "char-rnn"], ["pull", "no-such-model"]])
    assert [r["code"] for r in result.values()] == [1, 1]
    assert not any(r["torch"] for r in result.values())


def test_import_zoo_does_not_import_torch():
    code = "import sys, zoo; zoo.list_models(); import zoo.cli, zoo.published, zoo.registry; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=zoo_env(), cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_a_missing_run_folder_suggests_the_hub_only_when_it_could_be_a_repository(tmp_path, monkeypatch):
    from zoo.errors import ZooError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    with pytest.raises(ZooError, match="^runs/typo: no such run directory$"):  # runs/ is a folder here: a path
        zoo.load("runs/typo")
    with pytest.raises(ZooError, match=r"alice/char-rnn-big: no such run directory; if it is a Hub repository, `zoo pull"):
        zoo.load("alice/char-rnn-big")
