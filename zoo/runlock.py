"""One process at a time in a run folder: an advisory lock on OUT/.zoo.lock while a run trains.

Why: until its first checkpoint a live run's folder looks like one whose run died (config.json
and run.json only), and zoo lets a new run take such a folder over; two processes writing the
same weights and checkpoint would garble both. The operating system drops the lock when its
process ends, however it ends (SIGKILL included), so a lock never outlives its run. On systems
without `fcntl` (Windows) there is no lock and no check.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from zoo.errors import ZooError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".zoo.lock"
_held: list[int] = []  # file descriptors of the locks this process holds, in the order taken


def _try_lock(path: Path) -> int | None:
    """An open descriptor of `path` holding its lock, or None if another holder has it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def busy(out_dir: Path) -> str:
    """What to say when a run is training in `out_dir`."""
    return f"{out_dir} is being trained by another process right now; wait for it to end, or choose another --out"


def is_locked(out_dir: Path) -> bool:
    """Whether a run is training in `out_dir` right now (in any process, this one included)."""
    path = Path(out_dir) / LOCK_FILE
    if fcntl is None or not path.is_file():
        return False
    try:
        fd = _try_lock(path)
    except OSError:
        return False  # unreadable: whatever writes there next will say what is wrong
    if fd is None:
        return True
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)
    return False


def lock(out_dir: Path) -> None:
    """Take `out_dir`'s lock until the enclosing `scope()` ends; a ZooError if a run is training there."""
    if fcntl is None:
        return
    try:
        fd = _try_lock(Path(out_dir) / LOCK_FILE)
    except OSError as exc:
        raise ZooError(f"cannot write the run to {out_dir} ({exc.strerror})") from None
    if fd is None:
        raise ZooError(busy(out_dir))
    _held.append(fd)


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """Release the locks taken inside the block when it ends, however it ends."""
    start = len(_held)
    try:
        yield
    finally:
        while len(_held) > start:
            fd = _held.pop()
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
