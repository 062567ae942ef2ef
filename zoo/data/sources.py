"""Dataset sources: where a corpus comes from, how it is verified and cached.

Importable without torch. A source has a `name`, a one-line `summary` and
`read_text() -> str`. Downloads are verified against a sha256 before they are kept:
the bytes go to a temporary file in the cache folder and are renamed into place only
once the hash matches, so an interrupted or corrupt download never counts as valid.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from zoo.errors import ZooError, did_you_mean, warn
from zoo.fileio import read_bounded, sha256_file
from zoo.progress import Progress

OFFLINE_HINT = (
    "pass --data FILE with a copy of the text, or set ZOO_DATASET_MIRROR=DIR (or file:///DIR) for a folder that holds it; "
    "to train without it, --data pydoc-topics is the offline corpus"
)

# The largest text zoo reads, whatever its source. Reading and batching a text costs at most about 60 bytes of memory
# per byte of it (the bytes, the str, its ids, and the int64 start offsets of its training windows, shuffled and
# sorted), so the default of 64 MiB bounds that at about 4 GB. ZOO_MAX_CORPUS_MB raises (or lowers) it.
DEFAULT_MAX_CORPUS_MB = 64
MEMORY_PER_BYTE = 60


def max_corpus_bytes() -> int:
    """The most bytes a corpus may have: ZOO_MAX_CORPUS_MB megabytes (MiB), else `DEFAULT_MAX_CORPUS_MB`."""
    raw = os.environ.get("ZOO_MAX_CORPUS_MB", "").strip()
    if not raw:
        return DEFAULT_MAX_CORPUS_MB << 20
    if not raw.isdigit() or int(raw) < 1:
        raise ZooError(f"ZOO_MAX_CORPUS_MB must be a whole number of megabytes (at least 1), got {raw!r}")
    return int(raw) << 20


def _size_hint() -> str:
    return f"; a larger text needs ZOO_MAX_CORPUS_MB (reading one takes up to {MEMORY_PER_BYTE} bytes of memory per byte)"


def read_corpus(path: Path) -> bytes:
    """The bytes of a text file, bounded: a regular file of at most `max_corpus_bytes()`, else one line saying why."""
    return read_bounded(path, max_corpus_bytes(), "a text file", _size_hint())


def redact(url: str) -> str:
    """`url` with its user name and password (https://user:secret@host/) shown as ***, for anything printed."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # not a URL at all: show none of it, it may hold a secret
        return "<the URL>"
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]))


def _scrub(text: str, url: str) -> str:
    """`text` (an exception's message about `url`) with the URL's credentials removed wherever they appear."""
    try:
        userinfo = urllib.parse.urlsplit(url).netloc.rpartition("@")[0]
    except ValueError:
        return "the URL is not valid"
    secrets = sorted({s for s in (userinfo, *userinfo.split(":", 1)) if s}, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def local_path(url: str) -> Path | None:
    """The file `url` names on this machine (a file:// URL, or a plain path), or None for a remote URL."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme == "file":
        return Path(urllib.request.url2pathname(urllib.parse.urlsplit(url).path))
    if not scheme or (len(scheme) == 1 and os.name == "nt"):  # a path (C:\\ on Windows parses as scheme "c")
        return Path(url).expanduser()
    return None


def _request(url: str) -> urllib.request.Request:
    """A GET of `url`; its credentials, if it has any, go as Basic authentication, never to a redirect's target."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return urllib.request.Request(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    req = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(netloc=host)))
    token = base64.b64encode(f"{urllib.parse.unquote(user)}:{urllib.parse.unquote(password)}".encode()).decode()
    req.add_unredirected_header("Authorization", f"Basic {token}")
    return req


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
        return decode_text(read_corpus(Path(self.path)), str(self.path))


_DATASET_NAME = re.compile(r"[A-Za-z0-9][\w.-]{0,63}", re.ASCII)


@dataclass(frozen=True)
class FileDataset:
    """A plugin's corpus in a local file (e.g. one shipped inside its package), registered under `name`.

    config.json records the `name`, never the path (so a pushed copy evaluates wherever the plugin is installed), and
    run.json the text's sha256. The file is read like every corpus: a regular file of at most `max_corpus_bytes()`,
    UTF-8 without NUL. `sha256`, when given, pins the file's bytes: another file under that path is refused.
    """

    name: str
    path: Path
    summary: str
    sha256: str | None = None

    def __post_init__(self) -> None:
        # the name goes into config.json and the Hub card, and is what `--data NAME` resolves: no path, no spaces
        if not isinstance(self.name, str) or not _DATASET_NAME.fullmatch(self.name):
            raise ZooError(f"FileDataset name {self.name!r}: use letters, digits, '_', '.' and '-' (at most 64), no path")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", str(self.sha256)):
            raise ZooError(f"FileDataset {self.name!r}: sha256 must be 64 lowercase hex digits, got {self.sha256!r}")

    def read_text(self) -> str:
        path = Path(self.path).expanduser()
        raw = read_corpus(path)
        if self.sha256 is not None and hashlib.sha256(raw).hexdigest() != self.sha256:
            raise ZooError(f"dataset {self.name!r}: {path} is not the file its plugin pins (sha256 differs); reinstall the plugin")
        return decode_text(raw, f"dataset {self.name!r} ({path})")


def recorded_data(source: Any, datasets: dict[str, Any]) -> str:
    """What config.json records as a run's data: a registered dataset by its name, whatever else it carries (a
    `path`, its type); only a text file given as `--data PATH` by that file's absolute path."""
    name = getattr(source, "name", None)
    if isinstance(name, str) and datasets.get(name) is source:
        return name
    if isinstance(source, FileText):
        return str(Path(source.path).resolve())
    return str(name)


@dataclass(frozen=True)
class DownloadedText:
    """A text corpus downloaded once from `url`, verified by sha256, then read from the cache.

    ZOO_DATASET_MIRROR=http://host/path/ fetches `<mirror>/<filename>` instead of `url`; the mirror may also be a folder
    on this machine (a plain path or a file:// URL). Credentials in it (https://user:secret@host/) are sent as Basic
    authentication and never printed.
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
        url = self.source_url()
        if os.environ.get("ZOO_OFFLINE") == "1" and local_path(url) is None:  # a mirror folder here needs no network
            raise ZooError(f"dataset {self.name!r} is not cached and ZOO_OFFLINE=1; {OFFLINE_HINT}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{self.filename}.", suffix=".part")
        except OSError as exc:
            raise ZooError(
                f"cannot write the dataset cache {path.parent} ({exc.strerror or exc}); set ZOO_CACHE_DIR to a folder you can write"
            ) from None
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                digest = self._copy(url, out, quiet)
                out.flush()
                os.fsync(out.fileno())
            if digest != self.sha256:
                raise ZooError(
                    f"download of {self.name} from {redact(url)} has sha256 {digest[:12]}…, expected {self.sha256[:12]}…; "
                    "the file was discarded"
                )
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    def _copy(self, url: str, out: IO[bytes], quiet: bool) -> str:
        """Copy the text at `url` (a remote URL, a file:// URL or a plain path) into `out`; its sha256."""
        local = local_path(url)
        if local is not None:  # a mirror folder on this machine: read like any text file, bounded
            raw = read_corpus(local)
            out.write(raw)
            return hashlib.sha256(raw).hexdigest()
        try:
            return self._download(url, out, quiet)
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:  # InvalidURL, IncompleteRead
            reason = _scrub(str(getattr(exc, "reason", exc)), url)
            raise ZooError(f"could not download {self.name!r} from {redact(url)} ({reason}); {OFFLINE_HINT}") from None

    def _download(self, url: str, out: IO[bytes], quiet: bool) -> str:
        """Stream `url` into `out`, at most `max_corpus_bytes()` of it; its sha256."""
        limit, h = max_corpus_bytes(), hashlib.sha256()
        with urllib.request.urlopen(_request(url), timeout=30) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            if total > limit:
                raise ZooError(
                    f"download of {self.name} from {redact(url)}: {total:,} bytes, more than the {limit:,} zoo reads{_size_hint()}"
                )
            bar = Progress(total or 1, desc=f"downloading {self.name}", unit="B")
            bar.enabled = bar.enabled and not quiet
            while block := resp.read(1 << 16):
                out.write(block)
                h.update(block)
                bar.update(len(block))
                if bar.done > limit:
                    raise ZooError(f"download of {self.name} from {redact(url)}: more than the {limit:,} bytes zoo reads{_size_hint()}")
            bar.close()
            if total and bar.done != total:
                raise ZooError(f"download of {self.name} from {redact(url)} was cut off ({bar.done} of {total} bytes); try again")
        return h.hexdigest()

    def read_text(self) -> str:
        path = self.fetch()
        return decode_text(read_corpus(path), str(path))


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
