"""The upload side of the Hugging Face Hub: a model card from a folder's metadata, `zoo push` and `zoo publish`.

It loads the model (zoo.api) to gather what the card says; zoo.card renders it and zoo.hub holds the download
side and the helpers both sides share.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from zoo import published, rundir
from zoo.api import LoadedModel, load
from zoo.card import MARKER, render
from zoo.errors import ZooError, warn
from zoo.fileio import atomic_write_bytes, atomic_write_json
from zoo.hub import hub_error, is_connection_error
from zoo.options import percent


def _stored_dtypes(path: Path) -> set[str]:
    """The dtypes of the tensors in a safetensors file, as its header names them ("F32", "F16", ...)."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return {f.get_slice(key).get_dtype() for key in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)


def card_metadata(
    model_dir: Path, *, license: str = "mit", repo_id: str | None = None, sample_prompt: str = "for thos", bundled: bool = False
) -> dict[str, Any]:
    """What the card of a trained model's folder says (zoo.card's keys): `repo_id` is its Hub repository,
    `bundled` that zoo ships these weights; a character model continues `sample_prompt` for the sample."""
    model_dir = Path(model_dir)
    m = load(model_dir)
    spec, config = m.spec, m.config
    run = rundir.read_run(model_dir)
    meta: dict[str, Any] = {
        "name": spec.name,
        "summary": spec.summary,
        "tags": list(spec.tags),
        "license": license,
        "repo_id": repo_id,
        "num_params": m.num_params,
        "hparams": dict(config["hparams"]),
        "history": [dict(h) for h in m.history],
        "command": run.get("command") or f"zoo train {spec.name} --seed {run.get('options', {}).get('seed', 0)}",
    }
    if not isinstance(m, LoadedModel):  # a table model (zoo.tasks.table)
        return {
            "kind": "table",
            **meta,
            "task": spec.task,
            "loss_label": m.task.loss_label,
            "dataset": Path(str(config.get("data") or spec.dataset)).name,
            "split": config.get("split", spec.split),
            "columns": config["columns"],
        }
    dataset = config.get("data") or spec.dataset
    ref = spec.reference
    return {
        "kind": "char-lm",
        **meta,
        "dataset": dataset if "/" not in str(dataset) else Path(dataset).name,
        # streams always hold out the end of the text, whatever --split said (zoo.data.batching)
        "split": "tail" if m.batching.kind == "streams" else config["split"],
        "held_out": percent(config["val_frac"]),
        "vocab_size": len(m.vocab),
        "float16": "F16" in _stored_dtypes(rundir.weights(model_dir)),
        "reference": None if ref is None else {"source": ref.source, "note": ref.note, "val_loss": list(ref.val_loss)},
        "bundled": bundled,
        "model_dir": str(model_dir),
        "sample_prompt": sample_prompt,
        "sample": None if m.vocab.unknown(sample_prompt) else str(m.sample(sample_prompt, 300, temperature=0.8, seed=0)),
    }


def card_text(model_dir: Path, **kwargs: Any) -> str:
    """The card of a trained model's folder (see card_metadata for the options)."""
    return render(card_metadata(model_dir, **kwargs))


def write_card(model_dir: Path, **kwargs: Any) -> Path:
    """Write the folder's card to its README.md (see card_metadata for the options)."""
    path = rundir.card(model_dir)
    atomic_write_bytes(path, card_text(model_dir, **kwargs).encode("utf-8"))
    return path


def _stage(model_dir: Path, repo_id: str, license: str) -> Path:
    """A temporary copy of the publishable files, with a model card if the folder has none of its own."""
    staging = Path(tempfile.mkdtemp(prefix="zoo-push-"))
    for name in rundir.PUBLISHED_FILES:
        if (model_dir / name).is_file():
            shutil.copyfile(model_dir / name, staging / name)
    bundled = _is_bundled(model_dir)
    if not bundled:  # bundled files go byte for byte: registry.toml pins their sha256
        _strip_local_paths(staging)
    card = rundir.card(staging)
    if not card.exists() or MARKER in card.read_text(encoding="utf-8", errors="replace") and not bundled:
        write_card(staging, repo_id=repo_id, license=license)
    return staging


def _strip_local_paths(staging: Path) -> None:
    """A corpus file's absolute path (config.json's data, run.json's options and command) names folders and
    often the user on this machine: the Hub gets the file's name (its sha256 in run.json still identifies it)."""
    config_path, run_path = rundir.config_path(staging), staging / rundir.RUN
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


    model_dir = Path(model_dir)
    config = rundir.read_config(model_dir)
    if not rundir.weights(model_dir).is_file():
        raise ZooError(f"{model_dir}: no {rundir.WEIGHTS} to push")
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
        if not isinstance(exc, (HfHubHTTPError, OSError, ValueError)) and not is_connection_error(exc):
            raise
        raise hub_error(exc, f"push to {repo_id}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info.commit_url, info.oid


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
