"""The model contract, and building a model from its spec.

A character language model (task "char-lm") is a `torch.nn.Module` with:

- `forward(x)`: x is a LongTensor [batch, length] of character ids; returns logits
  [batch, vocab] (one prediction: the next character) or [batch, length, vocab]
  (a prediction at every position), matching the targets of its batching scheme;
- `init_state(batch_size)`: the hidden state before the first character;
- `step(x, state)`: x is a LongTensor [batch] of one character each; returns
  (logits [batch, vocab], new state). The sampler uses it to carry the state forward
  one character at a time instead of re-running the whole window;
- optionally `fused()`: a `FusedRnn` (or None), the fast form the sampler uses on the CPU;
- optionally the class attribute `fused_loss = True` (stateless models): then `forward(x, targets=y)`
  returns the mean cross-entropy of its predictions against y, and the trainer trains through it,
  which lets a model fuse its output layer with the loss (`zoo.losses.linear_cross_entropy`).

How many characters one prediction sees (the window length, or unlimited for models that
carry their state across batches) comes from the batching scheme saved in config.json.
"""

from __future__ import annotations

import importlib
import re
import warnings
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from zoo.errors import ZooError, ZooWarning
from zoo.spec import ModelSpec

State = Any  # a tensor (or tuple of tensors) whose first dimension is the batch


@dataclass(frozen=True)
class FusedRnn:
    """An optional fast form of a model's step, for sampling on the CPU (see `zoo.sampling`).

    Models whose step is `h' = act(table[c] + h @ w_hh.T)` with logits `h @ w_out.T + b_out`
    return one from `fused()`: the embedding and input layers collapse into one lookup table
    (an exact algebraic identity), so a character costs one small matrix product.
    """

    table: torch.Tensor  # [vocab, hidden]
    w_hh: torch.Tensor  # [hidden, hidden]
    w_out: torch.Tensor  # [vocab, hidden]
    b_out: torch.Tensor  # [vocab]
    act: str = "tanh"  # or "relu"


@runtime_checkable
class CharLM(Protocol):
    def forward(self, x: torch.Tensor) -> torch.Tensor: ...

    def init_state(self, batch_size: int) -> State: ...

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]: ...


def import_object(ref: str, owner: str, what: str) -> Any:
    """The object a registered "module:attribute" string names (only ever a spec's, never a downloaded file's)."""
    module_name, _, attr = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ZooError(f"{owner}: cannot import its {what} {ref!r} ({exc})") from None
    return obj


def import_builder(spec: ModelSpec) -> Any:
    return import_object(spec.builder, f"model {spec.name!r}", "builder")


def build(spec: ModelSpec, vocab_size: int | None, hparams: dict[str, Any] | None = None, **data: Any) -> nn.Module:
    """A freshly initialised model of `spec` for a vocabulary of `vocab_size`.

    Table models (vocab_size None) get what their data determine as `data` keywords instead; see `zoo.tasks`.
    """
    params = dict(spec.hparams if hparams is None else hparams)
    if vocab_size is not None:
        data["vocab_size"] = vocab_size
    builder = import_builder(spec)
    try:
        model = builder(**data, **params)
    except (TypeError, ValueError, RuntimeError) as exc:  # e.g. --set n_hidden=0: torch refuses the layer
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        raise ZooError(f"model {spec.name!r} cannot be built with the hyper-parameters {shown} ({exc})") from None
    if not isinstance(model, nn.Module):
        raise ZooError(f"model {spec.name!r}: its builder returned {type(model).__name__}, not a torch.nn.Module")
    return model


AMP_MIN_PARAMS = 1_000_000
"""Models this large or larger train under bf16 autocast on CUDA unless told otherwise. Smaller ones are bound by
kernel launches, which autocast's casts only add to: on an H200, char-rnn (0.1 M parameters) took 2.7 s an epoch
with it and 2.1 s without, char-concat 3.7-4.5 s against 3.6-3.8 s (bench/gpu.sh)."""


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX): there bf16 matrix products run at about
    twice float32's rate; elsewhere torch emulates them, several times slower than float32."""
    # Not torch.ops.mkldnn._is_mkldnn_bf16_supported(): that is any AVX-512 CPU, which only emulates bf16.
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a torch without these probes
        return False


def amp_applies(amp: bool, device: torch.device) -> bool:
    """Whether `amp` means bf16 autocast on `device`: on CUDA, and on a CPU with native bfloat16."""
    return amp and (device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16()))


def resumed_amp(options: dict[str, Any], device: torch.device) -> bool:
    """A resumed run's mixed precision, from its run.json options. zoo before CPU autocast recorded amp true for
    runs on the CPU, where it meant float32: on the CPU only a run that records "autocast": "bf16" resumes in bf16."""
    amp = bool(options.get("amp", True))
    return amp and (device.type != "cpu" or options.get("autocast") == "bf16")


def resolve_amp(amp: bool | None, model: nn.Module, device: torch.device) -> bool:
    """Mixed precision for a new run on `device`. None: on CUDA for models of AMP_MIN_PARAMS parameters or more,
    off elsewhere (float32 reproduces the lesson's figures exactly). Asked for on a CPU without native bfloat16
    (or on MPS), a warning and float32: it would only slow training down."""
    if amp is None:
        return device.type == "cuda" and count_params(model) >= AMP_MIN_PARAMS
    if amp and not amp_applies(amp, device):
        why = "this CPU has no native bfloat16 (AVX512-BF16 or AMX)" if device.type == "cpu" else f"not on {device.type}"
        warnings.warn(f"--amp: {why}, where it would slow training down; training in float32", ZooWarning, stacklevel=2)
        return False
    return bool(amp)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def parse_overrides(spec: ModelSpec, pairs: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`--set key=value` pairs to typed hyper-parameters, checked against the spec's defaults."""
    hparams = dict(spec.hparams)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep:
            raise ZooError(f"--set {pair!r}: expected key=value")
        if key not in hparams:
            known = ", ".join(sorted(hparams)) or "none"
            raise ZooError(f"--set {key}: {spec.name} has no hyper-parameter {key!r} (known: {known})")
        hparams[key] = coerce(key, raw.strip(), hparams[key])
    return hparams


def coerce(key: str, raw: str, default: Any) -> Any:
    kind = type(default)
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if default is None:
            return raw
        return kind(raw)
    except ValueError:
        article = "an" if kind.__name__[0] in "aeiou" else "a"
        raise ZooError(f"--set {key}={raw}: expected {article} {kind.__name__}") from None


def resolve_device(name: str | torch.device | None) -> torch.device:
    """auto (or None) picks CUDA, then MPS, then the CPU; an unavailable device is a clear error."""
    if name is None or isinstance(name, torch.device):
        name = "auto" if name is None else str(name)
    if not isinstance(name, str):
        raise ZooError(f"--device must be a name (auto, cpu, cuda, cuda:N or mps), got {name!r}")
    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not re.fullmatch(r"cuda(:\d+)?", name):
            raise ZooError(f"--device {name}: unknown device (use auto, cpu, cuda, cuda:N or mps)")
        if not torch.cuda.is_available():
            raise ZooError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}); use --device cpu or auto")
        count = torch.cuda.device_count()
        if ":" in name and int(name.split(":")[1]) >= count:
            raise ZooError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
        return torch.device(name)
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ZooError("--device mps: MPS is not available on this machine; use --device cpu or auto")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise ZooError(f"--device {name}: unknown device (use auto, cpu, cuda, cuda:N or mps)")
