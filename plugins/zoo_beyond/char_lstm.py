"""Plugin: `char-lstm` - A stateful LSTM over contiguous streams (default: 2 layers of 512, dropout 0.5)."""

from zoo import Batching, ModelSpec, Reference, Stage, hookimpl
from zoo_beyond import COURSE, NOTE


@hookimpl
def zoo_register_models(register):
    register(
        ModelSpec(
            name="char-lstm",
            summary="A stateful LSTM over contiguous streams (default: 2 layers of 512, dropout 0.5).",
            builder="zoo_beyond.models:CharStatefulRnn",
            hparams={"n_fac": 42, "n_hidden": 512, "cell": "lstm", "n_layers": 2, "dropout": 0.5},
            batching=Batching(kind="streams", length=32),
            batch_size=128,
            recipe=(Stage(lr=1e-3, epochs=10),),
            split="tail",
            reference=Reference(
                source=COURSE,
                val_loss=(1.25,),
                note=NOTE
                + "; the course's one-layer LSTM reached 1.36, its two-layer 512-unit LSTM with dropout 0.5 1.25 after 63 GPU epochs",
            ),
            tags=("beyond", "stateful", "lstm"),
            num_params=3287111,
            tiny={"n_fac": 4, "n_hidden": 16, "n_layers": 2},
        )
    )
