"""The Python API: `zoo.train`, `zoo.load`, `zoo.evaluate`, and the models they return.

import zoo
m = zoo.train("char-rnn", data="pydoc-topics", epochs=1)
print(m.sample("for thos", length=200, seed=0))
m = zoo.load("runs/char-rnn")          # a run directory, or a model name with weights
print(m.evaluate())

A thin facade: the options are checked into one `zoo.options.TrainOptions` and the run pipeline
(zoo.pipeline) does the rest; weights found offline come from zoo.hub.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zoo import hub, pipeline, registry, rundir
from zoo.errors import ZooError
from zoo.options import DEFAULT_VAL_FRAC, TrainOptions, check_val_frac, percent
from zoo.tasks import LoadedModel, TaskModel, TrainedModel

__all__ = ["DEFAULT_VAL_FRAC", "LoadedModel", "TaskModel", "TrainedModel", "check_val_frac", "evaluate", "load", "percent", "train"]

# The keywords of `train` that are zoo's own; any other option of `zoo train` is a model's (spec.train_options).
TRAIN_KEYWORDS = (
    "epochs", "lr", "batch_size", "device", "data", "seed", "out", "resume", "overrides", "split", "val_frac", "max_steps",
    "max_seconds", "amp", "quiet", "callbacks", "options", "cuda_graph",
)  # fmt: skip


def train(
    name: str | None = None,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    data: str | Path | None = None,
    seed: int | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    split: str | None = None,
    val_frac: float | None = None,
    max_steps: int | None = None,
    max_seconds: float | None = None,
    amp: bool | None = None,
    quiet: bool = False,
    callbacks: list[Any] | None = None,
    options: dict[str, Any] | None = None,
    cuda_graph: bool = False,
) -> TrainedModel:
    """Train `name` with its recipe (or continue the run in `resume`); returns the trained model.

    `options` are the model's own training options (`spec.train_options`, e.g. linreg-sgd's
    {"method": "manual"}); a model of a table task comes back as a `zoo.tasks.TaskModel`.

    A checkpoint is written after every epoch; `max_steps` stops after that many batches,
    `max_seconds` after that much training time (with a checkpoint, so the run can be resumed).
    `val_frac` is the fraction of the text held out for validation (character models; default 0.2);
    a resumed run keeps its own. `amp` is bf16 autocast, on CUDA or on a CPU with native bfloat16
    (`zoo.runtime.cpu_has_bf16`); None turns it on on CUDA for models of a million parameters or more
    (`zoo.runtime.AMP_MIN_PARAMS`), the size from which it pays there, and leaves it off on the CPU.
    `cuda_graph` replays each full batch's step as one captured CUDA graph (`zoo.cudagraph`): same
    computation, far fewer kernel launches; CUDA only, for models that carry no state between batches.
    """
    opts = TrainOptions.checked(
        name, epochs=epochs, lr=lr, batch_size=batch_size, device=device, data=data, seed=seed, out=out, resume=resume,
        overrides=overrides, split=split, val_frac=val_frac, max_steps=max_steps, max_seconds=max_seconds, amp=amp,
        quiet=quiet, callbacks=callbacks, options=options, cuda_graph=cuda_graph,
    )  # fmt: skip
    return pipeline.train(opts)


def load(name_or_dir: str | Path, device: str = "cpu") -> TrainedModel:
    """A trained model, from the first of: a run directory, weights pulled from the Hub, bundled weights."""
    if not isinstance(name_or_dir, (str, os.PathLike)):
        raise ZooError(f"load takes a run directory, a model name or OWNER/NAME, got {name_or_dir!r}")
    path = Path(name_or_dir).expanduser()
    if rundir.has_config(path):
        return pipeline.load_dir(path, device, downloaded=_in_hub_cache(path))
    if path.is_dir():
        raise ZooError(f"{path}: no config.json here; is this a zoo run directory?")
    name = str(name_or_dir)
    found = hub.find_weights(name)
    if found is not None:
        folder, where = found
        return pipeline.load_dir(folder, device, downloaded=where != "bundled" or _in_hub_cache(folder))
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ZooError(f"{name}: not a zoo run directory (expected a folder with config.json and model.safetensors)")
    if "/" in name:  # OWNER/NAME on the Hub, or a local path; when its folder exists, it is a path
        hint = "" if path.parent.is_dir() else f"; if it is a Hub repository, `zoo pull {name}` first"
        raise ZooError(f"{name}: no such run directory{hint}")
    spec = registry.get_model(name)  # "unknown model … did you mean"
    raise ZooError(f"no trained weights for {spec.name!r}: train them with `zoo train {spec.name}` and pass the run directory")


def _in_hub_cache(folder: Path) -> bool:
    """Whether `folder` lies in the Hugging Face Hub cache: a download, however its path was given."""
    from huggingface_hub import constants

    try:
        return Path(folder).resolve().is_relative_to(Path(constants.HF_HUB_CACHE).resolve())
    except (OSError, RuntimeError):  # a loop of links: not a folder zoo pulled
        return False


def evaluate(
    name_or_dir: str | Path,
    data: str | None = None,
    split: str | None = None,
    device: str = "cpu",
    val_frac: float | None = None,
    dynamic: bool = False,
    dynamic_lr: float | None = None,
) -> dict[str, float]:
    """Validation metrics of a trained model; `val_frac` (character models only) defaults to the run's.

    `dynamic` (character models only) adds the dynamic evaluation's keys (`LoadedModel.evaluate_dynamic`, learning
    rate `dynamic_lr`) beside the static ones, which it leaves as they are."""
    if dynamic_lr is not None and not dynamic:
        raise ZooError("--dynamic-lr applies with --dynamic only")
    if dynamic and split == "random":
        raise ZooError("--dynamic reads the held-out tail in order; --split random does not apply")
    m = load(name_or_dir, device)
    if (val_frac is not None or dynamic) and not isinstance(m, LoadedModel):
        flag = "--dynamic" if dynamic else "--val-frac"
        raise ZooError(f"{flag} applies to character models only; {m.name} is a {m.spec.task} model")
    # The dynamic figure first: a run it refuses is refused before the static figure is spent on it.
    extra = m.evaluate_dynamic(data=data, val_frac=val_frac, lr=m.check_dynamic(dynamic_lr)) if dynamic else {}
    result = m.evaluate(data=data, split=split) if val_frac is None else m.evaluate(data=data, split=split, val_frac=val_frac)
    return result | extra
