"""Weights and the state to resume training, as safetensors: saved whole, loaded strictly.

The folder they live in and its file names are zoo.rundir's. Every file is written to a temporary
file, fsynced and renamed into place, and the checkpoint folder is swapped in whole, so an
interruption never leaves a half-written file that counts as valid.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
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

from zoo import checks
from zoo.errors import ZooError
from zoo.fileio import DIR_MODE, atomic_write_bytes, atomic_write_json, read_json
from zoo.rundir import CHECKPOINT, CHECKPOINT_TEMP, OPTIMIZER, PREVIOUS_CHECKPOINT, STATE, WEIGHTS, WEIGHTS_TEMP

VOCAB_METADATA = "zoo.vocab_sha256"  # the key in a safetensors file's metadata
_VOCAB_ATTR = "zoo_vocab_sha256"  # where a model carries the fingerprint of the vocabulary it was built for

Module = TypeVar("Module", bound=nn.Module)


def tensors_to_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file's bytes, the same for the same tensors and metadata in any process (see `_sorted_metadata`)."""
    raw = st_save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, metadata=metadata)
    return _sorted_metadata(raw)


def _sorted_metadata(raw: bytes) -> bytes:
    """`raw` with its header's "__metadata__" keys in sorted order.

    safetensors writes the metadata from a Rust HashMap, whose order changes from one process to the next, so the
    same weights hashed differently and registry.toml's sha256 pins could not be reproduced. The tensors' entries
    and data are already in a fixed order, and are kept byte for byte: a file with one metadata key comes out as
    safetensors wrote it (the bundled weights' pinned hashes among them).
    """
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or len(metadata) < 2:
        return raw
    header["__metadata__"] = dict(sorted(metadata.items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads the header with spaces to 8 bytes, so the data stays aligned
    return len(text).to_bytes(8, "little") + text + raw[8 + size :]


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    return read_safetensors(path)[0]


def read_safetensors(path: Path, limit: int | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file's tensors and its metadata (the header's "__metadata__", {} if it has none); a file of
    more than `limit` bytes is refused before it is read."""
    try:
        if limit is not None and Path(path).stat().st_size > limit:
            raise ZooError(f"{path}: {Path(path).stat().st_size:,} bytes, more than this model's state can take ({limit:,})")
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

# The names optimizer.safetensors holds: a parameter's state, the random generators' states, a carried hidden state
_STATE_TENSOR = re.compile(r"state\.(\d{1,9})\.(\w{1,64})")
_STATE_SCALAR = re.compile(r"(\d{1,9})\.(\w{1,64})")
_CARRIED = re.compile(r"carried\.\d{1,9}")
_RNG = ("rng.torch", "rng.cuda")


def state_keys(opt: torch.optim.Optimizer, group: dict[str, Any]) -> set[str] | None:
    """What a parameter's state holds once the optimizer has stepped (None: an optimizer zoo does not make)."""
    if isinstance(opt, torch.optim.Adam):
        return {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if group.get("amsgrad") else set())
    if isinstance(opt, torch.optim.SGD):
        return {"momentum_buffer"}
    return None


def saved_state(ckpt: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The saved per-parameter state by parameter index: tensors from optimizer.safetensors, scalars from state.json."""
    state: dict[int, dict[str, Any]] = {}
    scalars = meta.get("scalars", {})
    if not isinstance(scalars, dict):
        raise ZooError(f"{ckpt / STATE}: the optimizer's 'scalars' must be an object, got {scalars!r}")
    named = [(ckpt / OPTIMIZER, name, _STATE_TENSOR, value) for name, value in tensors.items() if name.startswith("state.")]
    named += [(ckpt / STATE, name, _STATE_SCALAR, value) for name, value in scalars.items()]
    for where, name, pattern, value in named:
        match = pattern.fullmatch(name)
        if match is None:
            raise ZooError(f"{where}: {name!r} is not the name of an optimizer state")
        idx, key = int(match[1]), match[2]
        if key in state.setdefault(idx, {}):
            raise ZooError(f"{where}: the state {key!r} of parameter {idx} is saved twice")
        state[idx][key] = value
    unknown = [n for n in tensors if not (n.startswith("state.") or n in _RNG or _CARRIED.fullmatch(n))]
    if unknown:
        raise ZooError(f"{ckpt / OPTIMIZER}: holds {unknown[0]!r}, which zoo does not write")
    return state


def checked_groups(where: Path, opt: torch.optim.Optimizer, saved: Any) -> list[dict[str, Any]]:
    """The saved parameter groups to load: their parameter numbers and learning rates, the rest this run's own.

    The settings (betas, eps, ...) are the recipe's, so a saved one that differs was edited; how the update runs
    (fused kernels, foreach, capturable) is this machine's choice, not the saved run's: a run started without fused
    Adam (an older zoo, or MPS) resumes with it here.
    """
    if not isinstance(saved, list) or len(saved) != len(opt.param_groups) or not all(isinstance(g, dict) for g in saved):
        raise ZooError(f"{where}: the optimizer's 'param_groups' must be a list of {len(opt.param_groups)} objects")
    groups, seen = [], set()
    for group, now in zip(saved, opt.param_groups):
        params = group.get("params")
        if not (isinstance(params, list) and len(params) == len(now["params"]) and all(checks.is_whole(i) for i in params)):
            raise ZooError(f"{where}: a parameter group's 'params' must list {len(now['params'])} parameter numbers, got {params!r}")
        if seen & set(params) or len(set(params)) != len(params):
            raise ZooError(f"{where}: a parameter number is listed twice in the optimizer's 'params'")
        seen |= set(params)
        for key, value in group.items():
            ours = now.get(key)
            if key in ("params", "lr", *IMPLEMENTATION_FLAGS) or key not in now:
                continue
            if (tuple(value) if isinstance(value, list) else value) != ours:
                raise ZooError(f"{where}: the optimizer's {key!r} is {value!r}, not this run's {ours!r}; the checkpoint was edited")
        lr = checks.positive(f"{where}: the optimizer's 'lr'", group.get("lr"))
        groups.append({**{k: v for k, v in now.items() if k != "params"}, "lr": lr, "params": params})
    return groups


def check_param_state(where: Path, idx: int, param: torch.Tensor, state: dict[str, Any], keys: set[str] | None) -> None:
    """One parameter's saved state against the parameter: every tensor of its shape and dtype (the fused Adam kernel
    writes past a smaller buffer, corrupting memory), a step count of at least 1 (the optimizer has stepped once when
    it has state), and only finite numbers."""
    if keys is not None and set(state) != keys:
        raise ZooError(f"{where}: parameter {idx}'s optimizer state holds {sorted(state)}, not {sorted(keys)}")
    for key, value in state.items():
        what = f"{where}: the optimizer's {key!r} of parameter {idx} {tuple(param.shape)}"
        if key == "step":
            step = value.item() if isinstance(value, torch.Tensor) and value.shape == () and value.is_floating_point() else value
            if not (checks.is_number(step, finite=True) and step >= 1):
                raise ZooError(f"{what} must be a count of at least 1, got {_shown(step)}")
        elif isinstance(value, torch.Tensor):
            if value.shape != param.shape or value.dtype != param.dtype:
                raise ZooError(f"{what} is {_shown(value)}, not {tuple(param.shape)} {param.dtype}")
            if not bool(torch.isfinite(value).all()):
                raise ZooError(f"{what} holds numbers that are not finite")
        elif value is not None:
            raise ZooError(f"{what} must be a tensor, got {value!r}")


def optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: Any, ckpt: Path) -> None:
    """Load a saved optimizer state (its tensors, and state.json's "optimizer": `meta`) into `opt`, once every part of it
    is checked against `opt`'s parameters. `ckpt`: the checkpoint folder, whose files the errors name."""
    if not isinstance(meta, dict):
        raise ZooError(f"{ckpt / STATE}: 'optimizer' must be an object, got {meta!r}")
    groups = checked_groups(ckpt / STATE, opt, meta.get("param_groups"))
    state = saved_state(ckpt, tensors, meta)
    where = ckpt / OPTIMIZER
    params = {i: (p, now) for group, now in zip(groups, opt.param_groups) for i, p in zip(group["params"], now["params"])}
    for idx, values in state.items():
        if idx not in params:
            raise ZooError(f"{where}: holds optimizer state for parameter {idx}, which the optimizer's 'params' do not list")
        param, now = params[idx]
        check_param_state(where, idx, param, values, state_keys(opt, now))
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (KeyError, ValueError, TypeError, RuntimeError) as exc:  # what the checks above do not foresee
        raise ZooError(f"{where}: optimizer state does not fit this model ({exc})") from None


def _shown(value: Any) -> str:
    """A saved value for an error line: a tensor by its shape and dtype, never its contents."""
    if isinstance(value, torch.Tensor):
        return f"{tuple(value.shape)} {value.dtype}"
    return repr(value)


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


def restore_rng(where: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Set the random generators to their saved states, each checked first: torch refuses a wrong size with a
    traceback, and a state of the right size it cannot use."""
    states = [("rng.torch", torch.get_rng_state, torch.set_rng_state)]
    if torch.cuda.is_available():
        states.append(("rng.cuda", torch.cuda.get_rng_state, torch.cuda.set_rng_state))
    for name, get, put in states:
        if name not in tensors:  # checkpoints of a CPU run hold no CUDA state
            continue
        saved, now = tensors[name], get()
        if saved.dtype != torch.uint8 or saved.shape != now.shape:
            raise ZooError(f"{where}: the random generator's state {name!r} is {_shown(saved)}, not {_shown(now)}")
        try:
            put(saved)
        except RuntimeError:  # "Invalid mt19937 state"
            put(now)
            raise ZooError(f"{where}: the random generator's state {name!r} is not one torch wrote") from None


def saved_carried(where: Path, tensors: dict[str, torch.Tensor], model: nn.Module) -> tuple[torch.Tensor, ...] | None:
    """The hidden state a stateful model carried between batches, checked against the state it starts from."""
    carried = [tensors[f"carried.{i}"] for i in range(len(tensors)) if f"carried.{i}" in tensors]
    if not carried or not getattr(model, "stateful", False):
        return None  # a model without state ignores one
    rows = carried[0].shape[0] if carried[0].dim() else 0
    fresh = model.init_state(max(1, rows))
    fresh = fresh if isinstance(fresh, tuple) else (fresh,)
    shapes, expected = [tuple(t.shape) for t in carried], [tuple(t.shape) for t in fresh]
    if rows < 1 or shapes != expected or not all(t.is_floating_point() and bool(torch.isfinite(t).all()) for t in carried):
        raise ZooError(f"{where}: the carried hidden state {shapes} does not fit the model's {expected} (finite numbers)")
    return tuple(carried)


def optimizer_file_limit(model: nn.Module) -> int:
    """The most bytes an optimizer.safetensors of `model` can hold: Adam's three float64-sized copies of every
    parameter (amsgrad's fourth included), the RNG state and a stateful model's carried rows, with room to spare.
    A hand-edited or sparse file beyond it is refused before it is read whole."""
    param_bytes = sum(p.numel() * 8 for p in model.parameters())
    return 4 * param_bytes + 256 * 2**20


def load_checkpoint(ckpt: Path, model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Load the weights and optimizer state into `model` and `opt`, and set the random generators; the state.json
    counters (with "carried": a stateful model's hidden state, or None). Every part is checked before it is used."""
    load_weights(ckpt / WEIGHTS, model)
    state = read_json(ckpt / STATE)
    where = ckpt / OPTIMIZER
    tensors = read_safetensors(where, limit=optimizer_file_limit(model))[0]
    carried = saved_carried(where, tensors, model)
    optimizer_from_tensors(opt, tensors, state.get("optimizer"), ckpt)
    restore_rng(where, tensors)
    state["carried"] = carried
    return state
