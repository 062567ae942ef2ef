"""Running under torchrun: PyTorch's own process groups and DistributedDataParallel.

`torchrun --nproc-per-node N -m zoo train NAME …` sets RANK, WORLD_SIZE and LOCAL_RANK;
zoo then initialises the process group (NCCL on CUDA, gloo on the CPU), wraps the model in
DistributedDataParallel and gives each process its slice of every global batch. Only rank 0
writes files, prints and calls plugin hooks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from zoo.errors import ZooError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


SINGLE = Dist()


def from_env() -> Dist:
    """The torchrun environment, or a single process."""
    world = _env_int("WORLD_SIZE", "1", 1)
    if world <= 1:
        return SINGLE
    rank = _env_int("RANK", None, 0)
    if rank >= world:
        raise ZooError(f"RANK is {rank} but WORLD_SIZE is {world}: a rank counts from 0 to WORLD_SIZE - 1")
    return Dist(rank=rank, world=world, local_rank=_env_int("LOCAL_RANK", "0", 0))


def _env_int(var: str, default: str | None, minimum: int) -> int:
    """A whole number from the environment (torchrun sets these; a hand-set one may be anything)."""
    raw = os.environ.get(var, default)
    if raw is None:
        raise ZooError(f"WORLD_SIZE is set but {var} is not; run zoo under torchrun, or unset WORLD_SIZE for one process")
    try:
        value = int(raw.strip())
    except ValueError:
        raise ZooError(f"{var} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ZooError(f"{var} must be at least {minimum}, got {value}")
    return value


def setup(d: Dist, device: torch.device) -> torch.device:
    """Join the process group; on CUDA each process takes the GPU of its local rank."""
    if not d.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        import gc

        gc.collect()  # DDP's reducer must be gone before the process group it talks to
        dist.barrier()  # no rank leaves while another still talks to it
        dist.destroy_process_group()


def broadcast(d: Dist, obj: Any) -> Any:
    """Rank 0's value of `obj` on every rank."""
    if not d.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(d: Dist, values: list[float], device: torch.device) -> list[float]:
    if not d.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather_rows(d: Dist, state: Any) -> Any:
    """A batch-first state (tensor or tuple of tensors) from every rank, concatenated in rank order."""
    if not d.enabled or state is None:
        return state
    if isinstance(state, tuple):
        return tuple(gather_rows(d, s) for s in state)
    parts = [torch.empty_like(state) for _ in range(d.world)]
    dist.all_gather(parts, state.contiguous())
    return torch.cat(parts, 0)


def shard_rows(d: Dist, state: Any) -> Any:
    """This rank's rows of a gathered batch-first state."""
    if not d.enabled or state is None:
        return state
    if isinstance(state, tuple):
        return tuple(shard_rows(d, s) for s in state)
    return state.chunk(d.world, 0)[d.rank]
