"""Maintainers: train the lesson models with their recipes and bundle the weights with zoo.

    python scripts/bundle_weights.py            # all six lesson models
    python scripts/bundle_weights.py char-rnn   # one

For each model: `zoo train NAME --seed 0` on Nietzsche (reusing a finished run in
runs/bundle/NAME), copy the publishable files into plugins/zoo_lesson6/weights/NAME with a
generated model card, and rewrite its [weights.NAME] entry in registry.toml (files and their
sha256, parameter count, validation metrics, recipe). `zoo publish` then pushes them to the
Hub and pins the revisions.
"""

from __future__ import annotations

import argparse
import fnmatch
import shutil
import sys
from pathlib import Path

import zoo
from zoo import published, registry
from zoo.card import write_card
from zoo.fileio import atomic_write_bytes, read_json

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "plugins" / "zoo_lesson6" / "weights"
LESSON = ["char3", "char-loop", "char-concat", "char-rnn", "char-seq", "char-seq-identity"]
HUB_OWNER = "zoo-lesson6"
FILES = ("model.safetensors", "config.json", "training.json", "run.json", "README.md")
HEADER = """\
# The weights zoo publishes on the Hugging Face Hub: one [weights.MODEL] table each.
# Schema and field meanings: docs/registry.md. Validated on load by zoo/published.py.
# Entries for the lesson models are written by scripts/bundle_weights.py; `zoo publish` pins revisions.
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
    zoo.train(name, data="nietzsche", seed=seed, out=out)
    return out


def bundle(name: str, run: Path) -> Path:
    folder = WEIGHTS / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for f in FILES[:-1]:
        shutil.copyfile(run / f, folder / f)
    record = read_json(folder / "run.json")
    record["command"] = f"zoo train {name} --seed {record['options']['seed']}"  # the recipe, not this script
    from zoo.fileio import atomic_write_json

    atomic_write_json(folder / "run.json", record)
    write_card(folder, repo_id=f"{HUB_OWNER}/{name}", license="mit")
    return folder


def entry_toml(name: str, folder: Path, revision: str | None) -> str:
    m = zoo.load(folder)
    last = m.history[-1]
    seed = read_json(folder / "run.json")["options"]["seed"]
    lines = [f"[weights.{name}]", f'repo = "{HUB_OWNER}/{name}"']
    if revision:
        lines.append(f'revision = "{revision}"')
    lines += [
        'license = "mit"',
        f'recipe = "zoo train {name} --seed {seed}"',
        f"num_params = {m.num_params}",
        f'bundled = "zoo_lesson6:weights/{name}"',
        "",
        f"[weights.{name}.files]",
        *(f'"{f}" = "{published.sha256_of(folder / f)}"' for f in FILES),
    ]
    for metric in ("val_loss", "val_acc"):
        lines += ["", f"[[weights.{name}.metrics]]", f'name = "{metric}"', f"value = {last[metric]:.6f}", 'dataset = "nietzsche"']
        lines.append(f'split = "{m.config["split"]}"')
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("pattern", nargs="?", default="*")
    ap.add_argument("--runs", type=Path, default=REPO / "runs" / "bundle")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    registry_path = REPO / "registry.toml"
    old = published.load(registry_path)
    entries = {}
    for name in LESSON:
        if fnmatch.fnmatchcase(name, args.pattern):
            folder = bundle(name, train(name, args.runs, args.seed))
            entries[name] = entry_toml(name, folder, None)
        elif name in old and (WEIGHTS / name).exists():
            entries[name] = entry_toml(name, WEIGHTS / name, old[name].revision)
    text = HEADER + "".join("\n" + entries[n] for n in LESSON if n in entries)
    atomic_write_bytes(registry_path, text.encode())
    published.load(registry_path)  # must validate
    print(f"wrote {len(entries)} entries to {registry_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
