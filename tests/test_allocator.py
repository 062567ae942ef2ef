"""zoo.allocator: freed memory is kept for reuse while training, unless the user chose otherwise.

Each case runs in a fresh interpreter: the settings last for the rest of a process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from zoo import allocator

pytestmark = pytest.mark.skipif(allocator._glibc() is None, reason="glibc's malloc only")

# Allocates and frees 40 MB five times (numpy: plain malloc), counting the page faults of the last four.
# 40 MB is above the largest threshold glibc picks by itself (32 MB), so by default each is mapped afresh.
REUSE = """
import resource, sys
import numpy as np
from zoo.allocator import keep_freed_memory
tuned = keep_freed_memory()
np.ones(10 << 20, np.float32)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    np.ones(10 << 20, np.float32)
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(code: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in (allocator.OPT_OUT, "GLIBC_TUNABLES") and not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    tuned, faults = _run(REUSE)
    untuned, untuned_faults = _run(REUSE, **{allocator.OPT_OUT: "0"})
    assert (tuned, untuned) == ("True", "False")
    assert int(faults) < 50 < int(untuned_faults)  # 40 MB is 10,240 pages (fewer where numpy gets huge pages)


@pytest.mark.parametrize(
    "env",
    [
        {allocator.OPT_OUT: "0"},
        {"MALLOC_TRIM_THRESHOLD_": "1000000"},
        {"MALLOC_MMAP_THRESHOLD_": "65536"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000000"},
    ],
)
def test_the_users_choice_is_left_alone(env):
    assert _run("from zoo.allocator import keep_freed_memory; print(keep_freed_memory())", **env) == ["False"]


def test_training_sets_it(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    code = (
        "import zoo, zoo.allocator as a; print(a.tuned()); "
        f"zoo.train('char-rnn', data={str(corpus)!r}, out={str(tmp_path / 'run')!r}, max_steps=1, quiet=True); print(a.tuned())"
    )
    assert _run(code) == ["None", "True"]


def test_the_benchmarks_plain_loop_keeps_the_allocator_any_pytorch_program_has():
    """bench/lesson6.py and perf.py time the plain loop in a process of its own: zoo's trainer, run in the
    benchmark's process, must not hand its allocator settings to the baseline it is compared with."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))  # as for the scripts there; the worker needs it too
    try:
        from lesson6 import PlainProcess

        allocator.keep_freed_memory()  # what zoo.train does in the benchmark's process
        with PlainProcess([]) as plain:
            assert plain.allocator_tuned() is None
    finally:
        sys.path.pop(0)
