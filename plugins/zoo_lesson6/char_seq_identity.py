"""Plugin: `char-seq-identity` - Lesson 6 CharSeqRnn with its hidden-to-hidden weights initialised to the identity."""

from zoo import Batching, ModelSpec, Reference, Stage, hookimpl
from zoo_lesson6 import DEFAULTS, LESSON


@hookimpl
def zoo_register_models(register):
    register(
        ModelSpec(
            name="char-seq-identity",
            summary="Lesson 6 CharSeqRnn with its hidden-to-hidden weights initialised to the identity.",
            builder="zoo_lesson6.models:CharSeqRnn",
            hparams={**DEFAULTS, "identity_init": True, "nonlinearity": "tanh"},
            batching=Batching(kind="windows", length=8, stride=8, targets="every"),
            recipe=(Stage(lr=1e-2, epochs=4), Stage(lr=1e-3, epochs=4)),
            reference=Reference(
                source=LESSON,
                val_loss=(None,) * 7 + (1.938,),
                note="tanh, as in the lesson; --set nonlinearity=relu gives the IRNN paper's ReLU",
            ),
            tags=("lesson6", "rnn"),
            num_params=102215,
            tiny={"n_fac": 4, "n_hidden": 16},
        )
    )
