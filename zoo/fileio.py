"""Files that are never half-written: write to a temporary file, fsync, rename into place."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

from zoo.errors import ZooError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp create 0600/0700 entries; ours should look like any other file or folder
FILE_MODE = 0o666 & ~_umask()
DIR_MODE = 0o777 & ~_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=True) + "\n").encode())


# zoo's JSON files (config.json with its vocabulary, run.json, state.json, ...) are kilobytes; a config holding every
# Unicode code point as its vocabulary is about 9 MB. Anything larger is not one of them, and is not read into memory.
MAX_JSON_BYTES = 64 << 20

_NOT_REGULAR = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")


def _check_regular(path: Path, st: os.stat_result, limit: int, what: str, hint: str) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise ZooError(f"{path}: cannot be read (it is a directory, not {what})")
    if not stat.S_ISREG(st.st_mode):
        raise ZooError(f"{path}: cannot be read (it is {_kind(st.st_mode)}, not {what})")
    if st.st_size > limit:
        raise ZooError(f"{path}: {st.st_size:,} bytes, more than the {limit:,} zoo reads{hint}")


def read_bounded(path: Path, limit: int, what: str = "a regular file", hint: str = "") -> bytes:
    """The bytes of the regular file `path`, refused in one line if it is anything else or holds more than `limit` bytes.

    A FIFO, a device or a socket is refused before a byte is read (it is opened without blocking, so a FIFO with no
    writer does not hang), and the size is checked before reading and again while reading (a file that grows).
    `what` says what the file should be; `hint` is added to the error about the size (how to raise the limit).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ZooError(f"{path}: no such file") from None
    except OSError as exc:  # no permission, a dangling link, an I/O error
        raise ZooError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        _check_regular(path, st, limit, what, hint)
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(st.st_size + 1)  # one byte more than it had: a file that grew since shows it
            if len(data) > st.st_size:
                data += f.read(limit + 1 - len(data))
    except OSError as exc:
        raise ZooError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew since fstat
        raise ZooError(f"{path}: more than the {limit:,} bytes zoo reads{hint}")
    return data


def read_json(path: Path, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """A JSON object from a regular file of at most `limit` bytes; anything else is one line naming the file."""
    raw = read_bounded(path, limit, "a JSON file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, nesting too deep
        raise ZooError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ZooError(f"{path}: expected a JSON object")
    return data


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
