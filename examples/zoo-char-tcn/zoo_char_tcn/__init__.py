"""The zoo plugin `char-tcn`: a character-level temporal convolutional network, and a sample after every epoch.

Written against zoo's public API only (`zoo.ModelSpec`, `zoo.hookimpl`, `zoo.load`, ...). This
module is imported by `zoo list`, so it never imports torch; the network is in model.py.
"""

from __future__ import annotations

import zoo

NAME = "char-tcn"
SAMPLES = "samples.txt"  # written into the run directory after every epoch

SPEC = zoo.ModelSpec(
    name=NAME,
    summary="A temporal convolutional network: causal convolutions, dilations 1, 2, 4, ...; no recurrence.",
    builder="zoo_char_tcn.model:CharTCN",
    dataset="nietzsche",  # the lesson's corpus
    hparams={"n_fac": 42, "n_hidden": 128, "n_layers": 3, "kernel_size": 3, "dropout": 0.1},
    tiny={"n_fac": 4, "n_hidden": 16},  # keeps the layers, dilations and dropout: the tests exercise them all
    # 16 characters: a little more than the 15 the default layers see (1 + (3 - 1) * (1 + 2 + 4))
    batching=zoo.Batching(kind="windows", length=16, stride=16, targets="every"),
    recipe=(zoo.Stage(lr=3e-3, epochs=3), zoo.Stage(lr=1e-3, epochs=2)),
    tags=("cnn", "example"),
    num_params=129_351,  # at the defaults and Nietzsche's vocabulary of 85 (84 characters and the padding)
)


@zoo.hookimpl
def zoo_register_models(register):
    register(SPEC)


@zoo.hookimpl
def zoo_on_epoch_end(run, epoch, metrics):
    """Append a seeded sample to samples.txt in the run directory (for this plugin's model only)."""
    if run.name != NAME:
        return  # training hooks see every run, whichever plugin's model it is
    model = zoo.load(run.out_dir)  # the weights of this epoch are already on disk
    prompt = next((c for c in model.vocab.chars[1:] if c.isalpha()), model.vocab.chars[1])
    text = model.sample(prompt, length=80, temperature=0.8, seed=epoch)
    with open(run.out_dir / SAMPLES, "a", encoding="utf-8") as f:
        f.write(f"epoch {epoch} (val_loss {metrics['val_loss']:.3f}): {prompt + text!r}\n")
