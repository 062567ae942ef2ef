"""A small, in-process Hugging Face Hub look-alike for tests (stdlib only).

It implements the part of the Hub HTTP API that ``huggingface_hub`` 2.x calls for repo creation and deletion,
commits (regular files inline, LFS files through the classic LFS batch API), refs, tags and branches, repo info,
tree listings and ``/resolve`` downloads, so ``HfApi`` / ``snapshot_download`` / ``hf_hub_download`` can run against
``http://127.0.0.1:<port>`` with no network.

Client side, set these in the environment *before* ``huggingface_hub`` is imported (it reads them at import time)::

    HF_ENDPOINT=<server.url>  HF_HUB_DISABLE_XET=1  HF_TOKEN=<token>  HF_HOME=<tmp dir>

``HF_HUB_DISABLE_XET=1`` matters: with ``hf_xet`` installed the client would otherwise upload through Xet, which this
server does not speak (it answers the Xet token routes with a 501 that says so).

Usage::

    with start_hub(tmp_path) as hub:
        ...  # run a client against hub.url, then inspect hub.repos["test-user/my-model"]

Every commit keeps its own file tree, so a pinned commit sha keeps serving the files it had after newer pushes.
``.safetensors`` files (``lfs_patterns``) are handled as LFS, every other file as a regular git file.

Broken servers, for hostile-input tests: :meth:`HubServer.inject` makes matching requests hang (never answer),
trickle (one byte every few seconds) or cut (the connection closed mid-body); :meth:`HubServer.tamper` serves bytes
that differ from the sha256 (and, with another length, the size) the server advertises.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["Commit", "Fault", "FileEntry", "HubServer", "Repo", "start_hub"]

DEFAULT_BRANCH = "main"
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space", "kernels": "kernel"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/", "kernel": "kernels/"}
_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX_PREFIX = re.compile(r"[0-9a-f]{7,39}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# What the Hub puts in a new repo's first commit (abridged).
INITIAL_GITATTRIBUTES = (
    b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
    b"*.pt filter=lfs diff=lfs merge=lfs -text\n"
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
)


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob with this content (what the Hub calls a regular file's oid / ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


# --------------------------------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------------------------------


class _BlobStore:
    """Content-addressed bytes (key = sha256 hex), in memory or as files under ``root``."""

    def __init__(self, root: Path | None):
        self.root = root
        self._mem: dict[str, bytes] = {}
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        if self.root is None:
            self._mem[key] = data
        else:
            path = self.root / key
            if not path.exists():
                tmp = path.with_suffix(f".tmp{threading.get_ident()}")
                tmp.write_bytes(data)
                tmp.replace(path)
        return key

    def get(self, key: str) -> bytes:
        return self._mem[key] if self.root is None else (self.root / key).read_bytes()

    def __contains__(self, key: str) -> bool:
        return key in self._mem if self.root is None else (self.root / key).exists()


@dataclass(frozen=True)
class FileEntry:
    """One file of a commit's tree. ``blob_id``/``sha256``/``size`` are the recorded metadata; ``blob_key`` points at
    the served bytes (they differ only after :meth:`HubServer.tamper`)."""

    path: str
    size: int
    blob_id: str  # git oid: of the content (regular file) or of the LFS pointer (LFS file)
    sha256: str
    lfs: bool
    blob_key: str
    last_commit: str

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.blob_id

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))


@dataclass
class Commit:
    oid: str
    parents: list[str]
    title: str
    message: str
    author: str
    date: float
    files: dict[str, FileEntry]


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    private: bool
    created_at: float
    _blobs: _BlobStore = field(repr=False)
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    pulls: dict[int, str] = field(default_factory=dict)  # refs/pr/N -> commit oid
    gated: bool | str = False

    @property
    def key(self) -> str:
        return URL_PREFIXES[self.repo_type] + self.repo_id

    def resolve(self, revision: str | None) -> str | None:
        """Commit oid for a branch, tag, ``refs/...`` name, full or abbreviated sha; ``None`` if unknown."""
        rev = revision or DEFAULT_BRANCH
        if rev.startswith("refs/heads/"):
            return self.branches.get(rev[len("refs/heads/") :])
        if rev.startswith("refs/tags/"):
            return self.tags.get(rev[len("refs/tags/") :])
        if m := re.fullmatch(r"refs/pr/(\d+)", rev):
            return self.pulls.get(int(m.group(1)))
        if rev in self.branches:
            return self.branches[rev]
        if rev in self.tags:
            return self.tags[rev]
        if _HEX40.fullmatch(rev):
            return rev if rev in self.commits else None
        if _HEX_PREFIX.fullmatch(rev):
            hits = [oid for oid in self.commits if oid.startswith(rev)]
            return hits[0] if len(hits) == 1 else None
        return None

    def head(self, branch: str = DEFAULT_BRANCH) -> str:
        return self.branches[branch]

    def tree(self, revision: str | None = None) -> dict[str, FileEntry]:
        oid = self.resolve(revision)
        if oid is None:
            raise KeyError(f"unknown revision {revision!r} in {self.key}")
        return self.commits[oid].files

    def read(self, path: str, revision: str | None = None) -> bytes:
        """Bytes the server currently serves for ``path`` at ``revision`` (default branch by default)."""
        return self._blobs.get(self.tree(revision)[path].blob_key)

    def files(self, revision: str | None = None) -> dict[str, bytes]:
        return {path: self._blobs.get(e.blob_key) for path, e in sorted(self.tree(revision).items())}

    def history(self, revision: str | None = None) -> list[Commit]:
        """Commits reachable from ``revision`` through first parents, newest first."""
        oid, out = self.resolve(revision), []
        while oid is not None:
            commit = self.commits[oid]
            out.append(commit)
            oid = commit.parents[0] if commit.parents else None
        return out


@dataclass(frozen=True)
class Fault:
    """How the server misbehaves on the requests that match ``method`` (None: any) and ``path`` (a substring of the
    URL path; "": any).

    ``hang``: never answer (the request is read, nothing is sent until the server stops). ``trickle``: send the
    headers, then the body one byte every ``every`` seconds. ``cut``: send the headers and the first ``after`` bytes
    of the body, then close the connection.
    """

    kind: str
    method: str | None = None
    path: str = ""
    every: float = 2.0
    after: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and self.path in path


# --------------------------------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------------------------------


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, dict(headers or {})


def _repo_not_found(status: int = 404) -> HubError:
    return HubError(status, "Repository not found", "RepoNotFound")


def _revision_not_found(revision: str) -> HubError:
    return HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


@dataclass
class _Request:
    method: str
    path: str
    segments: list[str]  # percent-decoded, one per raw '/'-separated segment
    query: dict[str, list[str]]
    headers: Any
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError as e:
            raise HubError(400, f"Invalid JSON body: {e}") from e

    def form_or_json(self) -> dict[str, Any]:
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype == "application/x-www-form-urlencoded":
            return {k: v if len(v) > 1 or k == "paths" else v[0] for k, v in parse_qs(self.body.decode()).items()}
        return self.json()

    def flag(self, name: str) -> bool:
        value = (self.query.get(name) or [""])[-1].lower()
        return value in ("1", "true", "yes")


@dataclass
class _Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def _json(obj: Any, status: int = 200, content_type: str = "application/json; charset=utf-8") -> _Response:
    return _Response(status, json.dumps(obj).encode(), content_type)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60  # idle keep-alive connections give their thread back after this many seconds
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _dispatch(self) -> None:
        # Always consume the whole body first, even if the answer is an error: the connection is keep-alive.
        body = self._read_body()
        hub: HubServer = self.server.hub
        split = urlsplit(self.path)
        fault = hub._fault_for(self.command, split.path)
        if fault is not None and fault.kind == "hang":
            hub._log(self.command, self.path, 0)
            hub._stopping.wait()
            self.close_connection = True
            return
        raw_segments = [s for s in split.path.split("/") if s != ""]
        req = _Request(
            method=self.command,
            path=split.path,
            segments=[unquote(s) for s in raw_segments],
            query=parse_qs(split.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
        )
        try:
            resp = hub._route(req)
        except HubError as e:
            payload: dict[str, Any] = {"error": e.message}
            resp = _json(payload, e.status)
            if e.code:
                resp.headers["X-Error-Code"] = e.code
            resp.headers["X-Error-Message"] = e.message
            resp.headers.update(e.headers)
        except Exception as e:  # pragma: no cover - a bug in the test server itself
            resp = _json({"error": f"test hub internal error: {type(e).__name__}: {e}"}, 500)
        hub._log(req.method, self.path, resp.status)
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and resp.body:
            if fault is None:
                self.wfile.write(resp.body)
            else:
                self._write_badly(resp.body, fault)

    def _write_badly(self, body: bytes, fault: Fault) -> None:
        """The body as a broken server sends it: a byte at a time, or cut short (the connection closed after it)."""
        hub: HubServer = self.server.hub
        self.close_connection = True
        try:
            if fault.kind == "trickle":
                for i in range(len(body)):
                    if hub._stopping.wait(fault.every):
                        break
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
            elif fault.kind == "cut":
                self.wfile.write(body[: fault.after])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
            else:
                raise ValueError(f"unknown fault {fault.kind!r}")
        except OSError:  # the client gave up first
            pass

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _dispatch


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: HubServer


# --------------------------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------------------------


class HubServer:
    """A Hub-compatible HTTP server on 127.0.0.1. Create it with :func:`start_hub`.

    Attributes:
        url: ``http://127.0.0.1:<port>`` (use as ``HF_ENDPOINT``).
        token: the one valid token; ``user``: the user it belongs to (owner of repos created without a namespace).
        repos: ``{key: Repo}`` where key is ``"ns/name"`` for models and ``"datasets/ns/name"`` etc. for other types.
        requests: ``[(method, raw_path, status), ...]`` for every request served, in order.
    """

    def __init__(
        self,
        tmp_path: str | Path | None = None,
        token: str = "test-token",
        *,
        user: str = "test-user",
        host: str = "127.0.0.1",
        port: int = 0,
        lfs_patterns: tuple[str, ...] = ("*.safetensors",),
    ):
        self.token = token
        self.user = user
        self.lfs_patterns = tuple(lfs_patterns)
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, int]] = []
        self._blobs = _BlobStore(Path(tmp_path) / "hub-blobs" if tmp_path is not None else None)
        self._lfs: set[str] = set()  # sha256 of every LFS object uploaded (what the LFS batch API knows)
        self._tickets: dict[str, tuple[str, int]] = {}  # upload ticket -> (sha256, size)
        self._lock = threading.RLock()
        self._seq = 0
        self.faults: list[Fault] = []
        self._stopping = threading.Event()  # set by stop(): hanging and trickling answers end
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.hub = self
        self.port = self._httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> HubServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"hubserver:{self.port}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self, **extra: str) -> dict[str, str]:
        """Environment variables that point a ``huggingface_hub`` client at this server (merge into os.environ)."""
        return {
            "HF_ENDPOINT": self.url,
            "HF_HUB_DISABLE_XET": "1",
            "HF_TOKEN": self.token,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            **extra,
        }

    # ---------------------------------------------------------------- inspection / fault injection
    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[URL_PREFIXES[repo_type] + repo_id]

    def tamper(self, repo_id: str, path: str, new_bytes: bytes, *, repo_type: str = "model") -> int:
        """Serve ``new_bytes`` for ``path`` at every revision that has it, keeping the recorded metadata (git oid,
        sha256, size, ETag, X-Linked-Etag/-Size, tree and paths-info entries) unchanged. Returns the number of commits
        affected. Commits made later that keep the file unchanged inherit the tampered bytes.

        Content-Length always matches the bytes served. For an LFS file, X-Linked-Size keeps the recorded size, so
        bytes of another length make huggingface_hub fail with its own "Consistency check failed" OSError; use bytes
        of the same length to get past that and exercise a hash check. A regular file has no such size check.
        """
        with self._lock:
            repo = self.repo(repo_id, repo_type)
            key = self._blobs.put(bytes(new_bytes))
            n = 0
            for commit in repo.commits.values():
                entry = commit.files.get(path)
                if entry is not None:
                    commit.files[path] = replace(entry, blob_key=key)
                    n += 1
            if n == 0:
                raise KeyError(f"{path!r} is in no commit of {repo.key}")
            return n

    def inject(self, kind: str, *, method: str | None = None, path: str = "", every: float = 2.0, after: int = 0) -> Fault:
        """Misbehave from now on, on the requests that match (see :class:`Fault`); the first matching fault wins."""
        if kind not in ("hang", "trickle", "cut"):
            raise ValueError(f"unknown fault {kind!r}")
        fault = Fault(kind, method, path, every, after)
        with self._lock:
            self.faults.append(fault)
        return fault

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            return next((f for f in self.faults if f.matches(method, path)), None)

    def _log(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    # ---------------------------------------------------------------- helpers
    def _auth(self, req: _Request) -> str | None:
        """User name for a valid token, ``None`` when no token is sent; 401 for a wrong token."""
        header = req.headers.get("Authorization")
        if header is None:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or value.strip() != self.token:
            raise HubError(401, INVALID_CREDENTIALS)
        return self.user

    def _require_auth(self, req: _Request) -> str:
        user = self._auth(req)
        if user is None:
            raise HubError(401, "You must be authenticated to access this endpoint (send 'Authorization: Bearer <token>').")
        return user

    def _get_repo(self, req: _Request, repo_type: str, repo_id: str, *, write: bool = False) -> Repo:
        user = self._require_auth(req) if write else self._auth(req)
        repo = self.repos.get(URL_PREFIXES[repo_type] + repo_id)
        if repo is None or (repo.private and user is None):
            raise _repo_not_found(401 if user is None else 404)
        return repo

    def _commit_for(self, repo: Repo, revision: str) -> Commit:
        oid = repo.resolve(revision)
        if oid is None:
            raise _revision_not_found(revision)
        return repo.commits[oid]

    def _is_lfs(self, path: str) -> bool:
        name = path.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(path, p) for p in self.lfs_patterns)

    def _repo_url(self, repo: Repo) -> str:
        return f"{self.url}/{repo.key}"

    def _new_commit(self, repo: Repo, parent: str | None, files: dict[str, FileEntry], title: str, message: str) -> Commit:
        self._seq += 1
        now = time.time()
        manifest = json.dumps([repo.key, parent, self._seq, title, message, sorted((p, e.blob_id) for p, e in files.items())]).encode()
        oid = hashlib.sha1(manifest).hexdigest()
        files = {p: (replace(e, last_commit=oid) if e.last_commit == "" else e) for p, e in files.items()}
        commit = Commit(oid, [parent] if parent else [], title, message, self.user, now, files)
        repo.commits[oid] = commit
        return commit

    def _entry(self, path: str, data: bytes, *, lfs: bool) -> FileEntry:
        sha256 = hashlib.sha256(data).hexdigest()
        key = self._blobs.put(data)
        blob_id = git_blob_sha1(lfs_pointer(sha256, len(data))) if lfs else git_blob_sha1(data)
        return FileEntry(path, len(data), blob_id, sha256, lfs, key, "")

    @staticmethod
    def _put(files: dict[str, FileEntry], entry: FileEntry) -> None:
        old = files.get(entry.path)
        if old is None or (old.blob_id, old.lfs, old.blob_key) != (entry.blob_id, entry.lfs, entry.blob_key):
            files[entry.path] = entry  # an unchanged file keeps its entry (and its last commit)

    def create_repo(self, repo_id: str, *, repo_type: str = "model", private: bool = False) -> Repo:
        """Create a repo directly (same effect as ``HfApi().create_repo``): first commit holds ``.gitattributes``."""
        with self._lock:
            key = URL_PREFIXES[repo_type] + repo_id
            if key in self.repos:
                raise ValueError(f"{key} already exists")
            repo = Repo(repo_id, repo_type, private, time.time(), self._blobs)
            commit = self._new_commit(
                repo, None, {".gitattributes": self._entry(".gitattributes", INITIAL_GITATTRIBUTES, lfs=False)}, "initial commit", ""
            )
            repo.branches[DEFAULT_BRANCH] = commit.oid
            self.repos[key] = repo
            return repo

    def commit(
        self,
        repo_id: str,
        files: Mapping[str, bytes | None],
        *,
        message: str = "Update files",
        branch: str = DEFAULT_BRANCH,
        repo_type: str = "model",
    ) -> str:
        """Commit directly, without HTTP (to seed a repo): ``{path: bytes}`` adds or replaces, ``{path: None}`` deletes.
        Paths matching ``lfs_patterns`` are stored as LFS. Returns the new commit sha."""
        with self._lock:
            repo = self.repo(repo_id, repo_type)
            parent = repo.branches[branch]
            tree = dict(repo.commits[parent].files)
            for path, data in files.items():
                if data is None:
                    del tree[path]
                    continue
                lfs = self._is_lfs(path) and len(data) > 0
                entry = self._entry(path, bytes(data), lfs=lfs)
                if lfs:
                    self._lfs.add(entry.sha256)
                self._put(tree, entry)
            commit = self._new_commit(repo, parent, tree, message, "")
            repo.branches[branch] = commit.oid
            return commit.oid

    # ---------------------------------------------------------------- JSON views
    def _file_json(self, entry: FileEntry, commit: Commit | None = None, expand: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": entry.path}
        if entry.lfs:
            out["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
        if expand and commit is not None:
            out["lastCommit"] = {"id": commit.oid, "title": commit.title, "date": _iso(commit.date)}
        return out

    @staticmethod
    def _folder_oid(commit: Commit, folder: str) -> str:
        prefix = folder + "/"
        items = sorted((p, e.blob_id) for p, e in commit.files.items() if p.startswith(prefix))
        return hashlib.sha1(json.dumps(items).encode()).hexdigest()

    def _folder_json(self, commit: Commit, folder: str) -> dict[str, Any]:
        return {"type": "directory", "oid": self._folder_oid(commit, folder), "size": 0, "path": folder}

    @staticmethod
    def _folders(commit: Commit) -> set[str]:
        out = set()
        for p in commit.files:
            parts = p.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                out.add("/".join(parts[:i]))
        return out

    def _info_json(self, repo: Repo, commit: Commit, blobs: bool) -> dict[str, Any]:
        siblings = []
        for path, e in sorted(commit.files.items()):
            sib: dict[str, Any] = {"rfilename": path}
            if blobs:
                sib.update(size=e.size, blobId=e.blob_id)
                if e.lfs:
                    sib["lfs"] = {"size": e.size, "sha256": e.sha256, "pointerSize": e.pointer_size}
            siblings.append(sib)
        info: dict[str, Any] = {
            "_id": hashlib.sha1(repo.key.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": _iso(commit.date),
            "createdAt": _iso(repo.created_at),
            "private": repo.private,
            "disabled": False,
            "gated": repo.gated,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(e.size for e in commit.files.values()),
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        return info

    # ---------------------------------------------------------------- routing
    def _route(self, req: _Request) -> _Response:
        seg, m = req.segments, req.method
        with self._lock:
            if seg[:1] == ["api"]:
                return self._route_api(req, seg[1:], m)
            if m == "PUT" and seg[:2] == ["_lfs", "upload"] and len(seg) == 3:
                return self._lfs_upload(req, seg[2])
            repo_type, rest = "model", seg
            if rest and rest[0] in REPO_TYPES and rest[0] != "models":
                repo_type, rest = REPO_TYPES[rest[0]], rest[1:]
            if m == "POST" and len(rest) == 6 and rest[1].endswith(".git") and rest[2:] == ["info", "lfs", "objects", "batch"]:
                return self._lfs_batch(req, repo_type, f"{rest[0]}/{rest[1][: -len('.git')]}")
            if m in ("GET", "HEAD") and len(rest) >= 5 and rest[2] == "resolve":
                return self._resolve(req, repo_type, f"{rest[0]}/{rest[1]}", rest[3], "/".join(rest[4:]))
            self._auth(req)
            raise HubError(404, f"Not found: {m} {req.path} (not implemented by the test hub)")

    def _route_api(self, req: _Request, seg: list[str], m: str) -> _Response:
        if seg == ["whoami-v2"] and m == "GET":
            return self._whoami(req)
        if seg == ["validate-yaml"] and m == "POST":
            self._auth(req)
            return _json({"errors": [], "warnings": []})
        if seg == ["repos", "create"] and m == "POST":
            return self._create_repo(req)
        if seg == ["repos", "delete"] and m == "DELETE":
            return self._delete_repo(req)
        if len(seg) >= 3 and seg[0] in REPO_TYPES:
            repo_type, repo_id, rest = REPO_TYPES[seg[0]], f"{seg[1]}/{seg[2]}", seg[3:]
            verb, args = (rest[0], rest[1:]) if rest else ("", [])
            routes = {
                ("GET", ""): self._info,
                ("GET", "revision"): self._info,
                ("GET", "tree"): self._tree,
                ("POST", "paths-info"): self._paths_info,
                ("POST", "preupload"): self._preupload,
                ("POST", "commit"): self._commit,
                ("GET", "refs"): self._refs,
                ("GET", "commits"): self._commits,
                ("POST", "tag"): self._create_tag,
                ("DELETE", "tag"): self._delete_tag,
                ("POST", "branch"): self._create_branch,
                ("DELETE", "branch"): self._delete_branch,
                ("PUT", "settings"): self._settings,
            }
            handler = routes.get((m, verb))
            if handler is not None:
                return handler(req, repo_type, repo_id, args)
            if verb.startswith("xet-"):
                self._auth(req)
                raise HubError(501, "The test hub does not implement Xet storage: set HF_HUB_DISABLE_XET=1 in the client env.")
        self._auth(req)
        raise HubError(404, f"Not found: {m} {req.path} (not implemented by the test hub)")

    # ---------------------------------------------------------------- account / repos
    def _whoami(self, req: _Request) -> _Response:
        user = self._require_auth(req)
        return _json(
            {
                "type": "user",
                "id": hashlib.sha1(user.encode()).hexdigest()[:24],
                "name": user,
                "fullname": user,
                "email": f"{user}@example.invalid",
                "emailVerified": True,
                "isPro": False,
                "canPay": False,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test-hub token", "role": "write"}},
            }
        )

    def _create_repo(self, req: _Request) -> _Response:
        user = self._require_auth(req)
        body = req.json()
        name, org = body.get("name"), body.get("organization") or user
        repo_type = body.get("type") or "model"
        if repo_type not in URL_PREFIXES or not isinstance(name, str) or not _NAME.fullmatch(name) or not _NAME.fullmatch(org):
            raise HubError(400, f"Invalid repo name or type: {org}/{name} ({repo_type})")
        private = body.get("visibility") == "private" if "visibility" in body else bool(body.get("private"))
        repo_id = f"{org}/{name}"
        existing = self.repos.get(URL_PREFIXES[repo_type] + repo_id)
        if existing is not None:
            resp = _json({"error": f"You already created this {repo_type} repo", "url": self._repo_url(existing)}, 409)
            resp.headers["X-Error-Message"] = f"You already created this {repo_type} repo"
            return resp
        repo = self.create_repo(repo_id, repo_type=repo_type, private=private)
        return _json({"url": self._repo_url(repo), "name": repo_id, "id": hashlib.sha1(repo.key.encode()).hexdigest()[:24]})

    def _delete_repo(self, req: _Request) -> _Response:
        user = self._require_auth(req)
        body = req.json()
        repo_type = body.get("type") or "model"
        key = URL_PREFIXES.get(repo_type, "") + f"{body.get('organization') or user}/{body.get('name')}"
        if key not in self.repos:
            raise _repo_not_found()
        del self.repos[key]
        return _json({})

    def _settings(self, req: _Request, repo_type: str, repo_id: str, args: list[str]) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        body = req.json()
        if "private" in body:
            repo.private = bool(body["private"])
        if "visibility" in body:
            repo.private = body["visibility"] == "private"
        if "gated" in body:
            repo.gated = body["gated"]
        return _json({})

    # ---------------------------------------------------------------- reads
    def _info(self, req: _Request, repo_type: str, repo_id: str, args: list[str]) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id)
        revision = args[0] if args else DEFAULT_BRANCH
        commit = self._commit_for(repo, revision)
        return _json(self._info_json(repo, commit, blobs=req.flag("blobs")))

    def _tree(self, req: _Request, repo_type: str, repo_id: str, args: list[str]) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id)
        if not args:
            raise _revision_not_found("")
        commit = self._commit_for(repo, args[0])
        base = "/".join(args[1:]).strip("/")
        folders = self._folders(commit)
        if base and base not in folders:
            if base in commit.files:
                raise HubError(400, f"{base} is a file, not a directory")
            raise HubError(404, f"{base} does not exist on {args[0]}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        prefix = base + "/" if base else ""
        recursive, expand = req.flag("recursive"), req.flag("expand")

        def wanted(p: str) -> bool:
            return p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])

        out = [self._folder_json(commit, f) for f in sorted(folders) if wanted(f)]
        out += [self._file_json(e, repo.commits.get(e.last_commit), expand) for p, e in sorted(commit.files.items()) if wanted(p)]
        out.sort(key=lambda x: x["path"])
        return _json(out)

    def _paths_info(self, req: _Request, repo_type: str, repo_id: str, args: list[str]) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id)
        commit = self._commit_for(repo, args[0] if args else DEFAULT_BRANCH)
        body = req.form_or_json()
        paths = body.get("paths") or []
        paths = [paths] if isinstance(paths, str) else paths
        expand = str(body.get("expand", "")).lower() in ("1", "true")
        folders = self._folders(commit)
        out = []
        for p in paths:
            p = p.strip("/")
            if p in commit.files:
                e = commit.files[p]
                out.append(self._file_json(e, repo.commits.get(e.last_commit), expand))
            elif p in folders:
                out.append(self._folder_json(commit, p))
        return _json(out)

    def _refs(self, req: _Request, repo_type: str, repo_id: str, args: list[str]) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id)
        out: dict[str, Any] = {
            "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": o} for b, o in sorted(repo.branches.items())],
            "converts": [],
            "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": o} for t, o in sorted(repo.tags.items())],
        }
        if req.flag("include_prs"):
            prs = sorted(repo.pulls.items())
            out["pullRequests"] = [{"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": o} for n, o in prs]
        return _json(out)

    def _commits(self, req: _Request, repo_type: str, repo_id: str, args: list[str]) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id)
        revision = args[0] if args else DEFAULT_BRANCH
        self._commit_for(repo, revision)
        out = []
        for c in repo.history(revision):
            item: dict[str, Any] = {
                "id": c.oid,
                "title": c.title,
                "message": c.message,
                "authors": [{"user": c.author, "avatar": None}],
                "date": _iso(c.date),
            }
            if (req.query.get("expand[]") or [""])[0] == "formatted":
                item["formatted"] = {"title": c.title, "message": c.message}
            out.append(item)
        return _json(out)

    def _resolve(self, req: _Request, repo_type: str, repo_id: str, revision: str, path: str) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id)
        commit = self._commit_for(repo, revision)
        entry = commit.files.get(path)
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        data = self._blobs.get(entry.blob_key)
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{entry.blob_id}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
        }
        if entry.lfs:
            headers["X-Linked-Etag"] = f'"{entry.sha256}"'
            headers["X-Linked-Size"] = str(entry.size)
        status = 200
        rng = req.headers.get("Range")
        if rng and (mr := re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())) and (mr.group(1) or mr.group(2)):
            total = len(data)
            if mr.group(1):
                start, end = int(mr.group(1)), int(mr.group(2)) if mr.group(2) else total - 1
            else:  # suffix range
                start, end = max(total - int(mr.group(2)), 0), total - 1
            end = min(end, total - 1)
            if start >= total or start > end:
                raise HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{total}"})
            status, data = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        return _Response(status, data, "application/octet-stream", headers)

    # ---------------------------------------------------------------- uploads
    def _preupload(self, req: _Request, repo_type: str, repo_id: str, args: list[str]) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        revision = args[0] if args else DEFAULT_BRANCH
        oid = repo.resolve(revision)
        files = repo.commits[oid].files if oid is not None else {}
        out = []
        for f in req.json().get("files", []):
            path = f["path"]
            mode = "lfs" if self._is_lfs(path) and int(f.get("size", 1)) > 0 else "regular"
            item: dict[str, Any] = {"path": path, "uploadMode": mode, "shouldIgnore": False}
            if (e := files.get(path)) is not None:
                item["oid"] = e.sha256 if mode == "lfs" else (e.blob_id if not e.lfs else None)
            out.append(item)
        return _json({"files": out, "commitOid": oid})

    def _lfs_batch(self, req: _Request, repo_type: str, repo_id: str) -> _Response:
        ctype = "application/vnd.git-lfs+json"
        body = req.json()
        operation = body.get("operation")
        repo = self._get_repo(req, repo_type, repo_id, write=operation == "upload")
        objects = []
        for obj in body.get("objects", []):
            oid, size = obj.get("oid"), obj.get("size")
            item: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if operation == "upload":
                if oid not in self._lfs:
                    ticket = secrets.token_hex(16)
                    self._tickets[ticket] = (oid, int(size))
                    item["actions"] = {"upload": {"href": f"{self.url}/_lfs/upload/{ticket}", "header": {}, "expires_in": 3600}}
            elif operation == "download":
                if oid in self._lfs:
                    ref = next((e for c in repo.commits.values() for e in c.files.values() if e.lfs and e.sha256 == oid), None)
                    if ref is not None:
                        href = f"{self.url}/{repo.key}/resolve/{ref.last_commit}/{quote(ref.path)}"
                        item["actions"] = {"download": {"href": href, "header": {}}}
                if "actions" not in item:
                    item["error"] = {"code": 404, "message": "Object does not exist"}
            else:
                raise HubError(400, f"Unsupported LFS batch operation: {operation!r}")
            objects.append(item)
        return _json({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}, content_type=ctype)

    def _lfs_upload(self, req: _Request, ticket: str) -> _Response:
        # No Authorization header here (like a pre-signed S3 URL): the ticket is the credential.
        if ticket not in self._tickets:
            raise HubError(403, "Invalid or expired LFS upload URL")
        oid, size = self._tickets[ticket]
        if len(req.body) != size or hashlib.sha256(req.body).hexdigest() != oid:
            raise HubError(400, f"LFS upload does not match oid {oid} / size {size} (got {len(req.body)} bytes)")
        self._blobs.put(req.body)
        self._lfs.add(oid)
        del self._tickets[ticket]
        return _Response(200, b"", "text/plain", {"ETag": f'"{oid}"'})

    def _commit(self, req: _Request, repo_type: str, repo_id: str, args: list[str]) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        revision = args[0] if args else DEFAULT_BRANCH
        create_pr = req.flag("create_pr")
        branch = revision[len("refs/heads/") :] if revision.startswith("refs/heads/") else revision
        if branch not in repo.branches:
            pr = re.fullmatch(r"refs/pr/(\d+)", revision)
            if pr is None or int(pr.group(1)) not in repo.pulls:
                raise _revision_not_found(revision)
        lines = [json.loads(line) for line in req.body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "Commit payload must start with a header line")
        header = lines[0]["value"]
        title = (header.get("summary") or "").strip()
        if not title:
            raise HubError(400, "Commit summary must not be empty")
        pr_match = re.fullmatch(r"refs/pr/(\d+)", revision)
        parent = repo.pulls[int(pr_match.group(1))] if pr_match else repo.branches[branch]
        if header.get("parentCommit") and header["parentCommit"] != parent:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(repo.commits[parent].files)
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value") or {}
            path = str(value.get("path", "")).strip("/")
            if not path:
                raise HubError(400, f"Missing path in {key} operation")
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"Unsupported encoding {value.get('encoding')!r}")
                self._put(files, self._entry(path, base64.b64decode(value.get("content", "")), lfs=False))
            elif key == "lfsFile":
                oid = value.get("oid")
                if oid not in self._lfs:
                    raise HubError(422, f"LFS object {oid} for {path} was not uploaded")
                data = self._blobs.get(oid)
                if value.get("size") is not None and int(value["size"]) != len(data):
                    raise HubError(422, f"Size mismatch for LFS object {oid}")
                self._put(files, self._entry(path, data, lfs=True))
            elif key == "deletedFile":
                if path not in files:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                doomed = [p for p in files if p.startswith(path + "/")]
                if not doomed:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in doomed:
                    del files[p]
            else:
                raise HubError(400, f"Unknown commit operation {key!r}")
        commit = self._new_commit(repo, parent, files, title, header.get("description") or "")
        pr_url = None
        if create_pr:
            num = max([0, *repo.pulls]) + 1
            repo.pulls[num] = commit.oid
            pr_url = f"{self._repo_url(repo)}/discussions/{num}"
        elif pr_match:
            repo.pulls[int(pr_match.group(1))] = commit.oid
        else:
            repo.branches[branch] = commit.oid
        return _json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self._repo_url(repo)}/commit/{commit.oid}",
                "hookOutput": "",
                "pullRequestUrl": pr_url,
            }
        )

    # ---------------------------------------------------------------- refs
    def _create_tag(self, req: _Request, repo_type: str, repo_id: str, args: list[str]) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        revision = args[0] if args else DEFAULT_BRANCH
        commit = self._commit_for(repo, revision)
        tag = req.json().get("tag")
        if not isinstance(tag, str) or not tag:
            raise HubError(400, "Missing tag name")
        if tag in repo.tags:
            raise HubError(409, f"Tag {tag} already exists")
        repo.tags[tag] = commit.oid
        return _json({"name": tag, "ref": f"refs/tags/{tag}", "targetCommit": commit.oid})

    def _delete_tag(self, req: _Request, repo_type: str, repo_id: str, args: list[str]) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        tag = "/".join(args)
        if tag not in repo.tags:
            raise _revision_not_found(tag)
        del repo.tags[tag]
        return _json({})

    def _create_branch(self, req: _Request, repo_type: str, repo_id: str, args: list[str]) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        branch = "/".join(args)
        if not branch:
            raise HubError(400, "Missing branch name")
        if branch in repo.branches:
            raise HubError(409, f"Branch {branch} already exists")
        start = req.json().get("startingPoint") or DEFAULT_BRANCH
        repo.branches[branch] = self._commit_for(repo, start).oid
        return _json({})

    def _delete_branch(self, req: _Request, repo_type: str, repo_id: str, args: list[str]) -> _Response:
        repo = self._get_repo(req, repo_type, repo_id, write=True)
        branch = "/".join(args)
        if branch not in repo.branches:
            raise _revision_not_found(branch)
        if branch == DEFAULT_BRANCH:
            raise HubError(403, "Cannot delete the default branch")
        del repo.branches[branch]
        return _json({})


def start_hub(tmp_path: str | Path | None = None, token: str = "test-token", **kwargs: Any) -> HubServer:
    """Start a :class:`HubServer` on 127.0.0.1 (port 0 unless ``port=`` is given) and return it, already serving.

    ``tmp_path``: keep blob bytes as files under ``<tmp_path>/hub-blobs`` instead of in memory.
    Other keyword arguments (``user``, ``port``, ``lfs_patterns``) go to :class:`HubServer`.
    Call ``.stop()`` when done, or use the returned object as a context manager.
    """
    return HubServer(tmp_path, token, **kwargs).start()
