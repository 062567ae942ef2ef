"""The Lesson 6 character models, as the lesson built them, one step at a time.

Every model embeds characters into `n_fac` dimensions, keeps a hidden state of
`n_hidden` units and returns logits over the vocabulary (the lesson returned
log-probabilities; cross-entropy on logits is the same loss). Inputs are batch-first:
x[:, t] is the t-th character of every row.

Each model's `lesson_forward` is the lesson's code. `forward` computes the same function
faster for training (see `zoo.recurrence`): the embedding and input layers collapse into a
[vocab, hidden] table looked up per character (exact algebra: nothing between them is
nonlinear, or the nonlinearity acts on the table's rows), and the recurrence runs in one
autograd function whose backward computes the weight gradients of all steps in one matrix
product. A test checks both forms give the same outputs and gradients.

Each model also has `init_state(batch)` and `step(x, h)`, which advance the hidden state
by one character; the sampler uses them instead of re-running a whole window; and `states(x)`,
the hidden state after every character of each row in one pass (what `zoo explain` shows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from zoo.losses import linear_cross_entropy
from zoo.model import FusedRnn
from zoo.recurrence import autocast_inputs, elman, elman_split, relu_tanh


def _check_sizes(**sizes: int) -> None:
    """Layer sizes below 1 build empty tensors that fail only later, deep in a forward pass."""
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")


class _Recurrent(nn.Module):
    """What the trainer and the sampler need, shared: the output head, a zero state and a step."""

    n_hidden: int
    l_out: nn.Linear
    fused_loss = True  # forward(x, targets) returns the loss, with the output layer fused into it

    def head(self, h: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """The logits of states h, or with targets (paired position for position) the mean cross-entropy."""
        if targets is None:
            return self.l_out(h)
        return linear_cross_entropy(h, self.l_out.weight, self.l_out.bias, targets)

    def init_state(self, batch_size: int) -> torch.Tensor:
        return self.l_out.weight.new_zeros(batch_size, self.n_hidden)

    def step(self, x: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.advance(x, h)
        return self.l_out(h), h

    def advance(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def states(self, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """The hidden state after each character of x ([B, T]) from the zero state: [("h", [B, T, n_hidden])]."""
        return [("h", self.all_states(x))]

    def all_states(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def fused(self) -> FusedRnn | None:
        """The step as one table lookup and one matrix product, where the algebra allows it."""
        return None


class _AddedInput(_Recurrent):
    """h' = tanh(W_h(h + relu(W_in e(c)))): W_h relu(W_in e(c)) + b_h depends on c alone, so it is a table."""

    e: nn.Embedding
    l_in: nn.Linear
    l_hidden: nn.Linear

    def input_table(self) -> torch.Tensor:
        """Row c is W_h relu(W_in e(c)) + b_h: what character c adds to W_h h inside the tanh."""
        return self.l_hidden(F.relu(self.l_in(self.e.weight)))

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        table, w_hh = autocast_inputs(self.input_table(), self.l_hidden.weight)
        return self.head(elman(table, x.t(), w_hh, last_only=True), targets)

    def all_states(self, x: torch.Tensor) -> torch.Tensor:
        return elman(self.input_table(), x.t(), self.l_hidden.weight).transpose(0, 1)

    @torch.no_grad()
    def fused(self) -> FusedRnn:
        return FusedRnn(self.input_table(), self.l_hidden.weight, self.l_out.weight, self.l_out.bias)


class _TorchRnn(_Recurrent):
    """nn.RNN: h' = act(W_ih e(c) + b_ih + b_hh + W_hh h); the first three terms are a table."""

    e: nn.Embedding
    rnn: nn.RNN

    def input_table(self) -> torch.Tensor:
        r = self.rnn
        return self.e.weight @ r.weight_ih_l0.T + r.bias_ih_l0 + r.bias_hh_l0

    def hidden_states(self, x: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """The state after each character of x ([B, T]): [B, T, hidden]; with `last_only`, after the last, [B, hidden]."""
        if x.is_cuda:  # cuDNN runs the whole recurrence in one kernel: faster than any loop here
            hs = self.rnn(self.e(x), self.init_state(x.shape[0])[None])[0]
            return hs[:, -1] if last_only else hs
        table, w_hh = autocast_inputs(self.input_table(), self.rnn.weight_hh_l0)
        hs = elman(table, x.t(), w_hh, act=self.rnn.nonlinearity, last_only=last_only)
        return hs if last_only else hs.transpose(0, 1)

    def all_states(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden_states(x)

    @torch.no_grad()
    def fused(self) -> FusedRnn:
        r = self.rnn
        return FusedRnn(self.input_table(), r.weight_hh_l0, self.l_out.weight, self.l_out.bias, r.nonlinearity)


class Char3Model(_AddedInput):
    """Predict the 4th character from 3: the same layers applied three times by hand."""

    def __init__(self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256) -> None:
        super().__init__()
        _check_sizes(n_fac=n_fac, n_hidden=n_hidden)
        self.n_hidden = n_hidden
        self.e = nn.Embedding(vocab_size, n_fac)
        self.l_in = nn.Linear(n_fac, n_hidden)  # input -> hidden, shared by the 3 steps
        self.l_hidden = nn.Linear(n_hidden, n_hidden)  # hidden -> hidden, shared too
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def advance(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.l_hidden(h + F.relu(self.l_in(self.e(x)))))

    def lesson_forward(self, x: torch.Tensor) -> torch.Tensor:
        c1, c2, c3 = x[:, 0], x[:, 1], x[:, 2]
        in1 = F.relu(self.l_in(self.e(c1)))
        in2 = F.relu(self.l_in(self.e(c2)))
        in3 = F.relu(self.l_in(self.e(c3)))
        h = torch.zeros_like(in1)
        h = torch.tanh(self.l_hidden(h + in1))
        h = torch.tanh(self.l_hidden(h + in2))
        h = torch.tanh(self.l_hidden(h + in3))
        return self.l_out(h)


class CharLoopModel(_AddedInput):
    """Char3Model as a loop over any number of characters: h = tanh(W_h(h + relu(W_in(e(c)))))."""

    def __init__(self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256) -> None:
        super().__init__()
        _check_sizes(n_fac=n_fac, n_hidden=n_hidden)
        self.n_hidden = n_hidden
        self.e = nn.Embedding(vocab_size, n_fac)
        self.l_in = nn.Linear(n_fac, n_hidden)
        self.l_hidden = nn.Linear(n_hidden, n_hidden)
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def advance(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.l_hidden(h + F.relu(self.l_in(self.e(x)))))

    def lesson_forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.init_state(x.shape[0])
        for t in range(x.shape[1]):
            h = self.advance(x[:, t], h)
        return self.l_out(h)


class CharLoopConcatModel(_Recurrent):
    """The loop, but the input is concatenated with the hidden state instead of added to it."""

    def __init__(self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256) -> None:
        super().__init__()
        _check_sizes(n_fac=n_fac, n_hidden=n_hidden)
        self.n_hidden = n_hidden
        self.e = nn.Embedding(vocab_size, n_fac)
        self.l_in = nn.Linear(n_fac + n_hidden, n_hidden)
        self.l_hidden = nn.Linear(n_hidden, n_hidden)
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def advance(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        inp = F.relu(self.l_in(torch.cat((h, self.e(x)), 1)))
        return torch.tanh(self.l_hidden(inp))

    def lesson_forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.init_state(x.shape[0])
        for t in range(x.shape[1]):
            h = self.advance(x[:, t], h)
        return self.l_out(h)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        table, w_h = self._split_input()
        table, w_h, w_hid, b_hid = autocast_inputs(table, w_h, self.l_hidden.weight, self.l_hidden.bias)
        return self.head(relu_tanh(table, x.t(), w_h, w_hid, b_hid, last_only=True), targets)

    def _split_input(self) -> tuple[torch.Tensor, torch.Tensor]:
        # l_in(cat(h, e)) = W_in[:, :H] h + (W_in[:, H:] e + b_in): the second term is a table row.
        w_h, w_e = self.l_in.weight[:, : self.n_hidden], self.l_in.weight[:, self.n_hidden :]
        return F.linear(self.e.weight, w_e, self.l_in.bias), w_h

    def all_states(self, x: torch.Tensor) -> torch.Tensor:
        table, w_h = self._split_input()
        return relu_tanh(table, x.t(), w_h, self.l_hidden.weight, self.l_hidden.bias).transpose(0, 1)


class CharRnn(_TorchRnn):
    """The same idea with PyTorch's nn.RNN: h = tanh(W_ih e(c) + W_hh h + b); predicts the last step."""

    def __init__(self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256) -> None:
        super().__init__()
        _check_sizes(n_fac=n_fac, n_hidden=n_hidden)
        self.n_hidden = n_hidden
        self.e = nn.Embedding(vocab_size, n_fac)
        self.rnn = nn.RNN(n_fac, n_hidden, batch_first=True)
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def advance(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        _, h = self.rnn(self.e(x)[:, None], h[None])
        return h[0]

    def lesson_forward(self, x: torch.Tensor) -> torch.Tensor:
        outp, _ = self.rnn(self.e(x), self.init_state(x.shape[0])[None])
        return self.l_out(outp[:, -1])

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.hidden_states(x, last_only=True), targets)


class CharSeqRnn(_TorchRnn):
    """nn.RNN that predicts the next character at every position of the window.

    `identity_init` starts the hidden-to-hidden weights as the identity matrix (Le, Jaitly
    & Hinton 2015, "IRNN"). The paper pairs it with ReLU; the lesson kept nn.RNN's tanh,
    which is the default here (`nonlinearity="relu"` gives the paper's version).
    """

    def __init__(
        self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256, identity_init: bool = False, nonlinearity: str = "tanh"
    ) -> None:
        super().__init__()
        _check_sizes(n_fac=n_fac, n_hidden=n_hidden)
        self.n_hidden = n_hidden
        self.e = nn.Embedding(vocab_size, n_fac)
        self.rnn = nn.RNN(n_fac, n_hidden, nonlinearity=nonlinearity, batch_first=True)
        self.l_out = nn.Linear(n_hidden, vocab_size)
        if identity_init:
            with torch.no_grad():
                self.rnn.weight_hh_l0.copy_(torch.eye(n_hidden))

    def advance(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        _, h = self.rnn(self.e(x)[:, None], h[None])
        return h[0]

    def lesson_forward(self, x: torch.Tensor) -> torch.Tensor:
        outp, _ = self.rnn(self.e(x), self.init_state(x.shape[0])[None])
        return self.l_out(outp)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        if x.is_cuda:
            return self.head(self.hidden_states(x), targets)
        table, w_hh = autocast_inputs(self.input_table(), self.rnn.weight_hh_l0)
        split = elman_split(table, x.t(), w_hh, act=self.rnn.nonlinearity)  # time-major
        # The first steps' states are kept once per distinct prefix, and so is their output layer: logits
        # (or loss terms) once per state, then one per row.
        if targets is None:
            shared = [F.embedding(rows, self.l_out(states)) for rows, states in split.shared]
            # Time-major logits, then transposed: cheaper than transposing the states.
            return torch.cat([torch.stack(shared), self.l_out(split.rest)]).transpose(0, 1)
        # Sums per part over one count: the mean of every counted target (ignored ones, -100, are not).
        w, b, ys = self.l_out.weight, self.l_out.bias, targets.t()
        parts = [linear_cross_entropy(states, w, b, ys[t], rows, "sum") for t, (rows, states) in enumerate(split.shared)]
        if split.rest.shape[0]:
            parts.append(linear_cross_entropy(split.rest, w, b, ys[len(split.shared) :], reduction="sum"))
        return sum(parts) / (ys != -100).sum()
