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
                "weight_p": 0.4,
                "hidden_p": 0.2,
                "output_p": 0.1,
                "tie_weights": True,
                "alpha": 2.0,
                "beta": 1.0,
            },
            batching=Batching(kind="streams", length=64),
            batch_size=32,
            # issue 22: about 27 minutes on a 2-core CPU with --amp (bf16 autocast); README, "1.25 in 30 CPU minutes"
            recipe=(Stage(lr=2e-3, epochs=16), Stage(lr=1e-3, epochs=8), Stage(lr=5e-4, epochs=5), Stage(lr=2.5e-4, epochs=4)),
            split="tail",
            reference=Reference(source=COURSE, val_loss=(None,), note=NOTE + "; no course figure for AWD-LSTM on characters"),
            tags=("beyond", "stateful", "lstm"),
            num_params=3755733,
            tiny={"emb_size": 8, "n_hidden": 16, "n_layers": 2},
        )
    )
