"""Plugin: `char-transformer` - a causal character transformer (nanoGPT-style), sampled through a key/value cache."""

from zoo import Batching, ModelSpec, Stage, hookimpl


@hookimpl
def zoo_register_models(register):
    register(
        ModelSpec(
            name="char-transformer",
            summary="A causal transformer (nanoGPT-style: 2 pre-LN blocks, 4 heads, 128-dim, context 64), sampled with a key/value cache.",
            builder="zoo_beyond.transformer:CharTransformer",
            hparams={"n_embd": 128, "n_head": 4, "n_layer": 2, "block_size": 64, "dropout": 0.0},
            batching=Batching(kind="windows", length=64, stride=32, targets="every"),
            batch_size=32,  # twice the steps of 64 in the same time: 2.24 against 2.38 after one epoch
            # Adam at 3e-3 (6e-3 was worse after one epoch), then lower; about 9 minutes on a 2-core CPU (bench/README.md)
            recipe=(Stage(lr=3e-3, epochs=5), Stage(lr=1e-3, epochs=2), Stage(lr=3e-4, epochs=1)),
            split="tail",
            tags=("beyond", "attention", "transformer"),
            num_params=415872,
            tiny={"n_embd": 16, "n_head": 2, "n_layer": 1},
        )
    )
