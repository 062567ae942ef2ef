"""The test Hub server (tests/hubserver.py) against the real huggingface_hub client.

Each test starts a server in-process on a free port and drives it with a client script run in a subprocess, because
huggingface_hub reads HF_ENDPOINT / HF_HUB_DISABLE_XET / HF_HUB_OFFLINE / HF_HOME when it is imported.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hubserver import HubServer, git_blob_sha1, start_hub

REPO_ID = "test-user/tiny"
README = "---\nlicense: mit\ntags:\n- zoo\n---\n# tiny\n\nA test model.\n"

CLIENT_PRELUDE = """
import json, os, sys
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError,
)
ARGS = json.loads(sys.argv[1])
api = HfApi()

def emit(obj):
    print("RESULT " + json.dumps(obj))

def failure(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except Exception as e:  # report class, HTTP status and the classes it is an instance of
        status = getattr(getattr(e, "response", None), "status_code", None)
        kinds = [c.__name__ for c in (EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError,
                                      RepositoryNotFoundError, RevisionNotFoundError) if isinstance(e, c)]
        return {"type": type(e).__name__, "status": status, "is": kinds}
    return None

def read_tree(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = open(p, "rb").read().hex()
    return out
"""


def _save_model(folder: Path, scale: float) -> Path:
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    (folder / "README.md").write_text(README, encoding="utf-8")
    (folder / "config.json").write_text(json.dumps({"hidden": 4, "scale": scale}, sort_keys=True), encoding="utf-8")
    tensors = {"embed.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4) * scale, "bias": torch.ones(4) * scale}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> tuple[Path, Path]:
    """Two versions of a small model folder (README with YAML front matter, config.json, model.safetensors)."""
    root = tmp_path_factory.mktemp("models")
    return _save_model(root / "v1", 1.0), _save_model(root / "v2", 2.0)




def local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def run_client(hub: HubServer, code: str, hf_home: Path, *, args: dict | None = None, **env_extra: str) -> dict:
    """Run PRELUDE + code in a fresh interpreter pointed at the hub; return what it passed to emit()."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(hub.env(HF_HOME=str(hf_home)))
    env.update(env_extra)
    script = CLIENT_PRELUDE + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(args or {})], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"client failed:\n{proc.stdout}\n{proc.stderr}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, proc.stdout + proc.stderr
    return json.loads(lines[0][len("RESULT ") :])


def as_bytes(tree: dict[str, str]) -> dict[str, bytes]:
    return {k: bytes.fromhex(v) for k, v in tree.items()}


# ---------------------------------------------------------------------------------------------------------------------


def test_push_then_snapshot_download_is_byte_identical(hub, model_dirs, tmp_path):
    v1, _ = model_dirs
    out = run_client(
        hub,
        """
        url = api.create_repo("tiny")
        info = api.upload_folder(repo_id=url.repo_id, folder_path=ARGS["folder"], commit_message="v1")
        path = snapshot_download(url.repo_id)
        meta = api.model_info(url.repo_id, files_metadata=True)
        emit({"repo_id": url.repo_id, "oid": info.oid, "path": path, "files": read_tree(path), "sha": meta.sha,
              "lfs": {s.rfilename: s.lfs is not None for s in meta.siblings}, "me": api.whoami()["name"]})
        """,
        tmp_path / "hf",
        args={"folder": str(v1)},
    )
    assert out["repo_id"] == REPO_ID and out["me"] == "test-user"
    assert len(out["oid"]) == 40 and out["sha"] == out["oid"]
    assert out["path"].endswith(f"snapshots/{out['oid']}")
    downloaded = as_bytes(out["files"])
    assert set(downloaded) == {".gitattributes", "README.md", "config.json", "model.safetensors"}
    for name, data in local_files(v1).items():
        assert downloaded[name] == data, name
    assert out["lfs"] == {".gitattributes": False, "README.md": False, "config.json": False, "model.safetensors": True}
    # What the server holds, and the routes the client took (LFS batch + signed PUT for the safetensors file).
    assert hub.repo(REPO_ID).files() == {**local_files(v1), ".gitattributes": downloaded[".gitattributes"]}
    paths = [(m, p.split("?")[0]) for m, p, _ in hub.requests]
    assert ("POST", "/api/validate-yaml") in paths
    assert ("POST", f"/{REPO_ID}.git/info/lfs/objects/batch") in paths
    assert any(m == "PUT" and p.startswith("/_lfs/upload/") for m, p in paths)
    assert all(status < 400 for _, _, status in hub.requests)


def test_pinned_commit_still_serves_old_files_after_new_push(hub, model_dirs, tmp_path):
    v1, v2 = model_dirs
    out = run_client(
        hub,
        """
        rid = api.create_repo("tiny").repo_id
        first = api.upload_folder(repo_id=rid, folder_path=ARGS["v1"], commit_message="v1").oid
        second = api.upload_folder(repo_id=rid, folder_path=ARGS["v2"], commit_message="v2").oid
        old = snapshot_download(rid, revision=first)
        new = snapshot_download(rid)
        one = hf_hub_download(rid, "model.safetensors", revision=first)
        emit({"first": first, "second": second, "old": read_tree(old), "new": read_tree(new),
              "one": open(one, "rb").read().hex(),
              "old_sha": api.model_info(rid, revision=first).sha,
              "log": [c.commit_id for c in api.list_repo_commits(rid)],
              "titles": [c.title for c in api.list_repo_commits(rid)],
              "main": [b.target_commit for b in api.list_repo_refs(rid).branches if b.name == "main"]})
        """,
        tmp_path / "hf",
        args={"v1": str(v1), "v2": str(v2)},
    )
    first, second = out["first"], out["second"]
    assert first != second
    old, new = as_bytes(out["old"]), as_bytes(out["new"])
    for name, data in local_files(v1).items():
        assert old[name] == data, name
    for name, data in local_files(v2).items():
        assert new[name] == data, name
    assert old["model.safetensors"] != new["model.safetensors"]
    assert old["README.md"] == new["README.md"]  # unchanged file is not re-uploaded but still served
    assert bytes.fromhex(out["one"]) == local_files(v1)["model.safetensors"]
    assert out["old_sha"] == first
    assert out["log"][:2] == [second, first] and len(out["log"]) == 3
    assert out["titles"] == ["v2", "v1", "initial commit"]
    assert out["main"] == [second]


def test_wrong_token_is_401_and_missing_repo_is_repository_not_found(hub, tmp_path):
    hub.create_repo(REPO_ID)
    hub.commit(REPO_ID, {"config.json": b"{}"})
    hub.create_repo("test-user/secret", private=True)
    out = run_client(
        hub,
        """
        good = HfApi(token=ARGS["token"])
        emit({
            "whoami": failure(api.whoami),
            "create": failure(api.create_repo, "other"),
            "download": failure(hf_hub_download, ARGS["repo"], "config.json"),
            "snapshot": failure(snapshot_download, ARGS["repo"]),
            "missing_info": failure(good.model_info, "test-user/does-not-exist"),
            "missing_download": failure(hf_hub_download, "test-user/does-not-exist", "config.json", token=ARGS["token"]),
            "missing_file": failure(hf_hub_download, ARGS["repo"], "nope.json", token=ARGS["token"]),
            "missing_rev": failure(good.model_info, ARGS["repo"], revision="no-such-branch"),
            "private_anon": failure(hf_hub_download, "test-user/secret", ".gitattributes", token=False),
            "private_ok": failure(good.model_info, "test-user/secret"),
            "ok": failure(good.model_info, ARGS["repo"]),
        })
        """,
        tmp_path / "hf",
        args={"token": hub.token, "repo": REPO_ID},
        HF_TOKEN="wrong-token",
    )
    for key in ("whoami", "create", "download", "snapshot"):
        assert out[key]["status"] == 401, (key, out[key])
        assert "HfHubHTTPError" in out[key]["is"] and "RepositoryNotFoundError" not in out[key]["is"], (key, out[key])
    assert "RepositoryNotFoundError" in out["missing_info"]["is"]
    assert "RepositoryNotFoundError" in out["missing_download"]["is"]
    assert "EntryNotFoundError" in out["missing_file"]["is"]
    assert "RevisionNotFoundError" in out["missing_rev"]["is"]
    assert "RepositoryNotFoundError" in out["private_anon"]["is"]
    assert out["private_ok"] is None and out["ok"] is None
    assert "other" not in {r.split("/")[-1] for r in hub.repos}


def test_offline_mode_uses_warm_cache_and_fails_on_cold_cache(hub, tmp_path):
    hub.create_repo(REPO_ID)
    sha = hub.commit(REPO_ID, {"config.json": b'{"a": 1}', "model.safetensors": b"\x08\x00" + bytes(30)})
    warm = run_client(hub, "emit({'path': snapshot_download(ARGS['repo'])})", tmp_path / "warm", args={"repo": REPO_ID})
    assert warm["path"].endswith(sha)
    served = len(hub.requests)
    out = run_client(
        hub,
        """
        path = snapshot_download(ARGS["repo"])
        emit({"path": path, "files": read_tree(path),
              "cold": failure(snapshot_download, ARGS["repo"], cache_dir=ARGS["cold"])})
        """,
        tmp_path / "warm",
        args={"repo": REPO_ID, "cold": str(tmp_path / "cold")},
        HF_HUB_OFFLINE="1",
    )
    assert out["path"] == warm["path"]
    assert as_bytes(out["files"]) == hub.repo(REPO_ID).files(sha)
    assert "LocalEntryNotFoundError" in out["cold"]["is"], out["cold"]
    assert len(hub.requests) == served  # offline: not a single request reached the server


def test_create_tag_then_download_by_tag(hub, tmp_path):
    hub.create_repo(REPO_ID)
    first = hub.commit(REPO_ID, {"config.json": b'{"v": 1}', "model.safetensors": b"\x01" * 64}, message="v1")
    out = run_client(
        hub,
        """
        rid = ARGS["repo"]
        api.create_tag(rid, tag="v1.0", tag_message="first release")
        dup = failure(api.create_tag, rid, tag="v1.0")
        api.upload_file(path_or_fileobj=b'{"v": 2}', path_in_repo="config.json", repo_id=rid, commit_message="v2")
        tagged = snapshot_download(rid, revision="v1.0")
        emit({"tagged": read_tree(tagged), "path": tagged, "dup": dup,
              "config_main": open(hf_hub_download(rid, "config.json"), "rb").read().decode(),
              "config_tag": open(hf_hub_download(rid, "config.json", revision="v1.0"), "rb").read().decode(),
              "tags": {t.name: t.target_commit for t in api.list_repo_refs(rid).tags},
              "tag_sha": api.model_info(rid, revision="v1.0").sha})
        """,
        tmp_path / "hf",
        args={"repo": REPO_ID},
    )
    assert out["tags"] == {"v1.0": first} and out["tag_sha"] == first
    assert out["path"].endswith(first)
    assert as_bytes(out["tagged"]) == hub.repo(REPO_ID).files(first)
    assert out["dup"]["status"] == 409
    assert out["config_tag"] == '{"v": 1}' and out["config_main"] == '{"v": 2}'


# --------------------------------------------------------------------------------------------------------------------- in-process checks


def _request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes = b"", **headers: str):
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return resp, resp.read()


def test_tamper_changes_served_bytes_but_not_recorded_hashes(tmp_path):
    with start_hub(tmp_path) as hub:
        hub.create_repo(REPO_ID)
        original = b"\x00" * 40
        first = hub.commit(REPO_ID, {"model.safetensors": original, "config.json": b"{}"})
        second = hub.commit(REPO_ID, {"config.json": b'{"x": 1}'})
        conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=10)
        before, _ = _request(conn, "HEAD", f"/{REPO_ID}/resolve/main/model.safetensors")
        assert hub.tamper(REPO_ID, "model.safetensors", b"\xff" * 40) == 2
        for rev in (first, second, "main"):
            resp, data = _request(conn, "GET", f"/{REPO_ID}/resolve/{rev}/model.safetensors")
            assert resp.status == 200 and data == b"\xff" * 40
            assert resp.headers["X-Linked-Etag"] == before.headers["X-Linked-Etag"] == f'"{hashlib.sha256(original).hexdigest()}"'
            assert resp.headers["X-Linked-Size"] == "40"
        resp, data = _request(conn, "GET", f"/api/models/{REPO_ID}/tree/main", Authorization=f"Bearer {hub.token}")
        entry = {e["path"]: e for e in json.loads(data)}["model.safetensors"]
        assert entry["lfs"]["oid"] == hashlib.sha256(original).hexdigest()
        assert hub.repo(REPO_ID).read("model.safetensors", first) == b"\xff" * 40
        conn.close()


def test_errors_keep_the_keep_alive_connection_usable(hub):
    hub.create_repo(REPO_ID)
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=10)
    body = json.dumps({"name": "x"}).encode() * 100
    resp, data = _request(conn, "POST", "/api/repos/create", body, Authorization="Bearer wrong")
    assert resp.status == 401 and resp.headers["X-Error-Message"] == "Invalid credentials in Authorization header"
    resp, data = _request(conn, "GET", f"/api/models/{REPO_ID}/revision/nope")
    assert resp.status == 404 and resp.headers["X-Error-Code"] == "RevisionNotFound"
    resp, data = _request(conn, "GET", "/api/models/test-user/missing")
    assert resp.status == 401 and resp.headers["X-Error-Code"] == "RepoNotFound"
    resp, data = _request(conn, "GET", f"/{REPO_ID}/resolve/main/.gitattributes")
    assert resp.status == 200 and resp.headers["ETag"] == f'"{git_blob_sha1(data)}"' and len(resp.headers["X-Repo-Commit"]) == 40
    resp, data = _request(conn, "GET", f"/{REPO_ID}/resolve/main/.gitattributes", Range="bytes=2-5")
    assert resp.status == 206 and len(data) == 4
    conn.close()
