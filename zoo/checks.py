"""Numeric options checked at the API's edge: the CLI's click types do this for the command line,
but a Python caller can pass anything, and a string compared with a number is a TypeError traceback."""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

from zoo.errors import ZooError


def is_whole(value: Any) -> bool:
    """Whether `value` is a whole number: bool is an int to Python, but epochs=True is a mistake, not a count."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: Any, finite: bool = False) -> bool:
    """Whether `value` is a real number (not a bool, not a string that reads as one); `finite`: not NaN or infinite."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and (not finite or math.isfinite(value))


def whole(flag: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int if it is a whole number within [minimum, maximum]; else a ZooError naming `flag`."""
    if not is_whole(value):
        raise ZooError(f"{flag} must be a whole number, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ZooError(f"{flag} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ZooError(f"{flag} must be at most {maximum}, got {value}")
    return value


def real(flag: str, value: Any, what: str = "a number") -> float:
    """`value` as a float if it is a real number (NaN and infinities included); else a ZooError naming `flag`."""
    if not is_number(value):
        raise ZooError(f"{flag} must be {what}, got {value!r}")
    return float(value)


def positive(flag: str, value: Any) -> float:
    """`value` as a float if it is a finite number above 0; else a ZooError naming `flag`."""
    x = real(flag, value, "a positive number")
    if not (x > 0 and math.isfinite(x)):
        raise ZooError(f"{flag} must be a positive number, got {value!r}")
    return x


MAX_TEMPERATURE = 1e6  # far past where every character is as likely as any other (logits differ by tens at most)


def temperature(value: Any) -> float:
    """A sampling temperature: 0 (greedy) up to `MAX_TEMPERATURE`; nan, inf and 1e39 (inf in float32) are refused."""
    x = real("--temperature", value, "a number, zero or more")
    if not 0 <= x <= MAX_TEMPERATURE:
        raise ZooError(f"--temperature must be a number, zero or more, up to {MAX_TEMPERATURE:g}; got {value!r}")
    return x


def switch(flag: str, value: Any) -> bool:
    """`value` if it is True or False; a string such as "no" would otherwise read as True."""
    if not isinstance(value, bool):
        raise ZooError(f"{flag} must be True or False, got {value!r}")
    return value


def path(flag: str, value: Any) -> Path:
    """`value` as a Path (with ~ expanded) if it is a str or path-like; else a ZooError naming `flag`."""
    if not isinstance(value, (str, os.PathLike)):
        raise ZooError(f"{flag} must be a path, got {value!r}")
    return Path(value).expanduser()


def pairs(flag: str, value: Any) -> tuple[str, ...]:
    """KEY=VALUE strings as a tuple: a single string is one pair (not its characters, one at a time)."""
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ZooError(f"{flag} must be a list of KEY=VALUE strings, got {value!r}")
    return tuple(value)
