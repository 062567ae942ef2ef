"""The Hugging Face Hub's download side: pull published weights, verified by sha256, and find them offline.

All traffic goes through huggingface_hub, so its cache, locking and environment
(HF_ENDPOINT, HF_TOKEN, HF_HOME, HF_HUB_OFFLINE) work as Hub users expect. The upload side
(`zoo push`, `zoo publish`, the model card) is zoo.publish, which shares this module's error helpers.
"""

from __future__ import annotations

from pathlib import Path

from zoo import published, rundir
from zoo.errors import ZooError, warn


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
    if is_connection_error(exc):
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


def is_connection_error(exc: BaseException) -> bool:
    """huggingface_hub lets its HTTP client's connection errors through (httpx's are not OSError)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "NetworkError", "ConnectionError"})


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
        rev, repo, patterns, what = revision, name, list(rundir.PUBLISHED_FILES), name
    try:
        folder = Path(snapshot_download(repo, revision=rev, allow_patterns=patterns, local_files_only=local_only))
    except Exception as exc:
        known = (HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled, OSError, ValueError)
        if not isinstance(exc, known) and not is_connection_error(exc):
            raise
        raise hub_error(exc, f"pull {what}") from None
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
    if not rundir.has_config(folder):
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
            raise ZooError(f"the bundled weights of {name} in {bundled} fail the sha256 check ({', '.join(bad)}); reinstall lesson6-zoo")
        return bundled, "bundled"
    return None
