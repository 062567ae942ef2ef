"""Maintainers: train the bundled models with their recipes and bundle the weights with zoo.

    python scripts/bundle_weights.py                  # the six lesson models, char-awd-lstm and char-transformer
    python scripts/bundle_weights.py char-rnn         # one
    python scripts/bundle_weights.py char-awd-lstm    # ~25 min on a 2-core CPU with native bf16
    python scripts/bundle_weights.py char-transformer # ~10 min on a 2-core CPU
    python scripts/bundle_weights.py --cards          # no training: render the bundled cards again, re-pin them

For each model: `zoo train NAME --seed 0` on Nietzsche with its options below (reusing a
finished run in runs/bundle/NAME), copy the publishable files into plugins/PACKAGE/weights/NAME
with a generated model card, and rewrite its [weights.NAME] entry in registry.toml (files and
their sha256, parameter count, validation metrics, recipe). `zoo publish` then pushes them to
the Hub and pins the revisions.

Large models are stored in float16 (half the size; loading casts back to float32), and their
registry metrics are measured on the stored weights, not taken from training.
"""

from __future__ import annotations

import argparse
import fnmatch
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save

import zoo
from zoo import published, registry
from zoo.api import DEFAULT_VAL_FRAC
from zoo.fileio import atomic_write_bytes, read_json
from zoo.publish import write_card

REPO = Path(__file__).resolve().parents[1]
LESSON = ["char3", "char-loop", "char-concat", "char-rnn", "char-seq", "char-seq-identity"]


@dataclass(frozen=True)
class Bundle:
    package: str  # the plugin package whose weights/ folder holds the files
    options: dict[str, Any] = field(default_factory=dict)  # zoo.train keywords beyond the recipe
    flags: str = ""  # the same, as `zoo train` flags, for the recipe line
    half: bool = False  # store float16


BUNDLES = {
    **{name: Bundle("zoo_lesson6") for name in LESSON},
    # issue 22's best model within 30 minutes on the CPU (bf16 autocast), evaluated on the last 10% of the text;
    # `bench/best.py --rows char-awd-lstm --data nietzsche --out runs/best` trains the same run (--runs runs/best)
    "char-awd-lstm": Bundle("zoo_beyond", {"val_frac": 0.1, "amp": True}, " --val-frac 0.1 --amp", half=True),
    # issue 20's transformer, evaluated on the same last 10%
    "char-transformer": Bundle("zoo_beyond", {"val_frac": 0.1}, " --val-frac 0.1", half=True),
}


def weights_dir(name: str) -> Path:
    return REPO / "plugins" / BUNDLES[name].package / "weights" / name


HUB_OWNER = "zoo-lesson6"
FILES = ("model.safetensors", "config.json", "training.json", "run.json", "README.md")
HEADER = """\
# The weights zoo publishes on the Hugging Face Hub: one [weights.MODEL] table each.
# Schema and field meanings: docs/registry.md. Validated on load by zoo/published.py.
# Entries for bundled weights are written by scripts/bundle_weights.py; `zoo publish` pins revisions.
schema = 1
"""


def train(name: str, runs: Path, seed: int) -> Path:
    out = runs / name
    spec = registry.get_model(name)
    if (out / "training.json").exists() and len(read_json(out / "training.json")["history"]) == spec.epochs:
        print(f"{name}: reusing {out}", file=sys.stderr)
        return out
    if out.exists():
        shutil.rmtree(out)
    zoo.train(name, data="nietzsche", seed=seed, out=out, **BUNDLES[name].options)
    return out


def store_half(path: Path) -> None:
    """Rewrite a safetensors file with its floating-point tensors in float16, keeping its metadata."""
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    tensors = {k: t.half() if t.is_floating_point() else t for k, t in tensors.items()}
    atomic_write_bytes(path, save(tensors, metadata=metadata))


def bundle(name: str, run: Path) -> Path:
    folder = weights_dir(name)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for f in FILES[:-1]:
        shutil.copyfile(run / f, folder / f)
    record = read_json(folder / "run.json")
    record["command"] = recipe(name, record["options"]["seed"])  # the recipe, not this script
    record.pop("resumes", None)  # the recipe in one command is how to make these weights again
    from zoo.fileio import atomic_write_json

    atomic_write_json(folder / "run.json", record)
    if BUNDLES[name].half:
        store_half(folder / "model.safetensors")
    write_card(folder, repo_id=f"{HUB_OWNER}/{name}", license="mit", bundled=True)
    return folder


def recipe(name: str, seed: int) -> str:
    return f"zoo train {name} --seed {seed}{BUNDLES[name].flags}"


def entry_toml(name: str, folder: Path, revision: str | None) -> str:
    m = zoo.load(folder)
    last = m.evaluate() if BUNDLES[name].half else m.history[-1]  # rounded weights: measure what is stored
    seed = read_json(folder / "run.json")["options"]["seed"]
    lines = [f"[weights.{name}]", f'repo = "{HUB_OWNER}/{name}"']
    if revision:
        lines.append(f'revision = "{revision}"')
    lines += [
        'license = "mit"',
        f'recipe = "{recipe(name, seed)}"',
        f"num_params = {m.num_params}",
        f'bundled = "{BUNDLES[name].package}:weights/{name}"',
        "",
        f"[weights.{name}.files]",
        *(f'"{f}" = "{published.sha256_of(folder / f)}"' for f in FILES),
    ]
    for metric in ("val_loss", "val_acc"):
        lines += ["", f"[[weights.{name}.metrics]]", f'name = "{metric}"', f"value = {last[metric]:.6f}", 'dataset = "nietzsche"']
        lines.append(f'split = "{m.config["split"]}"')
        lines.append(f"val_frac = {m.config.get('val_frac', DEFAULT_VAL_FRAC):g}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pattern", nargs="?", default="*")
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "bundle")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cards", action="store_true", help="only render the matching bundles' cards again (and re-pin them)")
    args = ap.parse_args()
    registry_path = REPO / "registry.toml"
    old = published.load(registry_path)
    entries = {}
    for name in BUNDLES:
        if fnmatch.fnmatchcase(name, args.pattern) and args.cards and weights_dir(name).exists():
            write_card(weights_dir(name), repo_id=f"{HUB_OWNER}/{name}", license="mit", bundled=True)
            entries[name] = entry_toml(name, weights_dir(name), old[name].revision if name in old else None)
        elif fnmatch.fnmatchcase(name, args.pattern) and not args.cards:
            folder = bundle(name, train(name, args.runs, args.seed))
            entries[name] = entry_toml(name, folder, None)
        elif name in old and weights_dir(name).exists():
            entries[name] = entry_toml(name, weights_dir(name), old[name].revision)
    text = HEADER + "".join("\n" + entries[n] for n in BUNDLES if n in entries)
    atomic_write_bytes(registry_path, text.encode())
    published.load(registry_path)  # must validate
    print(f"wrote {len(entries)} entries to {registry_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
