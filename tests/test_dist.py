"""The release (issue 23): the sdist and wheel of `lesson6-zoo`, installed as a user would - not the editable checkout.

Built from a copy of the git-tracked files (what a clean clone holds), the wheel goes into a fresh virtual
environment with the local torch wheel; `zoo list`, `zoo sample char-rnn` offline and a scaffolded plugin's
install then run from outside the repository, so nothing can come from the checkout.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import zoo

REPO = Path(__file__).resolve().parents[1]
WHEEL_NAME = f"{zoo.DISTRIBUTION.replace('-', '_')}-{zoo.__version__}-py3-none-any.whl"


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _tracked_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        src = REPO / name
        if src.is_file():  # a file deleted in the work tree but not yet in git
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).write_bytes(src.read_bytes())
    return dest


def _wheel_files(wheel: Path) -> dict[str, str]:
    """name -> sha256 of every file in the wheel except RECORD (which lists them)."""
    with zipfile.ZipFile(wheel) as zf:
        return {n: hashlib.sha256(zf.read(n)).hexdigest() for n in zf.namelist() if not n.endswith(".dist-info/RECORD")}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel built from it (the standard front end's default), and a wheel built straight
    from the source tree - offline (--no-isolation: this venv's setuptools)."""
    tmp = tmp_path_factory.mktemp("dist")
    src = _tracked_copy(tmp / "src")
    build = [sys.executable, "-m", "build", "--no-isolation"]
    _run([*build, "--outdir", str(tmp / "from-sdist"), str(src)], cwd=tmp)
    _run([*build, "--wheel", "--outdir", str(tmp / "from-tree"), str(src)], cwd=tmp)
    sdists = list((tmp / "from-sdist").glob("*.tar.gz"))
    return {"sdist": sdists[0], "wheel": tmp / "from-sdist" / WHEEL_NAME, "tree_wheel": tmp / "from-tree" / WHEEL_NAME}


def test_the_distribution_is_named_once_and_not_zoo():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == zoo.DISTRIBUTION != "zoo"
    assert "version" not in project and project["dynamic"] == ["version"]  # zoo.__version__ is the one place
    # Nothing in the repository still depends on a distribution called `zoo`.
    for pyproject in [*REPO.glob("examples/*/pyproject.toml"), *REPO.glob("tests/fixtures/*/pyproject.toml")]:
        deps = tomllib.loads(pyproject.read_text())["project"].get("dependencies", [])
        assert not [d for d in deps if d.split("[")[0].split(">")[0].split("=")[0].strip() == "zoo"], pyproject
    template = (REPO / "plugins" / "zoo_scaffold" / "templates" / "pyproject.toml.tmpl").read_text()
    assert '"$zoo_distribution>=$zoo_version"' in template


def test_sdist_and_wheel_pass_twine_check_and_the_sdist_builds_the_same_wheel(built):
    assert built["sdist"].name == f"{zoo.DISTRIBUTION.replace('-', '_')}-{zoo.__version__}.tar.gz"
    out = _run([sys.executable, "-m", "twine", "check", "--strict", str(built["sdist"]), str(built["wheel"])], cwd=REPO)
    assert out.count("PASSED") == 2
    assert _wheel_files(built["wheel"]) == _wheel_files(built["tree_wheel"])


def test_the_wheel_holds_every_module_and_the_bundled_weights(built):
    files = _wheel_files(built["wheel"])
    tracked = subprocess.run(["git", "ls-files", "zoo", "plugins"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        # plugins/zoo_x/... is installed as zoo_x/...: every tracked module and data file must reach users.
        installed = name.removeprefix("plugins/")
        if Path(name).suffix in {".py", ".safetensors", ".json", ".toml", ".tmpl"}:
            assert installed in files, f"{name} is tracked but missing from the wheel (pyproject.toml's packages?)"
    metadata = next(n for n in files if n.endswith(".dist-info/METADATA"))
    with zipfile.ZipFile(built["wheel"]) as zf:
        meta = zf.read(metadata).decode()
    assert f"Name: {zoo.DISTRIBUTION}\n" in meta and f"Version: {zoo.__version__}\n" in meta


@pytest.fixture(scope="module")
def venv(built, tmp_path_factory) -> Path:
    """A fresh virtual environment with the local CPU torch wheel and the built wheel (not editable)."""
    tmp = tmp_path_factory.mktemp("venv")
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", str(tmp / "venv")], cwd=tmp)
    pip = [str(tmp / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, "torch==2.13.0", str(built["wheel"])], cwd=tmp)
    return tmp / "venv"


def _user_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "ZOO_", "HF_"))}
    return {**env, "HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_HOME": str(home / "hf")}


def test_the_installed_wheel_lists_samples_offline_and_takes_a_scaffolded_plugin(venv, tmp_path):
    zoo_cmd, python = str(venv / "bin" / "zoo"), str(venv / "bin" / "python")
    env = _user_env(tmp_path)
    where = _run([python, "-c", "import zoo, zoo.tasks; print(zoo.__file__)"], cwd=tmp_path, env=env)
    assert where.strip().startswith(str(venv)), where  # the installed copy, not the checkout
    assert zoo.DISTRIBUTION in _run([zoo_cmd, "--version"], cwd=tmp_path, env=env)

    listing = _run([zoo_cmd, "list"], cwd=tmp_path, env=env)
    assert "char-rnn" in listing and "char-awd-lstm" in listing
    sample = _run([zoo_cmd, "sample", "char-rnn", "--prompt", "for thos", "--length", "60", "--seed", "0"], cwd=tmp_path, env=env)
    assert sample.startswith("for thos") and len(sample.strip()) >= 60

    _run([zoo_cmd, "new-plugin", "wheel-gru", "--dir", str(tmp_path)], cwd=tmp_path, env=env)
    # Resolving the scaffold's dependency on the distribution must find the installed wheel, not PyPI's `zoo`.
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-build-isolation"]
    _run([*pip, str(tmp_path / "zoo-wheel-gru")], cwd=tmp_path, env=env)
    assert "wheel-gru" in _run([zoo_cmd, "list"], cwd=tmp_path, env=env)
    plugins = _run([zoo_cmd, "plugins"], cwd=tmp_path, env=env)
    assert zoo.DISTRIBUTION in plugins and "zoo-wheel-gru" in plugins
    freeze = _run([python, "-m", "pip", "list", "--format=freeze"], cwd=tmp_path, env=env).lower().split()
    assert not [line for line in freeze if line.startswith("zoo==")]  # PyPI's unrelated `zoo` never came in
