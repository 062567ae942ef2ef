"""The benchmarks refuse an output they could not write before they spend minutes measuring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize("script", ["perf.py", "lesson6.py", "transformer.py", "best.py"])
def test_a_json_path_in_a_missing_folder_is_refused_at_once(tmp_path, script):
    target = tmp_path / "missing" / "out.json"
    proc = subprocess.run([sys.executable, str(BENCH / script), "--json", str(target)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"--json {target}: no folder {target.parent}"
    assert proc.stdout == ""  # nothing measured
