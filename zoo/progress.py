"""A small progress bar on stderr: redrawn in place on a terminal, silent otherwise."""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO


def _fmt_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """`update(n, **fields)` as work is done; `close()` clears the line.

    Redraws at most 10 times a second so the bar never costs the loop it measures.
    Set ZOO_PROGRESS=1 to force it on (e.g. when logging to a file), 0 to turn it off.
    """

    def __init__(self, total: int, desc: str = "", unit: str = "it", stream: TextIO | None = None) -> None:
        self.total = max(1, total)
        self.desc = desc
        self.unit = unit
        self.stream = stream or sys.stderr
        forced = os.environ.get("ZOO_PROGRESS")
        self.enabled = forced == "1" or (forced != "0" and self.stream.isatty())
        self.done = 0
        self.start = time.perf_counter()
        self._last = 0.0
        self.fields: dict[str, str] = {}

    def update(self, n: int = 1, **fields: str) -> None:
        self.done += n
        self.fields.update(fields)
        now = time.perf_counter()
        if self.enabled and (now - self._last >= 0.1 or self.done >= self.total):
            self._last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(1.0, self.done / self.total)
        width = 24
        filled = int(frac * width)
        elapsed = now - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        extra = " ".join(f"{k} {v}" for k, v in self.fields.items())
        line = f"{self.desc} |{'█' * filled}{' ' * (width - filled)}| {self.done}/{self.total} {extra} ETA {_fmt_time(eta)}"
        self.stream.write("\r" + line[:160] + "\x1b[K")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
