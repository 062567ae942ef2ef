"""Hostile names and edge cases at the CLI: clashing plugins, echoed text, torchrun variables, sampling limits, threads.

Part of issue 19's suite of hostile inputs. A plugin that reuses zoo's own names, from a distribution placed before
zoo's on sys.path (where its hooks used to run first), must not take a model, a dataset or a command; a run folder's
hand-edited text must not reach the terminal raw; sampling refuses what would print the padding or run out of
memory; WORLD_SIZE/RANK and --threads/ZOO_THREADS are checked in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from _plugin_helpers import REPO, ok, one_error_line, parse_table, run_zoo, zoo_env

import zoo
from zoo import cli, distributed, pipeline, registry
from zoo import plugins as zoo_plugins
from zoo.data.vocab import Vocab
from zoo.errors import ZooError, printable
from zoo.model import build
from zoo.sampling import sample

BUNDLED_CHAR_RNN = REPO / "plugins" / "zoo_lesson6" / "weights" / "char-rnn"

# A third party's plugin that reuses zoo's names: a model, a dataset, and the command that reads --token.
IMPOSTOR = '''
import click
import zoo


class _Corpus:
    name = "pydoc-topics"
    summary = "an impostor corpus"

    def read_text(self):
        return "stolen"


@zoo.hookimpl
def zoo_register_models(register):
    register(zoo.ModelSpec(name="char-rnn", summary="An impostor.", builder="zoo_lesson6.models:CharRnn"))
    register(zoo.ModelSpec(name="impostor-own", summary="A name of its own.", builder="zoo_lesson6.models:CharRnn"))


@zoo.hookimpl
def zoo_register_datasets(register):
    register(_Corpus())


@zoo.hookimpl
def zoo_register_commands(cli):
    @cli.command("push")
    @click.argument("model")
    @click.option("--token")
    def push(model, token):
        """An impostor's push."""
        click.echo(f"STOLEN {token}")
'''


def _distribution(site: Path, name: str, source: str) -> Path:
    """`site` holding the distribution NAME (its module and .dist-info, as pip lays them out) with one zoo plugin."""
    module = name.replace("-", "_")
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    info = site / f"{module}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n", encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[zoo]\n{module} = {module}\n", encoding="utf-8")
    return site


@pytest.fixture
def impostor_site(tmp_path) -> Path:
    return _distribution(tmp_path / "site", "impostor", IMPOSTOR)


def _warnings(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("zoo: warning:")]


# --- item 5: zoo's own names are resolved the same way on every path --------------------------------------------

_RESOLVED = """
import json
from pathlib import Path
from zoo import pipeline, registry
config = json.loads(Path(r"{config}").read_text())
print("RESULT " + json.dumps({{
    "run folder": pipeline.spec_for(config, Path(".")).summary,
    "name": registry.get_model("char-rnn").summary,
    "dataset": type(registry.datasets()["pydoc-topics"]).__module__,
    "own name": registry.get_model("impostor-own").plugin,
}}))
"""


def test_a_plugin_first_on_sys_path_cannot_take_zoos_model_or_dataset(impostor_site):
    code = _RESOLVED.format(config=BUNDLED_CHAR_RNN / "config.json")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=zoo_env([impostor_site]), cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    own = registry.get_model("char-rnn").summary
    assert result == {"run folder": own, "name": own, "dataset": "zoo.data.sources", "own name": "impostor"}
    warned = _warnings(proc)
    assert len(warned) == 2, proc.stderr  # the model and the dataset, each once, though looked up four times
    for line, kind in zip(warned, ("model 'char-rnn'", "dataset 'pydoc-topics'")):
        assert kind in line and "'impostor'" in line and "ZOO_DISABLE_PLUGINS=impostor" in line, line


def test_zoo_list_and_info_go_on_with_zoos_own_model_and_a_warning(impostor_site):
    proc = ok(run_zoo("list", pythonpath=[impostor_site]))
    rows = {row["name"]: row for row in parse_table(proc.stdout)}
    assert rows["char-rnn"]["plugin"] == "char-rnn" and rows["impostor-own"]["plugin"] == "impostor"
    warned = _warnings(proc)
    assert len(warned) == 3 and all("'impostor'" in line for line in warned), proc.stderr  # the command, model, dataset
    info = ok(run_zoo("info", "char-rnn", pythonpath=[impostor_site])).stdout
    assert "An impostor" not in info and "Lesson 6" in info


def test_zoo_sample_of_a_builtin_name_uses_zoos_model(impostor_site):
    args = ("sample", "char-rnn", "--length", "40", "--temperature", "0")
    plain = ok(run_zoo(*args))
    with_impostor = ok(run_zoo(*args, pythonpath=[impostor_site]))
    assert with_impostor.stdout == plain.stdout
    assert any("'impostor'" in line for line in _warnings(with_impostor)), with_impostor.stderr


def test_a_plugin_never_replaces_a_builtin_command(impostor_site):
    proc = ok(run_zoo("push", "--help", pythonpath=[impostor_site]))
    assert "An impostor's push" not in proc.stdout and "OWNER/NAME" in proc.stdout
    warned = [line for line in _warnings(proc) if "zoo push" in line]
    assert len(warned) == 1 and "'impostor'" in warned[0] and "ZOO_DISABLE_PLUGINS=impostor" in warned[0], proc.stderr


class _SameName:
    def __init__(self, summary: str) -> None:
        self.summary = summary

    @zoo.hookimpl
    def zoo_register_models(self, register):
        register(zoo.ModelSpec(name="twice-taken", summary=self.summary, builder="zoo_lesson6.models:CharRnn"))


@pytest.fixture
def two_plugins_one_name():
    zoo_plugins.reset()
    registry.reset()
    host = zoo_plugins.host()
    host.register(_SameName("first"), name="first-party")
    host.register(_SameName("second"), name="second-party")
    try:
        yield
    finally:
        zoo_plugins.reset()
        registry.reset()


def test_a_name_two_plugins_claim_is_refused_on_every_path_and_the_rest_still_work(two_plugins_one_name, capsys):
    names = {s.name for s in registry.list_models()}
    assert "twice-taken" not in names and "char-rnn" in names
    warned = capsys.readouterr().err
    assert "'first-party' and 'second-party'" in warned and warned.count("\n") == 1
    for lookup in (lambda: registry.get_model("twice-taken"), lambda: pipeline.spec_for({"model": "twice-taken"}, Path("."))):
        with pytest.raises(ZooError, match="registered by two plugins.*neither is used"):
            lookup()
    assert registry.get_model("char-rnn").plugin == "char-rnn"
    assert capsys.readouterr().err == ""  # said once


# --- item 8: what zoo echoes from files, and sampling's edges -----------------------------------------------------


def test_printable_escapes_what_could_fake_a_line_or_move_the_cursor():
    assert printable("1.0\nzoo: error: fake\x1b[2J\r\u202e\ud800") == "1.0\\nzoo: error: fake\\x1b[2J\\r\\u202e\\ud800"
    assert printable("char-rnn 0.1.0, é 日本") == "char-rnn 0.1.0, é 日本"


def test_warnings_and_errors_are_one_line_whatever_they_quote(capsys):
    from zoo.errors import warn

    warn("plugin said: fine\nzoo: error: \x1b[31mfake")
    assert capsys.readouterr().err == "zoo: warning: plugin said: fine\\nzoo: error: \\x1b[31mfake\n"
    with pytest.raises(SystemExit):
        cli.main(["train", "--resume", "no\nsuch\x1b[2J"])
    assert capsys.readouterr().err.startswith("zoo: error: no\\nsuch\\x1b[2J: no such run directory")


def test_a_hand_edited_plugin_version_is_echoed_escaped(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    config = json.loads((BUNDLED_CHAR_RNN / "config.json").read_text())
    config.update(model="not-installed", plugin="evil\x1b]0;x\x07", plugin_version="1.0\nzoo: error: all is well\x1b[2J")
    (run / "config.json").write_text(json.dumps(config))
    line = one_error_line(run_zoo("sample", str(run)))
    assert "\x1b" not in line and "\x07" not in line
    assert "version 1.0\\nzoo: error: all is well\\x1b[2J)" in line and "'evil\\x1b]0;x\\x07'" in line


TEXT = "the quick brown fox jumps over the lazy dog. " * 3
VOCAB = Vocab.from_text(TEXT)


def _model(dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    spec = registry.get_model("char-rnn")
    torch.manual_seed(0)
    return build(spec, len(VOCAB), {**spec.hparams, "n_hidden": 16, "n_fac": 8}).eval().to(dtype)


@pytest.mark.parametrize("temperature", [1e39, 1e7, float("inf"), float("nan"), -1.0])
def test_a_temperature_out_of_range_is_refused(temperature):
    with pytest.raises(ZooError, match="--temperature must be a number, zero or more, up to 1e\\+06; got"):
        sample(_model(), VOCAB, "the", 10, context=8, temperature=temperature)


def test_a_temperature_out_of_range_is_one_line_before_the_model_loads():
    line = one_error_line(run_zoo("sample", "no-such-model", "--temperature", "1e39"))
    assert line == "zoo: error: --temperature must be a number, zero or more, up to 1e+06; got 1e+39"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])  # the NumPy loop, the torch loop
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_that_are_not_finite_are_refused(dtype, bad):
    model = _model(dtype)
    with torch.no_grad():
        model.l_out.weight[3, 2] = bad
    with pytest.raises(ZooError, match="weights are not all finite"):
        sample(model, VOCAB, "the", 10, context=8, temperature=1.0)


@pytest.mark.filterwarnings("error")  # NumPy's overflow warnings would be lines of their own before the error
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_logits_that_overflow_are_refused_never_printed_as_padding(dtype, temperature):
    model = _model(dtype)
    with torch.no_grad():  # finite weights whose logits overflow: inf - inf is nan
        big = torch.finfo(dtype).max / 4
        model.l_out.weight.fill_(big)
        model.l_out.weight[::2] = -big
        model.l_out.bias.fill_(0)
    with pytest.raises(ZooError, match="probabilities are not finite"):
        sample(model, VOCAB, "the", 10, context=8, temperature=temperature, seed=0)


def test_too_many_samples_is_one_line():
    with pytest.raises(ZooError, match="--num-samples must be at most 1,000, got 1,000,000,000"):
        sample(_model(), VOCAB, "the", 1, context=8, num_samples=10**9)
    line = one_error_line(run_zoo("sample", "char-rnn", "--num-samples", "100000000", "--length", "1"))
    assert line == "zoo: error: --num-samples must be at most 1,000, got 100,000,000"


def test_many_samples_of_a_large_vocabulary_are_bounded_by_what_one_step_holds():
    from zoo.sampling import Noise

    assert Noise(None, 5000, 1, 85).steps == Noise.BLOCK  # the lesson's case: blocks as before
    noise = Noise(None, 5000, 1000, 4000)
    assert noise.block_for(0)[1].numel() <= Noise.BLOCK_NUMBERS
    seeded = [Noise(torch.Generator().manual_seed(0), 30, 2, 9) for _ in range(2)]
    seeded[1].steps = 1  # the numbers of a step do not depend on the block size
    assert all(torch.equal(seeded[0].at(k), seeded[1].at(k)) for k in range(30))
    wide = Vocab.from_text("".join(chr(0x4E00 + i) for i in range(5000)))
    spec = registry.get_model("char-rnn")
    model = build(spec, len(wide), {**spec.hparams, "n_hidden": 4, "n_fac": 2})
    with pytest.raises(ZooError, match="--num-samples must be at most 838 for a vocabulary of 5,001 characters, got 1,000"):
        sample(model, wide, chr(0x4E00), 1, context=8, num_samples=1000)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "two", "RANK": "0"}, "WORLD_SIZE must be a whole number, got 'two'"),
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE is set but RANK is not"),
        ({"WORLD_SIZE": "2", "RANK": "x\n"}, "RANK must be a whole number, got 'x\\\\n'"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK is 2 but WORLD_SIZE is 2"),
        ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "-1"}, "LOCAL_RANK must be at least 0"),
    ],
)
def test_malformed_torchrun_variables_are_one_line(monkeypatch, env, message):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    with pytest.raises(ZooError, match=message):
        distributed.from_env()


def test_malformed_world_size_is_one_line_at_the_cli(tmp_path):
    proc = run_zoo("train", "char-rnn", "--out", str(tmp_path / "r"), "--max-steps", "1", WORLD_SIZE="2", RANK=None)
    assert one_error_line(proc).startswith("zoo: error: WORLD_SIZE is set but RANK is not")
    assert not (tmp_path / "r").exists()


# --- item 16: --threads on the commands that compute, ZOO_THREADS, a default that does not oversubscribe ----------

_THREADS = """
import sys, torch
from zoo.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    assert not exc.code, exc.code
print("THREADS", torch.get_num_threads())
"""


def _threads_after(*argv: str, **env: str | None) -> int:
    env = zoo_env(OMP_NUM_THREADS=None, **env)
    proc = subprocess.run([sys.executable, "-c", _THREADS, *argv], capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.rsplit("THREADS ", 1)[1])


def test_threads_after_the_command_and_from_zoo_threads():
    args = ("sample", str(BUNDLED_CHAR_RNN), "--length", "1")
    assert _threads_after(*args, "--threads", "1") == 1
    assert _threads_after("--threads", "2", *args, "--threads", "1") == 1  # the command's own wins
    assert _threads_after(*args, ZOO_THREADS="1") == 1


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["train", "char-rnn", "--threads", "0"], {}, "zoo: error: --threads must be positive, got 0 (see 'zoo train --help')"),
        (["eval", "char-rnn", "--threads", "two"], {}, "zoo: error: --threads must be a whole number, got 'two' (see 'zoo eval --help')"),
        (["list"], {"ZOO_THREADS": "many"}, "zoo: error: ZOO_THREADS must be a whole number, got 'many' (see 'zoo --help')"),
    ],
)
def test_bad_threads_are_one_line(argv, env, message):
    assert one_error_line(run_zoo(*argv, **env)) == message


@pytest.mark.parametrize(("cores", "load", "threads"), [(2, 0.1, 2), (2, 0.7, 1), (2, 1.2, 1), (2, 5.0, 1), (16, 3.4, 13), (8, 0.0, 8)])
def test_the_default_threads_are_the_cores_the_load_leaves_idle(monkeypatch, cores, load, threads):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert cli.default_threads() == threads


def test_help_states_the_thread_default_and_the_variable():
    text = " ".join(ok(run_zoo("train", "--help")).stdout.split())
    assert "--threads N" in text and "ZOO_THREADS" in text and "the cores the load average leaves idle" in text


# --- items 17 and 18: run folders where names go, a streamed sample, completion, --device's help -----------------


_COMPLETE = """
import sys
from zoo.cli import main
try:
    main()
except SystemExit:
    pass
print("TORCH", "torch" in sys.modules)
"""


def test_info_of_a_run_folder_describes_the_run_without_torch(tmp_path):
    code = _COMPLETE.replace("main()", f"main(['info', r'{BUNDLED_CHAR_RNN}'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=zoo_env(), cwd=REPO, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{BUNDLED_CHAR_RNN}: a run of 'char-rnn'" and lines[-1] == "TORCH False"
    assert any(line.split() == ["epochs", "trained", "4"] for line in lines), proc.stdout
    (tmp_path / "empty").mkdir()
    assert one_error_line(run_zoo("info", str(tmp_path / "empty"))).endswith("no config.json here; is this a zoo run directory?")


def test_resume_of_a_folder_that_is_not_a_run_asks_if_it_is_one(tmp_path):
    line = one_error_line(run_zoo("train", "--resume", str(tmp_path)))
    assert line == f"zoo: error: {tmp_path}: no config.json here; is this a zoo run directory?"


def test_a_sample_is_handed_on_as_it_is_drawn():
    for dtype in (torch.float32, torch.float64):  # the NumPy loop, the torch loop
        chunks: list[str] = []
        text = sample(_model(dtype), VOCAB, "the", 600, context=8, seed=3, num_samples=1, on_text=chunks.append)[0]
        assert [len(c) for c in chunks] == [256, 256, 88] and "".join(chunks) == text


def test_zoo_sample_prints_before_the_sample_is_done():
    cmd = [sys.executable, "-m", "zoo", "sample", str(BUNDLED_CHAR_RNN), "--length", "10000000", "--prompt", "for thos"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=zoo_env(), cwd=REPO)
    try:
        first = proc.stdout.read(300)  # 10 million characters take minutes: these come from the first chunks
        assert first.startswith(b"for thos") and len(first) == 300
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.communicate(timeout=60)


def test_shell_completion_offers_model_names_without_torch():
    env = zoo_env(_ZOO_COMPLETE="bash_complete", COMP_WORDS="zoo sample char-r", COMP_CWORD="2")
    proc = subprocess.run([sys.executable, "-c", _COMPLETE], capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    offered = proc.stdout.splitlines()
    assert "plain,char-rnn" in offered and "plain,char3" not in offered, offered
    assert offered[0] == "dir,char-r"  # a run folder is completed by the shell when no name matches
    assert offered[-1] == "TORCH False"


def test_device_help_says_what_each_value_means():
    text = " ".join(ok(run_zoo("sample", "--help")).stdout.split())
    assert "cuda (the first GPU) or cuda:N" in text and "auto, the first of cuda, mps and cpu" in text
