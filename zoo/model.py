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
- optionally `states(x)`: x a LongTensor [batch, length]; returns a list of (layer name, tensor
  [batch, length, units]), the hidden state after each character of each row from the zero state,
  in one pass of the recurrence (an LSTM may add its cell states as their own layer). `zoo explain`
  shows them (zoo.explanation); a model without it gets the prediction view only;
- optionally the class attribute `fused_loss = True` (stateless models): then `forward(x, targets=y)`
  returns the mean cross-entropy of its predictions against y, and the trainer trains through it,
  which lets a model fuse its output layer with the loss (`zoo.losses.linear_cross_entropy`).

How many characters one prediction sees (the window length, or unlimited for models that
carry their state across batches) comes from the batching scheme saved in config.json.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from zoo.errors import ZooError, did_you_mean
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


def check_builder_params(spec: ModelSpec, builder: Any) -> None:
    """Refuse a spec whose hyper-parameter names are not parameters of its builder (a typo, an argument renamed
    in the model but not in the spec), naming the spec and what the builder takes; a builder with **kwargs takes
    any name. Checked where the builder is imported anyway (training, the kit): reading it when a plugin
    registers the spec would import torch and the model's code into `zoo list`."""
    try:
        params = inspect.signature(builder).parameters
    except (TypeError, ValueError):
        return  # no signature to read (a builtin): the build says what is wrong
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    keywords = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    takes = [name for name, p in params.items() if p.kind in keywords]
    unknown = [name for name in spec.hparams if name not in takes]
    if unknown:
        raise ZooError(
            f"model {spec.name!r}: its spec's hyper-parameter {unknown[0]!r}{did_you_mean(unknown[0], takes)} is not a "
            f"parameter of its builder {spec.builder} (it takes: {', '.join(takes) or 'nothing'}); rename it in the spec or the builder"
        )


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


def uses_fused_loss(model: nn.Module) -> bool:
    """Whether the model declares that `model(x, targets=y)` returns the mean cross-entropy itself (`fused_loss`):
    stateless models only, since a stateful one must also hand back its state."""
    return bool(getattr(model, "fused_loss", False)) and not getattr(model, "stateful", False)


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
