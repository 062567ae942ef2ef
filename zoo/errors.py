"""The exception type the CLI turns into a one-line message and a non-zero exit, and zoo's warning."""

from __future__ import annotations

import difflib
import sys


class ZooError(Exception):
    """A problem the user can fix: the message is shown as is, without a traceback."""

    exit_code = 1
    is_error = True  # False for an outcome asked for (a run stopped by Ctrl-C): the CLI then says so without "error:"


class UsageError(ZooError):
    """Bad input on the command line (exit code 2, like click's own usage errors)."""

    exit_code = 2


class ZooWarning(UserWarning):
    """Something the user should know, though the command goes on (the CLI prints it as one line)."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """`TypeName: message` on one line, for a warning about someone else's exception (a plugin's): its lines are
    joined (pluggy gives the cause on the second), and the whole is cut at `limit` characters."""
    text = " / ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    text = printable(text if len(text) <= limit else text[: limit - 3] + "...")
    return f"{type(exc).__name__}: {text}"


def printable(text: object) -> str:
    """`text` safe to echo on one line of a terminal: control and other unprintable characters (newlines, escapes
    that move the cursor or recolour, bidirectional overrides, lone surrogates) shown as Python escapes, as repr
    shows them, the rest as is. For what zoo did not write itself: a downloaded config's field, a plugin's version
    or message."""
    return "".join(_escaped(c) for c in str(text))


def _escaped(char: str) -> str:
    return char if char.isprintable() else repr(char)[1:-1]  # repr's test: a space is printable, a newline is not


def warn(message: str) -> None:
    """`zoo: warning: …` on stderr, one line: for what goes on although something is wrong (the CLI shows ZooWarning
    the same way)."""
    print(f"zoo: warning: {printable(message)}", file=sys.stderr)


def did_you_mean(name: str, names: list[str], cutoff: float = 0.5) -> str:
    """ " (did you mean a or b?)" for the names close to `name` (difflib's ratio at least `cutoff`), or ""."""
    close = difflib.get_close_matches(name, names, n=3, cutoff=cutoff)
    return f" (did you mean {' or '.join(close)}?)" if close else ""
