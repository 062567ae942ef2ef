"""What a plugin registers: plain data, importable without torch.

A `ModelSpec` names its builder as an import string ("package.module:Class") so that
`zoo list` can show every model without importing torch or the model's code.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

# What a model learns; zoo.tasks implements each (loss, metrics, data path).
TASKS = ("char-lm", "regression", "tabular-regression")
OPTIMIZERS = ("adam", "sgd")  # zoo.trainer.make_optimizer builds them


@dataclass(frozen=True)
class Stage:
    """One stage of a training recipe: `epochs` epochs at learning rate `lr`."""

    lr: float
    epochs: int


@dataclass(frozen=True)
class Batching:
    """How a corpus becomes (input, target) tensors; see `zoo.data.batching`.

    kind "windows": rows of `length` characters starting every `stride` characters.
      targets "next"  -> the character after the window (one target per row);
      targets "every" -> the window shifted by one (a target at every position).
    kind "streams": the corpus cut into contiguous streams read `length` steps at a time
      (for models that carry their hidden state across batches).
    """

    kind: str = "windows"
    length: int = 8
    stride: int = 1
    targets: str = "next"

    def describe(self) -> str:
        """In words, for `zoo info`: what one training row is and what it predicts."""
        if self.kind == "streams":  # every position predicts its next character; the stride does not apply
            return f"contiguous streams, {self.length} characters a step, the state carried on; predicts every next character"
        start = "at every character" if self.stride == 1 else f"every {self.stride} characters"
        what = "the next character" if self.targets == "next" else "the next character at every position"
        return f"windows of {self.length} characters starting {start}; predicts {what}"

    def __post_init__(self) -> None:
        if self.kind not in ("windows", "streams"):
            raise ValueError(f"unknown batching kind {self.kind!r}")
        if self.targets not in ("next", "every"):
            raise ValueError(f"unknown targets {self.targets!r}")
        if self.length < 1 or self.stride < 1:
            raise ValueError("length and stride must be >= 1")


@dataclass(frozen=True)
class Reference:
    """Published figures a run can be compared with (per epoch, None where not reported)."""

    source: str
    trn_loss: tuple[float | None, ...] = ()
    val_loss: tuple[float | None, ...] = ()
    note: str = ""

    @property
    def final_val(self) -> float | None:
        return next((v for v in reversed(self.val_loss) if v is not None), None)

    @property
    def final_trn(self) -> float | None:
        return next((v for v in reversed(self.trn_loss) if v is not None), None)


@dataclass(frozen=True)
class ModelSpec:
    """Everything zoo knows about one model before importing it.

    `builder` is called as `builder(vocab_size=V, **hparams)` and must return a
    `torch.nn.Module` that meets `zoo.model.CharLM`.
    `num_params` is the parameter count at the default hyper-parameters and the
    default dataset's vocabulary; the conformance tests rebuild the model and check it.
    `tiny` overrides some of `hparams` to make a small, fast model for tests
    (`zoo.testing.check_model` builds and trains that configuration).

    For the table tasks ("regression", "tabular-regression"; see `zoo.tasks`) the builder
    is called as `builder(**data_kwargs, **hparams)` with what the data determine (column
    cardinalities, the number of continuous columns), and `dataset` names a table source.
    `train_options` are options specific to this model's training, with their defaults
    (`zoo train --method ...` where the plugin adds the flag; `zoo.train(..., options={...})`).
    `fit` ("module:function", imported only when training) trains instead of zoo's Trainer:
    it gets a `zoo.tasks.FitContext` and returns the history (it may run the Trainer itself).
    """

    name: str
    summary: str
    builder: str
    task: str = "char-lm"
    dataset: str = "nietzsche"
    hparams: dict[str, Any] = field(default_factory=dict)
    batching: Batching = field(default_factory=Batching)
    recipe: tuple[Stage, ...] = (Stage(lr=1e-3, epochs=1),)
    batch_size: int = 512
    optimizer: str = "adam"
    split: str = "random"
    reference: Reference | None = None
    tags: tuple[str, ...] = ()
    num_params: int | None = None
    tiny: dict[str, Any] = field(default_factory=dict)
    train_options: dict[str, Any] = field(default_factory=dict)
    fit: str = ""
    plugin: str = ""  # filled in by the registry: the entry-point name that registered it

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip() or " " in self.name:
            raise ValueError(f"invalid model name {self.name!r}")
        if ":" not in self.builder:
            raise ValueError(f"builder must be 'module:attribute', got {self.builder!r}")
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r} (known: {', '.join(TASKS)})")
        if not self.recipe:
            raise ValueError("a recipe needs at least one stage")
        if self.fit and ":" not in self.fit:
            raise ValueError(f"fit must be 'module:function', got {self.fit!r}")

    @property
    def epochs(self) -> int:
        return sum(s.epochs for s in self.recipe)

    def epoch_lrs(self) -> list[float]:
        """The recipe spelled out as one learning rate per epoch."""
        return [s.lr for s in self.recipe for _ in range(s.epochs)]

    def recipe_text(self) -> str:
        return "; then ".join(f"lr {s.lr:g} for {s.epochs} epoch{'s' * (s.epochs != 1)}" for s in self.recipe)

    def with_plugin(self, plugin: str) -> ModelSpec:
        return replace(self, plugin=plugin)


@dataclass(frozen=True)
class DatasetInfo:
    """A short description of a registered dataset (the source object does the work)."""

    name: str
    summary: str
    plugin: str = ""
