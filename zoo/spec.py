"""What a plugin registers: plain data, importable without torch.

A `ModelSpec` names its builder as an import string ("package.module:Class") so that
`zoo list` can show every model without importing torch or the model's code.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from zoo.checks import is_whole

OPTIMIZERS = ("adam", "sgd")  # zoo.trainer.make_optimizer builds them
LESSON_PROMPT = "for thos"  # the lesson's prompt: a character model's default where its vocabulary has the letters
MAX_PROMPT = 256  # characters of a default prompt (config.json records it, and a downloaded config is hostile)


def is_prompt(value: Any) -> bool:
    """Whether `value` may be a default prompt: 1 to MAX_PROMPT characters, none of them zoo's \\0 padding."""
    return isinstance(value, str) and 0 < len(value) <= MAX_PROMPT and "\0" not in value


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
        whole = all(is_whole(n) for n in (self.length, self.stride))
        if not whole or self.length < 1 or self.stride < 1:  # 2.5 would reach torch.arange and indexing as a float
            raise ValueError(f"length and stride must be whole numbers >= 1, got {self.length!r} and {self.stride!r}")


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

    For the table tasks ("regression", "tabular-regression"; see `zoo.tasks.table`) the builder
    is called as `builder(**data_kwargs, **hparams)` with what the data determine (column
    cardinalities, the number of continuous columns), and `dataset` names a table source.
    `train_options` are options specific to this model's training, with their defaults
    (`zoo train --method ...` where the plugin adds the flag; `zoo.train(..., options={...})`).
    `fit` ("module:function", imported only when training) trains instead of zoo's Trainer:
    it gets a `zoo.pipeline.FitContext` and returns the history (it may run the Trainer itself).
    `options_check` ("module:function", imported only when training) is called with the resolved
    train_options before anything is written, to refuse a bad combination in one line.
    `prompt` is what `zoo sample` and the model card continue without --prompt (a character model); None: the
    lesson's "for thos" where the training text has its letters, else the start of the training text.
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
    options_check: str = ""
    prompt: str | None = None
    plugin: str = ""  # filled in by the registry: the entry-point name that registered it

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip() or " " in self.name:
            raise ValueError(f"invalid model name {self.name!r}")
        if ":" not in self.builder:
            raise ValueError(f"builder must be 'module:attribute', got {self.builder!r}")
        if not self.task or " " in self.task:  # which tasks exist is the registry's to say: a plugin may add one
            raise ValueError(f"invalid task name {self.task!r}")
        if not self.recipe:
            raise ValueError("a recipe needs at least one stage")
        if self.prompt is not None and not is_prompt(self.prompt):
            raise ValueError(f"prompt must be 1 to {MAX_PROMPT} characters without '\\0', got {self.prompt!r}")
        for key in ("fit", "options_check"):
            ref = getattr(self, key)
            if ref and ":" not in ref:
                raise ValueError(f"{key} must be 'module:function', got {ref!r}")

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
class TaskSpec:
    """A kind of model: what it learns, and so how zoo reads its data, trains, evaluates and loads it.

    `implementation` names a `zoo.tasks.Task` subclass as "module:Class", imported only when a model of the
    task trains or loads (so that `zoo list` stays free of torch). Plugins register theirs through the
    `zoo_register_tasks` hook; zoo's own are `BUILTIN_TASKS`.
    """

    name: str
    summary: str
    implementation: str
    plugin: str = ""  # filled in by the registry: the entry-point name that registered it ("" for zoo's own)

    def __post_init__(self) -> None:
        if not self.name or " " in self.name:
            raise ValueError(f"invalid task name {self.name!r}")
        if ":" not in self.implementation:
            raise ValueError(f"implementation must be 'module:Class', got {self.implementation!r}")

    def with_plugin(self, plugin: str) -> TaskSpec:
        return replace(self, plugin=plugin)


BUILTIN_TASKS = (
    TaskSpec("char-lm", "the next character of a text (cross-entropy, accuracy)", "zoo.tasks.charlm:CharLMTask"),
    TaskSpec("regression", "a table's continuous columns -> its target (mean squared error)", "zoo.tasks.table:RegressionTask"),
    TaskSpec(
        "tabular-regression",
        "a table's categorical (embedded) and continuous columns -> the log of a positive target (MSE of the log, MAPE)",
        "zoo.tasks.table:TabularRegressionTask",
    ),
)


@dataclass(frozen=True)
class DatasetInfo:
    """A short description of a registered dataset (the source object does the work)."""

    name: str
    summary: str
    plugin: str = ""
