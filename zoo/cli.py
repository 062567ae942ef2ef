"""The `zoo` command. Listing commands never import torch; training and sampling do, lazily.

Shell completion (click): eval "$(_ZOO_COMPLETE=bash_source zoo)"  (zsh_source, fish_source).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click
from click.shell_completion import CompletionItem

from zoo import DISTRIBUTION, __version__, checks
from zoo.errors import ZooError, ZooWarning, printable, warn
from zoo.options import DEFAULT_VAL_FRAC, DYNAMIC_LR

if TYPE_CHECKING:
    from pathlib import Path

    from zoo.published import PublishedWeights


def _echo_table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths))
    click.echo(line.rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for row in rows:
        click.echo("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip())


def _reference_loss(spec: Any) -> str:
    ref = spec.reference
    if ref is None:
        return "-"
    if ref.final_val is not None:
        return f"{ref.final_val:.3f} val"
    if ref.final_trn is not None:
        return f"{ref.final_trn:.3f} trn"
    return "-"


class ZooGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)  # in the order they were added: the order of the data flow


THREADS_ENV = "ZOO_THREADS"
THREADS_HELP = (
    f"CPU threads for torch [env {THREADS_ENV}; default: the cores the load average leaves idle, at least 1 "
    "(OMP_NUM_THREADS if set): on a busy machine more threads than free cores wait on each other]."
)


def default_threads() -> int:
    """One thread per core that the last minute's load average leaves idle (rounded), at least 1.

    Measured on a 2-core VM (AMD EPYC, torch 2.13 CPU; char-rnn, median ms per training step): nearly idle,
    2 threads 11.9 and 1 thread 17.3; beside two busy processes, 2 threads 350-620 and 1 thread 40-90, as torch's
    threads wait on each other at every operation (torch's default is one thread per core). The load average is
    what tells the two machines apart. (char-rnn trained 40 steps on 1 and on 2 threads to the same weights, bit for bit.)
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except (OSError, AttributeError):  # no load average (Windows): torch's own choice, one thread per core
        return cores
    return max(1, min(cores, round(cores - busy)))


def use_threads(threads: int) -> None:
    """Have torch compute on `threads` CPU threads, whether or not it is imported yet."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read when torch is imported, which no command may have done yet
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _threads_given(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is None:
        return
    source = THREADS_ENV if ctx.get_parameter_source("threads") is click.core.ParameterSource.ENVIRONMENT else "--threads"
    try:
        threads = int(value)
    except ValueError:
        raise click.UsageError(f"{source} must be a whole number, got {value!r}", ctx) from None
    if threads <= 0:
        raise click.UsageError(f"{source} must be positive, got {threads}", ctx)
    use_threads(threads)


def threads_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """--threads N, or ZOO_THREADS: on the group (`zoo --threads 1 train`) and on each command that computes
    (`zoo train --threads 1`), the later one winning."""
    return click.option(
        "--threads", envvar=THREADS_ENV, show_envvar=False, callback=_threads_given, expose_value=False,
        metavar="N", help=THREADS_HELP,
    )(command)  # fmt: skip


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="zoo", message=f"%(prog)s, version %(version)s (distribution {DISTRIBUTION})")
@threads_option
def cli() -> None:
    """zoo - the models of fast.ai's Lesson 6, "RNNs from scratch", as a plugin-based model zoo.

    \b
    Start with:
      zoo list                          the models every installed plugin registered
      zoo train char-rnn                train one with the lesson's recipe
      zoo sample runs/char-rnn --prompt "for thos"
    """
    if "OMP_NUM_THREADS" not in os.environ:  # neither --threads, ZOO_THREADS nor the user's OpenMP setting chose
        use_threads(default_threads())


def _complete_model(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Shell completion of a MODEL argument: registered names, or the shell's own folder completion for a path."""
    if incomplete.startswith((".", "/", "~")) or os.sep in incomplete:
        return [CompletionItem(incomplete, type="dir")]
    from zoo import registry

    try:
        names = [s.name for s in registry.list_models() if s.name.startswith(incomplete)]
    except ZooError:  # a broken registry: no names to offer, and no error in the middle of the user's typing
        names = []
    return [CompletionItem(incomplete, type="dir"), *(CompletionItem(name) for name in names)]  # bash: dir first


@cli.command("list")
@click.argument("pattern", required=False)
@click.option("--tag", help="Only models with this tag.")
@click.option("--pretrained", is_flag=True, help="Only models with published weights.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(pattern: str | None, tag: str | None, pretrained: bool, as_json: bool) -> None:
    """List registered models; PATTERN is a shell wildcard such as 'char-*'."""
    from zoo import registry

    weights = registry.published_weights()  # zoo's registry.toml and the plugins' pins
    specs = registry.list_models(pattern, tag)
    if pretrained:
        specs = [s for s in specs if s.name in weights]
    if as_json:
        out = []
        for s in specs:
            w = weights.get(s.name)
            val = w.metric("val_loss") if w else None
            out.append(
                {
                    "name": s.name,
                    "plugin": s.plugin,
                    "task": s.task,
                    "num_params": s.num_params,
                    "dataset": s.dataset,
                    "summary": s.summary,
                    "tags": list(s.tags),
                    "reference_val_loss": s.reference.final_val if s.reference else None,
                    "reference_trn_loss": s.reference.final_trn if s.reference else None,
                    "pretrained": w is not None,
                    "pretrained_val_loss": val.value if val else None,
                }
            )
        click.echo(json.dumps(out, indent=2))
        return
    if not specs:
        what = f"matching {pattern!r}" if pattern else "registered"
        raise ZooError(
            f"no models {what}{' with tag ' + repr(tag) if tag else ''}{' with weights' if pretrained else ''}; see `zoo plugins`"
        )
    rows = []
    for s in specs:
        w = weights.get(s.name)
        val = w.metric("val_loss") if w else None
        rows.append(
            [
                s.name,
                s.plugin,
                s.task,
                f"{s.num_params:,}" if s.num_params else "?",
                s.dataset,
                _reference_loss(s),
                (f"yes ({val.value:.3f})" if val else "yes") if w else "no",
            ]
        )
    _echo_table(rows, ["name", "plugin", "task", "params", "dataset", "lesson", "weights"])


def _trained_with(w: PublishedWeights) -> str | None:
    """zoo's version and git revision that ran the recipe, from the bundled copy's run.json: running the recipe
    with a later zoo lands near the published figures, not on them (floats summed in another order)."""
    from zoo import published, rundir

    folder = published.bundled_path(w)
    try:
        run = rundir.read_run(folder) if folder else None
        version, revision = run["versions"]["zoo"], run.get("git_revision")
    except (ZooError, KeyError, TypeError):
        return None
    return f"zoo {version}" + (f", git {revision[:7]}" if isinstance(revision, str) else "") + f" ({run.get('device', '?')})"


@cli.command()
@click.argument("name", shell_complete=_complete_model)
def info(name: str) -> None:
    """Everything zoo knows about one model, NAME, or about the run in a run directory."""
    from zoo import registry, rundir

    path = Path(name).expanduser()
    if rundir.has_config(path):
        _echo_fields(f"{path}: a run of {rundir.read_config(path)['model']!r}", _run_fields(path))  # repr escapes
        return
    if path.is_dir() and registry.find_model(name) is None:
        raise ZooError(f"{path}: no config.json here; is this a zoo run directory?")
    s = registry.get_model(name)
    w = registry.published_entry(s.name)
    fields = [
        ("plugin", s.plugin),
        ("task", s.task),
        ("builder", s.builder),
        ("parameters", f"{s.num_params:,}" if s.num_params else "?"),
        ("dataset", s.dataset),
        ("tags", ", ".join(s.tags) or "-"),
        ("hyper-parameters", ", ".join(f"{k}={v}" for k, v in s.hparams.items()) or "-"),
        ("test settings", ", ".join(f"{k}={v}" for k, v in s.tiny.items()) + " (tiny: what zoo.testing builds)" if s.tiny else "-"),
        ("batching", s.batching.describe() if s.task == "char-lm" else "rows of a table"),
        *([("training options", ", ".join(f"{k}={v!r}" for k, v in s.train_options.items()))] if s.train_options else []),
        ("validation split", s.split),
        ("batch size", str(s.batch_size)),
        ("optimizer", s.optimizer),
        ("recipe", s.recipe_text()),
        ("train it", f"zoo train {s.name}"),
    ]
    if s.reference:
        r = s.reference
        fields.append(("reference", r.source))
        if any(v is not None for v in r.trn_loss):
            fields.append(("  trn loss/epoch", ", ".join("-" if v is None else f"{v:.3f}" for v in r.trn_loss)))
        if any(v is not None for v in r.val_loss):
            fields.append(("  val loss/epoch", ", ".join("-" if v is None else f"{v:.3f}" for v in r.val_loss)))
        if r.note:
            fields.append(("  note", r.note))
    if w:
        where = f"{w.repo} @ {w.revision[:12]}" if w.revision else f"{w.repo} (not yet on the Hub; bundled with zoo)"
        fields += [("weights", where), ("  license", w.license), ("  recipe", w.recipe)]
        trained = _trained_with(w)
        if trained:
            fields.append(("  trained with", trained))
        fields += [
            (f"  {m.name}", f"{m.value:.4f} ({m.dataset}, {m.split}" + (f" {m.val_frac:.0%})" if m.val_frac else ")")) for m in w.metrics
        ]
    else:
        fields.append(("weights", "none published"))
    _echo_fields(f"{s.name}: {s.summary}", fields)


def _echo_fields(title: str, fields: list[tuple[str, str]]) -> None:
    click.echo(title)
    width = max(len(k) for k, _ in fields)
    for k, v in fields:
        click.echo(f"  {k.ljust(width)}  {v}")


def _run_fields(path: Path) -> list[tuple[str, str]]:
    """What a run folder says of itself (config.json, run.json, training.json): text from a file anyone may have
    written, so every value is shown escaped, on its line."""
    from zoo import registry, rundir

    config, run = rundir.read_config(path), rundir.read_run(path)
    history = rundir.read_history(path)
    spec = registry.find_model(config["model"])
    shown = {k: printable(v) for k, v in config.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool)}
    fields = [
        ("model", f"{shown['model']} ({spec.summary})" if spec else f"{shown['model']} (no installed plugin registers it)"),
        ("plugin", f"{shown.get('plugin', '?')} {shown.get('plugin_version', '')}".rstrip()),
        ("task", shown.get("task", "?")),
        ("hyper-parameters", printable(", ".join(f"{k}={v}" for k, v in config["hparams"].items())) or "-"),
        ("data", shown.get("data", "?")),
        ("validation split", shown.get("split", "?") + (f", {shown['val_frac']} held out" if "val_frac" in shown else "")),
    ]
    if isinstance(run, dict) and isinstance(run.get("command"), str):
        fields.append(("command", printable(run["command"])))
    epochs = [e for e in history if isinstance(e, dict)] if isinstance(history, list) else []
    fields.append(("epochs trained", str(len(epochs))))
    last = epochs[-1].get("val_loss") if epochs else None
    if checks.is_number(last):
        fields.append(("  val loss", f"{last:.4f} (after the last epoch)"))
    fields.append(("weights", "yes" if rundir.is_model(path) else "none yet"))
    fields.append(("sample it", f"zoo sample {path}"))
    return fields


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List installed plugins: what they provide, or why they failed to load."""
    from zoo import registry
    from zoo.plugins import host

    reg = registry.get()
    infos = sorted(host().infos.values(), key=lambda i: i.name)
    if as_json:
        click.echo(json.dumps({"plugins": [i.as_dict() for i in infos], "conflicts": reg.conflicts}, indent=2))
        return
    rows = [
        [
            i.name,
            printable(i.distribution) or "-",  # a distribution's metadata says what it likes
            printable(i.version) or "-",
            ", ".join(h.removeprefix("zoo_") for h in i.hooks) or "-",
            ", ".join(i.models + i.datasets) or "-",
            ("FAILED: " + i.error) if i.error else "ok",
        ]
        for i in infos
    ]
    _echo_table(rows, ["plugin", "distribution", "version", "hooks", "provides", "status"])
    for c in reg.conflicts:
        click.echo(f"conflict: {c}", err=True)


@cli.command()
def datasets() -> None:
    """List registered datasets (use them with --data NAME)."""
    from zoo import registry

    rows = [[name, getattr(src, "summary", "")] for name, src in sorted(registry.datasets().items())]
    _echo_table(rows, ["dataset", "summary"])


DEVICE_HELP = "cpu; cuda (the first GPU) or cuda:N; mps (Apple GPUs); or auto, the first of cuda, mps and cpu here."


def _positive(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value <= 0:
        raise click.BadParameter("must be positive")
    return value


@cli.command()
@click.argument("name", required=False, shell_complete=_complete_model)
@threads_option
@click.option("--epochs", type=int, callback=_positive, help="Epochs in all (default: the recipe's).")
@click.option("--lr", type=float, callback=_positive, help="One learning rate for every epoch (default: the recipe's).")
@click.option("--batch-size", type=int, callback=_positive, help="Rows per batch (default: the spec's, 512 for the lesson).")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--data", help="A dataset name (see `zoo datasets`) or a text file (default: the model's dataset).")
@click.option("--seed", type=int, help="Seeds the initial weights and the shuffle [default: 0].")
@click.option("--out", type=click.Path(file_okay=False), help="Output directory (default: runs/NAME, runs/NAME-2, ...).")
@click.option("--resume", type=click.Path(file_okay=False), help="Continue the run in this directory.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a hyper-parameter (repeatable).")
@click.option(
    "--split",
    type=click.Choice(["random", "tail"]),
    help="Validation rows: the lesson's random rows, or the end of the text (see --val-frac).",
)
@click.option("--val-frac", type=float, metavar="FLOAT", help="Fraction of the text held out for validation (default 0.2).")
@click.option("--max-steps", type=int, callback=_positive, help="Stop once this many batches are done in all, a resumed run's included.")
@click.option(
    "--budget", "max_seconds", type=float, callback=_positive, help="Stop after this many seconds of training (with a checkpoint)."
)
@click.option(
    "--amp/--no-amp",
    default=None,
    help="bfloat16 mixed precision, on CUDA or a CPU with native bf16 [default: on CUDA for models of 1M+ parameters].",
)
@click.option(
    "--cuda-graph", is_flag=True, help="Replay each step as one captured CUDA graph: fewer kernel launches (CUDA; stateless models)."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or table.")
def train(name: str | None, **options: Any) -> None:
    """Train model NAME with its recipe; writes a checkpoint after every epoch.

    Ctrl-C saves a checkpoint; `zoo train --resume DIR` continues it exactly.
    """
    from zoo import api

    # Options a plugin added to this command (linreg-sgd's --method, --animate) are that model's training options.
    extra = {k: options.pop(k) for k in list(options) if k not in api.TRAIN_KEYWORDS}
    if options["resume"]:  # api.train refuses what a resumed run cannot change; a plugin's flags unset are None or off
        m = api.train(name, **options, options={k: v for k, v in extra.items() if v is not None and v is not False and v != ()})
    else:
        del options["resume"]
        m = api.train(name, **options, options=extra)
    from zoo import distributed

    if not distributed.from_env().main:  # under torchrun only rank 0 reports
        return
    partial = m.partial
    if partial:  # stopped mid-epoch by --max-steps or --budget: show where, and the loss so far
        click.echo(
            f"{m.name}: stopped at epoch {partial['epoch']}, batch {partial['step']} (trn_loss so far {partial['trn_loss']:.4f}); "
            f"continue with zoo train --resume {m.path}"
        )
        return
    if m.history:  # the last epoch's figures, in the model's own terms (TrainedModel.report)
        click.echo(m.report())
    else:
        click.echo(f"{m.name}: stopped before the first epoch ended; continue with zoo train --resume {m.path}")


@cli.command("eval")
@click.argument("model", shell_complete=_complete_model)
@threads_option
@click.option("--data", help="A dataset name or text file (default: what the model was trained on).")
@click.option("--split", type=click.Choice(["random", "tail"]), help="Validation rows (default: the run's).")
@click.option("--val-frac", type=float, metavar="FLOAT", help="Fraction of the text held out (default: the run's, 0.2 unless chosen).")
@click.option("--device", default="cpu", show_default=True, help=DEVICE_HELP)
@click.option("--json", "as_json", is_flag=True)
@click.option("--dynamic", is_flag=True, help="Also the dynamic figure: the weights adapt to the held-out tail as it is read.")
@click.option("--dynamic-lr", type=float, metavar="FLOAT", help=f"The dynamic evaluation's SGD learning rate (default {DYNAMIC_LR:g}).")
def eval_cmd(model: str, data: str | None, split: str | None, val_frac: float | None, device: str, as_json: bool, **dynamic: Any) -> None:
    """Validation loss (nats/char, bits/char) and accuracy of MODEL (a run directory or a name)."""
    from zoo import api

    result = api.evaluate(model, data=data, split=split, device=device, val_frac=val_frac, **dynamic)
    if as_json:
        click.echo(json.dumps(result))
    else:
        if "val_bpc" not in result:  # a table model: its own metrics
            click.echo("  ".join(f"{k} {v:,}" if k == "rows" else f"{k} {v:.4f}" for k, v in result.items()))
            return
        loss, bpc = result["val_loss"], result["val_bpc"]
        acc, chars = result["val_acc"], result["chars"]
        click.echo(f"val_loss {loss:.4f} nats/char  ({bpc:.4f} bits/char)  accuracy {acc:.4f}  over {chars:,} characters")
        if "dynamic_val_loss" in result:
            click.echo(_dynamic_line(result))


def _dynamic_line(result: dict[str, Any]) -> str:
    return (
        f"dynamic: val_loss {result['dynamic_val_loss']:.4f} nats/char  ({result['dynamic_val_bpc']:.4f} bits/char)  over "
        f"{result['dynamic_chars']:,} characters, SGD lr {result['dynamic_lr']:g} every {result['dynamic_segment']} characters; "
        "adapts the weights on the held-out text as it reads it: not comparable with the static leaderboard"
    )


@cli.command()
@click.argument("model", shell_complete=_complete_model)
@threads_option
@click.option("--prompt", help="The text to continue (default: the model's own, chosen when it trained).")
@click.option("--length", type=int, default=400, show_default=True, callback=_positive)
@click.option("--temperature", type=float, default=0.8, show_default=True, help="0 is greedy.")
@click.option("--top-k", type=int, callback=_positive, help="Sample only from the K likeliest characters.")
@click.option("--seed", type=int, help="Same seed, same text.")
@click.option("--num-samples", type=int, default=1, show_default=True, callback=_positive)
@click.option("--device", default="cpu", show_default=True, help=DEVICE_HELP)
def sample(
    model: str, prompt: str | None, length: int, temperature: float, top_k: int | None, seed: int | None, num_samples: int, device: str
) -> None:
    """Generate text from MODEL (a run directory or a name), one character at a time.

    One sample is printed as it is drawn; several, once all are done.
    """
    from zoo import api, checks

    checks.temperature(temperature)  # before the model is loaded
    m = api.load(model, device)
    if prompt is None:  # the model's own: the lesson's prompt fails on a text without its letters
        prompt = m.default_prompt
    options = {"temperature": temperature, "top_k": top_k, "seed": seed}
    if num_samples == 1:
        _stream_sample(m, prompt, length, options)
        return
    for i, text in enumerate(m.sample(prompt, length, **options, num_samples=num_samples)):
        if i:
            click.echo("\n---")
        click.echo(prompt + text)


def _stream_sample(m: Any, prompt: str, length: int, options: dict[str, Any]) -> None:
    """The prompt and its continuation on stdout as it is drawn (the line ended even if sampling stops midway):
    a long sample shows from its first characters, not at the end."""
    started = False

    def show(text: str) -> None:
        nonlocal started
        click.echo(text if started else prompt + text, nl=False)  # click.echo flushes
        started = True

    try:
        text = m.sample(prompt, length, **options, on_text=show)
        if not started:  # nothing to stream: --length 0
            click.echo(prompt + text, nl=False)
            started = True
    finally:
        if started:
            click.echo()


@cli.command()
@click.argument("model", shell_complete=_complete_model)
@threads_option
@click.option(
    "--text", required=True, metavar="FILE_OR_STRING", help="A UTF-8 text file, or the text itself (at most 10,000 characters)."
)
@click.option("--out", type=click.Path(dir_okay=False), help="The page to write [default: explain-MODEL.html here].")
@click.option("--top-k", type=int, default=5, show_default=True, help="Predictions shown per character (at most 20).")
@click.option("--device", default="cpu", show_default=True, help=DEVICE_HELP)
def explain(model: str, text: str, out: str | None, top_k: int, device: str) -> None:
    """Write one self-contained HTML page showing what MODEL predicts at each character of a text and what its
    hidden units do (MODEL: a run directory, a model name with weights, or a pulled OWNER/NAME).

    Each character is coloured by the model's surprise at it; hovering (or the arrow keys) shows its top-k
    predictions; a unit picker recolours the text by one hidden unit, with the units that follow quotes,
    parentheses, line position, newlines and vowels listed first. The page needs no network.
    """
    from zoo import explanation

    body = explanation.check_text(explanation.read_text(text))  # before the model loads
    target = Path(out) if out is not None else None
    if target is not None:
        explanation.check_out(target)
    m = explanation.load_model(model, device)
    target = target or Path(f"explain-{m.name}.html")
    result = explanation.explain(m, body, out=target, top_k=top_k)
    click.echo(
        f"{target}: {result.model} on {len(result.text):,} characters, mean loss {result.mean_loss:.4f} nats/char "
        f"over {int(result.predicted.sum()):,} predicted"
    )


@cli.command()
@click.argument("pattern", default="char-*", shell_complete=_complete_model)
@threads_option
@click.option("--budget", type=float, default=120, show_default=True, callback=_positive, help="Training seconds per model.")
@click.option("--data", help="A dataset name or text file (default: each model's dataset).")
@click.option("--val-frac", type=float, default=DEFAULT_VAL_FRAC, show_default=True, metavar="FLOAT", help="Fraction of the text held out.")
@click.option("--device", default="auto", show_default=True, help=DEVICE_HELP)
@click.option("--out", type=click.Path(file_okay=False), default="runs/compare", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def compare(pattern: str, budget: float, data: str | None, val_frac: float, device: str, out: str, as_json: bool) -> None:
    """Train every model matching PATTERN for the same time budget and print a leaderboard.

    Held-out loss is measured on the end of the text (the last --val-frac of it) for every
    model alike. Writes OUT/compare.png (held-out loss against training time) and OUT/compare.html (the
    leaderboard, and the same held-out text coloured by each model's surprise, side by side). Finished runs
    with the same budget, data (the same text, by its sha256) and --val-frac are reused; runs
    made with others are refused.
    """
    from dataclasses import asdict
    from pathlib import Path

    from zoo import compare as cmp

    entries = cmp.compare(pattern, budget, data=data, device=device, out=Path(out), val_frac=val_frac)
    if as_json:
        click.echo(json.dumps([asdict(e) for e in entries], indent=2))
    else:
        click.echo(cmp.table(entries))
        click.echo(f"plot: {Path(out) / 'compare.png'}")
        click.echo(f"page: {Path(out) / cmp.PAGE}")


@cli.command()
@click.argument("model", shell_complete=_complete_model)
@click.option("--repo", required=True, metavar="OWNER/NAME", help="The Hub repository (created if needed).")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@click.option("--branch", help="Push to this branch (created if needed; default main).")
@click.option("--token", help="A Hub token with write access (default: HF_TOKEN or your saved login).")
@click.option("--message", help="The commit message.")
@click.option("--license", "license_", default="mit", show_default=True, help="License for the model card.")
def push(model: str, repo: str, private: bool, branch: str | None, token: str | None, message: str | None, license_: str) -> None:
    """Upload MODEL (a run directory or a model name with weights) to the Hub as one commit."""
    from pathlib import Path

    from zoo import api
    from zoo import publish as upload

    upload.check_repo_id(repo)  # before loading anything: a bare NAME would reach the Hub as a 404
    if Path(model).is_dir():  # a run folder: its links are refused before loading reads through them
        upload.publishable_files(Path(model))
    folder = api.load(model).path
    url, _ = upload.push(folder, repo, private=private, branch=branch, token=token, message=message, license=license_)
    click.echo(url)


@cli.command()
@click.argument("name", shell_complete=_complete_model)
@click.option("--revision", help="A branch, tag or commit (default: the revision registry.toml pins).")
@click.option(
    "--timeout",
    type=float,
    metavar="SECONDS",
    help="Give up on the whole download after this long (default: ZOO_HUB_TIMEOUT, else 300). One request waits at "
    "most 10 s for an answer (HF_HUB_ETAG_TIMEOUT, HF_HUB_DOWNLOAD_TIMEOUT).",
)
def pull(name: str, revision: str | None, timeout: float | None) -> None:
    """Download the published weights of NAME (a model in registry.toml, or any OWNER/NAME zoo repository).

    The files are checked before their folder is printed: against the sha256 registry.toml pins (else the one the
    Hub advertised), and config.json with the weights must load. A repository that fails is deleted from the cache.
    """
    from huggingface_hub.utils import logging as hf_logging

    from zoo import hub

    hf_logging.set_verbosity_error()  # its retry warnings run to many lines; zoo says in one what came of them
    click.echo(hub.pull(name, revision, timeout=timeout, check=_check_loads))


def _check_loads(folder: Path) -> None:
    """The load path's own checks on pulled weights (their shapes against config.json), if their model is installed:
    a repository that `zoo sample` would refuse is refused when it is pulled."""
    from zoo import registry, rundir
    from zoo.errors import warn

    config = rundir.read_config(folder)
    model = config["model"]
    if model not in registry.get().models:  # said now, not at the first `zoo sample` of what was pulled
        hint = registry.install_hint(config)
        warn(f"the model {model!r} is not installed here ({hint}); its weights are checked against its config when it is")
        return
    from zoo import pipeline

    pipeline.load_dir(folder)


@cli.command()
@click.argument("pattern", default="*")
@click.option("--token", help="A Hub token with write access (default: HF_TOKEN).")
def publish(pattern: str, token: str | None) -> None:
    """Maintainers: push each bundled model matching PATTERN to its repo and pin the revision in registry.toml
    (a plugin's model: in the TOML file of pins that the plugin registered)."""
    from zoo import publish as upload

    for name, url in upload.publish(pattern, token=token):
        click.echo(f"{name}: {url}")


_command_owners: dict[str, str] = {}  # a command's name -> the plugin that added it (zoo's own: absent)


def _add_plugin_commands() -> None:
    """Each plugin's commands, zoo's own plugins first. A command already there (zoo's, or another plugin's) is
    never replaced or removed: a plugin that tries is refused with a warning naming it, and the command stays."""
    from zoo.plugins import host

    before = dict(cli.commands)

    def keep_others_commands(plugin_name: str) -> None:
        for name in set(before) | set(cli.commands):
            command, owner = cli.commands.get(name), _command_owners.get(name)
            if command is before.get(name) or (owner == plugin_name and command is not None):
                continue  # unchanged, or the plugin's own command added again (main() runs more than once in tests)
            if name not in before:
                _command_owners[name] = plugin_name
                continue
            cli.commands[name] = before[name]
            whose = f"plugin {owner!r}'s command" if owner else "zoo's own command"
            warn(
                f"plugin {plugin_name!r} tried to replace `zoo {name}`: {whose} is kept; rename the plugin's command, "
                f"or disable the plugin with ZOO_DISABLE_PLUGINS={plugin_name}"
            )
        before.update(cli.commands)

    host().call_each("zoo_register_commands", after=keep_others_commands, cli=cli)


_NoArgsIsHelp = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


def _show_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, file: TextIO | None = None, line: str | None = None
) -> None:
    """zoo's own warnings as one line, like its errors; others as Python shows them."""
    if issubclass(category, ZooWarning):
        click.echo(f"zoo: warning: {printable(message)}", err=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


_python_showwarning = warnings.showwarning


def main(argv: list[str] | None = None) -> None:
    warnings.showwarning = _show_warning
    try:
        _add_plugin_commands()
        rc = cli.main(args=argv, prog_name="zoo", standalone_mode=False)
        if isinstance(rc, int):  # click.exceptions.Exit (e.g. --help) comes back as its exit code
            sys.exit(rc)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except _NoArgsIsHelp as exc:  # bare `zoo`: the help, not an error
        exc.show()
        sys.exit(0)
    except click.UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx else ""
        click.echo(f"zoo: error: {exc.format_message()}{where}", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"zoo: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except ZooError as exc:
        click.echo(f"zoo: {'error: ' if exc.is_error else ''}{printable(exc)}", err=True)  # one line, whatever it quotes
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
