"""One run pipeline for every task: resolve the options, read the data, claim the run folder, build, train,
save, and hand back the trained model; the same steps resume a run and load one.

    train(opts)   a new run, or (opts.resume) the continuation of one
    load_dir(p)   a trained model from its run folder

The task (zoo.tasks) supplies what differs: the checks of its options, its data, its model's inputs, its
loss and metrics. The run folder's files are zoo.rundir's; the loop is zoo.trainer's. A spec's `fit`
function, if it names one, trains instead of the Trainer: it gets a `FitContext`.
"""

from __future__ import annotations

import datetime as _dt
import functools
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo import __version__, distributed, registry, rundir, runlock, tasks
from zoo.checkpoint import check_fit, load_checkpoint, load_weights, read_header, save_weights
from zoo.errors import ZooError, first_line, printable
from zoo.model import check_builder_params, count_params, import_builder, import_object, parse_overrides
from zoo.options import TrainOptions, epoch_lrs, extend_lrs, record_lrs, recorded_lrs, recorded_options
from zoo.plugins import host
from zoo.runtime import device_note, machine, resolve_amp, resolve_device, resumed_amp
from zoo.spec import OPTIMIZERS, ModelSpec
from zoo.tasks import Plan, Task, TrainedModel
from zoo.trainer import RunInfo, Trainer, TrainerSettings

# --- what a fit function gets ---------------------------------------------------------------------------------


@dataclass
class FitContext:
    """What a spec's `fit` function gets: the model, the data, the options, and zoo's Trainer at hand."""

    spec: ModelSpec
    task: Task
    model: nn.Module
    data: Any  # the task's prepared data: `.train` and `.val` batches (a table task's `TableData`)
    epoch_lrs: list[float]
    seed: int
    device: torch.device
    out_dir: Path
    config: dict[str, Any]
    options: dict[str, Any]  # the spec's train_options, resolved
    given: dict[str, Any] = field(default_factory=dict)  # what the caller passed explicitly: epochs, lr, max_steps, max_seconds
    amp: bool = False
    quiet: bool = False
    callbacks: list[Any] | None = None
    dist: distributed.Dist = distributed.SINGLE
    cuda_graph: bool = False
    data_sha256: str | None = None
    last_trainer: Trainer | None = None  # the Trainer `trainer()` built last: where a run stopped, if it stopped early

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def trainer(self, train: Any = None) -> Trainer:
        """zoo's Trainer for this run (`train`: other training batches, e.g. a wrapper that records each step)."""
        run = RunInfo(name=self.spec.name, out_dir=self.out_dir, config=self.config, device=str(self.device), epochs=len(self.epoch_lrs))
        data_id = self.config.get("data")
        settings = TrainerSettings(
            seed=self.seed, device=self.device, amp=self.amp, hook=host().pm.hook, callbacks=self.callbacks,
            reference=reference_losses(self.spec, data_id, self.data_sha256),
            reference_trn=reference_losses(self.spec, data_id, self.data_sha256, "trn"), quiet=self.quiet, task=self.task,
            optimizer=self.spec.optimizer, dist=self.dist, cuda_graph=self.cuda_graph,
        )  # fmt: skip
        batches = train if train is not None else self.data.train
        self.last_trainer = Trainer(self.model, batches, self.data.val, self.epoch_lrs, run, settings)
        return self.last_trainer

    def run_trainer(self, train: Any = None) -> list[dict[str, float]]:
        return self.trainer(train).fit(max_steps=self.given.get("max_steps"), max_seconds=self.given.get("max_seconds"))


def _fit_function(spec: ModelSpec) -> Any:
    """The spec's `fit` ("module:function"), imported when training starts; None: zoo's Trainer trains it."""
    return import_object(spec.fit, f"model {spec.name!r}", "fit function") if spec.fit else None


# --- what the run records -------------------------------------------------------------------------------


def reference_losses(spec: ModelSpec, data_id: str | None, data_sha256: str | None, kind: str = "val") -> list[float | None]:
    """The spec's published validation (or with kind="trn", training) losses per epoch, when this run's data is
    what they were measured on.

    On other data they compare nothing, so the epoch table's "lesson" column and the loss plot leave them out.
    """
    if spec.reference is None or not on_reference_data(spec, data_id, data_sha256):
        return []
    return list(getattr(spec.reference, f"{kind}_loss"))


def on_reference_data(spec: ModelSpec, data_id: str | None, data_sha256: str | None) -> bool:
    """Whether a run's data is the corpus the spec's reference figures were measured on (its dataset): by the
    dataset's sha256 where it pins one, else by name."""
    try:
        expected = getattr(registry.get_dataset(spec.dataset), "sha256", None)
    except ZooError:
        return False
    return data_sha256 == expected if expected is not None else data_id == spec.dataset


def base_config(spec: ModelSpec, hparams: dict[str, Any], split: str, data_id: str) -> dict[str, Any]:
    """The part of config.json every task writes: what the model is, where it came from, what it saw."""
    info = host().infos.get(spec.plugin)
    return {
        "format": rundir.CONFIG_FORMAT,
        "model": spec.name,
        "plugin": spec.plugin,
        # what to `pip install` for it where it is pulled ("" for a plugin registered in process: none to install)
        "distribution": rundir.distribution_name(info.distribution) if info else "",
        "plugin_version": info.version if info else "",
        "zoo_version": __version__,
        "task": spec.task,
        "hparams": hparams,
        "split": split,
        "data": data_id,
    }


def cli_command() -> str | None:
    """The `zoo ...` command line when this process is the zoo CLI (`zoo` or `python -m zoo`), else None.

    Its paths are reduced to their names (zoo.rundir.public_command): run.json goes up to the Hub with the run."""
    arg0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    if arg0.name == "zoo" or (arg0.name == "__main__.py" and arg0.parent.name == "zoo"):
        return rundir.public_command(["zoo", *sys.argv[1:]])
    return None  # Python code calling zoo.train, or another program's __main__ (python -m pytest)


def _git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run_record(spec: ModelSpec, options: dict[str, Any], dev: torch.device, data_sha256: str) -> dict[str, Any]:
    """run.json: how the run was made (the command, resolved options, data hash, versions, device, git revision)."""
    return {
        "model": spec.name,
        "command": cli_command(),
        # "autocast": what amp meant on this device (zoo.runtime.resumed_amp tells older records apart)
        "options": {**options, "autocast": "bf16" if options.get("amp") else None},
        "data_sha256": data_sha256,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or platform.machine(),
        "machine": machine(dev),
        "versions": {"zoo": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "git_revision": _git_revision(),
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


def _subcommand(args: list[str]) -> str | None:
    """The zoo command `args` (argv after the program) run, past the group's options (`zoo --threads 1 train`);
    None when this process is not the zoo CLI."""
    if cli_command() is None:
        return None
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] == "--threads" else 1
    return args[i] if i < len(args) else None


def _recorded_resumes(record: dict[str, Any]) -> list[str | None]:
    """run.json's "resumes": the command of each resume so far (None: resumed from Python); [] for a first resume."""
    resumes = record.get("resumes")
    return [r for r in resumes if r is None or isinstance(r, str)] if isinstance(resumes, list) else []


# --- checks every task shares ------------------------------------------------------------------------------


def check_train_options(spec: ModelSpec, options: dict[str, Any] | None) -> dict[str, Any]:
    """The spec's training options (`spec.train_options`) with the given ones (None: not given) applied."""
    given = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = sorted(set(given) - set(spec.train_options))
    if unknown:
        flag = "--" + unknown[0].replace("_", "-")
        takes = f"its options: {', '.join('--' + k.replace('_', '-') for k in spec.train_options)}" if spec.train_options else "it has none"
        raise ZooError(f"{flag}: not an option of {spec.name} ({takes})")
    return {**spec.train_options, **given}


def _refuse_foreign_options(task: Task, opts: TrainOptions, why: str) -> None:
    """Refuse the options only another task's models take (`why` says what this model is)."""
    for option, flag, given in (("cuda_graph", "--cuda-graph", opts.cuda_graph), ("val_frac", "--val-frac", opts.val_frac is not None)):
        if given and option not in task.own_options:
            raise ZooError(f"{flag} applies to character models only; {why}")


def _refuse_torchrun(task: Task, spec: ModelSpec) -> None:
    if not task.distributed and distributed.from_env().enabled:
        raise ZooError(f"{spec.name} is a {spec.task} model: it trains in one process; run it without torchrun")


def refuse_finished(run_dir: Path, trainer: Trainer, lrs: list[float]) -> None:
    """A resumed run with no epoch left to train: say how many it has (--epochs counts them all)."""
    done = trainer.state.epoch
    if done >= len(lrs):
        raise ZooError(f"{run_dir} has already trained {done} epoch{'s' * (done != 1)}; --epochs counts them all, so ask for more")


def resuming_line(name: str, run_dir: Path, trainer: Trainer) -> str:
    st = trainer.state
    return f"resuming {name} from {run_dir} at epoch {st.epoch + 1}, batch {st.step}" + (", bf16 autocast" if trainer.amp else "")


def spec_for(config: dict[str, Any], where: Path) -> ModelSpec:
    """The registered spec a config names, the config checked against it; a downloaded file never chooses code to import."""
    name = config["model"]
    spec = registry.find_model(name)  # resolved as `zoo train NAME` resolves it: zoo's own name stays zoo's
    if spec is None:
        plugin = config.get("plugin") or "?"  # shown by repr, which escapes what could move the cursor or end the line
        version = printable(config.get("plugin_version") or "?")  # shown bare: escaped alike
        raise ZooError(
            f"{where}/config.json names the model {name!r} of plugin {plugin!r} (version {version}), "
            f"which is not installed; {registry.install_hint(config)}"
        )
    if config["task"] != spec.task:  # the task reads the data and builds the model: it must be the model's own
        raise ZooError(f"{rundir.config_path(where)}: 'task' is {config['task']!r}, but {spec.name} is a {spec.task} model")
    tasks.get(spec.task).check_against(rundir.config_path(where), config, spec)
    return spec


def read_config(run_dir: Path) -> tuple[dict[str, Any], Task]:
    """A run folder's config.json, checked by zoo.rundir and then by its task; and that task."""
    config = rundir.read_config(run_dir)
    task = tasks.get(config["task"])
    task.check_config(rundir.config_path(run_dir), config)
    return config, task


# --- new runs and resumes -----------------------------------------------------------------------------------


def train(opts: TrainOptions) -> TrainedModel:
    """Train `opts.name` with its recipe, or continue the run in `opts.resume`; the trained model."""
    with runlock.scope():  # the run folder's lock is released when this returns or raises
        if opts.resume is not None:
            return _resume(opts)
        if opts.name is None:
            raise ZooError("name a model to train, or --resume a run directory")
        return _new_run(opts)


def _plan(spec: ModelSpec, task: Task, opts: TrainOptions) -> Plan:
    """The options every task checks, in this order, before its own: nothing is read or written yet."""
    _refuse_foreign_options(task, opts, f"{spec.name} is a {spec.task} model")
    _refuse_torchrun(task, spec)
    train_options = check_train_options(spec, opts.train_options)
    if spec.optimizer not in OPTIMIZERS:  # before any file is written
        raise ZooError(f"{spec.name}: unknown optimizer {spec.optimizer!r} in its spec (known: {', '.join(OPTIMIZERS)})")
    check_builder_params(spec, import_builder(spec))  # a spec's misnamed hyper-parameter, before the data is read
    hparams = parse_overrides(spec, list(opts.overrides))
    lrs = epoch_lrs(spec, opts.epochs, opts.lr)
    batch_size = spec.batch_size if opts.batch_size is None else opts.batch_size
    seed = 0 if opts.seed is None else opts.seed
    base = Plan(hparams, lrs, batch_size, opts.split or spec.split, seed, torch.device("cpu"), train_options)
    plan = task.plan(spec, opts, base)
    if spec.options_check:  # the model's own check of its training options, before a run directory exists
        import_object(spec.options_check, f"model {spec.name!r}", "options check")(train_options)
    return plan


def _new_run(opts: TrainOptions) -> TrainedModel:
    spec = registry.get_model(opts.name)
    task = tasks.get(spec.task)
    plan = _plan(spec, task, opts)
    d = distributed.from_env()  # under torchrun: this process's rank among WORLD_SIZE
    plan.device = dev = distributed.setup(d, resolve_device(opts.device))
    quiet = opts.quiet or not d.main
    prepared = task.prepare(spec, plan, opts.data, registry.datasets())

    out_dir = rundir.claim(spec.name, opts.out, functools.partial(distributed.broadcast, d))
    config = {**base_config(spec, plan.hparams, plan.split, prepared.data_id), **prepared.config}
    options = {**record_lrs(plan.lrs), "batch_size": plan.batch_size, "seed": plan.seed, "device": str(dev), "amp": opts.amp,
               "data": prepared.data_id, "split": plan.split, **task.run_options(plan), "overrides": list(opts.overrides)}  # fmt: skip
    if task.distributed:
        options["world_size"] = d.world
    torch.manual_seed(plan.seed)
    model = task.build(spec, plan.hparams, config)
    options["amp"] = amp = resolve_amp(opts.amp, model, dev)
    task.check_model(model, spec, dev, opts, d.enabled)  # refused before the run's folder is written
    prepared.batches()
    task.check_output(model, spec, prepared, dev)  # one small batch through the model: its output's shape, before any file
    if d.main:
        rundir.start(out_dir, config, run_record(spec, options, dev, prepared.sha256))
    ctx = FitContext(
        spec, task, model, prepared, plan.lrs, plan.seed, dev, out_dir, config, plan.train_options, given=opts.given,
        amp=amp, quiet=quiet, callbacks=list(opts.callbacks) if opts.callbacks is not None else None, dist=d,
        cuda_graph=opts.cuda_graph, data_sha256=prepared.sha256,
    )  # fmt: skip
    ctx.say(
        f"training {spec.name} ({count_params(model):,} parameters) on {prepared.name}: {task.data_line(prepared, plan)}, "
        f"{device_note(dev, amp, opts.cuda_graph)}, output {out_dir}"
    )
    for line in task.notes(prepared):
        ctx.say(line)
    return _fit(ctx, _fit_function(spec))


def _fit(ctx: FitContext, fit: Any = None) -> TrainedModel:
    """Train with zoo's Trainer (the one `ctx` built already, if any) or a spec's `fit` function, and hand back the
    trained model. The Trainer writes the weights and training.json with every checkpoint; a fit function's are
    written here."""
    try:
        if fit is None:
            trainer = ctx.last_trainer or ctx.trainer()
            trainer.fit(max_steps=ctx.given.get("max_steps"), max_seconds=ctx.given.get("max_seconds"))
        else:
            history = fit(ctx)
            if ctx.dist.main:
                save_weights(rundir.weights(ctx.out_dir), ctx.model)
                if history:
                    rundir.write_history(ctx.out_dir, history)
    except OSError as exc:
        raise ZooError(f"cannot write to {ctx.out_dir} ({exc.strerror}); the last complete checkpoint is kept") from None
    finally:
        if ctx.last_trainer is not None:
            ctx.last_trainer.net = ctx.last_trainer.model  # drop the DDP wrapper before its process group goes away
        distributed.teardown(ctx.dist)
    result = ctx.task.result(ctx.spec, ctx.model, ctx.config, ctx.out_dir)
    trainer = ctx.last_trainer
    if trainer is not None:
        result.history = list(trainer.state.history)  # under torchrun, rank 0 may not have written training.json yet
        st = trainer.state
        if st.step:  # stopped mid-epoch (a step or time limit)
            result.partial = {"epoch": st.epoch + 1, "step": st.step, "trn_loss": st.loss_sum / max(1, st.rows)}
    return result


def _resume(opts: TrainOptions) -> TrainedModel:
    run_dir = Path(opts.resume)
    if not run_dir.is_dir():
        raise ZooError(f"{run_dir}: no such run directory (--resume takes the folder a run wrote, e.g. runs/char-rnn)")
    rundir.refuse_links_out(run_dir)
    if not rundir.has_config(run_dir):  # as `zoo sample` says it
        raise ZooError(f"{run_dir}: no config.json here; is this a zoo run directory?")
    config, task = read_config(run_dir)
    _refuse_foreign_options(task, opts, f"{run_dir} is a run of a {config['task']} model")
    record = rundir.read_run(run_dir, required=True)
    options = recorded_options(record, str(rundir.run_path(run_dir)))
    record = {**record, "options": options}  # the task's `reread` reads the checked options
    spec = spec_for(config, run_dir)
    if opts.name is not None and opts.name != spec.name:
        raise ZooError(f"{run_dir} is a run of {spec.name!r}, not {opts.name!r}")
    run_frac = config.get("val_frac")
    if opts.val_frac is not None and opts.val_frac != run_frac:
        raise ZooError(f"--val-frac: {run_dir} holds out {run_frac:g} of its text; a resumed run keeps the options it started with")
    _refuse_torchrun(task, spec)
    lrs = recorded_lrs(options)
    if opts.epochs is not None:
        lrs = extend_lrs(lrs, opts.epochs)
    d = distributed.from_env()
    if d.main:  # rank 0 writes; under torchrun the other ranks of the same run must not be refused
        runlock.lock(run_dir)
    dev = distributed.setup(d, resolve_device(opts.device))
    prepared = task.reread(spec, config, record, registry.datasets(), run_dir)
    model = build_checked(task, spec, config, run_dir, rundir.find_checkpoint(run_dir) / rundir.WEIGHTS)
    prepared.batches()
    ctx = FitContext(
        spec, task, model, prepared, lrs, options["seed"], dev, run_dir, config, options.get("train_options", {}),
        given=opts.given, amp=resumed_amp(options, dev),
        quiet=opts.quiet or not d.main, callbacks=list(opts.callbacks) if opts.callbacks is not None else None, dist=d,
        cuda_graph=opts.cuda_graph, data_sha256=record.get("data_sha256"),
    )  # fmt: skip
    trainer = ctx.trainer()
    state = load_checkpoint(rundir.find_checkpoint(run_dir), trainer.model, trainer.opt)
    trainer.restore(state)
    if state["carried"] is not None:  # saved whole; under torchrun each rank takes its rows
        trainer.carried = distributed.shard_rows(d, tuple(t.to(dev) for t in state["carried"]))
    refuse_finished(run_dir, trainer, lrs)
    if opts.max_steps is not None and opts.max_steps <= trainer.state.global_step:
        raise ZooError(f"{run_dir} has already trained {trainer.state.global_step} batches; --max-steps counts them all, so ask for more")
    options.update(record_lrs(lrs))
    try:
        if d.main:
            # every resume's command beside the first: the card's recipe shows how these weights were made
            resumes = _recorded_resumes(record)
            if _subcommand(sys.argv[1:]) in (None, "train"):  # `zoo compare` resumes its runs chunk by chunk: not a recipe
                resumes.append(cli_command())
            rundir.write_run(run_dir, {**record, "options": options, "resumes": resumes})
    except OSError as exc:
        raise ZooError(f"cannot write to {run_dir} ({exc.strerror}); the last complete checkpoint is kept") from None
    ctx.say(resuming_line(spec.name, run_dir, trainer))
    return _fit(ctx)


# --- a trained model from its folder ----------------------------------------------------------------------


def _build(task: Task, spec: ModelSpec, config: dict[str, Any], where: Path) -> nn.Module:
    """The model a run folder's config.json describes (`where`: the folder, for the error)."""
    try:
        return task.build(spec, config["hparams"], config)
    except ZooError as exc:  # "model 'x' cannot be built with the hyper-parameters …"
        raise ZooError(f"{where}/config.json: {exc}") from None
    except (TypeError, KeyError) as exc:
        raise ZooError(f"{where}/config.json: its hyper-parameters or columns do not fit {spec.name} ({exc})") from None


def meta_model(task: Task, spec: ModelSpec, config: dict[str, Any]) -> nn.Module | None:
    """The model config.json describes, built on the meta device (shapes, no memory); None if the builder needs
    real values (e.g. `.item()`). Any other failure is raised: built for real, such sizes (n_hidden=10**13) would
    allocate what fits before the layer that overflows."""
    import_builder(spec)  # imported outside the meta device, so that no tensor its module makes lands there
    try:
        with torch.device("meta"):
            return task.build(spec, config["hparams"], config)
    except NotImplementedError:
        return None
    except Exception as exc:
        if "meta" in str(exc).lower():  # an operation the meta device cannot do: the real build goes on unchecked
            return None
        raise


def build_checked(task: Task, spec: ModelSpec, config: dict[str, Any], where: Path, weights: Path) -> nn.Module:
    """The model config.json describes, allocated only once its shapes are those the weights file's header holds.

    A hand-edited or downloaded config decides the sizes (n_hidden=60000, a vocabulary of every code point): built
    first, they would take gigabytes before the weights are checked. So the shapes are taken from a build on the
    meta device and compared with the header of `weights`: the sizes are capped at what the weights actually hold.
    """
    found, metadata = read_header(weights)
    try:
        shell = meta_model(task, spec, config)
    except ZooError as exc:  # "model 'x' cannot be built with the hyper-parameters …"
        raise ZooError(f"{where}/config.json: {exc}") from None
    except Exception as exc:
        raise ZooError(f"{where}/config.json: {spec.name} cannot be built from it ({first_line(exc)})") from None
    if shell is not None:
        check_fit(weights, found, metadata, shell)
    return _build(task, spec, config, where)


def load_dir(path: Path, device: str = "cpu", downloaded: bool = False) -> TrainedModel:
    """The trained model in the run folder `path`, on `device`, in evaluation mode.

    `downloaded`: the folder came from the Hub, so its config's "data" may only name a registered dataset.
    """
    config, task = read_config(path)
    spec = spec_for(config, path)
    model = build_checked(task, spec, config, path, rundir.weights(path))
    load_weights(rundir.weights(path), model)
    model.to(resolve_device(device))
    model.eval()
    result = task.result(spec, model, config, path)
    result.downloaded = downloaded
    return result


__all__ = ["FitContext", "load_dir", "train"]
