"""The upload side of the Hugging Face Hub: a model card from a folder's metadata, `zoo push` and `zoo publish`.

It loads the model (zoo.api) to gather what the card says; zoo.card renders it and zoo.hub holds the download
side and the helpers both sides share.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from zoo import DISTRIBUTION, checks, pipeline, published, registry, rundir
from zoo.api import LoadedModel, TrainedModel, load
from zoo.card import MARKER, render, stopped_text
from zoo.errors import ZooError, printable, warn
from zoo.fileio import atomic_write_bytes, atomic_write_json, read_json
from zoo.hub import hub_error, is_connection_error
from zoo.options import percent


def _stored_dtypes(path: Path) -> set[str]:
    """The dtypes of the tensors in a safetensors file, as its header names them ("F32", "F16", ...)."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return {f.get_slice(key).get_dtype() for key in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)


def card_metadata(
    model_dir: Path, *, license: str = "mit", repo_id: str | None = None, sample_prompt: str | None = None, bundled: bool = False
) -> dict[str, Any]:
    """What the card of a trained model's folder says (zoo.card's keys): `repo_id` is its Hub repository,
    `bundled` that zoo ships these weights; a character model continues `sample_prompt` (None: its own default
    prompt, which its vocabulary has) for the sample and the usage lines.

    The figures are those of the weights in the folder: an unfinished run's, stopped mid-epoch, are evaluated here."""
    model_dir = Path(model_dir)
    m = load(model_dir)
    spec, config = m.spec, m.config
    run = rundir.read_run(model_dir)
    stopped = stopped_at(model_dir, run)
    if stopped is not None and stopped["step"]:  # weights newer than training.json's last row
        stopped["metrics"] = _shipped_figures(m, model_dir, stopped)
    meta: dict[str, Any] = {
        "name": spec.name,
        "summary": spec.summary,
        "tags": list(spec.tags),
        "license": license,
        "repo_id": repo_id,
        "num_params": m.num_params,
        "hparams": dict(config["hparams"]),
        "history": [dict(h) for h in m.history],
        "command": "\n".join(_commands(run, spec.name)),
        "stopped": stopped,
        "dataset": rundir.name_only(str(config.get("data") or spec.dataset)),
        "install": distributions(spec.plugin, config),
        "provenance": _provenance(config),
        "trained": _trained(m.history, run),
    }
    if not isinstance(m, LoadedModel):  # a table model (zoo.tasks.table)
        return {
            "kind": "table",
            **meta,
            "task": spec.task,
            "loss_label": m.task.loss_label,
            "split": config.get("split", spec.split),
            "columns": config["columns"],
        }
    prompt = m.default_prompt if sample_prompt is None else sample_prompt
    ref = spec.reference
    if not pipeline.on_reference_data(spec, config.get("data"), run.get("data_sha256")):
        ref = None  # the lesson's figures were measured on its corpus: beside a run on other text they compare nothing
    return {
        "kind": "char-lm",
        **meta,
        # streams always hold out the end of the text, whatever --split said (zoo.data.batching)
        "split": "tail" if m.batching.kind == "streams" else config["split"],
        "held_out": percent(config["val_frac"]),
        "vocab_size": len(m.vocab),
        "float16": "F16" in _stored_dtypes(rundir.weights(model_dir)),
        "reference": None if ref is None else {"source": ref.source, "note": ref.note, "val_loss": list(ref.val_loss)},
        "bundled": bundled,
        "model_dir": str(model_dir),
        "sample_prompt": prompt,
        "sample": None if m.vocab.unknown(prompt) else str(m.sample(prompt, 300, temperature=0.8, seed=0)),
    }


def _trained(history: list[dict[str, Any]], run: dict[str, Any]) -> dict[str, Any] | None:
    """zoo.card's `trained`: the epochs, the minutes of training (the epochs' own seconds) and what computed them."""
    if not history:
        return None
    seconds = [h.get("seconds") for h in history]
    found = run.get("machine") if isinstance(run.get("machine"), dict) else {}
    options = run.get("options") if isinstance(run.get("options"), dict) else {}
    parts = [_one_line(found["gpu"])] if isinstance(found.get("gpu"), str) else []
    if isinstance(found.get("cpu"), str):
        details = [f"{found['cores']} logical cores"] if checks.is_whole(found.get("cores")) else []
        details += [f"{found['threads']} torch threads"] if checks.is_whole(found.get("threads")) else []
        parts.append(_one_line(found["cpu"]) + (f" ({', '.join(details)})" if details else ""))
    elif isinstance(run.get("device_name"), str):  # run.json before it recorded the machine
        parts.append(_one_line(run["device_name"]))
    return {
        "epochs": len(history),
        "minutes": sum(seconds) / 60 if all(checks.is_number(x, finite=True) for x in seconds) else None,
        "machine": ", ".join(p for p in parts if p) or None,
        "autocast": "bf16" if options.get("autocast") == "bf16" else None,
    }


def _one_line(text: str, limit: int = 80) -> str:
    """A name from run.json (a file that may have been edited or downloaded) fit for one line of a card."""
    return printable(" ".join(text.split()))[:limit].replace("|", "/").replace("`", "'")


def distributions(plugin: str, config: dict[str, Any] | None = None) -> list[str]:
    """What to `pip install` for a model of `plugin`: zoo's distribution, and the plugin's when it ships apart (the
    one its config.json records, else the installed plugin's; none for a plugin registered in process)."""
    from zoo.plugins import host

    recorded = rundir.provenance(config or {})
    info = host().infos.get(plugin)
    extra = recorded[0] if recorded else rundir.distribution_name(info.distribution if info is not None else "")
    return [DISTRIBUTION] + ([extra] if extra and extra != DISTRIBUTION else [])


def _provenance(config: dict[str, Any]) -> dict[str, str] | None:
    """zoo.card's `provenance`: the plugin and the distribution (and its version) config.json says provided the
    model; None for a config that does not say (older ones, bundled weights)."""
    recorded = rundir.provenance(config)
    if recorded is None:
        return None
    return {"plugin": rundir.distribution_name(config.get("plugin")), "distribution": recorded[0], "version": recorded[1]}


def _commands(run: dict[str, Any], name: str) -> list[str]:
    """The commands that made the run, paths reduced to names: the first, then each resume (run.json's "resumes")."""
    first = run.get("command")
    if not isinstance(first, str):  # trained from Python: the recipe's command
        first = f"zoo train {name} --seed {run.get('options', {}).get('seed', 0)}"
    resumes = run.get("resumes") if isinstance(run.get("resumes"), list) else []
    # a resume from Python recorded no command line: the CLI's equivalent
    return [rundir.public_command_text(c if isinstance(c, str) else "zoo train --resume RUN_DIR") for c in [first, *resumes]]


def stopped_at(model_dir: Path, run: dict[str, Any]) -> dict[str, Any] | None:
    """Where an unfinished run stopped (zoo.card's `stopped`, without its metrics), from its checkpoint; None when it
    finished what it was asked to train, or when the folder has no checkpoint (pulled or bundled weights)."""
    if not rundir.has_checkpoint(model_dir):
        return None
    state = rundir.read_checkpoint_state(model_dir)
    done, step, per_epoch = state.get("epoch"), state.get("step"), state.get("steps_per_epoch")
    if not (_count(done) and _count(step)):  # not what zoo wrote: say nothing rather than something false
        return None
    options = run.get("options") if isinstance(run.get("options"), dict) else {}
    epochs = options.get("epochs", len(options.get("epoch_lrs") or []))
    epochs = epochs if _count(epochs) and epochs else None
    if step == 0 and (epochs is None or done >= epochs):
        return None
    return {"epoch": done, "step": step, "steps_per_epoch": per_epoch if _count(per_epoch) else None, "epochs": epochs, "metrics": None}


def _count(value: Any) -> bool:
    return checks.is_whole(value) and value >= 0


def _shipped_figures(m: TrainedModel, model_dir: Path, stopped: dict[str, Any]) -> dict[str, float]:
    """The validation figures of the weights a run stopped mid-epoch left (its history's are an older epoch's)."""
    try:
        result = m.evaluate()
    except ZooError as exc:
        raise ZooError(
            f"{model_dir} stopped {stopped_text(stopped)}, so its card needs the figures of its weights, and evaluating "
            f"them failed ({exc}); resume it to the end of an epoch, or push it where its data can be read"
        ) from None
    return {k: float(result[k]) for k in ("val_loss", "val_acc", "val_mape") if k in result}


def card_text(model_dir: Path, **kwargs: Any) -> str:
    """The card of a trained model's folder (see card_metadata for the options)."""
    return render(card_metadata(model_dir, **kwargs))


def write_card(model_dir: Path, **kwargs: Any) -> Path:
    """Write the folder's card to its README.md (see card_metadata for the options)."""
    path = rundir.card(model_dir)
    atomic_write_bytes(path, card_text(model_dir, **kwargs).encode("utf-8"))
    return path


def _stage(model_dir: Path, staging: Path, repo_id: str, license: str) -> None:
    """Copy the publishable files into `staging`, with a model card if the folder has none of its own."""
    for name, source in publishable_files(model_dir).items():
        shutil.copyfile(source, staging / name)
    bundled = _is_bundled(model_dir)
    if not bundled:  # bundled files go byte for byte: registry.toml pins their sha256
        _strip_local_paths(staging)
    card = rundir.card(staging)
    if not card.exists() or MARKER in card.read_text(encoding="utf-8", errors="replace") and not bundled:
        # from the run's own folder: its checkpoint says whether the run finished, and its data is where it was
        atomic_write_bytes(card, card_text(model_dir, repo_id=repo_id, license=license).encode("utf-8"))


def publishable_files(model_dir: Path) -> dict[str, Path]:
    """The folder's files that go up to the Hub, each as the file to read. A link that leads out of the folder is
    refused: it could upload any file of this machine (a token) under a run's file name."""
    folder = Path(model_dir).resolve()
    roots = [folder]
    blobs = folder.parent.parent / "blobs"
    if folder.parent.name == "snapshots" and blobs.is_dir() and not blobs.is_symlink():
        roots.append(blobs.resolve())  # a Hub cache snapshot: its files are links to the repository's blobs
    found = {}
    for name in rundir.PUBLISHED_FILES:
        path = Path(model_dir) / name
        if not path.is_file():
            continue
        target = path.resolve()
        if not any(target.is_relative_to(root) for root in roots):
            raise ZooError(
                f"push: {path} is a link to a file outside the run folder; refusing to upload it "
                f"(copy the file in if it belongs to the run)"
            )
        found[name] = target
    return found


def _strip_local_paths(staging: Path) -> None:
    """Nothing of this machine's file system goes up to the Hub: config.json's data and run.json's options and
    commands keep only names (older zoo recorded them in full; run.json's data_sha256 still identifies the corpus)."""
    config_path, run_path = rundir.config_path(staging), staging / rundir.RUN
    if config_path.is_file():
        config = read_json(config_path)
        if isinstance(config.get("data"), str) and rundir.name_only(config["data"]) != config["data"]:
            atomic_write_json(config_path, {**config, "data": rundir.name_only(config["data"])})
    if run_path.is_file():
        run = read_json(run_path)
        public = dict(run)
        for key, reduce in (("options", _names_only), ("command", _commands_public), ("resumes", _commands_public)):
            if key in run:
                public[key] = reduce(run[key])
        if public != run:
            atomic_write_json(run_path, public)


def _names_only(value: Any) -> Any:
    """`value` (run.json's options) with every string that holds a path reduced to its name, in lists and dicts."""
    if isinstance(value, str):
        return rundir.name_only(value)
    if isinstance(value, list):
        return [_names_only(v) for v in value]
    if isinstance(value, dict):
        return {k: _names_only(v) for k, v in value.items()}
    return value


def _commands_public(value: Any) -> Any:
    """run.json's "command" (a string) or "resumes" (a list of them), paths reduced to names."""
    if isinstance(value, str):
        return rundir.public_command_text(value)
    if isinstance(value, list):
        return [_commands_public(v) for v in value]
    return value


def check_repo_id(repo_id: str) -> str:
    """`repo_id` if it is OWNER/NAME, checked before any request (the Hub would answer a bare NAME with a 404)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    problem = not isinstance(repo_id, str) or not published.REPO_ID.fullmatch(repo_id)
    if not problem:
        try:
            validate_repo_id(repo_id)
        except HFValidationError:
            problem = True
    if problem:
        raise ZooError(f"push: --repo {repo_id!r} is not a Hub repository id OWNER/NAME (e.g. alice/char-rnn-small)")
    return repo_id


def _is_bundled(model_dir: Path) -> bool:
    return any(published.bundled_path(e) == model_dir for e in registry.published_weights().values())


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
    from huggingface_hub import HfApi, get_token

    check_repo_id(repo_id)
    model_dir = Path(model_dir)
    publishable_files(model_dir)  # before any file is read through a link (and again as they are copied)
    config = rundir.read_config(model_dir)
    if not rundir.weights(model_dir).is_file():
        raise ZooError(f"{model_dir}: no {rundir.WEIGHTS} to push")
    if not (token or get_token()):  # else the Hub's 401 would blame a token nobody gave
        raise ZooError("push: no Hub token; pass --token, set HF_TOKEN, or log in with `hf auth login`")
    stopped = stopped_at(model_dir, rundir.read_run(model_dir))
    if stopped is not None:
        said = "the figures of the weights it ships, evaluated now" if stopped["step"] else "where it stopped"
        warn(f"{model_dir} is an unfinished run: training stopped {stopped_text(stopped)}; its card gives {said}")
    staging = Path(tempfile.mkdtemp(prefix="zoo-push-"))
    try:
        try:
            _stage(model_dir, staging, repo_id, license)
        except OSError as exc:
            raise ZooError(f"push: cannot copy the files of {model_dir} to upload them ({exc.strerror or exc})") from None
        commit = message or f"zoo push {config['model']}"
        return _upload(HfApi(token=token), staging, repo_id, private, branch, commit)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _upload(api: Any, staging: Path, repo_id: str, private: bool, branch: str | None, message: str) -> tuple[str, str]:
    """One commit of the staged files to `repo_id` (created if needed, on `branch` if given); (commit URL, hash)."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if branch:
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=staging, revision=branch, commit_message=message)
    except Exception as exc:  # one line for every way the Hub or the network can say no
        if not isinstance(exc, (HfHubHTTPError, OSError, ValueError)) and not is_connection_error(exc):
            raise
        raise hub_error(exc, f"push to {repo_id}") from None
    return info.commit_url, info.oid


def publish(pattern: str = "*", *, token: str | None = None, registry_path: Path | None = None) -> list[tuple[str, str]]:
    """Maintainers: push each bundled model to its repo and pin the new revision where it is pinned: zoo's own in
    registry.toml (`registry_path`, else ZOO_REGISTRY, else zoo's), a plugin's in the TOML file it registered."""
    import fnmatch

    done = []
    pinned = registry.published_weights(registry_path).items()
    entries = {name: e for name, e in pinned if fnmatch.fnmatchcase(name, pattern)}
    if not entries:
        raise ZooError(f"no published weights match {pattern!r} in registry.toml; see `zoo list --pretrained`")
    for name, entry in entries.items():
        if entry.plugin is not None and entry.pin_file is None:  # checked first: nothing is pushed that cannot be pinned
            raise ZooError(
                f"{name}: plugin {entry.plugin!r} registered its pins as a table, so zoo publish has no file to pin the "
                "revision in; register the path of its TOML file instead"
            )
        folder = published.bundled_path(entry)
        if folder is None:
            warn(f"{name}: no bundled copy to publish; skipped")
            continue
        bad = published.mismatched_files(folder, entry)
        if bad:
            raise ZooError(f"{name}: the bundled {', '.join(bad)} do not match {entry.origin}; refusing to publish")
        url, oid = push(folder, entry.repo, token=token, message=f"zoo publish {name}", license=entry.license)
        published.set_revision(name, oid, entry.pin_file or registry_path)
        done.append((name, url))
    return done
