"""The model contract, its declared capabilities, and building a model from its spec.

A character language model (task "char-lm") is a `torch.nn.Module` with:

- `forward(x)`: x is a LongTensor [batch, length] of character ids; returns logits
  [batch, vocab] (one prediction: the next character) or [batch, length, vocab]
  (a prediction at every position), matching the targets of its batching scheme;
- a way for zoo to sample it, which the model declares with `sampling` (below):
  - `"step"` (the default): `init_state(batch_size)`, the hidden state before the first
    character, and `step(x, state)`: x is a LongTensor [batch] of one character each; returns
    (logits [batch, vocab], new state). The sampler carries the state forward one character at
    a time instead of re-running the whole window; optionally `fused()`, a `FusedRnn` (or None),
    the fast form the sampler uses on the CPU;
  - `"cache"`: `init_cache(batch_size)`, an empty cache (any object: zoo never looks inside),
    and `extend(x, cache)`: x a LongTensor [batch, n] of the next n characters; returns
    (logits [batch, n, vocab] for those positions, the cache now holding them too). For models
    that see a bounded window (attention with a key/value cache): `context_length` is required.

Declared capabilities are attributes of the model (class attributes, or set in `__init__` when they depend on the
hyper-parameters), with their defaults on the optional base class `CharModel`; `capabilities(model)` reads and
validates them where a model is built, trained or sampled (the per-batch paths read `stateful` alone):

- `stateful = False`: the state is carried across batches ("streams" batching), forward(x, state);
- `fused_loss = False`: `forward(x, targets=y)` returns the mean cross-entropy of its predictions against y,
  and the trainer trains through it (`zoo.losses.linear_cross_entropy` fuses the output layer with the loss);
- `sampling = "step"` or `"cache"`, as above;
- `context_length = None`: the most characters one forward row or one cache may hold. Required for "cache"
  models; when declared, training windows longer than it are refused before anything is written.

Optionally `states(x)`: x a LongTensor [batch, length]; returns a list of (layer name, tensor
[batch, length, units]), the hidden state after each character of each row from the zero state,
in one pass of the recurrence (an LSTM may add its cell states as their own layer). `zoo explain`
shows them (zoo.explanation); a model without it gets the prediction view only.

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


SAMPLING_KINDS = ("step", "cache")
CACHE_METHODS = ("init_cache", "extend")


@dataclass(frozen=True)
class Capabilities:
    """What a model declares about how zoo may train and sample it (see the module docstring)."""

    stateful: bool = False
    fused_loss: bool = False
    sampling: str = "step"
    context_length: int | None = None


class CharModel(nn.Module):
    """An optional base class for character models: the declared capabilities at their defaults.

    A plain `nn.Module` that sets the same attributes is equally valid; override them as class attributes, or in
    `__init__` when they depend on the hyper-parameters (e.g. `self.context_length = n_ctx`).
    """

    stateful: bool = False
    fused_loss: bool = False
    sampling: str = "step"
    context_length: int | None = None


def capabilities(model: Any) -> Capabilities:
    """The capabilities `model` declares, validated: a declaration zoo cannot honour is one ZooError naming the
    model's class and what to declare."""
    owner = f"model class {type(model).__name__}"
    sampling = getattr(model, "sampling", "step")
    if sampling not in SAMPLING_KINDS:
        raise ZooError(
            f'{owner} declares sampling = {sampling!r}; declare sampling = "step" (init_state/step) or "cache" (init_cache/extend)'
        )
    context_length = getattr(model, "context_length", None)
    if context_length is not None and (isinstance(context_length, bool) or not isinstance(context_length, int) or context_length < 1):
        raise ZooError(f"{owner} declares context_length = {context_length!r}; declare a whole number of characters >= 1, or None")
    caps = Capabilities(bool(getattr(model, "stateful", False)), bool(getattr(model, "fused_loss", False)), sampling, context_length)
    if sampling == "cache":
        _check_cache_model(model, caps, owner)
    return caps


def _check_cache_model(model: Any, caps: Capabilities, owner: str) -> None:
    if caps.context_length is None:
        raise ZooError(
            f'{owner} declares sampling = "cache" but no context_length; '
            "declare the most characters one cache holds (e.g. its learned positions)"
        )
    missing = [name for name in CACHE_METHODS if not callable(getattr(model, name, None))]
    if missing:
        raise ZooError(
            f'{owner} declares sampling = "cache" but has no {" or ".join(missing)}; define init_cache(batch_size) and extend(x, cache)'
        )
    if caps.stateful:
        raise ZooError(
            f'{owner} declares sampling = "cache" and stateful = True; a cache model is stateless in training: declare stateful = False'
        )


def batching_problem(caps: Capabilities, kind: str, length: int) -> str | None:
    """What keeps a model with `caps` from training on `kind` batching of `length` characters, or None: a cache
    model samples within a window, so it trains on windows; no row may be longer than the declared context_length."""
    if caps.sampling == "cache" and kind == "streams":
        return 'a model with sampling = "cache" trains on "windows" batching (a window the cache can hold), not "streams"'
    if caps.context_length is not None and length > caps.context_length:
        return (
            f"its batching length {length} is longer than the model's context_length {caps.context_length}; "
            "shorten the batching or raise context_length"
        )
    return None


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
    caps = capabilities(model)
    return caps.fused_loss and not caps.stateful


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
