"""CharTCN: characters -> embedding -> causal dilated convolutions -> logits at every position.

Layer i convolves its input with a kernel of `kernel_size` taps spaced 2**i apart, padded on
the left only, so the output at position t sees characters t, t-1, ..., never the future.
Layers after the first add their input back (a residual connection).

Sampling one character at a time needs no recurrence: the state is, for every layer, the
last (kernel_size - 1) * dilation inputs it saw, batch first ([batch, positions, channels]).
A zero state is exactly forward()'s zero padding, so step() predicts what forward() does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CharTCN(nn.Module):
    def __init__(
        self, vocab_size: int, n_fac: int = 42, n_hidden: int = 128, n_layers: int = 3, kernel_size: int = 3, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.e = nn.Embedding(vocab_size, n_fac)
        self.dilations = [2**i for i in range(n_layers)]
        self.kernel_size = kernel_size
        self.convs = nn.ModuleList(
            nn.Conv1d(n_fac if i == 0 else n_hidden, n_hidden, kernel_size, dilation=d) for i, d in enumerate(self.dilations)
        )
        self.drop = nn.Dropout(dropout)
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def _layer(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Layer i on x [batch, channels, positions] that already holds its left context."""
        out = self.drop(F.relu(self.convs[i](x)))
        return out if i == 0 else out + x[:, :, -out.shape[2] :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.e(x).transpose(1, 2)  # [batch, n_fac, length]
        for i, d in enumerate(self.dilations):
            h = self._layer(i, F.pad(h, ((self.kernel_size - 1) * d, 0)))
        return self.l_out(h.transpose(1, 2))  # [batch, length, vocab]

    def init_state(self, batch_size: int) -> tuple[torch.Tensor, ...]:
        w = self.l_out.weight
        sizes = [((self.kernel_size - 1) * d, conv.in_channels) for d, conv in zip(self.dilations, self.convs, strict=True)]
        return tuple(w.new_zeros(batch_size, *size) for size in sizes)

    def step(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        h = self.e(x)  # [batch, n_fac]
        new_state = []
        for i, past in enumerate(state):
            window = torch.cat((past, h[:, None]), 1)  # [batch, (k - 1) * d + 1, channels]
            new_state.append(window[:, 1:])
            h = self._layer(i, window.transpose(1, 2))[:, :, -1]
        return self.l_out(h), tuple(new_state)
