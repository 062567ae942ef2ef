"""The run folder, zoo's on-disk format: the only code that knows its file names, and reads and writes them.

One folder = one model, in the Hugging Face Hub layout, plus the state to resume training:

    config.json         what the model is: name, plugin, task, hyper-parameters, and the task's own keys
                        (a character model's vocabulary and batching; a table model's columns)
    run.json            how the run was made: the command and each resume's (paths reduced to names), resolved
                        options, data sha256, versions, device
    model.safetensors   the weights (never a pickle; zoo.checkpoint writes and checks them)
    training.json       the per-epoch metrics history
    loss.png            the loss curves
    README.md           the model card (zoo push writes it)
    checkpoint/         model.safetensors + optimizer.safetensors + state.json: enough to resume

Every file is written whole or not at all (zoo.fileio). `read_config` brings a config of an older format up
to `CONFIG_FORMAT`, so no other module needs a default for a key older zoo did not write.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from zoo import checks, runlock
from zoo.errors import ZooError
from zoo.fileio import atomic_write_json, read_json
from zoo.options import DEFAULT_VAL_FRAC

CONFIG_FORMAT = "zoo/1"

CONFIG = "config.json"
RUN = "run.json"
WEIGHTS = "model.safetensors"
TRAINING = "training.json"
LOSS_PLOT = "loss.png"
CARD = "README.md"
CHECKPOINT = "checkpoint"
PREVIOUS_CHECKPOINT = f".{CHECKPOINT}.old"  # kept while a new checkpoint is swapped in
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"

# What a model folder publishes to the Hub, and what a pull fetches.
PUBLISHED_FILES = (WEIGHTS, CONFIG, CARD, TRAINING, RUN, LOSS_PLOT)

# tempfile.mkdtemp's names: the prefix, then 8 of [a-z0-9_]; ".checkpoint.old" (3 letters) never matches
CHECKPOINT_TEMP = re.compile(rf"\.{CHECKPOINT}\.[a-z0-9_]{{8}}")
WEIGHTS_TEMP = re.compile(rf"\.{re.escape(WEIGHTS)}\.[a-z0-9_]{{8}}\.tmp")
# What `start` writes before training (atomic_write_bytes's temporary files for them, and the run's lock): a
# folder holding only these, and no weights, is a run that stopped before its first checkpoint
_RUN_FILE = re.compile(rf"(config|run)\.json|\.(config|run)\.json\.[a-z0-9_]{{8}}\.tmp|{re.escape(runlock.LOCK_FILE)}")


def weights(run_dir: Path) -> Path:
    return Path(run_dir) / WEIGHTS


def loss_plot(run_dir: Path) -> Path:
    return Path(run_dir) / LOSS_PLOT


def card(run_dir: Path) -> Path:
    return Path(run_dir) / CARD


def has_config(run_dir: Path) -> bool:
    return (Path(run_dir) / CONFIG).exists()


def is_model(folder: Path) -> bool:
    """Whether `folder` holds a trained model: its config.json and its weights (what `zoo plot` looks for)."""
    return (Path(folder) / CONFIG).is_file() and (Path(folder) / WEIGHTS).is_file()


# --- config.json ---------------------------------------------------------------------------------------


def upgrade_config(config: dict[str, Any]) -> dict[str, Any]:
    """`config` with the keys older formats left out, given the values they meant then.

    zoo/1 before tasks had no "task" (every model was a character model); a character model's run from
    before --split and --val-frac held out a random 20%. Before provenance, a config did not name the distribution
    that provided its model: "" (not known).
    """
    config = dict(config)
    config.setdefault("task", "char-lm")
    config.setdefault("distribution", "")
    if config["task"] == "char-lm":
        config.setdefault("split", "random")
        config.setdefault("val_frac", DEFAULT_VAL_FRAC)
    return config


# What `pip install` may be told to install: a PEP 508 distribution name, and a version of version-ish characters. A
# config is hand-edited or downloaded: anything else (an option such as --index-url, a space, a control character)
# is read as not recorded.
_DISTRIBUTION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}")


def distribution_name(value: Any) -> str:
    """`value` if it is a distribution's name (what config.json's "distribution" records), else "" (not known)."""
    return value if isinstance(value, str) and _DISTRIBUTION_NAME.fullmatch(value) else ""


def provenance(config: dict[str, Any]) -> tuple[str, str] | None:
    """(distribution, version) that provided the model of a config.json, as it recorded them; None where it did not
    (older configs, a plugin registered in process) or where they are no distribution name and version."""
    name = distribution_name(config.get("distribution"))
    version = config.get("plugin_version")
    if not name:
        return None
    return name, version if isinstance(version, str) and _VERSION.fullmatch(version) else ""


def read_config(run_dir: Path) -> dict[str, Any]:
    """config.json, brought up to `CONFIG_FORMAT`, with the keys every task has checked; the task checks its own."""
    path = Path(run_dir) / CONFIG
    config = read_json(path)
    for key in ("model", "hparams"):
        if key not in config:
            raise ZooError(f"{path}: lacks the key {key!r}")
    if not isinstance(config["model"], str):
        raise ZooError(f"{path}: 'model' must be a model name, got {config['model']!r}")
    if not isinstance(config["hparams"], dict):
        raise ZooError(f"{path}: 'hparams' must be an object")
    if not isinstance(config.get("task", "char-lm"), str):
        raise ZooError(f"{path}: 'task' must be a task name, got {config['task']!r}")
    config = upgrade_config(config)
    if config["task"] == "char-lm":  # the keys `upgrade_config` supplies, which a resume and an evaluation split by
        _check_held_out(path, config["split"], config["val_frac"])
    return config


def _check_held_out(path: Path, split: Any, val_frac: Any) -> None:
    if not isinstance(split, str):
        raise ZooError(f"{path}: 'split' must be the name of a split, got {split!r}")
    if not checks.is_number(val_frac) or not 0 < val_frac < 1:
        raise ZooError(f"{path}: 'val_frac' must be a number between 0 and 1 (exclusive), got {val_frac!r}")


def config_path(run_dir: Path) -> Path:
    return Path(run_dir) / CONFIG


def run_path(run_dir: Path) -> Path:
    return Path(run_dir) / RUN


# --- run.json, training.json, the checkpoint's state ----------------------------------------------------


def read_run(run_dir: Path | None, required: bool = False) -> dict[str, Any]:
    """run.json (how the run was made); {} when the folder has none (a model from elsewhere), unless `required`."""
    path = Path(run_dir) / RUN if run_dir is not None else None
    if path is not None and (required or path.is_file()):
        return read_json(path)
    return {}


def write_run(run_dir: Path, record: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / RUN, record)


_SEPARATORS = re.compile(r"[/\\]+")


def name_only(value: str) -> str:
    """`value` with a path in it reduced to its last part ("/home/u/runs/a" -> "a", "--out=../x/a" -> "--out=a",
    "key=/srv/c.txt" -> "key=c.txt"); a value without a path is returned as it is. Why: run.json and the card go
    up to the Hub, and a folder's path names the user and their folders."""
    key, eq, rest = value.partition("=")
    if eq and not _SEPARATORS.search(key):  # --opt=VALUE or KEY=VALUE: only the value can be a path
        return key + eq + name_only(rest)
    if not (_SEPARATORS.search(value) or value.startswith("~")):
        return value
    parts = [p for p in _SEPARATORS.split(value) if p]
    if not parts or len(parts) == 1 and value.startswith("~"):  # "/", or "~user": a home folder names its user
        return value[:1]
    return parts[-1]


def public_command(args: Iterable[str]) -> str:
    """A command line as run.json records it: every path reduced to its name, quoted as a shell would need."""
    return shlex.join(name_only(a) for a in args)


def public_command_text(command: str) -> str:
    """`public_command` of a recorded command line (older runs recorded their paths in full, joined by spaces)."""
    try:
        args = shlex.split(command)
    except ValueError:  # unbalanced quotes: a path inside would still be split at its spaces and separators
        args = command.split()
    return public_command(args)


def read_history(run_dir: Path | None) -> list[dict[str, Any]]:
    """The per-epoch figures a run wrote to training.json (none if it has not finished an epoch)."""
    if run_dir is None or not (Path(run_dir) / TRAINING).exists():
        return []
    return read_json(Path(run_dir) / TRAINING).get("history", [])


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_json(Path(run_dir) / TRAINING, {"history": history})


def find_checkpoint(run_dir: Path) -> Path:
    """checkpoint/, or the previous one if a swap was cut short."""
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        path = Path(run_dir) / name
        if (path / STATE).exists():
            return path
    if abandoned_run(run_dir):
        raise ZooError(
            f"{run_dir}: the run stopped before its first checkpoint, so there is nothing to resume; start it again with the same --out"
        )
    raise ZooError(f"{run_dir}: no checkpoint to resume from (expected {run_dir}/{CHECKPOINT}/{STATE})")


def refuse_links_out(run_dir: Path) -> None:
    """Refuse to resume a folder whose files zoo reads are links out of it or not plain files, or whose checkpoint
    folder is a link.

    A resume reads these files whole (a link to /dev/zero or a FIFO would never end) and replaces the checkpoint
    folder whole every epoch: a linked checkpoint/ is moved aside as a link, and the next swap cannot remove it, so
    the run resumed once and then failed every time. Refused before anything is read or written, the link's target
    stays as it was.
    """
    run_dir = Path(run_dir)
    inside = run_dir.resolve()
    files = [run_dir / name for name in (CONFIG, RUN, TRAINING)]
    for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
        folder = run_dir / name
        if folder.is_symlink():
            raise ZooError(
                f"{folder} is a symbolic link; zoo replaces a run's checkpoint folder whole every epoch, so it must be a "
                f"folder inside the run: move what it points to ({_link_target(folder) or 'a loop'}) in its place"
            )
        files += [folder / WEIGHTS, folder / OPTIMIZER, folder / STATE]
    for path in files:
        target = _link_target(path)
        if path.is_symlink() and (target is None or not target.is_relative_to(inside)):
            raise ZooError(f"{path} is a symbolic link out of the run folder (to {target or 'a loop'}); copy the file in its place")
        if path.exists() and not path.is_file():
            raise ZooError(f"{path} is not a regular file")


def _link_target(path: Path) -> Path | None:
    """Where `path` leads once every link is followed; None for a loop of links."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: Python before 3.13 on a loop
        return None


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / CHECKPOINT / STATE).exists()


def read_checkpoint_state(run_dir: Path) -> dict[str, Any]:
    """The counters of the run's checkpoint (epoch, step, trained seconds and items, ...)."""
    return read_json(Path(run_dir) / CHECKPOINT / STATE)


# --- a new run's folder ----------------------------------------------------------------------------------


def abandoned_run(out_dir: Path) -> bool:
    """Whether `out_dir` holds a run that stopped before its first checkpoint, and nothing else.

    That is: its config.json (zoo's, with no weights anywhere) and perhaps run.json, perhaps what a process killed
    while writing its first checkpoint left half-built, and no other file at all. Such a folder has nothing to
    resume and nothing of value; any other file may be someone's.
    """
    out_dir = Path(out_dir)
    try:
        entries = list(out_dir.iterdir())
    except OSError:
        return False
    for e in entries:
        if e.is_symlink():
            return False
        # what a process killed while writing its first checkpoint leaves: a folder it was building, a temp file
        left_over = (CHECKPOINT_TEMP.fullmatch(e.name) and e.is_dir()) or (WEIGHTS_TEMP.fullmatch(e.name) and e.is_file())
        if not (left_over or (_RUN_FILE.fullmatch(e.name) and e.is_file())):
            return False
    try:
        config = read_json(out_dir / CONFIG)
        record = read_json(out_dir / RUN) if (out_dir / RUN).exists() else None
    except ZooError:  # not JSON, or not a file zoo wrote whole: not ours to overwrite
        return False
    if config.get("format") != CONFIG_FORMAT or not isinstance(config.get("model"), str):
        return False
    return record is None or record.get("model") == config["model"]


def holds_run(out_dir: Path) -> bool:
    """Whether `out_dir` holds a run to resume (one that stopped before its first checkpoint is started again)."""
    return has_config(out_dir) and not abandoned_run(out_dir)


def _new_out_dir(name: str, base: Path = Path("runs")) -> Path:
    candidate = base / name
    n = 1
    while candidate.exists():
        n += 1
        candidate = base / f"{name}-{n}"
    return candidate


def claim(name: str, out: str | Path | None, broadcast: Callable[[Any], Any] = lambda value: value) -> Path:
    """The new run's directory: `out`, or runs/NAME, runs/NAME-2, …; never one that already holds a run.

    A run that stopped before its first checkpoint left only its config.json and run.json: nothing to
    resume or keep, so a new run may take its folder over (`start` rewrites both files). Under torchrun,
    `broadcast` hands rank 0's answer to every rank.
    """
    out_dir = Path(out) if out is not None else _new_out_dir(name)
    # rank 0 decides, before any rank writes, so that every rank sees the same answer
    out_dir, problem = broadcast((out_dir, _why_not_ours(out_dir)))
    if problem:
        raise ZooError(problem)
    return out_dir


def _why_not_ours(out_dir: Path) -> str | None:
    """Why a new run may not write into `out_dir` (None if it may): it holds a run, or files that are someone's."""
    if runlock.is_locked(out_dir):  # a live run before its first checkpoint looks abandoned: the lock tells
        return runlock.busy(out_dir)
    if abandoned_run(out_dir):
        return None
    if (out_dir / CONFIG).exists():
        return f"{out_dir} already holds a run; continue it with --resume {out_dir}, or choose another --out"
    try:
        entries = sorted(p for p in out_dir.iterdir() if p.name != runlock.LOCK_FILE) if out_dir.is_dir() else []
        other = entries[0] if entries else None
    except OSError:
        other = None  # unreadable: writing the run will say what is wrong
    if other is not None:  # a run writes model.safetensors, loss.png, ...: never over files that are not its own
        return f"{out_dir} is not empty and holds no zoo run (it has {other.name!r}); choose a new or empty folder for --out"
    return None


def start(out_dir: Path, config: dict[str, Any], record: dict[str, Any]) -> None:
    """Create the run directory with its config.json and run.json, and hold its lock (zoo.runlock)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ZooError(f"cannot write the run to {out_dir} ({exc.strerror})") from None
    runlock.lock(out_dir)  # held until zoo.train returns: no other process may train here meanwhile
    try:
        atomic_write_json(out_dir / CONFIG, config)
        atomic_write_json(out_dir / RUN, record)
    except OSError as exc:
        raise ZooError(f"cannot write the run to {out_dir} ({exc.strerror})") from None
