"""The Lesson 6 character models as the lesson wrote them: the baseline of the benchmarks' plain loop.

These are written out here, not imported from zoo, so that a change to zoo's models (which
compute the same functions faster) cannot also change the baseline they are measured against.
Each class creates its parameters in the same order, with the same names and shapes, as its zoo
counterpart in plugins/zoo_lesson6/models.py, so the same seed gives both the same initial
weights (tests/test_recurrence.py checks that, and that both compute the same function).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Char3Model(nn.Module):
    def __init__(self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256) -> None:
        super().__init__()
        self.e = nn.Embedding(vocab_size, n_fac)
        self.l_in = nn.Linear(n_fac, n_hidden)
        self.l_hidden = nn.Linear(n_hidden, n_hidden)
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in1 = F.relu(self.l_in(self.e(x[:, 0])))
        in2 = F.relu(self.l_in(self.e(x[:, 1])))
        in3 = F.relu(self.l_in(self.e(x[:, 2])))
        h = torch.zeros_like(in1)
        h = torch.tanh(self.l_hidden(h + in1))
        h = torch.tanh(self.l_hidden(h + in2))
        h = torch.tanh(self.l_hidden(h + in3))
        return self.l_out(h)


class CharLoopModel(nn.Module):
    def __init__(self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256) -> None:
        super().__init__()
        self.n_hidden = n_hidden
        self.e = nn.Embedding(vocab_size, n_fac)
        self.l_in = nn.Linear(n_fac, n_hidden)
        self.l_hidden = nn.Linear(n_hidden, n_hidden)
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], self.n_hidden)
        for t in range(x.shape[1]):
            inp = F.relu(self.l_in(self.e(x[:, t])))
            h = torch.tanh(self.l_hidden(h + inp))
        return self.l_out(h)


class CharLoopConcatModel(nn.Module):
    def __init__(self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256) -> None:
        super().__init__()
        self.n_hidden = n_hidden
        self.e = nn.Embedding(vocab_size, n_fac)
        self.l_in = nn.Linear(n_fac + n_hidden, n_hidden)
        self.l_hidden = nn.Linear(n_hidden, n_hidden)
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(x.shape[0], self.n_hidden)
        for t in range(x.shape[1]):
            inp = torch.cat((h, self.e(x[:, t])), 1)
            inp = F.relu(self.l_in(inp))
            h = torch.tanh(self.l_hidden(inp))
        return self.l_out(h)


class CharRnn(nn.Module):
    def __init__(self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256) -> None:
        super().__init__()
        self.n_hidden = n_hidden
        self.e = nn.Embedding(vocab_size, n_fac)
        self.rnn = nn.RNN(n_fac, n_hidden, batch_first=True)
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(1, x.shape[0], self.n_hidden)
        outp, h = self.rnn(self.e(x), h)
        return self.l_out(outp[:, -1])


class CharSeqRnn(nn.Module):
    def __init__(
        self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256, identity_init: bool = False, nonlinearity: str = "tanh"
    ) -> None:
        super().__init__()
        self.n_hidden = n_hidden
        self.e = nn.Embedding(vocab_size, n_fac)
        self.rnn = nn.RNN(n_fac, n_hidden, nonlinearity=nonlinearity, batch_first=True)
        self.l_out = nn.Linear(n_hidden, vocab_size)
        if identity_init:
            self.rnn.weight_hh_l0.data.copy_(torch.eye(n_hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.zeros(1, x.shape[0], self.n_hidden)
        outp, h = self.rnn(self.e(x), h)
        return self.l_out(outp)


def plain_model(class_name: str, vocab_size: int, **hparams: object) -> nn.Module:
    """The lesson's class of that name (a zoo_lesson6.models class name)."""
    return globals()[class_name](vocab_size=vocab_size, **hparams)
