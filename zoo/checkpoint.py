"""Weights and the state to resume training, as safetensors: saved whole, loaded strictly.

The folder they live in and its file names are zoo.rundir's. Every file is written to a temporary
file, fsynced and renamed into place, and the checkpoint folder is swapped in whole, so an
interruption never leaves a half-written file that counts as valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from zoo.errors import ZooError
from zoo.fileio import DIR_MODE, atomic_write_bytes, atomic_write_json, read_json
from zoo.rundir import CHECKPOINT, CHECKPOINT_TEMP, OPTIMIZER, PREVIOUS_CHECKPOINT, STATE, WEIGHTS, WEIGHTS_TEMP

VOCAB_METADATA = "zoo.vocab_sha256"  # the key in a safetensors file's metadata
_VOCAB_ATTR = "zoo_vocab_sha256"  # where a model carries the fingerprint of the vocabulary it was built for

Module = TypeVar("Module", bound=nn.Module)


def tensors_to_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    return st_save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, metadata=metadata)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    return read_safetensors(path)[0]


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file's tensors and its metadata (the header's "__metadata__", {} if it has none)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ZooError(f"{path}: no such file") from None
    except OSError as exc:  # a directory in its place, no permission, an I/O error
        raise ZooError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        tensors = st_load(raw)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ZooError(f"{path}: not a valid safetensors file, truncated or corrupt ({exc})") from None
    # st_load has validated the header: 8 bytes of little-endian length, then that much JSON
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    metadata = header.get("__metadata__") or {}
    return tensors, metadata if isinstance(metadata, dict) else {}


def vocab_sha256(chars: Sequence[str]) -> str:
    """The fingerprint of a vocabulary: sha256 of its characters in order (the order fixes what each index means)."""
    # surrogatepass: a config.json may spell a lone surrogate, which strict UTF-8 cannot encode
    return hashlib.sha256("".join(chars).encode("utf-8", "surrogatepass")).hexdigest()


def tag_vocab(model: Module, chars: Sequence[str]) -> Module:
    """Mark `model` as built for the vocabulary `chars`: its weights are saved with the fingerprint, and
    weights saved with another fingerprint are refused. Returns the model."""
    setattr(model, _VOCAB_ATTR, vocab_sha256(chars))
    return model


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
    """The weights as safetensors, with the fingerprint of the model's vocabulary if `tag_vocab` gave it one."""
    metadata = {"format": "pt"}
    fingerprint = getattr(model, _VOCAB_ATTR, None)
    if fingerprint is not None:
        metadata[VOCAB_METADATA] = fingerprint
    atomic_write_bytes(path, tensors_to_bytes(unique_state(model), metadata))


Shapes = dict[str, tuple[int, ...]]


def state_shapes(model: nn.Module) -> Shapes:
    """The shapes of the tensors `save_weights` writes for `model` (tied weights once), on any device.

    On the meta device no tensor has an address, so tied weights are told apart by identity instead.
    """
    state = model.state_dict(keep_vars=True)
    if not any(t.is_meta for t in state.values()):
        return {k: tuple(v.shape) for k, v in unique_state(model).items()}
    seen: set[int] = set()
    out = {}
    for name, t in state.items():
        if id(t) not in seen:
            seen.add(id(t))
            out[name] = tuple(t.shape)
    return out


def read_header(path: Path) -> tuple[Shapes, dict[str, str]]:
    """A safetensors file's tensor shapes and metadata from its header alone: no tensor is read into memory.

    safetensors checks that the header's tensors cover the file exactly, so shapes that fit a model bound the file.
    """
    from safetensors import safe_open

    p = Path(path)
    if not p.exists():
        raise ZooError(f"{path}: no such file")
    if not p.is_file():  # a directory, a FIFO (opening it would wait for a writer), a device
        raise ZooError(f"{path}: cannot be read (not a regular file)")
    try:
        with safe_open(str(p), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            metadata = f.metadata() or {}
    except OSError as exc:
        raise ZooError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ZooError(f"{path}: not a valid safetensors file, truncated or corrupt ({exc})") from None
    return shapes, metadata if isinstance(metadata, dict) else {}


def check_fit(path: Path, found: Shapes, metadata: dict[str, str], model: nn.Module) -> None:
    """Refuse weights (their shapes `found` and `metadata`) that do not fit `model`: any missing or unexpected tensor,
    or wrong shape, is an error naming it; so is weights trained on another vocabulary than the model's (when both
    the file and the model say which). `model` may be on the meta device: nothing is compared but shapes."""
    expected = state_shapes(model)
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [f"{k} {found[k]} (expected {v})" for k, v in expected.items() if k in found and found[k] != v]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected " + ", ".join(unexpected))
    if wrong:
        problems.append("wrong shape " + ", ".join(wrong))
    if problems:
        raise ZooError(f"{path}: weights do not fit the model: {'; '.join(problems)}")
    # A vocabulary of the same size with characters swapped fits every shape, and would garble every prediction.
    # Files from before the fingerprint (the bundled weights among them) have none, and load as they did.
    saved, ours = metadata.get(VOCAB_METADATA), getattr(model, _VOCAB_ATTR, None)
    if saved is not None and ours is not None and saved != ours:
        raise ZooError(
            f"{path}: these weights were trained on another vocabulary (sha256 {str(saved)[:16]}…) "
            f"than the model's config.json gives (sha256 {ours[:16]}…)"
        )


def load_weights(path: Path, model: nn.Module) -> None:
    """Load strictly (see `check_fit`)."""
    tensors, metadata = read_safetensors(path)
    check_fit(path, {k: tuple(v.shape) for k, v in tensors.items()}, metadata, model)
    expected = unique_state(model)
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


IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable")


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("state."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for name, value in meta.get("scalars", {}).items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    saved = meta["param_groups"]
    if len(saved) == len(opt.param_groups):  # else load_state_dict says what does not match
        # How the update runs (fused kernels, foreach, capturable) is this machine's choice, made when the optimizer was
        # built, not the saved run's: a run started without fused Adam (an older zoo, or MPS) resumes with it here.
        saved = [{**group, **{k: now[k] for k in IMPLEMENTATION_FLAGS if k in now}} for group, now in zip(saved, opt.param_groups)]
    opt.load_state_dict({"state": state, "param_groups": saved})


def save_checkpoint(
    out_dir: Path, model: nn.Module, opt: torch.optim.Optimizer, state: dict[str, Any], extra: dict[str, torch.Tensor] | None = None
) -> None:
    """Write checkpoint/ as a whole: built beside it, then swapped in."""
    out_dir = Path(out_dir)
    remove_stale_temps(out_dir)
    final = out_dir / CHECKPOINT
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{CHECKPOINT}."))
    tmp.chmod(DIR_MODE)
    old = out_dir / PREVIOUS_CHECKPOINT
    try:
        save_weights(tmp / WEIGHTS, model)
        opt_tensors, opt_meta = optimizer_to_tensors(opt)
        opt_tensors.update(extra or {})
        opt_tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            opt_tensors["rng.cuda"] = torch.cuda.get_rng_state()
        atomic_write_bytes(tmp / OPTIMIZER, tensors_to_bytes(opt_tensors))
        atomic_write_json(tmp / STATE, {**state, "optimizer": opt_meta})
        if final.exists():  # else the old one may be the only checkpoint left (an earlier swap was cut short): keep it
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temps(out_dir: Path) -> None:
    """Delete the checkpoint folders a killed process was still building (`.checkpoint.XXXXXXXX`), and its
    half-written weights (`.model.safetensors.XXXXXXXX.tmp`).

    One process writes a run's checkpoints, so any such folder is left over: at best a complete but
    never swapped-in copy, whose weights the run's own model.safetensors already holds.
    """
    try:
        entries = list(Path(out_dir).iterdir())
    except OSError:
        return  # nothing to tidy where nothing can be listed; writing the checkpoint will say what is wrong
    for entry in entries:
        # a symlink is not a folder mkdtemp made: never follow one out of the run
        if CHECKPOINT_TEMP.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        elif WEIGHTS_TEMP.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)


def load_checkpoint(ckpt: Path, model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    load_weights(ckpt / WEIGHTS, model)
    state = read_json(ckpt / STATE)
    tensors = read_tensors(ckpt / OPTIMIZER)
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
