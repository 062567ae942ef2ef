"""zoo's kit for plugin authors: the conformance checks of zoo.testing on every built-in model, the checks catching
models that break the contract, the zoo_plugin fixture served through pytest's pytest11 entry point,
`zoo new-plugin`, and the example third-party plugin in examples/.

The generated plugin and the example are pip-installed (offline) into throwaway directories and run, with their own
tests, in subprocesses whose PYTHONPATH holds them: exactly as a plugin author's checkout would be.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from _kit_models import SpecPlugin as _Plugin
from _kit_models import kit_spec as _spec
from _plugin_helpers import BUILTIN_MODELS, CHAR_MODELS, REPO, install_sources, ok, one_error_line, parse_table, run_pytest, run_zoo

import zoo
from zoo import plugins as zoo_plugins
from zoo import registry
from zoo.testing import CHECKS, ContractError, check_model, registered_plugin, tiny_hparams

NIETZSCHE_VOCAB = 85  # the built-in models' dataset: 84 characters and the \0 padding
EXAMPLE = REPO / "examples" / "zoo-char-tcn"
GENERATED = "demo-gru"  # the plugin `zoo new-plugin` writes in these tests


# --- every built-in model passes the conformance suite ----------------------------------------------------


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("name", CHAR_MODELS)  # the contract of character models; the table models have their own tests
def test_builtin_model_meets_the_contract(name, check, tmp_path):
    assert check_model(name, checks=[check], workdir=tmp_path, vocab_size=NIETZSCHE_VOCAB) == {check: "ok"}


@pytest.mark.parametrize("name", CHAR_MODELS)
def test_builtin_specs_declare_a_small_tiny_configuration(name):
    from zoo.model import build, count_params

    spec = registry.get_model(name)
    assert spec.tiny and tiny_hparams(spec) == {**spec.hparams, **spec.tiny}
    assert count_params(build(spec, NIETZSCHE_VOCAB, tiny_hparams(spec))) * 20 < count_params(build(spec, NIETZSCHE_VOCAB))


# --- check_model catches each way a model can break the contract ------------------------------------------






SEQ_HPARAMS = {"n_fac": 42, "n_hidden": 256, "identity_init": False, "nonlinearity": "tanh"}

# (model, spec changes, the check that must fail, what its message must say, a check the model still passes)
BROKEN = [
    ("wrong-shape", {"builder": "zoo_lesson6.models:CharSeqRnn", "hparams": SEQ_HPARAMS}, "forward", r"vocab\] = \(3, \d+\)", "build"),
    ("step-ignores-input", {"builder": "_kit_models:StepIgnoresInput"}, "step", "differs from forward", "forward"),
    ("fused-ignores-bias", {"builder": "_kit_models:FusedIgnoresBias"}, "step", r"with the fused form .* differs from forward", "sampling"),
    ("state-not-batch-first", {"builder": "_kit_models:StateNotBatchFirst"}, "step", "first dimension of every state tensor", "forward"),
    ("noisy-step", {"builder": "_kit_models:NoisyStep"}, "sampling", "same seed differ", "forward"),
    ("unused-layer", {"builder": "_kit_models:UnusedLayer"}, "train_step", r"no gradient.*unused\.weight", "forward"),
    ("fused-loss-wrong", {"builder": "_kit_models:FusedLossWrong"}, "train_step", r"forward\(x, targets=y\) gives loss", "forward"),
    ("huge-lr", {"recipe": (zoo.Stage(lr=1e3, epochs=1),)}, "train_step", "did not lower the loss", "forward"),
    ("python-random-init", {"builder": "_kit_models:PythonRandomInit"}, "build", "same torch seed differ", "forward"),
    ("hidden-tensor", {"builder": "_kit_models:HiddenTensor"}, "save_load", "outputs differ", "strict_load"),
    ("tiny-typo", {"tiny": {"n_hiden": 16}}, "spec", "tiny overrides n_hiden, which hparams does not declare", None),
    ("no-dataset", {"dataset": "no-such-corpus"}, "spec", "'no-such-corpus' is not registered", "forward"),
    ("rmsprop", {"optimizer": "rmsprop"}, "spec", "optimizer 'rmsprop': zoo's trainer knows adam", "forward"),
    ("bad-num-params", {"num_params": 12345}, "num_params", r"num_params=12,345, but the model has 1\d\d,\d\d\d", "build"),
    ("missing-builder", {"builder": "_kit_models:NoSuchModel"}, "build", "cannot import its builder", None),
]


@pytest.mark.parametrize(("name", "changes", "check", "message", "passing"), BROKEN, ids=[b[0] for b in BROKEN])
def test_check_model_catches_a_broken_model(zoo_plugin, tmp_path, name, changes, check, message, passing):
    zoo_plugin(_Plugin(_spec(name, **changes)), name=f"kit-{name}")
    with pytest.raises(ContractError, match=message) as info:
        check_model(name, checks=[check], workdir=tmp_path, vocab_size=NIETZSCHE_VOCAB)
    assert str(info.value).startswith(f"model {name!r} fails the zoo contract:\n[{check}] ")
    if passing:
        assert check_model(name, checks=[passing], workdir=tmp_path, vocab_size=NIETZSCHE_VOCAB) == {passing: "ok"}


def test_check_model_reports_every_failed_check_at_once(zoo_plugin, tmp_path):
    zoo_plugin(_Plugin(_spec("two-faults", builder="_kit_models:UnusedLayer", optimizer="rmsprop")))
    with pytest.raises(ContractError) as info:
        check_model("two-faults", checks=["spec", "forward", "train_step"], workdir=tmp_path)
    lines = [ln for ln in str(info.value).splitlines() if ln.startswith("[")]
    assert [ln.split("]")[0] + "]" for ln in lines] == ["[spec]", "[train_step]"]


def test_strict_load_check_fails_when_loading_is_lenient(monkeypatch, tmp_path):
    from zoo import checkpoint

    def lenient(path, model):
        model.load_state_dict(checkpoint.read_tensors(path), strict=False)

    assert check_model("char-rnn", checks=["strict_load"], workdir=tmp_path) == {"strict_load": "ok"}
    monkeypatch.setattr(checkpoint, "load_weights", lenient)
    with pytest.raises(ContractError, match="strict_load"):
        check_model("char-rnn", checks=["strict_load"], workdir=tmp_path)


def test_listing_check_fails_for_a_plugin_that_imports_torch(monkeypatch, tmp_path):
    """An installed plugin whose module imports torch makes every `zoo list` slow: the listing check says so."""
    site = tmp_path / "site"
    (site / "zoo_torchy").mkdir(parents=True)
    (site / "zoo_torchy" / "__init__.py").write_text(
        "import torch  # noqa: F401  (the mistake under test)\n"
        "import zoo\n\n\n"
        "@zoo.hookimpl\n"
        "def zoo_register_models(register):\n"
        "    register(zoo.ModelSpec(name='torchy', summary='Imports torch.', builder='zoo_lesson6.models:CharRnn'))\n"
    )
    dist = site / "zoo_torchy-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-torchy\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[zoo]\ntorchy = zoo_torchy\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    zoo_plugins.reset()
    try:
        assert registry.get_model("torchy").plugin == "torchy"
        with pytest.raises(ContractError, match="loading plugin 'torchy' imports torch"):
            check_model("torchy", checks=["listing"], workdir=tmp_path)
    finally:
        zoo_plugins.reset()
        sys.modules.pop("zoo_torchy", None)


# --- check_model's interface --------------------------------------------------------------------------------


def test_check_model_runs_every_check_by_default(zoo_plugin, tmp_path):
    """In process, the listing check (a subprocess finds plugins through entry points) is skipped; all else runs."""
    from zoo.data.sources import PydocTopics
    from zoo.data.vocab import Vocab
    from zoo.model import build, count_params

    counted = count_params(build(_spec("kit-good"), len(Vocab.from_text(PydocTopics().read_text()))))
    zoo_plugin(_Plugin(_spec("kit-good", num_params=counted)), name="kit-good")
    results = check_model("kit-good", workdir=tmp_path)
    assert list(results) == list(CHECKS)
    assert results["listing"].startswith("skipped: plugin 'kit-good' is registered in process")
    assert {results[c] for c in CHECKS if c != "listing"} == {"ok"}
    assert (tmp_path / "run" / "model.safetensors").is_file()  # the cli check trained in the workdir


def test_check_model_skips_a_test_whose_checks_all_do_not_apply(zoo_plugin):
    zoo_plugin(_Plugin(_spec("kit-nothing-to-check", dataset="nietzsche")))  # not downloaded in the tests' cache
    with pytest.raises(pytest.skip.Exception, match="num_params: dataset 'nietzsche' is not available offline"):
        check_model("kit-nothing-to-check", checks=["num_params"])


def test_num_params_uses_the_dataset_vocabulary_when_available_offline(zoo_plugin):
    from zoo.data.sources import PydocTopics
    from zoo.data.vocab import Vocab
    from zoo.model import build, count_params

    vocab = len(Vocab.from_text(PydocTopics().read_text()))
    spec = _spec("kit-counted")
    right = count_params(build(spec, vocab))
    zoo_plugin(_Plugin(_spec("kit-counted", num_params=right), _spec("kit-miscounted", num_params=right + 1)))
    assert check_model("kit-counted", checks=["num_params"]) == {"num_params": "ok"}
    with pytest.raises(ContractError, match=f"vocabulary {vocab}"):
        check_model("kit-miscounted", checks=["num_params"])


def test_check_model_rejects_unknown_checks_and_models():
    with pytest.raises(ValueError, match="unknown check"):
        check_model("char-rnn", checks=["forwards"])
    with pytest.raises(ContractError, match="'no-such-model' is not registered"):
        check_model("no-such-model")
    with pytest.raises(ContractError, match="did you mean char-rnn"):
        check_model("char-rn")


def test_registered_plugin_adds_and_removes_a_model():
    with registered_plugin(_Plugin(_spec("kit-temporary")), name="kit-temp") as name:
        assert name == "kit-temp"
        assert registry.get_model("kit-temporary").plugin == "kit-temp"
    assert "kit-temporary" not in {s.name for s in registry.list_models()}
    assert "kit-temp" not in zoo_plugins.host().infos


# --- zoo.testing is a pytest plugin: any project gets the fixture by installing zoo ------------------------

_FIXTURE_TESTS = """
import sys

import zoo
from zoo import registry


class Temp:
    @zoo.hookimpl
    def zoo_register_models(self, register):
        register(zoo.ModelSpec(name="fixture-temp", summary="s", builder="zoo_lesson6.models:CharRnn"))


def names():
    return {s.name for s in zoo.list_models()}


def test_registered_for_this_test(zoo_plugin):
    plugin_name = zoo_plugin(Temp(), name="temp")
    assert plugin_name == "temp" and registry.get_model("fixture-temp").plugin == "temp"


def test_gone_in_the_next(zoo_plugin):
    assert "fixture-temp" not in names()


def test_failing_while_registered(zoo_plugin):
    zoo_plugin(Temp())
    assert "fixture-temp" in names()
    raise RuntimeError("fails on purpose")


def test_gone_after_a_failure():
    assert "fixture-temp" not in names()


def test_the_kit_did_not_import_torch():
    assert "torch" not in sys.modules
"""


def test_zoo_testing_is_a_pytest11_plugin_of_the_zoo_distribution():
    eps = [ep for ep in metadata.entry_points(group="pytest11") if ep.name == "zoo"]
    assert [(ep.value, ep.dist.metadata["Name"]) for ep in eps[:1]] == [("zoo.testing", zoo.DISTRIBUTION)]


def test_zoo_plugin_fixture_in_a_project_without_conftest(tmp_path):
    (tmp_path / "test_fixture.py").write_text(_FIXTURE_TESTS)
    proc = run_pytest(tmp_path / "test_fixture.py", cwd=tmp_path)
    out, _ = proc.communicate(timeout=120)
    assert "1 failed, 4 passed" in out, out
    assert "FAILED test_fixture.py::test_failing_while_registered - RuntimeError" in out, out
    assert "PASSED test_fixture.py::test_gone_after_a_failure" in out, out


# --- `zoo new-plugin` and the example plugin, installed -----------------------------------------------------


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A plugin generated by `zoo new-plugin`, and examples/zoo-char-tcn: each pip-installed into its own directory."""
    root = tmp_path_factory.mktemp("kit")
    proc = ok(run_zoo("new-plugin", GENERATED, "--dir", str(root / "src")))
    generated = root / "src" / f"zoo-{GENERATED}"
    sites = install_sources({"generated": generated, "example": EXAMPLE}, root / "sites")
    return {"generated": generated, "sites": sites, "root": root, "new_plugin_stdout": proc.stdout}


@pytest.fixture(scope="module")
def own_tests(kit):
    """The generated plugin's and the example's own tests, each run against its installed copy (in parallel)."""
    elsewhere = kit["root"] / "elsewhere"  # not the source folder, so the packages come from the installed copies
    elsewhere.mkdir()
    procs = {
        "generated": run_pytest(kit["generated"] / "tests", [kit["sites"]["generated"]], cwd=elsewhere),
        "example": run_pytest(EXAMPLE / "tests", [kit["sites"]["example"]], cwd=elsewhere),
    }
    outs = {}
    try:
        for name, proc in procs.items():
            outs[name] = proc.communicate(timeout=240)[0]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return outs


def _passed(out: str) -> set[str]:
    return {ln.split("::", 1)[1] for ln in out.splitlines() if ln.startswith("PASSED ")}


def _summary(out: str) -> str:
    """pytest's last line without its timing: "12 passed, 1 skipped"."""
    return out.strip().splitlines()[-1].split(" in ")[0]


def test_new_plugin_writes_an_installable_package(kit):
    gen = kit["generated"]
    package = "zoo_demo_gru"
    assert sorted(p.relative_to(gen).as_posix() for p in gen.rglob("*") if p.is_file()) == sorted(
        [".gitignore", "README.md", "pyproject.toml", f"{package}/__init__.py", f"{package}/model.py", "tests/test_model.py"]
    )
    dist_infos = list(kit["sites"]["generated"].glob("zoo_demo_gru-0.1.0.dist-info"))
    assert len(dist_infos) == 1
    dist = metadata.Distribution.at(dist_infos[0])
    assert dist.metadata["Name"] == "zoo-demo-gru"
    assert [(ep.group, ep.name, ep.value) for ep in dist.entry_points] == [("zoo", GENERATED, package)]
    assert f"zoo train {GENERATED}" in kit["new_plugin_stdout"]
    # The plugin module (imported by `zoo list`) must not import torch; the model module does.
    assert "torch" not in _imported_modules(gen / package / "__init__.py")
    assert "torch" in _imported_modules(gen / package / "model.py")
    assert "zoo.testing" in _imported_modules(gen / "tests" / "test_model.py")


def test_generated_plugin_is_listed_by_zoo(kit):
    site = [kit["sites"]["generated"]]
    rows = {row["name"]: row for row in parse_table(ok(run_zoo("list", pythonpath=site)).stdout)}
    without = {row["name"] for row in parse_table(ok(run_zoo("list")).stdout)}
    assert set(rows) - without == {GENERATED} and set(BUILTIN_MODELS) <= without
    assert rows[GENERATED]["plugin"] == GENERATED
    plugins = {p["name"]: p for p in json.loads(ok(run_zoo("plugins", "--json", pythonpath=site)).stdout)["plugins"]}
    assert plugins[GENERATED]["distribution"] == f"zoo-{GENERATED}"
    assert plugins[GENERATED]["models"] == [GENERATED] and plugins[GENERATED]["error"] is None


def test_generated_plugin_passes_its_own_tests(own_tests):
    out = own_tests["generated"]
    assert _summary(out) == "14 passed", out  # num_params too: the scaffold counted the template's parameters
    expected = {f"test_contract[{c}]" for c in CHECKS}
    expected |= {"test_zoo_lists_the_model_of_this_plugin", "test_a_variant_registered_for_one_test"}
    assert _passed(out) == expected, out


def test_generated_code_is_lint_clean(kit):
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    proc = subprocess.run([ruff, "check", "--no-cache", "."], cwd=kit["generated"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("char-rnn", "a plugin named 'char-rnn' is already installed"),
        ("zoo-thing", "without the zoo- prefix"),
        ("Bad_Name", "invalid plugin name 'Bad_Name'"),
        ("9lives", "invalid plugin name '9lives'"),
    ],
)
def test_new_plugin_refuses_bad_names(tmp_path, name, message):
    line = one_error_line(run_zoo("new-plugin", name, "--dir", str(tmp_path)))
    assert line.startswith("zoo: error:") and message in line
    assert list(tmp_path.iterdir()) == []


def test_new_plugin_never_overwrites(tmp_path):
    ok(run_zoo("new-plugin", "twice", "--dir", str(tmp_path)))
    model = tmp_path / "zoo-twice" / "zoo_twice" / "model.py"
    model.write_text("# edited\n")
    line = one_error_line(run_zoo("new-plugin", "twice", "--dir", str(tmp_path)))
    assert "already exists and is not empty" in line
    assert model.read_text() == "# edited\n"


def test_example_plugin_is_listed_by_zoo(kit):
    site = [kit["sites"]["example"]]
    rows = {row["name"]: row for row in parse_table(ok(run_zoo("list", "--tag", "cnn", pythonpath=site)).stdout)}
    assert list(rows) == ["char-tcn"]
    assert rows["char-tcn"]["plugin"] == "char-tcn" and rows["char-tcn"]["params"] == "129,351"
    plugins = {p["name"]: p for p in json.loads(ok(run_zoo("plugins", "--json", pythonpath=site)).stdout)["plugins"]}
    assert plugins["char-tcn"]["distribution"] == "zoo-char-tcn"
    assert plugins["char-tcn"]["hooks"] == ["zoo_on_epoch_end", "zoo_register_models"]


def test_example_plugin_passes_its_own_tests(own_tests):
    out = own_tests["example"]
    assert _summary(out) == "15 passed", out
    expected = {f"test_contract[{c}]" for c in CHECKS}  # num_params too: the test passes the vocabulary size
    expected |= {
        "test_zoo_lists_the_model_with_this_plugin",
        "test_a_variant_registered_for_one_test",
        "test_epoch_end_hook_appends_a_sample",
    }
    assert _passed(out) == expected, out


def _imported_modules(path: Path) -> set[str]:
    """Every module a Python file imports (`import a.b` gives a.b; `from a import b` gives a and a.b)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_example_uses_only_zoos_public_api():
    """examples/ is written against `zoo` (its __all__) and `zoo.testing`, never against zoo's internal modules."""
    public = set(zoo.__all__)
    sources = sorted(EXAMPLE.rglob("*.py"))
    assert len(sources) == 3
    for path in sources:
        tree = ast.parse(path.read_text(), str(path))
        for module in _imported_modules(path):
            top, _, rest = module.partition(".")
            if top == "zoo" and rest:
                assert rest == "testing" or rest.startswith("testing.") or rest in public, f"{path.name} imports {module}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "zoo":
                assert node.attr in public | {"testing"}, f"{path.name}:{node.lineno} uses zoo.{node.attr}"
