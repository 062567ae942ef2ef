"""Plugin: `char-awd-lstm` - AWD-LSTM: embedding, input, hidden and weight dropout, weight tying, AR and TAR (Merity et al. 2017)."""

from zoo import Batching, ModelSpec, Reference, Stage, hookimpl
from zoo_beyond import COURSE, NOTE


@hookimpl
def zoo_register_models(register):
    register(
        ModelSpec(
            name="char-awd-lstm",
            summary="AWD-LSTM: embedding, input, hidden and weight dropout, weight tying, AR and TAR (Merity et al. 2017).",
            builder="zoo_beyond.models:AwdLstm",
            hparams={
                "emb_size": 128,
                "n_hidden": 512,
                "n_layers": 3,
                "embed_p": 0.05,
                "input_p": 0.25,
                "weight_p": 0.2,
                "hidden_p": 0.1,
                "output_p": 0.1,
                "tie_weights": True,
                "alpha": 2.0,
                "beta": 1.0,
            },
            batching=Batching(kind="streams", length=64),
            batch_size=64,
            recipe=(Stage(lr=2e-3, epochs=20),),  # about 30 minutes on a 2-core CPU (bench/beyond.py)
            split="tail",
            reference=Reference(source=COURSE, val_loss=(None,), note=NOTE + "; no course figure for AWD-LSTM on characters"),
            tags=("beyond", "stateful", "lstm"),
            num_params=3755733,
            tiny={"emb_size": 8, "n_hidden": 16, "n_layers": 2},
        )
    )
