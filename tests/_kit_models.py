"""Models that each break one clause of the model contract, for tests that zoo.testing catches them.

They start from the lesson's CharRnn (windows of 8, one prediction) and change one thing.
"""

from __future__ import annotations

import dataclasses
import random

import numpy
import torch
from torch import nn
from zoo_lesson6.models import CharRnn, CharSeqRnn

import zoo


class StepIgnoresInput(CharRnn):
    """step() does not advance the state with the character: sampling would not match forward()."""

    def step(self, x, h):
        return self.l_out(h), h

    def fused(self):
        return None  # the sampler steps with step() (CharRnn's fused form would hide the fault)


class FusedIgnoresBias(CharRnn):
    """step() is right, but the fast form the sampler prefers (fused()) drops the input biases."""

    def fused(self):
        f = super().fused()
        return dataclasses.replace(f, table=self.e.weight.detach() @ self.rnn.weight_ih_l0.detach().T)


class StateNotBatchFirst(CharRnn):
    """init_state() in nn.RNN's layout [layers, batch, hidden] instead of batch first."""

    def init_state(self, batch_size):
        return self.l_out.weight.new_zeros(1, batch_size, self.n_hidden)

    def step(self, x, h):
        _, h = self.rnn(self.e(x)[:, None], h)
        return self.l_out(h[0]), h

    def forward(self, x):
        outp, _ = self.rnn(self.e(x), self.init_state(x.shape[0]))
        return self.l_out(outp[:, -1])


class NoisyStep(CharRnn):
    """Draws from torch's global RNG at inference time, so a seeded sample is not reproducible."""

    def step(self, x, h):
        logits, h = super().step(x, h)
        return logits + 3 * torch.randn_like(logits), h

    def fused(self):
        return None  # the sampler steps with step()


class UnusedLayer(CharRnn):
    """A layer that forward() never uses: training never changes it."""

    def __init__(self, vocab_size, n_fac=42, n_hidden=256):
        super().__init__(vocab_size, n_fac, n_hidden)
        self.unused = nn.Linear(n_hidden, n_hidden)


class PythonRandomInit(CharRnn):
    """Initialises a bias from Python's `random`, so torch's seed does not reproduce the weights."""

    def __init__(self, vocab_size, n_fac=42, n_hidden=256):
        super().__init__(vocab_size, n_fac, n_hidden)
        with torch.no_grad():
            self.l_out.bias.fill_(random.random())


class HiddenTensor(CharRnn):
    """Output depends on a plain tensor attribute that is not in the state dict, so it is never saved."""

    def __init__(self, vocab_size, n_fac=42, n_hidden=256):
        super().__init__(vocab_size, n_fac, n_hidden)
        self.offset = torch.randn(vocab_size)

    def forward(self, x):
        return super().forward(x) + self.offset


class FusedLossWrong(CharRnn):
    """Declares fused_loss, but forward(x, targets) returns another loss than cross-entropy of forward(x)."""

    def forward(self, x, targets=None):
        out = super().forward(x, targets)
        return out * 1.1 if targets is not None else out


class ItemInInit(CharRnn):
    """Reads a tensor's value while building (a scale from the initial weights): it cannot build on the meta device."""

    def __init__(self, vocab_size, n_fac=42, n_hidden=256):
        super().__init__(vocab_size, n_fac, n_hidden)
        self.scale = float(self.l_out.weight.abs().max().item())


class NumpyBuffer(CharRnn):
    """A buffer made with torch.from_numpy: it stays on the CPU when zoo builds the model on the meta device."""

    def __init__(self, vocab_size, n_fac=42, n_hidden=256):
        super().__init__(vocab_size, n_fac, n_hidden)
        self.register_buffer("prior", torch.from_numpy(numpy.zeros(vocab_size, dtype="float32")))


class TimeMajorLogits(CharSeqRnn):
    """Predicts every position, but returns nn.Transformer's default layout [length, batch, V] (and no fused loss,
    so the trainer's reshape would take it silently)."""

    fused_loss = False

    def forward(self, x):
        return super().forward(x).transpose(0, 1)


class StatefulLogitsOnly(CharRnn):
    """Declares itself stateful, but forward(x, state) returns the logits alone, not (logits, new_state)."""

    stateful = True
    fused_loss = False

    def forward(self, x, state=None):
        return super().forward(x)


def kit_spec(name: str, **changes) -> zoo.ModelSpec:
    """A char-rnn spec for the kit's tests, `changes` applied."""
    fields = {
        "summary": "A model for the kit's tests.",
        "builder": "zoo_lesson6.models:CharRnn",
        "dataset": "pydoc-topics",
        "hparams": {"n_fac": 42, "n_hidden": 256},
        "tiny": {"n_fac": 4, "n_hidden": 16},
        "batching": zoo.Batching(kind="windows", length=8, stride=1, targets="next"),
    }
    return zoo.ModelSpec(name=name, **{**fields, **changes})


class SpecPlugin:
    """An in-process plugin registering `specs` (zoo.plugins.host().register(SpecPlugin(...), name))."""

    def __init__(self, *specs: zoo.ModelSpec) -> None:
        self.specs = specs

    @zoo.hookimpl
    def zoo_register_models(self, register):
        for spec in self.specs:
            register(spec)
