"""Helpers for tests that run the real `zoo` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_zoo(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real `zoo` command in a subprocess (the environment of the test, plus `env`)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "zoo", *args], capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    """Assert the command failed with a single error line and no traceback; return the line."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def zoo_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """`zoo ARGS` in-process (through zoo.cli.main and its error handling): exit code, stdout, stderr."""
    from zoo.cli import main as zoo_main

    capsys.readouterr()
    try:
        zoo_main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def one_error(code: int, err: str) -> str:
    """Assert a failed in-process command printed one `zoo: error:` line and no traceback; return the line."""
    assert code != 0, err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("zoo: error: "), err
    return lines[0]


def write_prose(path: Path, chars: int) -> Path:
    """The first `chars` characters of real English prose (CPython's pydoc topics, in a fixed order) written to `path`."""
    from pydoc_data.topics import topics

    path.write_text("\n\n".join(topics[k] for k in sorted(topics))[:chars], encoding="utf-8")
    return path
