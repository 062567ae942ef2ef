"""The entity-embeddings network (Guo & Berkhahn 2016; fast.ai's Rossmann model).

One nn.Embedding per categorical column, of width min(max_emb, (cardinality + 1) // 2) (fast.ai's
rule; cardinality counts the id 0 kept for missing or unseen values); the embeddings, after
dropout, are concatenated with the normalised continuous columns and fed to an MLP (Linear,
ReLU, BatchNorm, Dropout per hidden layer); the output is squashed into `y_range` (the training
targets' range with a margin) by a sigmoid. The target is the log of the quantity (sales), so
the mean squared error of the output is a squared relative error.

An embedding is a linear layer on the one-hot encoding of its column (row i of its weight is
what the one-hot vector e_i selects), learned with the rest of the network.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def emb_size(cardinality: int, max_emb: int = 50) -> int:
    """The width of a column's embedding: min(max_emb, (cardinality + 1) // 2)."""
    return max(1, min(max_emb, (cardinality + 1) // 2))


def _numbers(text: Any, kind: type) -> list:
    return [kind(p) for p in str(text).replace(" ", "").split(",") if p]


class EntityEmbeddingNet(nn.Module):
    def __init__(
        self,
        cardinalities: dict[str, int],
        n_cont: int,
        y_range: tuple[float, float] | list[float] | None = None,
        layers: str = "1000,500",
        dropout: str = "0.001,0.01",
        emb_dropout: float = 0.04,
        max_emb: int = 50,
    ) -> None:
        super().__init__()
        sizes = _numbers(layers, int)
        ps = _numbers(dropout, float)
        if not sizes or any(s < 1 for s in sizes):
            raise ValueError(f"layers must be comma-separated positive widths, got {layers!r}")
        if len(ps) == 1:
            ps = ps * len(sizes)
        if len(ps) != len(sizes):
            raise ValueError(f"dropout needs one probability per layer ({len(sizes)}), got {dropout!r}")
        self.columns = list(cardinalities)
        self.embeds = nn.ModuleDict({c.replace(".", "_"): nn.Embedding(n, emb_size(n, max_emb)) for c, n in cardinalities.items()})
        for emb in self.embeds.values():  # small, so that what the plot shows is what training learned, not the draw
            nn.init.normal_(emb.weight, std=0.01)
        self.emb_drop = nn.Dropout(emb_dropout)
        self.n_cont = n_cont
        width = sum(e.embedding_dim for e in self.embeds.values()) + n_cont
        mlp: list[nn.Module] = []
        for size, p in zip(sizes, ps):
            mlp += [nn.Linear(width, size), nn.ReLU(), nn.BatchNorm1d(size), nn.Dropout(p)]
            width = size
        mlp.append(nn.Linear(width, 1))
        self.mlp = nn.Sequential(*mlp)
        self.y_range = tuple(float(v) for v in y_range) if y_range is not None else None

    def forward(self, x: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        cat, cont = x
        parts = [emb(cat[:, i]) for i, emb in enumerate(self.embeds.values())]
        h = self.emb_drop(torch.cat(parts, 1)) if parts else cont.new_zeros(cont.shape[0], 0)
        out = self.mlp(torch.cat([h, cont.float()], 1)).squeeze(-1)
        if self.y_range is not None:
            lo, hi = self.y_range
            out = lo + (hi - lo) * torch.sigmoid(out)
        return out

    def embedding(self, column: str) -> torch.Tensor:
        """The embedding matrix of `column`: row 0 is missing/unseen, row i the column's i-th value."""
        if column not in self.columns:
            raise KeyError(column)
        return self.embeds[column.replace(".", "_")].weight.detach()
