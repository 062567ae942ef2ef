"""Dataset sources: where a corpus comes from, how it is verified and cached.

Importable without torch. A source has a `name`, a one-line `summary` and
`read_text() -> str`. Downloads are verified against a sha256 before they are kept:
the bytes go to a temporary file in the cache folder and are renamed into place only
once the hash matches, so an interrupted or corrupt download never counts as valid.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.errors import ZooError, did_you_mean, warn
from zoo.fileio import sha256_file
from zoo.progress import Progress

OFFLINE_HINT = (
    "pass --data FILE with a copy of the text, or set ZOO_DATASET_MIRROR=file:///DIR for a folder that holds it; "
    "to train without it, --data pydoc-topics is the offline corpus"
)


def cache_dir() -> Path:
    """ZOO_CACHE_DIR, else $XDG_CACHE_HOME/zoo, else ~/.cache/zoo."""
    env = os.environ.get("ZOO_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "zoo"


def decode_text(raw: bytes, origin: str) -> str:
    """Bytes to text, refusing what is not UTF-8 text (zoo reserves \\0 for padding)."""
    if not raw:
        raise ZooError(f"{origin}: the file is empty")
    if b"\0" in raw:  # anywhere: the vocabulary would encode it as the padding
        raise ZooError(f"{origin}: looks like a binary file (it contains NUL bytes), not text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ZooError(f"{origin}: not valid UTF-8 text (byte {exc.start}: {exc.reason})") from None


@dataclass(frozen=True)
class FileText:
    """Any UTF-8 text file the user has."""

    path: Path

    @property
    def name(self) -> str:
        return f"file:{self.path}"

    @property
    def summary(self) -> str:
        return f"the text file {self.path}"

    def read_text(self) -> str:
        p = Path(self.path)
        if not p.exists():
            raise ZooError(f"{p}: no such file")
        if p.is_dir():
            raise ZooError(f"{p}: is a directory, not a text file")
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise ZooError(f"{p}: cannot be read ({exc.strerror})") from None
        return decode_text(raw, str(p))


@dataclass(frozen=True)
class DownloadedText:
    """A text corpus downloaded once from `url`, verified by sha256, then read from the cache.

    ZOO_DATASET_MIRROR=http://host/path/ fetches `<mirror>/<filename>` instead of `url`.
    """

    name: str
    summary: str
    url: str
    sha256: str
    filename: str
    n_chars: int | None = None
    license: str = ""

    def cached_path(self) -> Path:
        return cache_dir() / "datasets" / self.filename

    def source_url(self) -> str:
        mirror = os.environ.get("ZOO_DATASET_MIRROR")
        return mirror.rstrip("/") + "/" + self.filename if mirror else self.url

    def fetch(self, quiet: bool = False) -> Path:
        """The verified local copy, downloading it first if needed."""
        path = self.cached_path()
        if path.exists():
            if sha256_file(path) == self.sha256:
                return path
            path.unlink()  # a bad cached copy is never used; fetch it again
            warn(f"the cached {path} failed its sha256 check and was deleted")
        if os.environ.get("ZOO_OFFLINE") == "1":
            raise ZooError(f"dataset {self.name!r} is not cached and ZOO_OFFLINE=1; {OFFLINE_HINT}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{self.filename}.", suffix=".part")
        except OSError as exc:
            raise ZooError(
                f"cannot write the dataset cache {path.parent} ({exc.strerror or exc}); set ZOO_CACHE_DIR to a folder you can write"
            ) from None
        url = self.source_url()
        tmp = Path(tmp_name)
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                try:
                    with urllib.request.urlopen(url, timeout=30) as resp:
                        total = int(resp.headers.get("Content-Length") or 0)
                        bar = Progress(total or 1, desc=f"downloading {self.name}", unit="B")
                        bar.enabled = bar.enabled and not quiet
                        while block := resp.read(1 << 16):
                            out.write(block)
                            h.update(block)
                            bar.update(len(block))
                        bar.close()
                        if total and bar.done != total:
                            raise ZooError(f"download of {self.name} from {url} was cut off ({bar.done} of {total} bytes); try again")
                except (urllib.error.URLError, OSError, ValueError) as exc:
                    reason = getattr(exc, "reason", exc)
                    raise ZooError(f"could not download {self.name!r} from {url} ({reason}); {OFFLINE_HINT}") from None
                out.flush()
                os.fsync(out.fileno())
            if h.hexdigest() != self.sha256:
                raise ZooError(
                    f"download of {self.name} from {url} has sha256 {h.hexdigest()[:12]}…, expected {self.sha256[:12]}…; "
                    "the file was discarded"
                )
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def read_text(self) -> str:
        path = self.fetch()
        return decode_text(path.read_bytes(), str(path))


@dataclass(frozen=True)
class PydocTopics:
    """English prose that ships with CPython: the help topics of `pydoc_data.topics`.

    About 465,000 characters of technical English, always present, so zoo can train
    with no network and no download.
    """

    name: str = "pydoc-topics"
    summary: str = "Python's own help topics (pydoc_data.topics, ~465k chars) - offline, ships with CPython"

    def read_text(self) -> str:
        from pydoc_data.topics import topics

        return "\n\n".join(topics[k].strip() for k in sorted(topics)).replace("\0", "")


def lookup(name: str, datasets: dict[str, Any]) -> Any:
    """The dataset registered as `name` among `datasets`; an unknown name is one line with a "did you mean"."""
    if name not in datasets:
        if not datasets:  # e.g. ZOO_LOAD_PLUGINS left out the plugin that registers them
            raise ZooError(f"unknown dataset {name!r}: no plugin loaded registers any dataset (see `zoo plugins`)")
        raise ZooError(f"unknown dataset {name!r}{did_you_mean(name, sorted(datasets))}; known: {', '.join(sorted(datasets))}")
    return datasets[name]


def resolve(data: str | os.PathLike[str] | None, default: str, datasets: dict[str, Any]) -> Any:
    """A `--data` value to a source: a name among the registered `datasets`, else a file path."""
    value = str(data) if data is not None else default
    if value in datasets:
        if not callable(getattr(datasets[value], "read_text", None)):  # a table (zoo.data.table)
            raise ZooError(f"dataset {value!r} is a table, not a text; the character models train on text (see `zoo datasets`)")
        return datasets[value]
    p = Path(value).expanduser()  # the shell leaves ~ in --data=~/corpus.txt
    if p.exists() or os.sep in value or p.suffix:
        return FileText(p)
    return lookup(value, datasets)  # raises "unknown dataset … did you mean"
