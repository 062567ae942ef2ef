"""Keep freed memory in the process while training, instead of handing it back to the OS after every step.

Why: glibc's malloc serves large blocks with mmap and gives them back on free (and trims the heap's
top), so each training step's multi-megabyte buffers, freed at the end of the step, are faulted in
again page by page, zero-filled, at the next. Measured on the 2-core VM: 400-1,700 page faults per
char-seq or char-concat step, and ~10% of the step's time; with these settings, under 25. PyTorch's
CPU performance guide suggests the same remedy by another route (jemalloc or tcmalloc).

The settings are glibc's own (the MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ environment
variables set them too) and last for the rest of the process: blocks under MMAP_THRESHOLD come from
the heap, and the heap keeps up to TRIM_THRESHOLD of free memory at its top. They are left alone
where the user chose: those variables or GLIBC_TUNABLES=glibc.malloc.* set, or ZOO_TUNE_MALLOC=0.
Elsewhere than glibc, nothing is done.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 64 << 20  # bytes; larger blocks are still mapped and returned to the OS when freed
TRIM_THRESHOLD = 256 << 20  # bytes of free memory the heap keeps at its top
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's <malloc.h> parameter numbers
OPT_OUT = "ZOO_TUNE_MALLOC"
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

_tuned: bool | None = None  # None: not tried yet in this process


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    # musl and others have no gnu_get_libc_version; their malloc takes no such settings.
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def tuned() -> bool | None:
    """Whether zoo set the thresholds in this process: None if `keep_freed_memory` was never called here."""
    return _tuned


def keep_freed_memory() -> bool:
    """Set glibc's thresholds (once per process); True if they are set by zoo, now or before."""
    global _tuned
    if _tuned is not None:
        return _tuned
    _tuned = False
    chosen = any(name in os.environ for name in _USER_SETTINGS) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")
    if os.environ.get(OPT_OUT, "1") == "0" or chosen:
        return False
    libc = _glibc()
    if libc is None:
        return False
    _tuned = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _tuned
