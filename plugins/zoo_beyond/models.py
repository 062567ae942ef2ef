"""Stateful character models: the hidden state flows from one batch to the next.

Every model here has `stateful = True`: `forward(x, state)` returns (logits at every
position, new state); the trainer detaches the state between batches (truncated BPTT),
and resets it at the start of each epoch and before evaluation. States are batch-first.
`states(x)` gives every layer's hidden state (and an LSTM's cell state) after each character
in one pass (what `zoo explain` shows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

State = tuple[torch.Tensor, ...]
CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class CharStatefulRnn(nn.Module):
    """Embedding -> RNN, GRU or LSTM (n_layers, dropout between layers) -> linear, carrying its state."""

    stateful = True

    def __init__(self, vocab_size: int, n_fac: int = 42, n_hidden: int = 256, cell: str = "rnn", n_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {cell!r}")
        self.cell, self.n_layers, self.n_hidden = cell, n_layers, n_hidden
        self.e = nn.Embedding(vocab_size, n_fac)
        self.rnn = CELLS[cell](n_fac, n_hidden, n_layers, dropout=dropout if n_layers > 1 else 0.0, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.l_out = nn.Linear(n_hidden, vocab_size)

    def init_state(self, batch_size: int) -> State:
        zeros = self.l_out.weight.new_zeros(batch_size, self.n_layers, self.n_hidden)
        return (zeros, zeros.clone()) if self.cell == "lstm" else (zeros,)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        state = self.init_state(x.shape[0]) if state is None else state
        h = tuple(s.transpose(0, 1).contiguous() for s in state)  # nn.RNN wants [layers, batch, hidden]
        out, h = self.rnn(self.e(x), h if self.cell == "lstm" else h[0])
        h = h if self.cell == "lstm" else (h,)
        return self.l_out(self.drop(out)), tuple(s.transpose(0, 1) for s in h)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        logits, state = self(x[:, None], state)
        return logits[:, 0], state

    @torch.no_grad()
    def states(self, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """Each layer's state after each character of x ([B, T]) from the zero state, [B, T, n_hidden] each:
        ("rnn0.h", ...) per layer, and an LSTM's cell state ("lstm0.c") too."""
        out, inp = [], self.e(x)
        for layer in range(self.n_layers):
            weights = {name.replace(f"_l{layer}", "_l0"): w for name, w in self.rnn.named_parameters() if name.endswith(f"_l{layer}")}
            one = CELLS[self.cell](inp.shape[-1], self.n_hidden, batch_first=True)  # a layer of its own: its outputs are this layer's
            hs = functional_call(one, weights, (inp,))[0]
            out.append((f"{self.cell}{layer}.h", hs))
            if self.cell == "lstm":
                out.append((f"lstm{layer}.c", lstm_cells(inp, hs, weights)))
            inp = hs
        return out


def lstm_cells(inp: torch.Tensor, hs: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """An LSTM layer's cell states [B, T, H], from its inputs [B, T, in] and hidden states [B, T, H] (from zero states).

    nn.LSTM hands back the hidden state of every step but the cell state of the last only. With every h known, all
    the gates come from one matrix product; what is left, c_t = f_t c_{t-1} + i_t g_t, is elementwise.
    """
    h_before = torch.cat((hs.new_zeros(hs.shape[0], 1, hs.shape[2]), hs[:, :-1]), 1)
    gates = inp @ weights["weight_ih_l0"].t() + h_before @ weights["weight_hh_l0"].t() + weights["bias_ih_l0"] + weights["bias_hh_l0"]
    i, f, g, _ = gates.chunk(4, -1)  # PyTorch's order: input, forget, cell, output
    added, forget = torch.sigmoid(i) * torch.tanh(g), torch.sigmoid(f)
    cs = torch.empty_like(hs)
    c = hs.new_zeros(hs.shape[0], hs.shape[2])
    for t in range(hs.shape[1]):
        c = torch.addcmul(added[:, t], forget[:, t], c, out=cs[:, t])
    return cs


class LockedDropout(nn.Module):
    """Dropout with one mask per sequence, the same at every time step (Gal & Ghahramani)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - self.p) / (1 - self.p)
        return x * mask


class AwdLstm(nn.Module):
    """AWD-LSTM (Merity, Keskar & Socher 2017), as fastai builds it, for characters.

    Regularisers: embedding dropout (whole characters dropped from the embedding matrix),
    input dropout and hidden dropout between layers (locked: one mask per sequence), weight
    dropout on each layer's hidden-to-hidden weights (DropConnect), output dropout, weight
    tying (the decoder shares the embedding matrix), and activation regularisation (AR,
    `alpha`) and temporal AR (TAR, `beta`), which `forward` leaves in `self.extra_loss`.
    """

    stateful = True

    def __init__(
        self,
        vocab_size: int,
        emb_size: int = 128,
        n_hidden: int = 512,
        n_layers: int = 3,
        embed_p: float = 0.05,
        input_p: float = 0.25,
        weight_p: float = 0.2,
        hidden_p: float = 0.1,
        output_p: float = 0.1,
        tie_weights: bool = True,
        alpha: float = 2.0,
        beta: float = 1.0,
    ) -> None:
        super().__init__()
        self.n_layers, self.alpha, self.beta, self.embed_p, self.weight_p = n_layers, alpha, beta, embed_p, weight_p
        self.sizes = [n_hidden] * (n_layers - 1) + [emb_size if tie_weights else n_hidden]
        self.e = nn.Embedding(vocab_size, emb_size)
        inputs = [emb_size] + self.sizes[:-1]
        self.rnns = nn.ModuleList(nn.LSTM(i, o, batch_first=True) for i, o in zip(inputs, self.sizes))
        self.input_drop = LockedDropout(input_p)
        self.hidden_drops = nn.ModuleList(LockedDropout(hidden_p) for _ in range(n_layers - 1))
        self.output_drop = LockedDropout(output_p)
        self.l_out = nn.Linear(self.sizes[-1], vocab_size)
        if tie_weights:
            self.l_out.weight = self.e.weight
        self.extra_loss = torch.zeros(())

    def init_state(self, batch_size: int) -> State:
        w = self.e.weight
        return tuple(w.new_zeros(batch_size, s) for s in self.sizes for _ in range(2))  # h0, c0, h1, c1, ...

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        w = self.e.weight
        if self.training and self.embed_p > 0:
            keep = w.new_empty(w.shape[0], 1).bernoulli_(1 - self.embed_p) / (1 - self.embed_p)
            w = w * keep
        return F.embedding(x, w)

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        state = self.init_state(x.shape[0]) if state is None else state
        inp = self.input_drop(self._embed(x))
        new_state: list[torch.Tensor] = []
        raw = inp
        for i, rnn in enumerate(self.rnns):
            h, c = state[2 * i][None], state[2 * i + 1][None]
            w_hh = F.dropout(rnn.weight_hh_l0, self.weight_p, self.training)
            raw, (h, c) = functional_call(rnn, {"weight_hh_l0": w_hh}, (inp, (h, c)))
            new_state += [h[0], c[0]]
            inp = self.hidden_drops[i](raw) if i < self.n_layers - 1 else raw
        out = self.output_drop(raw)
        if self.training:
            ar = out.pow(2).mean()
            tar = (raw[:, 1:] - raw[:, :-1]).pow(2).mean() if raw.shape[1] > 1 else raw.new_zeros(())
            self.extra_loss = self.alpha * ar + self.beta * tar
        else:
            self.extra_loss = raw.new_zeros(())
        return self.l_out(out), tuple(new_state)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        logits, state = self(x[:, None], state)
        return logits[:, 0], state

    @torch.no_grad()
    def states(self, x: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """Each layer's hidden and cell state after each character of x ([B, T]) from the zero state, as in eval mode
        (no dropout): ("lstm0.h", [B, T, size]), ("lstm0.c", ...), a pair per layer."""
        out, inp = [], F.embedding(x, self.e.weight)
        for layer, rnn in enumerate(self.rnns):
            hs = rnn(inp)[0]
            out += [(f"lstm{layer}.h", hs), (f"lstm{layer}.c", lstm_cells(inp, hs, dict(rnn.named_parameters())))]
            inp = hs
        return out
