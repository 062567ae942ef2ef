"""The Hugging Face Hub: push a model directory, pull published weights, verified by sha256.

All traffic goes through huggingface_hub, so its cache, locking and environment
(HF_ENDPOINT, HF_TOKEN, HF_HOME, HF_HUB_OFFLINE) work as Hub users expect.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from zoo import published
from zoo.card import MARKER, write_card
from zoo.errors import ZooError, warn
from zoo.fileio import atomic_write_json

PUBLISHED_FILES = ("model.safetensors", "config.json", "README.md", "training.json", "run.json", "loss.png")


def _hub_error(exc: Exception, what: str) -> ZooError:
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
    if _is_connection_error(exc):
        return ZooError(f"{what}: cannot reach the Hub ({type(exc).__name__}); check the network or HF_ENDPOINT")
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
    return ZooError(f"{what}: {type(exc).__name__}: {exc}")


def _is_connection_error(exc: BaseException) -> bool:
    """huggingface_hub lets its HTTP client's connection errors through (httpx's are not OSError)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "NetworkError", "ConnectionError"})


def _stage(model_dir: Path, repo_id: str, license: str) -> Path:
    """A temporary copy of the publishable files, with a model card if the folder has none of its own."""
    staging = Path(tempfile.mkdtemp(prefix="zoo-push-"))
    for name in PUBLISHED_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, staging / name)
    bundled = _is_bundled(model_dir)
    if not bundled:  # bundled files go byte for byte: registry.toml pins their sha256
        _strip_local_paths(staging)
    card = staging / "README.md"
    if not card.exists() or MARKER in card.read_text(encoding="utf-8", errors="replace") and not bundled:
        write_card(staging, repo_id=repo_id, license=license)
    return staging


def _strip_local_paths(staging: Path) -> None:
    """A corpus file's absolute path (config.json's data, run.json's options and command) names folders and
    often the user on this machine: the Hub gets the file's name (its sha256 in run.json still identifies it)."""
    config_path, run_path = staging / "config.json", staging / "run.json"
    config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
    data = config.get("data")
    if not (isinstance(data, str) and os.path.isabs(data)):
        return
    name = Path(data).name
    config["data"] = name
    atomic_write_json(config_path, config)
    if run_path.is_file():
        run = json.loads(run_path.read_text(encoding="utf-8"))
        if isinstance(run.get("options"), dict) and run["options"].get("data") == data:
            run["options"]["data"] = name
        if isinstance(run.get("command"), str):
            run["command"] = run["command"].replace(data, name)
        atomic_write_json(run_path, run)


def _is_bundled(model_dir: Path) -> bool:
    return any(published.bundled_path(e) == model_dir for e in published.load().values())


def push(
    model_dir: Path,
    repo_id: str,
    *,
    private: bool = False,
    branch: str | None = None,
    token: str | None = None,
    message: str | None = None,
    license: str = "mit",
) -> tuple[str, str]:
    """Upload a model directory as one commit; returns (commit URL, commit hash)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    from zoo.checkpoint import read_config

    model_dir = Path(model_dir)
    config = read_config(model_dir)
    if not (model_dir / "model.safetensors").is_file():
        raise ZooError(f"{model_dir}: no model.safetensors to push")
    from huggingface_hub import get_token

    if not (token or get_token()):  # else the Hub's 401 would blame a token nobody gave
        raise ZooError("push: no Hub token; pass --token, set HF_TOKEN, or log in with `hf auth login`")
    staging = _stage(model_dir, repo_id, license)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if branch:
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=staging,
            revision=branch,
            commit_message=message or f"zoo push {config['model']}",
        )
    except Exception as exc:  # one line for every way the Hub or the network can say no
        if not isinstance(exc, (HfHubHTTPError, OSError, ValueError)) and not _is_connection_error(exc):
            raise
        raise _hub_error(exc, f"push to {repo_id}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info.commit_url, info.oid


def _remove_cached(folder: Path, names: list[str]) -> None:
    """Delete bad files from the Hub cache (the snapshot link and the blob it points to)."""
    for name in names:
        link = folder / name
        target = link.resolve() if link.exists() or link.is_symlink() else None
        link.unlink(missing_ok=True)
        if target is not None and target != link:
            target.unlink(missing_ok=True)


class TamperedFiles(ZooError):
    """Pulled files whose sha256 differs from registry.toml's (deleted from the cache)."""


def pull(name: str, revision: str | None = None, *, local_only: bool = False) -> Path:
    """Download (or find in the Hub cache) the weights of a registry model or any zoo-format repo."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled

    entry = published.load().get(name)
    if entry is None and "/" not in name:
        from zoo import registry

        spec = registry.get_model(name)  # unknown names: "did you mean"
        raise ZooError(f"no published weights for {spec.name!r} in registry.toml; pull OWNER/NAME for any zoo repository")
    if entry is not None:
        rev = revision or entry.revision
        if rev is None:
            raise ZooError(f"{name} is not yet published on the Hub (registry.toml pins no revision); its bundled weights need no pull")
        repo, patterns, what = entry.repo, list(entry.files), f"{name} ({entry.repo}@{rev[:12]})"
    else:
        rev, repo, patterns, what = revision, name, list(PUBLISHED_FILES), name
    try:
        folder = Path(snapshot_download(repo, revision=rev, allow_patterns=patterns, local_files_only=local_only))
    except Exception as exc:
        known = (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, OSError, ValueError)
        if not isinstance(exc, known) and not _is_connection_error(exc):
            raise
        raise _hub_error(exc, f"pull {what}") from None
    if entry is None:
        if not local_only:
            warn(f"{name} is not in registry.toml: no pinned hashes to verify its files against")
    elif revision is None or revision == entry.revision:
        bad = published.mismatched_files(folder, entry)
        if bad:
            _remove_cached(folder, bad)
            raise TamperedFiles(f"pull {what}: {', '.join(bad)} failed the sha256 check against registry.toml and were deleted")
    else:
        warn(f"revision {revision} is not the pinned one; its files are not checked against registry.toml")
    if not (folder / "config.json").exists():
        raise ZooError(f"pull {what}: the repository has no config.json; is it a zoo model?")
    return folder


def find_weights(name: str) -> tuple[Path, str] | None:
    """Weights for a model name, offline: pulled ones in the Hub cache, else the bundled copy."""
    entry = published.load().get(name)
    if entry is None:
        if "/" in name:
            try:
                return pull(name, local_only=True), "hub cache"
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
            raise ZooError(f"the bundled weights of {name} in {bundled} fail the sha256 check ({', '.join(bad)}); reinstall zoo")
        return bundled, "bundled"
    return None


def publish(pattern: str = "*", *, token: str | None = None, registry_path: Path | None = None) -> list[tuple[str, str]]:
    """Maintainers: push each bundled model to its repo and pin the new revision in registry.toml."""
    import fnmatch

    done = []
    entries = {name: e for name, e in sorted(published.load(registry_path).items()) if fnmatch.fnmatchcase(name, pattern)}
    if not entries:
        raise ZooError(f"no published weights match {pattern!r} in registry.toml; see `zoo list --pretrained`")
    for name, entry in entries.items():
        folder = published.bundled_path(entry)
        if folder is None:
            warn(f"{name}: no bundled copy to publish; skipped")
            continue
        bad = published.mismatched_files(folder, entry)
        if bad:
            raise ZooError(f"{name}: the bundled {', '.join(bad)} do not match registry.toml; refusing to publish")
        url, oid = push(folder, entry.repo, token=token, message=f"zoo publish {name}", license=entry.license)
        published.set_revision(name, oid, registry_path)
        done.append((name, url))
    return done
