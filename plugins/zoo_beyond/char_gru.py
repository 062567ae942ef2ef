"""Plugin: `char-gru` - A stateful GRU over contiguous streams (layers, hidden size and dropout configurable)."""

from zoo import Batching, ModelSpec, Reference, Stage, hookimpl
from zoo_beyond import COURSE, NOTE


@hookimpl
def zoo_register_models(register):
    register(
        ModelSpec(
            name="char-gru",
            summary="A stateful GRU over contiguous streams (layers, hidden size and dropout configurable).",
            builder="zoo_beyond.models:CharStatefulRnn",
            hparams={"n_fac": 42, "n_hidden": 512, "cell": "gru", "n_layers": 1, "dropout": 0.0},
            batching=Batching(kind="streams", length=32),
            batch_size=128,
            recipe=(Stage(lr=1e-3, epochs=6),),
            split="tail",
            reference=Reference(source=COURSE, val_loss=(1.37,), note=NOTE),
            tags=("beyond", "stateful", "gru"),
            num_params=901191,
            tiny={"n_fac": 4, "n_hidden": 16},
        )
    )
