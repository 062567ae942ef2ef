"""One directory = one model, in the Hugging Face Hub layout; plus the state to resume training.

    model.safetensors   weights only (never a pickle)
    config.json         model name, plugin, hyper-parameters, batching, vocabulary, versions
    training.json       the per-epoch metrics history
    run.json            how the run was made: resolved options, seed, versions, device, git revision
    loss.png            the loss curves
    checkpoint/         model.safetensors + optimizer.safetensors + state.json: enough to resume

Every file is written to a temporary file, fsynced and renamed into place, and the
checkpoint folder is swapped in whole, so an interruption never leaves a half-written
file that counts as valid.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from zoo.errors import ZooError
from zoo.fileio import DIR_MODE, atomic_write_bytes, atomic_write_json, read_json

CONFIG_FORMAT = "zoo/1"
CHECKPOINT = "checkpoint"


def tensors_to_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    return st_save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, metadata=metadata)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ZooError(f"{path}: no such file") from None
    except OSError as exc:  # a directory in its place, no permission, an I/O error
        raise ZooError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return st_load(raw)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ZooError(f"{path}: not a valid safetensors file, truncated or corrupt ({exc})") from None


def unique_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict without aliases: tied weights (e.g. a decoder sharing the embedding) are stored once."""
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    out = {}
    for name, t in model.state_dict().items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            out[name] = t
    return out


def save_weights(path: Path, model: nn.Module) -> None:
    atomic_write_bytes(path, tensors_to_bytes(unique_state(model), {"format": "pt"}))


def load_weights(path: Path, model: nn.Module) -> None:
    """Load strictly: any missing or unexpected tensor, or wrong shape, is an error naming it."""
    tensors = read_tensors(path)
    expected = unique_state(model)
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [
        f"{k} {tuple(tensors[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in tensors and tensors[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected))
    if wrong:
        problems.append("wrong shape " + ", ".join(wrong))
    if problems:
        raise ZooError(f"{path}: weights do not fit the model: {'; '.join(problems)}")
    aliases = set(model.state_dict()) - set(expected)  # tied weights follow the tensor they share
    result = model.load_state_dict(tensors, strict=False)
    if set(result.missing_keys) - aliases or result.unexpected_keys:
        raise ZooError(f"{path}: weights do not fit the model: missing {result.missing_keys}, unexpected {result.unexpected_keys}")


def optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimizer's state_dict split into tensors (for safetensors) and JSON-able groups."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("state."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    out_dir: Path, model: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any], extra: dict[str, torch.Tensor] | None = None
) -> None:
    """Write checkpoint/ as a whole: built beside it, then swapped in."""
    out_dir = Path(out_dir)
    final = out_dir / CHECKPOINT
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{CHECKPOINT}."))
    tmp.chmod(DIR_MODE)
    old = out_dir / f".{CHECKPOINT}.old"
    try:
        save_weights(tmp / "model.safetensors", model)
        opt_tensors, opt_meta = optimizer_to_tensors(opt)
        opt_tensors.update(extra or {})
        opt_tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            opt_tensors["rng.cuda"] = torch.cuda.get_rng_state()
        atomic_write_bytes(tmp / "optimizer.safetensors", tensors_to_bytes(opt_tensors))
        atomic_write_json(tmp / "state.json", {**state, "optimizer": opt_meta})
        if final.exists():  # else the old one may be the only checkpoint left (an earlier swap was cut short): keep it
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def find_checkpoint(out_dir: Path) -> Path:
    """checkpoint/, or the previous one if a swap was cut short."""
    for name in (CHECKPOINT, f".{CHECKPOINT}.old"):
        path = Path(out_dir) / name
        if (path / "state.json").exists():
            return path
    raise ZooError(f"{out_dir}: no checkpoint to resume from (expected {out_dir}/{CHECKPOINT}/state.json)")


def load_checkpoint(ckpt: Path, model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    load_weights(ckpt / "model.safetensors", model)
    state = read_json(ckpt / "state.json")
    tensors = read_tensors(ckpt / "optimizer.safetensors")
    try:
        optimizer_from_tensors(opt, tensors, state["optimizer"])
    except (KeyError, ValueError) as exc:
        raise ZooError(f"{ckpt}: optimizer state does not fit this model ({exc})") from None
    if "rng.torch" in tensors:
        torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    carried = [tensors[f"carried.{i}"] for i in range(len(tensors)) if f"carried.{i}" in tensors]
    state["carried"] = tuple(carried) if carried else None
    return state


REQUIRED_CONFIG = ("model", "hparams", "vocab", "batching")
REQUIRED_TABLE_CONFIG = ("model", "hparams", "columns")  # the table tasks (zoo.tasks): no vocabulary or batching


def _read_table_config(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    for key in REQUIRED_TABLE_CONFIG:
        if key not in config:
            raise ZooError(f"{path}: lacks the key {key!r}")
    if not isinstance(config["model"], str):
        raise ZooError(f"{path}: 'model' must be a model name, got {config['model']!r}")
    columns = config["columns"]
    if not isinstance(config["hparams"], dict) or not isinstance(columns, dict):
        raise ZooError(f"{path}: 'hparams' and 'columns' must be objects")
    if not all(isinstance(columns.get(k), dict) for k in ("categorical", "continuous", "target")):
        raise ZooError(f"{path}: 'columns' needs the objects 'categorical', 'continuous' and 'target'")
    return config


def read_config(model_dir: Path) -> dict[str, Any]:
    path = Path(model_dir) / "config.json"
    config = read_json(path)
    if isinstance(config, dict) and config.get("task", "char-lm") != "char-lm":
        return _read_table_config(path, config)
    for key in REQUIRED_CONFIG:
        if key not in config:
            raise ZooError(f"{path}: lacks the key {key!r}")
    if not isinstance(config["hparams"], dict) or not isinstance(config["batching"], dict):
        raise ZooError(f"{path}: 'hparams' and 'batching' must be objects")
    if not isinstance(config["vocab"], list) or not all(isinstance(c, str) for c in config["vocab"]):
        raise ZooError(f"{path}: 'vocab' must be a list of characters")
    if not isinstance(config["model"], str):
        raise ZooError(f"{path}: 'model' must be a model name, got {config['model']!r}")
    from zoo.data.vocab import Vocab
    from zoo.spec import Batching

    try:
        Vocab(config["vocab"])
    except ZooError as exc:
        raise ZooError(f"{path}: {exc}") from None
    try:
        Batching(**config["batching"])
    except (TypeError, ValueError) as exc:
        raise ZooError(f"{path}: 'batching' is not a batching scheme ({exc})") from None
    return config
