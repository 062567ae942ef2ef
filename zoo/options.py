"""What one training run is asked to do: `TrainOptions`, checked once at the API's edge, and the recipe's rates.

Plain data, importable without torch: the CLI, the Python API and `zoo compare` build one `TrainOptions` and
hand it to the run pipeline (zoo.pipeline), which is the only code that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo import checks
from zoo.errors import ZooError
from zoo.spec import ModelSpec

DEFAULT_VAL_FRAC = 0.2  # the lesson's: a fifth of the text (or of the windows, or of a table's rows) is held out
# Dynamic evaluation's SGD learning rate (`zoo eval --dynamic`): the best of 0.02-1.0 for the bundled char-awd-lstm
# on the first 2% of Nietzsche after its training text (README, "eval"). Here, where `zoo eval --help` reads it.
DYNAMIC_LR = 0.4

# The shuffle seeds a generator with seed * 1_000_003 + epoch (zoo.data.batching), which must fit in 64 bits.
SEED_LIMIT = 2**43

# Caps on what a run may ask for, so a mistyped or hand-edited number is one line, not a MemoryError: the schedule is a
# list of one rate per epoch, and zoo compare's 1,000 epochs are far below the cap.
EPOCHS_LIMIT = 1_000_000
BATCH_SIZE_LIMIT = 1 << 20  # rows in one batch: 10**9 was obeyed silently (one batch of everything)

# What `--resume` may still change: the rest is the run's own, fixed when it started.
RESUMABLE = "--epochs, --max-steps, --budget, --device, --cuda-graph"


def percent(val_frac: float) -> str:
    """A held-out fraction for people: 0.2 -> "20%"."""
    return f"{val_frac * 100:g}%"


def check_val_frac(val_frac: float) -> float:
    """`val_frac` if it is a fraction strictly between 0 and 1 (NaN is not); else a ZooError."""
    fraction = checks.real("--val-frac", val_frac, "a number between 0 and 1 (exclusive)")
    if not 0 < fraction < 1:
        raise ZooError(f"--val-frac must be between 0 and 1 (exclusive), got {val_frac}")
    return fraction


def extend_lrs(lrs: list[float], epochs: int) -> list[float]:
    """The first `epochs` rates of `lrs`, its last rate repeated as far as needed."""
    return (lrs + [lrs[-1]] * epochs)[:epochs]


def epoch_lrs(spec: ModelSpec, epochs: int | None, lr: float | None) -> list[float]:
    """The recipe's per-epoch learning rates; --epochs cuts or extends it, --lr replaces every rate."""
    lrs = spec.epoch_lrs()
    if epochs is not None:
        lrs = extend_lrs(lrs, epochs)
    if lr is not None:
        lrs = [lr] * len(lrs)
    return lrs


def record_lrs(lrs: list[float]) -> dict[str, Any]:
    """run.json's schedule: the rates up to the last change, and how many epochs the last one runs to.

    `zoo compare` asks for 1,000 epochs (its budget ends training); a list of them all says no more.
    """
    end = len(lrs)
    while end > 1 and lrs[end - 1] == lrs[end - 2]:
        end -= 1
    return {"epoch_lrs": lrs[:end], "epochs": len(lrs)}


def recorded_lrs(options: dict[str, Any]) -> list[float]:
    """The per-epoch rates `record_lrs` wrote; a run.json from before it lists every epoch's rate, without "epochs"."""
    lrs = list(options["epoch_lrs"])
    return extend_lrs(lrs, checks.whole("run.json's epochs", options.get("epochs", len(lrs)), 1, EPOCHS_LIMIT))


# The keys of run.json's "options" a resume reads, and none may be missing.
RESUMED_KEYS = ("epoch_lrs", "batch_size", "seed", "data")


def recorded_options(record: dict[str, Any], where: str) -> dict[str, Any]:
    """run.json's "options" (`record`'s, read from the file `where`), every key a resume reads checked as the flag it
    recorded was checked when the run started: a hand-edited value is one line naming it, not a traceback later."""
    options = record.get("options")
    if not isinstance(options, dict):
        raise ZooError(f"{where}: 'options' must be an object, got {options!r}")
    missing = [key for key in RESUMED_KEYS if key not in options]
    if missing:
        raise ZooError(f"{where}: 'options' lacks the key {missing[0]!r}")
    lrs = options["epoch_lrs"]
    if not isinstance(lrs, list) or not lrs:
        raise ZooError(f"{where}: 'epoch_lrs' must be a list of learning rates, got {lrs!r}")
    checked = {
        "epoch_lrs": [checks.positive(f"{where}: 'epoch_lrs'", lr) for lr in lrs],
        "epochs": checks.whole(f"{where}: 'epochs'", options.get("epochs", len(lrs)), 1, EPOCHS_LIMIT),
        "batch_size": checks.whole(f"{where}: 'batch_size'", options["batch_size"], 1, BATCH_SIZE_LIMIT),
        "seed": checks.whole(f"{where}: 'seed'", options["seed"], -SEED_LIMIT, SEED_LIMIT),
    }
    if not isinstance(options["data"], str):
        raise ZooError(f"{where}: 'data' must be a dataset name or a file's path, got {options['data']!r}")
    if not isinstance(options.get("train_options", {}), dict):
        raise ZooError(f"{where}: 'train_options' must be an object, got {options['train_options']!r}")
    if options.get("amp") not in (None, True, False):
        raise ZooError(f"{where}: 'amp' must be true, false or null, got {options['amp']!r}")
    return {**options, **checked}


@dataclass(frozen=True)
class TrainOptions:
    """One training run's options, as `zoo.train` documents them; build it with `TrainOptions.checked(...)`.

    None means "not given": the model's recipe (or, resuming, the run's own record) decides.
    `train_options` are the model's own (`spec.train_options`, e.g. linreg-sgd's {"method": "manual"}).
    """

    name: str | None = None
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    device: str = "auto"
    data: str | Path | None = None
    seed: int | None = None
    out: Path | None = None
    resume: Path | None = None
    overrides: tuple[str, ...] = ()
    split: str | None = None
    val_frac: float | None = None
    max_steps: int | None = None
    max_seconds: float | None = None
    amp: bool | None = None
    quiet: bool = False
    callbacks: tuple[Any, ...] | None = None
    train_options: dict[str, Any] | None = None
    cuda_graph: bool = False

    @property
    def given(self) -> dict[str, Any]:
        """What a spec's `fit` function sees of the options (zoo.pipeline.FitContext.given)."""
        return {"epochs": self.epochs, "lr": self.lr, "max_steps": self.max_steps, "max_seconds": self.max_seconds}

    @classmethod
    def checked(cls, name: str | None = None, **kw: Any) -> TrainOptions:
        """The options, each checked: a Python caller has no click types in front of it, and a string would be a
        TypeError deep inside. Refuses what a resumed run cannot change."""
        epochs = _opt(kw, "epochs", lambda v: checks.whole("--epochs", v, 1, EPOCHS_LIMIT))
        lr = _opt(kw, "lr", lambda v: checks.positive("--lr", v))
        batch_size = _opt(kw, "batch_size", lambda v: checks.whole("--batch-size", v, 1, BATCH_SIZE_LIMIT))
        seed = _opt(kw, "seed", lambda v: checks.whole("--seed", v, -SEED_LIMIT, SEED_LIMIT))
        val_frac = _opt(kw, "val_frac", check_val_frac)
        max_steps = _opt(kw, "max_steps", lambda v: checks.whole("--max-steps", v, 1))
        max_seconds = _opt(kw, "max_seconds", lambda v: checks.positive("--budget", v))
        out = _opt(kw, "out", lambda v: checks.path("--out", v))
        resume = _opt(kw, "resume", lambda v: checks.path("--resume", v))
        data = kw.get("data")
        data = data if data is None or isinstance(data, str) else checks.path("--data", data)
        amp = _opt(kw, "amp", lambda v: checks.switch("--amp", v))
        quiet, cuda_graph = bool(kw.get("quiet", False)), checks.switch("--cuda-graph", kw.get("cuda_graph", False))
        overrides = checks.pairs("--set", kw.get("overrides", ()))
        callbacks = kw.get("callbacks")
        if callbacks is not None and not isinstance(callbacks, (list, tuple)):
            raise ZooError(f"callbacks must be a list of objects with on_* methods, got {callbacks!r}")
        train_options = kw.get("options")
        if train_options is not None and not isinstance(train_options, dict):
            raise ZooError(f"options must be a dict of the model's training options, got {train_options!r}")
        opts = cls(
            name=name, epochs=epochs, lr=lr, batch_size=batch_size, device=kw.get("device", "auto"), data=data, seed=seed,
            out=out, resume=resume, overrides=overrides, split=kw.get("split"), val_frac=val_frac, max_steps=max_steps,
            max_seconds=max_seconds, amp=amp, quiet=quiet, callbacks=None if callbacks is None else tuple(callbacks),
            train_options=train_options, cuda_graph=cuda_graph,
        )  # fmt: skip
        if resume is not None:
            opts.refuse_fixed_on_resume()
        return opts

    def refuse_fixed_on_resume(self) -> None:
        """A resumed run keeps the options it started with: name the first one given that it would change."""
        fixed = {"lr": self.lr, "batch_size": self.batch_size, "data": self.data, "seed": self.seed, "out": self.out,
                 "split": self.split, "amp": self.amp}  # fmt: skip
        named = [k for k, v in fixed.items() if v is not None] + (["overrides"] if self.overrides else []) + list(self.train_options or {})
        if named:
            flag = "--set" if named[0] == "overrides" else f"--{named[0].replace('_', '-')}"
            raise ZooError(f"{flag}: a resumed run keeps the options it started with (only {RESUMABLE})")


def _opt(kw: dict[str, Any], key: str, check: Any) -> Any:
    value = kw.get(key)
    return None if value is None else check(value)
