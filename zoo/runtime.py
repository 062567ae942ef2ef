"""Where and how a model computes: the device, and bf16 mixed precision (autocast) where it pays."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import warnings
from typing import Any

import torch
from torch import nn

from zoo.errors import ZooError, ZooWarning
from zoo.model import count_params

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


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC 9454"), from /proc/cpuinfo on Linux, else what platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict[str, Any]:
    """What a run computed on, for run.json and its model card: the CPU, its logical cores, torch's threads, and the
    accelerator's name on CUDA."""
    found: dict[str, Any] = {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads()}
    if device.type == "cuda":
        found["gpu"] = torch.cuda.get_device_name(device)
    return found


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


def autocast(device: torch.device, amp: bool, cache: bool = True) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast when `amp` (on CUDA or the CPU); `cache` off for a step captured as a CUDA graph (torch's advice)."""
    if amp and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


def device_note(dev: torch.device, amp: bool, cuda_graph: bool = False) -> str:
    """How a run computes, for the training headers: "device cuda (the step as one CUDA graph), bf16 autocast"."""
    return f"device {dev}" + (" (the step as one CUDA graph)" if cuda_graph else "") + (", bf16 autocast" if amp else "")


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
