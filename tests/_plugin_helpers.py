"""Helpers for the plugin, registry.toml and CLI-basics tests: run `zoo` in a subprocess, read its output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"

# The models zoo's own distribution registers (one entry point each in pyproject.toml): the character
# models (task char-lm: zoo.testing's model contract applies to them) and the table models (zoo.tasks).
LESSON_MODELS = ("char-concat", "char-loop", "char-rnn", "char-seq", "char-seq-identity", "char3")
BEYOND_MODELS = ("char-awd-lstm", "char-gru", "char-lstm", "char-stateful")  # the stateful ones
ATTENTION_MODELS = ("char-transformer",)
CHAR_MODELS = tuple(sorted((*LESSON_MODELS, *BEYOND_MODELS, *ATTENTION_MODELS)))
TABLE_MODELS = ("entity-embeddings", "linreg-sgd")
BUILTIN_MODELS = (*CHAR_MODELS, *TABLE_MODELS)
BUILTIN_PLUGINS = (*BUILTIN_MODELS, "corpora", "scaffold")

_ZOO_SELECTION_VARS = ("ZOO_LOAD_PLUGINS", "ZOO_DISABLE_PLUGINS", "ZOO_REGISTRY")


def zoo_env(pythonpath: list[Path] | tuple[Path, ...] = (), **changes: str | None) -> dict[str, str]:
    """os.environ without plugin selection or a registry override, plus `changes` (None removes a variable).

    `pythonpath` directories go on PYTHONPATH (where a distribution installed with --target lives).
    """
    env = {k: v for k, v in os.environ.items() if k not in _ZOO_SELECTION_VARS and k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_zoo(
    *args: str, pythonpath: list[Path] | tuple[Path, ...] = (), timeout: float = 60, **env_changes: str | None
) -> subprocess.CompletedProcess:
    """`python -m zoo ARGS` in a subprocess, with zoo_env(pythonpath, **env_changes)."""
    return subprocess.run(
        [sys.executable, "-m", "zoo", *args],
        capture_output=True,
        text=True,
        env=zoo_env(pythonpath, **env_changes),
        cwd=REPO,
        timeout=timeout,
    )


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """Assert the command succeeded without a traceback; return it."""
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.strip()]


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """Assert the command failed with exactly one line on stderr and no traceback; return that line."""
    assert proc.returncode != 0, f"expected a failure\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr
    return lines[0]


def parse_table(stdout: str) -> list[dict[str, str]]:
    """Rows of a `zoo` table (a header line, a line of dashes, then rows), as dicts keyed by header.

    Column spans come from the dashes, so a cell may contain single spaces.
    """
    lines = stdout.splitlines()
    assert len(lines) >= 2 and set(lines[1]) <= {"-", " "}, stdout
    spans = []
    start = None
    for i, ch in enumerate(lines[1] + " "):
        if ch == "-" and start is None:
            start = i
        elif ch != "-" and start is not None:
            spans.append((start, i))
            start = None
    # The last column runs to the end of the line (cells may be wider than the dashes only there).
    spans[-1] = (spans[-1][0], None)
    headers = [lines[0][a:b].strip() for a, b in spans]
    return [{h: row[a:b].strip() for h, (a, b) in zip(headers, spans, strict=True)} for row in lines[2:] if row.strip()]


def install_distributions(names: list[str], dest: Path, timeout: float = 120) -> dict[str, Path]:
    """pip-install each tests/fixtures/NAME into its own dest/NAME directory (--target), in parallel.

    The source is copied first so the build's build/ and *.egg-info never land in the repository.
    --no-index, --no-deps and --no-build-isolation: nothing is fetched (setuptools comes from this venv).
    """
    return install_sources({name: FIXTURES / name for name in names}, dest, timeout)


def install_sources(sources: dict[str, Path], dest: Path, timeout: float = 120) -> dict[str, Path]:
    """pip-install each source tree (a folder with a pyproject.toml) into its own dest/NAME directory, in parallel.

    As install_distributions, for sources anywhere (examples/, a generated plugin): copied first, offline.
    """
    procs = {}
    for name, source in sources.items():
        src = dest / f"{name}-src"
        shutil.copytree(source, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        target = dest / name
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index", "--no-deps"]
        cmd += ["--no-build-isolation", "--target", str(target), str(src)]
        procs[name] = (target, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    sites = {}
    for name, (target, proc) in procs.items():
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, f"pip install of {name} failed:\n{out}"
        sites[name] = target
    return sites


def run_pytest(tests: Path, pythonpath: list[Path] | tuple[Path, ...] = (), cwd: Path | None = None) -> subprocess.Popen:
    """Start `python -m pytest -q -rA TESTS` in a subprocess (zoo_env(pythonpath)); returns the running process.

    Run it from `cwd` outside the tested source tree, so its packages come from `pythonpath` (where they were
    installed), not from the source folder.
    """
    cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(tests)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=zoo_env(pythonpath), cwd=cwd)
