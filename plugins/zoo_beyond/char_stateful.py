"""Plugin: `char-stateful` - A stateful RNN: the hidden state carries across batches over contiguous streams (truncated BPTT)."""

from zoo import Batching, ModelSpec, Reference, Stage, hookimpl
from zoo_beyond import COURSE, NOTE


@hookimpl
def zoo_register_models(register):
    register(
        ModelSpec(
            name="char-stateful",
            summary="A stateful RNN: the hidden state carries across batches over contiguous streams (truncated BPTT).",
            builder="zoo_beyond.models:CharStatefulRnn",
            hparams={"n_fac": 42, "n_hidden": 256, "cell": "rnn", "n_layers": 1, "dropout": 0.0},
            batching=Batching(kind="streams", length=8),
            batch_size=64,
            recipe=(Stage(lr=1e-3, epochs=4),),
            split="tail",
            reference=Reference(source=COURSE, val_loss=(1.48,), note=NOTE),
            tags=("beyond", "stateful", "rnn"),
            num_params=102215,
            tiny={"n_fac": 4, "n_hidden": 16},
        )
    )
