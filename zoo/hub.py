"""The Hugging Face Hub's download side: pull published weights, verified, within a deadline; find them offline.

All traffic goes through huggingface_hub, so its cache, locking and environment
(HF_ENDPOINT, HF_TOKEN, HF_HOME, HF_HUB_OFFLINE) work as Hub users expect. What zoo adds, because a server may hang
and a repository may be corrupt or hostile:

- a deadline for the whole pull (`zoo pull --timeout`, ZOO_HUB_TIMEOUT), and no request that waits past it;
- every pulled file checked against the sha256 registry.toml pins, else against the hash the Hub advertised for it;
- a snapshot counts as pulled only when its config.json reads and its safetensors header parses and covers the file
  (and, from `zoo pull`, when the load path accepts it); one that fails is deleted from the cache.

The upload side (`zoo push`, `zoo publish`, the model card) is zoo.publish, which shares this module's error helpers.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zoo import published, registry, rundir
from zoo.errors import ZooError, first_line, warn
from zoo.fileio import sha256_file

DEFAULT_TIMEOUT = 300.0  # seconds for a whole pull, unless --timeout or ZOO_HUB_TIMEOUT say otherwise
TIMEOUT_ENV = "ZOO_HUB_TIMEOUT"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GIT_OID = re.compile(r"[0-9a-f]{40}")
_MAX_HEADER = 100_000_000  # the largest safetensors header the safetensors library itself reads
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8, "C64": 8,
}  # fmt: skip
_TIMEOUTS = ("TimeoutException", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout", "Timeout")
_CUTS = ("RemoteProtocolError", "ReadError", "ChunkedEncodingError", "ProtocolError", "IncompleteRead")


# --- errors --------------------------------------------------------------------------------------------------


def endpoint() -> str:
    """The Hub this process talks to (HF_ENDPOINT, else huggingface.co)."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


def hub_error(exc: Exception, what: str) -> ZooError:
    """One clear line for the errors a Hub user meets (never the token)."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    # before EntryNotFoundError: LocalEntryNotFoundError is one of them
    if isinstance(exc, OfflineModeIsEnabled) and what.startswith("push"):
        return ZooError(f"{what}: HF_HUB_OFFLINE=1 is set, and pushing needs the Hub")
    network = _network_cause(exc)  # huggingface_hub wraps a failed HEAD in "not in the local cache"
    if network is not None:
        return _network_error(network, what)
    if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
        return ZooError(f"{what}: not in the local Hub cache and the Hub cannot be reached (HF_HUB_OFFLINE or no network)")
    if isinstance(exc, RepositoryNotFoundError):
        return ZooError(f"{what}: the repository does not exist, or this token may not see it")
    if isinstance(exc, RevisionNotFoundError):
        return ZooError(f"{what}: no such revision on the Hub")
    if isinstance(exc, EntryNotFoundError):
        return ZooError(f"{what}: a file is missing from the repository")
    if isinstance(exc, HfHubHTTPError):
        status = getattr(exc.response, "status_code", None)
        if status == 401:
            return ZooError(f"{what}: the Hub refused the token (401 Unauthorized); check --token or HF_TOKEN")
        if status == 403:
            return ZooError(f"{what}: this token may not write there (403 Forbidden)")
        return ZooError(f"{what}: the Hub answered {status}")
    return ZooError(f"{what}: {first_line(exc)}")  # e.g. huggingface_hub's two-line "Consistency check failed"


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def is_connection_error(exc: BaseException) -> bool:
    """huggingface_hub lets its HTTP client's connection errors through (httpx's are not OSError)."""
    network = {"ConnectError", "NetworkError", "ConnectionError", "TransportError", *_TIMEOUTS, *_CUTS}
    return bool(_names(exc) & network)


def _network_cause(exc: BaseException) -> BaseException | None:
    """The connection error behind `exc`, if any: `exc` itself or what it was raised from."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if "OfflineModeIsEnabled" in _names(current):  # a ConnectionError too, but the user's choice: said apart
            return None
        if is_connection_error(current):
            return current
        seen.add(id(current))
        current = current.__cause__  # `raise … from`, as huggingface_hub does; not whatever was being handled
    return None


def _network_error(exc: BaseException, what: str) -> ZooError:
    """Say which of the three things went wrong: no connection, no answer in time, or a connection cut short."""
    names = _names(exc)
    if names & set(_TIMEOUTS):
        return ZooError(
            f"{what}: the Hub at {endpoint()} did not answer in time ({type(exc).__name__}); "
            "HF_HUB_ETAG_TIMEOUT and HF_HUB_DOWNLOAD_TIMEOUT set how long one request may wait"
        )
    if names & set(_CUTS):
        return ZooError(f"{what}: the connection to the Hub at {endpoint()} was cut ({type(exc).__name__}); try again")
    return ZooError(f"{what}: cannot reach the Hub ({type(exc).__name__}); check the network or HF_ENDPOINT")


class TamperedFiles(ZooError):
    """Pulled files whose sha256 differs from the one pinned or advertised (deleted from the cache)."""


class NotAZooModel(ZooError):
    """A Hub repository, pulled into the cache, that has no config.json."""


# --- the deadline ----------------------------------------------------------------------------------------------


def pull_timeout(seconds: float | None = None) -> float:
    """How long a whole pull may take: `seconds` (zoo pull --timeout), else ZOO_HUB_TIMEOUT, else DEFAULT_TIMEOUT."""
    where = "--timeout"
    if seconds is None:
        raw = os.environ.get(TIMEOUT_ENV, "").strip()
        if not raw:
            return DEFAULT_TIMEOUT
        where = TIMEOUT_ENV
        try:
            seconds = float(raw)
        except ValueError:
            raise ZooError(f"{TIMEOUT_ENV} must be a number of seconds, got {raw[:40]!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ZooError(f"{where} must be a number of seconds above 0, got {seconds:g}")
    return float(seconds)


class _PastDeadline(Exception):
    """Raised in huggingface_hub's threads (not one of its own errors, so it retries nothing): stop this pull."""


class _Deadline:
    """A pull's deadline, and whether the Hub has answered every request sent so far."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self.sent = self.answered = 0

    def left(self) -> float:
        return self.end - time.monotonic()

    def count(self, sent: int = 0, answered: int = 0) -> None:
        with self._lock:
            self.sent += sent
            self.answered += answered


# The running pull's deadline (one pull at a time), read by the hooks below from huggingface_hub's threads. One that
# has passed stays until the pull's threads are done: they give up at their next request or chunk, and the process
# can exit without waiting for a download nobody wants.
_current: _Deadline | None = None


def _clear_when_done(thread: threading.Thread, deadline: _Deadline) -> None:
    global _current
    thread.join()
    if _current is deadline:
        _current = None


def _stop_if_past_deadline() -> _Deadline | None:
    deadline = _current
    if deadline is not None and deadline.left() <= 0:
        raise _PastDeadline(deadline)
    return deadline


def _on_request(request: Any) -> None:
    """Before each request (retries too): past the deadline, stop; else no wait of this request outlasts the time
    left. huggingface_hub gives its API calls no timeout at all, and its file requests 10 s each, retried."""
    deadline = _stop_if_past_deadline()
    if deadline is None:
        return
    from huggingface_hub import constants

    left = max(deadline.left(), 0.01)
    asked = request.extensions.get("timeout") or {}
    default = min(float(constants.HF_HUB_DOWNLOAD_TIMEOUT), left)
    request.extensions["timeout"] = {
        kind: default if asked.get(kind) is None else min(asked[kind], left) for kind in ("connect", "read", "write", "pool")
    }
    deadline.count(sent=1)


def _on_response(response: Any) -> None:
    """Once the headers are in: count the answer, and let the body stop at the deadline between two chunks (a read
    timeout never fires while a server trickles a byte at a time)."""
    deadline = _current
    if deadline is None:
        return
    deadline.count(answered=1)
    base = next((cls for cls in type(response.stream).__mro__ if cls.__name__ == "SyncByteStream"), None)
    if base is not None:
        response.stream = _deadline_stream(base)(response.stream)


@functools.cache
def _deadline_stream(base: type) -> type:
    """A response body (an httpx SyncByteStream) that raises _PastDeadline between chunks once the deadline passed."""

    class DeadlineStream(base):  # type: ignore[misc,valid-type]
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __iter__(self) -> Any:
            for chunk in self.inner:
                _stop_if_past_deadline()
                yield chunk

        def close(self) -> None:
            self.inner.close()

    return DeadlineStream


def _watch_requests() -> None:
    """Hook the deadline into huggingface_hub's shared HTTP client (an httpx client from huggingface_hub 1.0 on;
    an older one, without hooks, is still bounded by the thread that waits for it)."""
    from huggingface_hub.utils import get_session

    hooks = getattr(get_session(), "event_hooks", None)
    if isinstance(hooks, dict):
        if _on_request not in hooks.get("request", []):
            hooks.setdefault("request", []).append(_on_request)
        if _on_response not in hooks.get("response", []):
            hooks.setdefault("response", []).append(_on_response)


def _within(seconds: float, work: Callable[[], Any]) -> Any:
    """Run `work` with the deadline hooked in, in a thread that is given up on when the deadline passes."""
    global _current
    deadline = _Deadline(seconds)
    _watch_requests()
    _current = deadline
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the waiting thread, which says what it means
            box["error"] = exc

    thread = threading.Thread(target=run, name="zoo-pull", daemon=True)
    thread.start()
    try:
        thread.join(seconds)
    except BaseException:  # Ctrl-C while waiting: this pull's threads stop at their next request or chunk, and its
        deadline.end = time.monotonic()  # deadline is cleared once they have, so later Hub calls are not cut short
        threading.Thread(target=_clear_when_done, args=(thread, deadline), daemon=True).start()
        raise
    # a request cut off at the deadline fails with its own timeout error at about the same moment: the deadline it is
    if thread.is_alive() or isinstance(box.get("error"), _PastDeadline) or ("error" in box and deadline.left() <= 0):
        threading.Thread(target=_clear_when_done, args=(thread, deadline), daemon=True).start()
        raise _PastDeadline(deadline)
    _current = None
    if "error" in box:
        raise box["error"]
    return box["value"]


def _timed_out(deadline: _Deadline, what: str) -> ZooError:
    tip = f"set {TIMEOUT_ENV} or --timeout to wait longer"
    if deadline.sent > deadline.answered:
        return ZooError(f"{what}: the Hub at {endpoint()} did not answer within {deadline.seconds:g} s; {tip}")
    return ZooError(f"{what}: the download from the Hub at {endpoint()} did not finish within {deadline.seconds:g} s; {tip}")


# --- downloading -----------------------------------------------------------------------------------------------


def _target(name: str, revision: str | None) -> tuple[str, str | None, list[str], str, published.PublishedWeights | None]:
    """What to pull for `name`: the repository, revision, file patterns, how to name it in messages, its entry."""
    entry = registry.published_entry(name)  # zoo's registry.toml or a plugin's pins
    if entry is None and "/" not in name:
        spec = registry.get_model(name)  # unknown names: "did you mean"
        raise ZooError(f"no published weights for {spec.name!r} in registry.toml; pull OWNER/NAME for any zoo repository")
    if entry is None:
        return name, revision, list(rundir.PUBLISHED_FILES), name, None
    rev = revision or entry.revision
    if rev is None:
        raise ZooError(f"{name} is not yet published on the Hub ({entry.origin} pins no revision); its bundled weights need no pull")
    return entry.repo, rev, list(entry.files), f"{name} ({entry.repo}@{rev[:12]})", entry


def _download(repo: str, revision: str | None, patterns: list[str], what: str, timeout: float | None) -> Path:
    """The snapshot folder in the Hub cache: downloaded within the deadline, or found there (`timeout` None)."""
    from huggingface_hub import constants, snapshot_download

    try:
        if timeout is None:
            return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns, local_files_only=True))
        etag_timeout = min(float(constants.HF_HUB_ETAG_TIMEOUT), timeout)
        folder = _within(timeout, lambda: snapshot_download(repo, revision=revision, allow_patterns=patterns, etag_timeout=etag_timeout))
        return Path(folder)
    except _PastDeadline as exc:
        raise _timed_out(exc.args[0], f"pull {what}") from None
    except Exception as exc:
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

        known = (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, OSError, ValueError)
        if not isinstance(exc, known) and not is_connection_error(exc):
            raise
        raise hub_error(exc, f"pull {what}") from None


# --- checking what was pulled -----------------------------------------------------------------------------------


def safetensors_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """The tensors a safetensors file holds ({name: (dtype, shape)}), read from its header alone: raises ZooError
    unless the header parses, every tensor's byte range fits its dtype and shape, and the ranges cover the data
    that follows exactly (a truncated or padded file fails here, before anything is allocated for it)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            length = int.from_bytes(f.read(8), "little")
            if size < 8 or length > min(size - 8, _MAX_HEADER):
                raise ZooError(f"{path.name}: truncated or not a safetensors file ({size} bytes)")
            header = json.loads(f.read(length))
    except OSError as exc:
        raise ZooError(f"{path.name}: cannot be read ({exc.strerror or exc})") from None
    except (ValueError, RecursionError):
        raise ZooError(f"{path.name}: its safetensors header is not valid JSON") from None
    if not isinstance(header, dict):
        raise ZooError(f"{path.name}: its safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ZooError(f"{path.name}: its safetensors metadata must map names to strings")
    tensors, ranges = {}, []
    for name, info in header.items():
        dtype, shape, (begin, end) = _tensor_entry(path, name, info)
        tensors[name] = (dtype, shape)
        ranges.append((begin, end, name))
    _check_coverage(path, sorted(ranges), size - 8 - length)
    return tensors


def _tensor_entry(path: Path, name: str, info: Any) -> tuple[str, tuple[int, ...], tuple[int, int]]:
    """One tensor's dtype, shape and byte range, checked against each other."""
    bad = ZooError(f"{path.name}: the header's entry for tensor {name[:80]!r} is malformed")
    if not isinstance(info, dict):
        raise bad
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if dtype not in _DTYPE_BYTES or not isinstance(shape, list) or not isinstance(offsets, list) or len(offsets) != 2:
        raise bad
    if not all(type(n) is int and n >= 0 for n in [*shape, *offsets]) or offsets[0] > offsets[1]:
        raise bad
    if math.prod(shape) * _DTYPE_BYTES[dtype] != offsets[1] - offsets[0]:
        raise ZooError(f"{path.name}: tensor {name[:80]!r} of shape {tuple(shape)} does not fit its {offsets[1] - offsets[0]} bytes")
    return dtype, tuple(shape), (offsets[0], offsets[1])


def _check_coverage(path: Path, ranges: list[tuple[int, int, str]], data_bytes: int) -> None:
    """The tensors' byte ranges, in order, must tile the data section: no gap, no overlap, nothing missing."""
    at = 0
    for begin, end, name in ranges:
        if begin != at:
            raise ZooError(f"{path.name}: tensor {name[:80]!r} does not start where the one before it ends (corrupt header)")
        at = end
    if at != data_bytes:
        raise ZooError(f"{path.name}: truncated or corrupt: its tensors need {at} bytes of data, the file holds {data_bytes}")


def _git_blob_id(path: Path) -> str:
    """The git object id of a file's content: what the Hub advertises for a file that is not in LFS."""
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: h).hexdigest()


def mismatched_advertised(folder: Path) -> list[str]:
    """The files of a snapshot whose content differs from the hash the Hub advertised for them.

    huggingface_hub names each blob in its cache after the ETag the Hub sent (X-Linked-Etag: an LFS file's sha256;
    else the git blob id) but does not check the bytes against it. A file that is no link to a blob (a cache
    without symlinks) has no recorded hash and is not checked here.
    """
    bad = []
    for name in snapshot_files(folder):
        link = folder / name
        if not link.is_symlink():
            continue
        blob = link.resolve()
        if not blob.is_file():
            bad.append(name)
        elif _SHA256.fullmatch(blob.name) and sha256_file(blob) != blob.name:
            bad.append(name)
        elif _GIT_OID.fullmatch(blob.name) and _git_blob_id(blob) != blob.name:
            bad.append(name)
    return bad


def snapshot_files(folder: Path) -> list[str]:
    """Every file of a snapshot, nested ones included, as relative POSIX names; links to folders are not entered."""
    names = []
    for root, dirs, files in os.walk(folder):  # os.walk does not follow links to folders
        base = Path(root).relative_to(folder)
        names += [(base / f).as_posix() for f in files]
        names += [(base / d).as_posix() for d in dirs if (Path(root) / d).is_symlink()]
    return sorted(names)


def _remove_cached(folder: Path, names: list[str]) -> None:
    """Delete files from a snapshot in the Hub cache: the links in the snapshot and the blobs they point to, never
    anything outside the snapshot or the repository's blobs/ (the names come from registry.toml and the Hub)."""
    snapshot = folder.resolve()
    blobs = snapshot.parent.parent / "blobs"
    for name in names:
        link = folder / name
        if not published.is_plain_file_name(name) or not link.parent.resolve().is_relative_to(snapshot):
            continue
        if link.is_dir() and not link.is_symlink():
            continue
        target = link.resolve() if link.is_symlink() else None
        link.unlink(missing_ok=True)
        if target is not None and target.parent == blobs:
            target.unlink(missing_ok=True)


def _check_hashes(folder: Path, entry: published.PublishedWeights | None, revision: str | None, what: str) -> None:
    """Pinned sha256s for a registry model at its pinned revision, else the hashes the Hub advertised."""
    if entry is not None and revision not in (None, entry.revision):
        warn(f"revision {revision} is not the pinned one; its files are checked against the hashes the Hub advertised only")
    pinned = entry if entry is not None and revision in (None, entry.revision) else None
    bad = published.mismatched_files(folder, pinned) if pinned is not None else mismatched_advertised(folder)
    if bad:
        _remove_cached(folder, bad)
        against = f"the sha256 check against {pinned.origin}" if pinned is not None else "the check against the hash the Hub advertised"
        raise TamperedFiles(f"{what}: {', '.join(bad)} failed {against} and were deleted")


def _check_model(folder: Path, what: str, check: Callable[[Path], Any] | None) -> None:
    """A zoo model is there: config.json reads, the weights' header covers the file, and `check` accepts it."""
    if not rundir.has_config(folder):
        folder.mkdir(parents=True, exist_ok=True)  # so later commands find the snapshot, and say what it is not
        raise NotAZooModel(f"{what}: the repository has no config.json; it is not a zoo model")
    try:
        rundir.read_config(folder)
        if not rundir.weights(folder).is_file():
            raise ZooError(f"the repository has no {rundir.WEIGHTS}")
        safetensors_header(rundir.weights(folder))
        if check is not None:
            check(folder)
    except ZooError as exc:
        _remove_cached(folder, snapshot_files(folder))
        raise ZooError(f"{what}: {str(exc).replace(str(folder) + '/', '')}; its files were deleted from the Hub cache") from None


def pull(
    name: str,
    revision: str | None = None,
    *,
    local_only: bool = False,
    timeout: float | None = None,
    check: Callable[[Path], Any] | None = None,
) -> Path:
    """Download (or find in the Hub cache) the weights of a registry model or any zoo-format repo, and verify them.

    `timeout`: seconds for the whole download (default: ZOO_HUB_TIMEOUT, else DEFAULT_TIMEOUT). `check`: a further
    test of the snapshot's folder (the CLI passes the load path's), which raises ZooError to refuse it.
    """
    repo, rev, patterns, what, entry = _target(name, revision)
    seconds = None if local_only else pull_timeout(timeout)
    folder = _download(repo, rev, patterns, what, seconds)
    _check_hashes(folder, entry, revision, f"pull {what}")
    _check_model(folder, f"pull {what}", check)
    if entry is None and not local_only:
        warn(f"{name} is not in registry.toml: its files were checked against the hashes the Hub advertised, not pinned ones")
    return folder


def find_weights(name: str) -> tuple[Path, str] | None:
    """Weights for a model name, offline: pulled ones in the Hub cache, else the bundled copy."""
    entry = registry.published_entry(name)
    if entry is None:
        if "/" in name:
            try:
                return pull(name, local_only=True), "hub cache"
            except NotAZooModel:  # pulled, and found wanting: pulling again would say the same
                raise ZooError(f"{name}: the Hub repository in the local cache has no config.json; it is not a zoo model") from None
            except ZooError:
                return None
        return None
    if entry.revision:
        try:
            return pull(name, local_only=True), "hub cache"
        except TamperedFiles as exc:  # say so: the copy the user pulled is gone, and other weights are used
            warn(f"{exc}; using the bundled copy if there is one")
        except ZooError:
            pass  # not pulled
    bundled = published.bundled_path(entry)
    if bundled is not None:
        bad = published.mismatched_files(bundled, entry)
        if bad:
            reinstall = f"the plugin {entry.plugin!r}" if entry.plugin else "lesson6-zoo"
            raise ZooError(f"the bundled weights of {name} in {bundled} fail the sha256 check ({', '.join(bad)}); reinstall {reinstall}")
        return bundled, "bundled"
    return None
