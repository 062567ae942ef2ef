"""The Python API: `zoo.train`, `zoo.load`, and the `LoadedModel` they return.

import zoo
m = zoo.train("char-rnn", data="pydoc-topics", epochs=1)
print(m.sample("for thos", length=200, seed=0))
m = zoo.load("runs/char-rnn")          # a run directory, or a model name with weights
print(m.evaluate())
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import os
import platform
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo import __version__, checks, cudagraph, distributed, registry, runlock, tasks
from zoo.checkpoint import (
    CONFIG_FORMAT,
    abandoned_run,
    atomic_write_json,
    find_checkpoint,
    load_checkpoint,
    load_weights,
    read_config,
    read_json,
    tag_vocab,
)
from zoo.data.batching import SPLITS, make_batches
from zoo.data.sources import resolve
from zoo.data.vocab import Vocab
from zoo.errors import ZooError, ZooWarning
from zoo.fileio import read_history
from zoo.model import build, count_params, parse_overrides, resolve_amp, resolve_device, resumed_amp
from zoo.plugins import host
from zoo.sampling import sample as _sample
from zoo.spec import OPTIMIZERS, Batching, ModelSpec
from zoo.trainer import RunInfo, Trainer, evaluate_targets


class LoadedModel:
    """A model with its vocabulary and config, ready to sample and evaluate."""

    def __init__(self, spec: ModelSpec, model: nn.Module, vocab: Vocab, config: dict[str, Any], path: Path | None = None) -> None:
        self.spec = spec
        self.model = model
        self.vocab = vocab
        self.config = config
        self.path = path
        self.history = read_history(path)
        self.partial: dict[str, float] | None = None  # where a run stopped mid-epoch, if it did

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def batching(self) -> Batching:
        return Batching(**self.config["batching"])

    @property
    def context(self) -> int | None:
        """Characters one prediction saw in training (None: the state is carried across batches)."""
        b = self.batching
        return b.length if b.kind == "windows" else None

    @property
    def num_params(self) -> int:
        return count_params(self.model)

    def _overlap(self, text: str, split: str, val_frac: float) -> str | None:
        """Why evaluating on these rows would be optimistic: they include rows the model trained on. None if not."""
        run_split = self.config.get("split", "random")
        run_frac = self.config.get("val_frac", DEFAULT_VAL_FRAC)
        if self.batching.kind == "streams":  # streams always hold out the end of the text, whatever the split
            split = run_split = "tail"
        if split == run_split and val_frac <= run_frac:
            return None  # the run's own held-out rows, or a part of them (both splits nest as the fraction shrinks)
        trained_on = self.run_record.get("data_sha256")
        if trained_on is None or hashlib.sha256(text.encode("utf-8")).hexdigest() != trained_on:
            return None  # another text (or a run that did not record its own): no rows in common
        return (
            f"{self.name} held out the {run_split} {percent(run_frac)} of this text in training; the {split} "
            f"{percent(val_frac)} overlaps rows it trained on, so the loss is optimistic"
        )

    @functools.cached_property
    def run_record(self) -> dict[str, Any]:
        """The run's run.json (how it was trained: options, data sha256, versions); {} when the folder has none."""
        path = self.path / "run.json" if self.path is not None else None
        return read_json(path) if path is not None and path.is_file() else {}

    def _training_batch_size(self) -> int:
        return int(self.run_record.get("options", {}).get("batch_size") or self.spec.batch_size)

    def to(self, device: str | torch.device) -> LoadedModel:
        self.model.to(resolve_device(str(device)) if isinstance(device, str) else device)
        return self

    def sample(
        self,
        prompt: str,
        length: int = 400,
        temperature: float = 0.8,
        top_k: int | None = None,
        seed: int | None = None,
        num_samples: int = 1,
    ) -> str | list[str]:
        """Continue `prompt` by `length` characters; temperature 0 is greedy. A list if num_samples > 1."""
        texts = _sample(
            self.model,
            self.vocab,
            prompt,
            length,
            context=self.context,
            temperature=temperature,
            top_k=top_k,
            seed=seed,
            num_samples=num_samples,
        )
        return texts if num_samples > 1 else texts[0]

    def evaluate(
        self, data: str | None = None, split: str | None = None, batch_size: int | None = None, val_frac: float | None = None
    ) -> dict[str, float]:
        """Validation loss (nats/char), bits/char and accuracy on `data` (default: the training data).

        `split` and `val_frac` (the fraction held out) default to the run's own. So does `batch_size` for a
        stateful model, whose held-out text is cut into that many streams (so the figure is its training's);
        windowed models are evaluated 2,048 rows at a time, which does not change the figure.
        """
        if batch_size is None:
            batch_size = self._training_batch_size() if self.batching.kind == "streams" else 2048
        batch_size = checks.whole("--batch-size", batch_size, 1)
        val_frac = check_val_frac(self.config.get("val_frac", DEFAULT_VAL_FRAC) if val_frac is None else val_frac)
        source = resolve(data if data is not None else self.config.get("data"), self.spec.dataset)
        text = source.read_text()
        unknown = self.vocab.unknown(text)
        if unknown:
            raise ZooError(f"the text has {len(unknown)} characters the model's vocabulary lacks, e.g. {unknown[0]!r}")
        split = split or self.config.get("split", "random")
        overlap = self._overlap(text, split, val_frac)
        if overlap:
            warnings.warn(overlap, ZooWarning, stacklevel=2)
        tensor = _encode(self.vocab, text)
        _, val = make_batches(tensor, self.batching, batch_size, split, val_frac=val_frac)
        device = next(self.model.parameters()).device
        loss, acc, chars = evaluate_targets(self.model, val, device)
        # rows: windows, or a stream model's segments; chars: the characters predicted, comparable across models
        return {"val_loss": loss, "val_bpc": loss / 0.6931471805599453, "val_acc": acc, "chars": chars, "rows": val.rows}


DEFAULT_VAL_FRAC = 0.2  # the lesson's: a fifth of the text (or of the windows) is held out


def check_val_frac(val_frac: float) -> float:
    """`val_frac` if it is a fraction strictly between 0 and 1 (NaN is not); else a ZooError."""
    fraction = checks.real("--val-frac", val_frac, "a number between 0 and 1 (exclusive)")
    if not 0 < fraction < 1:
        raise ZooError(f"--val-frac must be between 0 and 1 (exclusive), got {val_frac}")
    return fraction


# The shuffle seeds a generator with seed * 1_000_003 + epoch (zoo.data.batching), which must fit in 64 bits.
SEED_LIMIT = 2**43


def percent(val_frac: float) -> str:
    """A held-out fraction for people: 0.2 -> "20%"."""
    return f"{val_frac * 100:g}%"


def _encode(vocab: Vocab, text: str) -> torch.Tensor:
    dtype = torch.uint8 if len(vocab) <= 256 else torch.int32
    return torch.tensor(vocab.encode(text), dtype=dtype)


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _new_out_dir(name: str, base: Path = Path("runs")) -> Path:
    candidate = base / name
    n = 1
    while candidate.exists():
        n += 1
        candidate = base / f"{name}-{n}"
    return candidate


def epoch_lrs(spec: ModelSpec, epochs: int | None, lr: float | None) -> list[float]:
    """The recipe's per-epoch learning rates; --epochs cuts or extends it, --lr replaces every rate (both checked by `train`)."""
    lrs = spec.epoch_lrs()
    if epochs is not None:
        lrs = extend_lrs(lrs, epochs)
    if lr is not None:
        lrs = [lr] * len(lrs)
    return lrs


def extend_lrs(lrs: list[float], epochs: int) -> list[float]:
    """The first `epochs` rates of `lrs`, its last rate repeated as far as needed."""
    return (lrs + [lrs[-1]] * epochs)[:epochs]


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
    return extend_lrs(lrs, checks.whole("run.json's epochs", options.get("epochs", len(lrs)), 1))


def _run_locks_released(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with the run-folder locks it takes (zoo.runlock) released when it returns or raises."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with runlock.scope():
            return fn(*args, **kwargs)

    return wrapper


@_run_locks_released
def train(
    name: str | None = None,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    data: str | None = None,
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
) -> LoadedModel | tasks.TaskModel:
    """Train `name` with its recipe (or continue the run in `resume`); returns the trained model.

    `options` are the model's own training options (`spec.train_options`, e.g. linreg-sgd's
    {"method": "manual"}); a model of a table task comes back as a `zoo.tasks.TaskModel`.

    A checkpoint is written after every epoch; `max_steps` stops after that many batches,
    `max_seconds` after that much training time (with a checkpoint, so the run can be resumed).
    `val_frac` is the fraction of the text held out for validation (character models; default 0.2);
    a resumed run keeps its own. `amp` is bf16 autocast, on CUDA or on a CPU with native bfloat16
    (`zoo.model.cpu_has_bf16`); None turns it on on CUDA for models of a million parameters or more
    (`zoo.model.AMP_MIN_PARAMS`), the size from which it pays there, and leaves it off on the CPU.
    `cuda_graph` replays each full batch's step as one captured CUDA graph (`zoo.cudagraph`): same
    computation, far fewer kernel launches; CUDA only, for models that carry no state between batches.
    """
    # Checked once, here, for every path below (new runs, resumes, table tasks): a Python caller has no
    # click types in front of it, and a string would be a TypeError deep inside.
    epochs = None if epochs is None else checks.whole("--epochs", epochs, 1)
    lr = None if lr is None else checks.positive("--lr", lr)
    batch_size = None if batch_size is None else checks.whole("--batch-size", batch_size, 1)
    seed = None if seed is None else checks.whole("--seed", seed, -SEED_LIMIT, SEED_LIMIT)
    val_frac = None if val_frac is None else check_val_frac(val_frac)
    max_steps = None if max_steps is None else checks.whole("--max-steps", max_steps, 1)
    max_seconds = None if max_seconds is None else checks.positive("--budget", max_seconds)
    out = None if out is None else checks.path("--out", out)
    resume = None if resume is None else checks.path("--resume", resume)
    data = data if data is None or isinstance(data, str) else checks.path("--data", data)
    amp = None if amp is None else checks.switch("--amp", amp)
    quiet, cuda_graph = bool(quiet), checks.switch("--cuda-graph", cuda_graph)
    overrides = checks.pairs("--set", overrides)
    if callbacks is not None and not isinstance(callbacks, (list, tuple)):
        raise ZooError(f"callbacks must be a list of objects with on_* methods, got {callbacks!r}")
    if options is not None and not isinstance(options, dict):
        raise ZooError(f"options must be a dict of the model's training options, got {options!r}")
    if resume is not None:
        given = {"lr": lr, "batch_size": batch_size, "data": data, "seed": seed, "out": out, "split": split, "amp": amp}
        fixed = [k for k, v in given.items() if v is not None] + (["overrides"] if overrides else []) + list(options or {})
        if fixed:
            flag = "--set" if fixed[0] == "overrides" else f"--{fixed[0].replace('_', '-')}"
            can = "--epochs, --max-steps, --budget, --device, --cuda-graph"
            raise ZooError(f"{flag}: a resumed run keeps the options it started with (only {can})")
        return _resume(
            Path(resume),
            name=name,
            epochs=epochs,
            device=device,
            max_steps=max_steps,
            max_seconds=max_seconds,
            quiet=quiet,
            callbacks=callbacks,
            val_frac=val_frac,
            cuda_graph=cuda_graph,
        )
    if name is None:
        raise ZooError("name a model to train, or --resume a run directory")
    seed = 0 if seed is None else seed
    spec = registry.get_model(name)
    if spec.task != "char-lm":  # the table tasks have their own data path
        _char_models_only(f"{spec.name} is a {spec.task} model", cuda_graph=cuda_graph, val_frac=val_frac)
        return tasks.train(
            spec, epochs=epochs, lr=lr, batch_size=batch_size, device=device, data=data, seed=seed, out=out,
            overrides=overrides, split=split, max_steps=max_steps, max_seconds=max_seconds, amp=amp, quiet=quiet,
            callbacks=callbacks, options=options,
        )  # fmt: skip
    tasks.check_options(spec, options)
    if spec.optimizer not in OPTIMIZERS:  # before any file is written
        raise ZooError(f"{spec.name}: unknown optimizer {spec.optimizer!r} in its spec (known: {', '.join(OPTIMIZERS)})")
    hparams = parse_overrides(spec, list(overrides))
    lrs = epoch_lrs(spec, epochs, lr)
    batch_size = spec.batch_size if batch_size is None else batch_size
    val_frac = DEFAULT_VAL_FRAC if val_frac is None else val_frac
    split = split or spec.split
    if split not in SPLITS:
        raise ZooError(f"--split {split}: unknown (known: {', '.join(SPLITS)})")
    if spec.batching.kind == "streams" and split != "tail":  # streams always hold out the end of the text
        why = f"--split {split}: {spec.name} reads contiguous streams, so it holds out the end of the text"
        warnings.warn(why, ZooWarning, stacklevel=2)
        split = "tail"
    d = distributed.from_env()  # under torchrun: this process's rank among WORLD_SIZE
    dev = distributed.setup(d, resolve_device(device))
    quiet = quiet or not d.main
    source = resolve(data, spec.dataset)
    text = source.read_text()
    vocab = Vocab.from_text(text)
    data_id = str(Path(source.path).resolve()) if hasattr(source, "path") else source.name

    out_dir = claim_out_dir(spec, out, d)
    config = {
        **base_config(spec, hparams, split, data_id),
        "val_frac": val_frac,
        "batching": dataclasses.asdict(spec.batching),
        "vocab": vocab.chars,
    }
    options = {
        **record_lrs(lrs),
        "batch_size": batch_size,
        "seed": seed,
        "device": str(dev),
        "amp": amp,  # resolved below, once the model's size is known
        "data": data_id,
        "split": split,
        "val_frac": val_frac,
        "overrides": list(overrides),
        "world_size": d.world,
    }
    torch.manual_seed(seed)
    model = tag_vocab(build(spec, len(vocab), hparams), vocab.chars)
    options["amp"] = amp = resolve_amp(amp, model, dev)
    if cuda_graph:  # refused before the run's folder is written
        cudagraph.check_usable(dev, model, spec.name, d.enabled)
    train_b, val_b = make_batches(_encode(vocab, text), spec.batching, batch_size, split, val_frac=val_frac)
    data_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if d.main:
        start_run(out_dir, config, run_record(spec, options, dev, data_sha256))
    if not quiet:
        print(
            f"training {spec.name} ({count_params(model):,} parameters) on {source.name}: {len(text):,} chars, "
            f"vocab {len(vocab)}, {train_b.rows:,} training rows, {val_b.rows:,} validation rows "
            f"({split} split, {percent(val_frac)} held out), {device_note(dev, amp, cuda_graph)}, output {out_dir}",
            file=sys.stderr,
        )
    trainer = _trainer(
        spec, model, train_b, val_b, lrs, seed, dev, out_dir, config, amp, quiet, callbacks,
        d=d, data_sha256=data_sha256, cuda_graph=cuda_graph,
    )  # fmt: skip
    return _fit(trainer, spec, config, out_dir, max_steps, max_seconds)


def base_config(spec: ModelSpec, hparams: dict[str, Any], split: str, data_id: str) -> dict[str, Any]:
    """The part of config.json every task writes: what the model is, where it came from, what it saw."""
    info = host().infos.get(spec.plugin)
    return {
        "format": CONFIG_FORMAT,
        "model": spec.name,
        "plugin": spec.plugin,
        "plugin_version": info.version if info else "",
        "zoo_version": __version__,
        "task": spec.task,
        "hparams": hparams,
        "split": split,
        "data": data_id,
    }


def claim_out_dir(spec: ModelSpec, out: str | Path | None, d: distributed.Dist = distributed.SINGLE) -> Path:
    """The new run's directory: `out`, or runs/NAME, runs/NAME-2, …; never one that already holds a run.

    A run that stopped before its first checkpoint left only its config.json and run.json: nothing to
    resume or keep, so a new run may take its folder over (start_run rewrites both files).
    """
    out_dir = Path(out) if out is not None else _new_out_dir(spec.name)
    # rank 0 decides, before any rank writes, so that every rank sees the same answer
    out_dir, problem = distributed.broadcast(d, (out_dir, _why_not_ours(out_dir)))
    if problem:
        raise ZooError(problem)
    return out_dir


def _why_not_ours(out_dir: Path) -> str | None:
    """Why a new run may not write into `out_dir` (None if it may): it holds a run, or files that are someone's."""
    if runlock.is_locked(out_dir):  # a live run before its first checkpoint looks abandoned: the lock tells
        return runlock.busy(out_dir)
    if abandoned_run(out_dir):
        return None
    if (out_dir / "config.json").exists():
        return f"{out_dir} already holds a run; continue it with --resume {out_dir}, or choose another --out"
    try:
        entries = sorted(p for p in out_dir.iterdir() if p.name != runlock.LOCK_FILE) if out_dir.is_dir() else []
        other = entries[0] if entries else None
    except OSError:
        other = None  # unreadable: writing the run will say what is wrong
    if other is not None:  # a run writes model.safetensors, loss.png, ...: never over files that are not its own
        return f"{out_dir} is not empty and holds no zoo run (it has {other.name!r}); choose a new or empty folder for --out"
    return None


def start_run(out_dir: Path, config: dict[str, Any], record: dict[str, Any]) -> None:
    """Create the run directory with its config.json and run.json."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ZooError(f"cannot write the run to {out_dir} ({exc.strerror})") from None
    runlock.lock(out_dir)  # held until zoo.train returns: no other process may train here meanwhile
    try:
        atomic_write_json(out_dir / "config.json", config)
        atomic_write_json(out_dir / "run.json", record)
    except OSError as exc:
        raise ZooError(f"cannot write the run to {out_dir} ({exc.strerror})") from None


def cli_command() -> str | None:
    """The `zoo ...` command line when this process is the zoo CLI (`zoo` or `python -m zoo`), else None."""
    arg0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    if arg0.name == "zoo" or (arg0.name == "__main__.py" and arg0.parent.name == "zoo"):
        return " ".join(["zoo", *sys.argv[1:]])
    return None  # Python code calling zoo.train, or another program's __main__ (python -m pytest)


def run_record(spec: ModelSpec, options: dict[str, Any], dev: torch.device, data_sha256: str) -> dict[str, Any]:
    """run.json: how the run was made (the command, resolved options, data hash, versions, device, git revision)."""
    return {
        "model": spec.name,
        "command": cli_command(),
        # "autocast": what amp meant on this device (zoo.model.resumed_amp tells older records apart)
        "options": {**options, "autocast": "bf16" if options.get("amp") else None},
        "data_sha256": data_sha256,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
        "versions": {"zoo": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "git_revision": _git_revision(),
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def reference_losses(spec: ModelSpec, data_id: str | None, data_sha256: str | None, kind: str = "val") -> list[float | None]:
    """The spec's published validation (or with kind="trn", training) losses per epoch, when this run's text is the
    corpus they were measured on.

    On another text they compare nothing, so the epoch table's "lesson" column and the loss plot leave them out.
    """
    if spec.reference is None:
        return []
    try:
        expected = getattr(registry.get_dataset(spec.dataset), "sha256", None)
    except ZooError:
        return []
    same = data_sha256 == expected if expected is not None else data_id == spec.dataset
    return list(getattr(spec.reference, f"{kind}_loss")) if same else []


def _char_models_only(why: str, *, cuda_graph: bool = False, val_frac: float | None = None) -> None:
    """Refuse the options only character models take, for a table model (`why` says which)."""
    for flag, given in (("--cuda-graph", cuda_graph), ("--val-frac", val_frac is not None)):
        if given:
            raise ZooError(f"{flag} applies to character models only; {why}")


def device_note(dev: torch.device, amp: bool, cuda_graph: bool = False) -> str:
    """How a run computes, for the training headers: "device cuda (the step as one CUDA graph), bf16 autocast"."""
    return f"device {dev}" + (" (the step as one CUDA graph)" if cuda_graph else "") + (", bf16 autocast" if amp else "")


def resuming_line(name: str, run_dir: Path, trainer: Trainer) -> str:
    st = trainer.state
    return f"resuming {name} from {run_dir} at epoch {st.epoch + 1}, batch {st.step}" + (", bf16 autocast" if trainer.amp else "")


def refuse_finished(run_dir: Path, trainer: Trainer, lrs: list[float]) -> None:
    """A resumed run with no epoch left to train: say how many it has (--epochs counts them all)."""
    done = trainer.state.epoch
    if done >= len(lrs):
        raise ZooError(f"{run_dir} has already trained {done} epoch{'s' * (done != 1)}; --epochs counts them all, so ask for more")


def _trainer(
    spec,
    model,
    train_b,
    val_b,
    lrs,
    seed,
    dev,
    out_dir,
    config,
    amp,
    quiet,
    callbacks,
    *,
    d=distributed.SINGLE,
    data_sha256=None,
    cuda_graph=False,
) -> Trainer:
    run = RunInfo(name=spec.name, out_dir=out_dir, config=config, device=str(dev), epochs=len(lrs))
    reference = reference_losses(spec, config.get("data"), data_sha256)
    reference_trn = reference_losses(spec, config.get("data"), data_sha256, "trn")
    return Trainer(
        model, train_b, val_b, lrs, seed=seed, device=dev, out_dir=out_dir, run=run, amp=amp,
        hook=host().pm.hook, callbacks=callbacks, reference=reference, reference_trn=reference_trn, quiet=quiet, dist=d,
        cuda_graph=cuda_graph, optimizer=spec.optimizer,
    )  # fmt: skip


def _fit(
    trainer: Trainer, spec: ModelSpec, config: dict[str, Any], out_dir: Path, max_steps: int | None, max_seconds: float | None
) -> LoadedModel:
    try:
        trainer.fit(max_steps=max_steps, max_seconds=max_seconds)
    except OSError as exc:
        raise ZooError(f"cannot write to {out_dir} ({exc.strerror}); the last complete checkpoint is kept") from None
    finally:
        trainer.net = trainer.model  # drop the DDP wrapper before its process group goes away
        distributed.teardown(trainer.dist)
    loaded = LoadedModel(spec, trainer.model, Vocab(config["vocab"]), config, out_dir)
    loaded.history = list(trainer.state.history)  # under torchrun, rank 0 may not have written training.json yet
    st = trainer.state
    if st.step:  # stopped mid-epoch (a step or time limit)
        loaded.partial = {"epoch": st.epoch + 1, "step": st.step, "trn_loss": st.loss_sum / max(1, st.rows)}
    return loaded


def _resume(
    run_dir: Path, *, name, epochs, device, max_steps, max_seconds, quiet, callbacks, val_frac=None, cuda_graph=False
) -> LoadedModel | tasks.TaskModel:
    if not run_dir.is_dir():
        raise ZooError(f"{run_dir}: no such run directory (--resume takes the folder a run wrote, e.g. runs/char-rnn)")
    config = read_config(run_dir)
    if config.get("task", "char-lm") != "char-lm":
        _char_models_only(f"{run_dir} is a run of a {config['task']} model", cuda_graph=cuda_graph, val_frac=val_frac)
        return tasks.resume(
            run_dir, config, name=name, epochs=epochs, device=device, max_steps=max_steps, max_seconds=max_seconds,
            quiet=quiet, callbacks=callbacks,
        )  # fmt: skip
    record = read_json(run_dir / "run.json")
    spec = _spec_for(config, run_dir)
    if name is not None and name != spec.name:
        raise ZooError(f"{run_dir} is a run of {spec.name!r}, not {name!r}")
    run_frac = config.get("val_frac", DEFAULT_VAL_FRAC)  # runs from before --val-frac held out 0.2
    if val_frac is not None and val_frac != run_frac:
        raise ZooError(f"--val-frac: {run_dir} holds out {run_frac:g} of its text; a resumed run keeps the options it started with")
    options = record.get("options", {})
    lrs = recorded_lrs(options)
    if epochs is not None:
        lrs = extend_lrs(lrs, epochs)
    d = distributed.from_env()
    if d.main:  # rank 0 writes; under torchrun the other ranks of the same run must not be refused
        runlock.lock(run_dir)
    dev = distributed.setup(d, resolve_device(device))
    quiet = quiet or not d.main
    source = resolve(options["data"], spec.dataset)
    text = source.read_text()
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != record.get("data_sha256"):
        raise ZooError(f"the data {options['data']!r} changed since the run started; cannot resume {run_dir} exactly")
    vocab = Vocab(config["vocab"])
    model = tag_vocab(build(spec, len(vocab), config["hparams"]), vocab.chars)
    train_b, val_b = make_batches(
        _encode(vocab, text), Batching(**config["batching"]), options["batch_size"], config["split"], val_frac=run_frac
    )
    seed = options["seed"]
    amp = resumed_amp(options, dev)
    trainer = _trainer(
        spec, model, train_b, val_b, lrs, seed, dev, run_dir, config, amp, quiet, callbacks,
        d=d, data_sha256=record.get("data_sha256"), cuda_graph=cuda_graph,
    )  # fmt: skip
    state = load_checkpoint(find_checkpoint(run_dir), trainer.model, trainer.opt)
    trainer.state.restore(state)
    if state["carried"] is not None:  # saved whole; under torchrun each rank takes its rows
        trainer.carried = distributed.shard_rows(d, tuple(t.to(dev) for t in state["carried"]))
    refuse_finished(run_dir, trainer, lrs)
    if max_steps is not None and max_steps <= trainer.state.global_step:
        raise ZooError(f"{run_dir} has already trained {trainer.state.global_step} batches; --max-steps counts them all, so ask for more")
    options.update(record_lrs(lrs))
    try:
        if d.main:
            atomic_write_json(run_dir / "run.json", {**record, "options": options})
    except OSError as exc:
        raise ZooError(f"cannot write to {run_dir} ({exc.strerror}); the last complete checkpoint is kept") from None
    if not quiet:
        print(resuming_line(spec.name, run_dir, trainer), file=sys.stderr)
    return _fit(trainer, spec, config, run_dir, max_steps, max_seconds)


def _spec_for(config: dict[str, Any], where: Path) -> ModelSpec:
    """The registered spec a config names; a downloaded file never chooses code to import."""
    name = config["model"]
    models = registry.get().models
    if name not in models:
        plugin = config.get("plugin") or "?"
        raise ZooError(
            f"{where}/config.json names the model {name!r} of plugin {plugin!r} (version {config.get('plugin_version') or '?'}), "
            f"which is not installed; install the plugin that provides it (see `zoo plugins`)"
        )
    return models[name]


def load(name_or_dir: str | Path, device: str = "cpu") -> LoadedModel | tasks.TaskModel:
    """A trained model, from the first of: a run directory, weights pulled from the Hub, bundled weights."""
    from zoo import hub

    if not isinstance(name_or_dir, (str, os.PathLike)):
        raise ZooError(f"load takes a run directory, a model name or OWNER/NAME, got {name_or_dir!r}")
    path = Path(name_or_dir).expanduser()
    if (path / "config.json").exists():
        return load_dir(path, device)
    if path.is_dir():
        raise ZooError(f"{path}: no config.json here; is this a zoo run directory?")
    name = str(name_or_dir)
    found = hub.find_weights(name)
    if found is not None:
        return load_dir(found[0], device)
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ZooError(f"{name}: not a zoo run directory (expected a folder with config.json and model.safetensors)")
    if "/" in name:  # OWNER/NAME on the Hub, or a local path; when its folder exists, it is a path
        hint = "" if path.parent.is_dir() else f"; if it is a Hub repository, `zoo pull {name}` first"
        raise ZooError(f"{name}: no such run directory{hint}")
    spec = registry.get_model(name)  # "unknown model … did you mean"
    raise ZooError(f"no trained weights for {spec.name!r}: train them with `zoo train {spec.name}` and pass the run directory")


def load_dir(path: Path, device: str = "cpu") -> LoadedModel | tasks.TaskModel:
    config = read_config(path)
    if config.get("task", "char-lm") != "char-lm":
        return tasks.load_dir(path, config, device)  # a zoo.tasks.TaskModel
    spec = _spec_for(config, path)
    vocab = Vocab(config["vocab"])
    try:
        model = tag_vocab(build(spec, len(vocab), config["hparams"]), vocab.chars)
    except ZooError as exc:  # "model 'x' cannot be built with the hyper-parameters …"
        raise ZooError(f"{path}/config.json: {exc}") from None
    load_weights(path / "model.safetensors", model)
    model.to(resolve_device(device))
    model.eval()
    return LoadedModel(spec, model, vocab, config, path)


def evaluate(
    name_or_dir: str | Path, data: str | None = None, split: str | None = None, device: str = "cpu", val_frac: float | None = None
) -> dict[str, float]:
    """Validation metrics of a trained model; `val_frac` (character models only) defaults to the run's."""
    m = load(name_or_dir, device)
    if val_frac is None:
        return m.evaluate(data=data, split=split)
    if not isinstance(m, LoadedModel):
        _char_models_only(f"{m.name} is a {m.spec.task} model", val_frac=val_frac)
    return m.evaluate(data=data, split=split, val_frac=val_frac)
