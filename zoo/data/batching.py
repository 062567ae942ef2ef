"""Batching schemes: a corpus (one 1-D tensor of character ids) to (input, target) batches.

No copy of the corpus is made per window: a scheme keeps the row start offsets and
gathers each batch on the fly with one indexing operation.

Validation splits:
- "random" (the lesson's): a random 20% of the rows, chosen with a fixed seed. Windows
  that overlap share characters between train and validation, so this flatters the
  validation loss a little; use it to compare with the lesson's numbers.
- "tail": the last 20% of the corpus (or `val_frac` of it), with no training window reaching into it. The
  honest estimate of how well a model predicts text it has not seen.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch

from zoo.errors import ZooError
from zoo.spec import Batching

SPLITS = ("random", "tail")
SPLIT_SEED = 42


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The shuffle of epoch `epoch` depends only on (seed, epoch), so a resumed run replays it."""
    g = torch.Generator()
    g.manual_seed(seed * 1_000_003 + epoch)
    return g


class WindowBatches:
    """Rows of `length` characters at `starts`; targets are the next character, or every next one."""

    def __init__(self, data: torch.Tensor, starts: torch.Tensor, length: int, every: bool, batch_size: int, shuffle: bool) -> None:
        self.data = data
        self.starts = starts
        self.length = length
        self.every = every
        self.batch_size = batch_size
        self.shuffle = shuffle
        self._offsets = torch.arange(length)

    def __len__(self) -> int:
        return (len(self.starts) + self.batch_size - 1) // self.batch_size

    @property
    def rows(self) -> int:
        return len(self.starts)

    def to(self, device: torch.device) -> WindowBatches:
        """The same batches, gathered on `device` (the corpus is copied there once, not per batch)."""
        moved = copy.copy(self)
        moved.data, moved.starts, moved._offsets = self.data.to(device), self.starts.to(device), self._offsets.to(device)
        return moved

    def batch(self, row_starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = row_starts[:, None] + self._offsets
        x = self.data[idx].long()
        y = self.data[idx + 1].long() if self.every else self.data[row_starts + self.length].long()
        return x, y

    def epoch(
        self, seed: int = 0, epoch: int = 0, start_step: int = 0, rank: int = 0, world: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of one epoch, from batch number `start_step` on (the shuffle is (seed, epoch)'s).

        With `world` processes, every process draws the same shuffle and takes its `rank`-th
        slice of each global batch: together they see exactly the single-process batches.
        """
        # The shuffle is drawn on the CPU (the same on every device), then applied where the rows are.
        perm = torch.randperm(len(self.starts), generator=epoch_generator(seed, epoch)).to(self.starts.device) if self.shuffle else None
        order = self.starts[perm] if perm is not None else self.starts
        for i in range(start_step * self.batch_size, len(order), self.batch_size):
            rows = order[i : i + self.batch_size]
            if world > 1:
                if len(rows) < world:
                    return  # a last batch too small to give every process a row
                rows = rows.tensor_split(world)[rank]
            yield self.batch(rows)


class StreamBatches:
    """Contiguous streams for models that carry state across batches (truncated BPTT).

    The corpus is cut into `batch_size` equal streams; batch k holds characters
    [k*length, (k+1)*length) of every stream, targets shifted by one. The last batch may
    be shorter than `length`. Never shuffled: order is what carries the state.
    """

    def __init__(self, data: torch.Tensor, length: int, batch_size: int) -> None:
        n = (len(data) - 1) // batch_size
        if n < 1:
            raise ZooError(f"the text is too short for {batch_size} streams")
        self.inputs = data[: n * batch_size].view(batch_size, n)
        self.targets = data[1 : n * batch_size + 1].view(batch_size, n)
        self.length = length
        self.batch_size = batch_size
        self.steps = n

    def __len__(self) -> int:
        return (self.steps + self.length - 1) // self.length

    @property
    def rows(self) -> int:
        return self.batch_size * len(self)

    def to(self, device: torch.device) -> StreamBatches:
        """The same batches, gathered on `device` (the corpus is copied there once, not per batch)."""
        moved = copy.copy(self)
        moved.inputs, moved.targets = self.inputs.to(device), self.targets.to(device)
        return moved

    def epoch(
        self, seed: int = 0, epoch: int = 0, start_step: int = 0, rank: int = 0, world: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """With `world` processes, each reads its `rank`-th share of the streams."""
        if self.batch_size % world:
            raise ZooError(f"{self.batch_size} streams do not divide among {world} processes; choose --batch-size as a multiple")
        inputs, targets = self.inputs.chunk(world, 0)[rank], self.targets.chunk(world, 0)[rank]
        for i in range(start_step * self.length, self.steps, self.length):
            yield inputs[:, i : i + self.length].long(), targets[:, i : i + self.length].long()


def window_starts(n_chars: int, scheme: Batching) -> torch.Tensor:
    """Start offsets of every full window (one more character is needed for its target)."""
    last = n_chars - scheme.length  # a window at s needs data[s + length] as its last target
    if last <= 0:
        return torch.zeros(0, dtype=torch.long)
    return torch.arange(0, last, scheme.stride)


def split_rows(
    starts: torch.Tensor, n_chars: int, scheme: Batching, split: str, val_frac: float = 0.2
) -> tuple[torch.Tensor, torch.Tensor]:
    if split == "random":
        perm = torch.randperm(len(starts), generator=torch.Generator().manual_seed(SPLIT_SEED))
        n_val = int(len(starts) * val_frac)
        return starts[perm[n_val:]].sort().values, starts[perm[:n_val]].sort().values
    if split == "tail":
        boundary = int(n_chars * (1 - val_frac))
        # a training window and its target stay before the boundary; validation starts at it
        train = starts[starts + scheme.length < boundary]
        val = starts[starts >= boundary]
        return train, val
    raise ZooError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")


def make_batches(
    data: torch.Tensor, scheme: Batching, batch_size: int, split: str, val_frac: float = 0.2
) -> tuple[WindowBatches | StreamBatches, WindowBatches | StreamBatches]:
    """Train and validation batches of `data` under `scheme`."""
    if scheme.kind == "streams":
        boundary = int(len(data) * (1 - val_frac))
        return (
            StreamBatches(data[:boundary], scheme.length, batch_size),
            StreamBatches(data[boundary:], scheme.length, min(batch_size, max(1, (len(data) - boundary - 1) // scheme.length))),
        )
    starts = window_starts(len(data), scheme)
    train, val = split_rows(starts, len(data), scheme, split, val_frac)
    if len(train) == 0 or len(val) == 0:
        raise ZooError(
            f"the text ({len(data)} characters) is too short for windows of {scheme.length} with {val_frac:g} of it held out: "
            f"{len(train):,} training and {len(val):,} validation rows; use a longer text or another --val-frac"
        )
    every = scheme.targets == "every"
    return (
        WindowBatches(data, train, scheme.length, every, batch_size, shuffle=True),
        WindowBatches(data, val, scheme.length, every, max(batch_size, 2048), shuffle=False),
    )


def tail_in_order(data: torch.Tensor, scheme: Batching, val_frac: float, segment: int) -> WindowBatches | StreamBatches:
    """The held-out tail of `data` (the "tail" split's last `val_frac`) read in order, one segment per batch, each of
    its characters a target once: what dynamic evaluation scores, then learns from, segment by segment.

    Streams: one stream of `segment` characters a batch. Windows predicting the next character: a window ending at
    each target, `segment` of them a batch. Windows predicting every position: windows side by side (no overlap, so
    no target is learnt from before it is scored), as many a batch as fill `segment` characters.
    """
    boundary = int(len(data) * (1 - val_frac))
    if scheme.kind == "streams":
        return StreamBatches(data[boundary:], segment, 1)
    every = scheme.targets == "every"
    last = len(data) - scheme.length  # a window at s needs data[s + length] as its last target
    starts = torch.arange(boundary, max(boundary, last), scheme.length if every else 1)
    if len(starts) == 0:
        raise ZooError(f"the held-out text ({len(data) - boundary} characters) is shorter than a window of {scheme.length}")
    rows = max(1, segment // scheme.length) if every else segment
    return WindowBatches(data, starts, scheme.length, every, rows, shuffle=False)
