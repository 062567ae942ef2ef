"""Plugin: `char-seq` - Lesson 6 CharSeqRnn: nn.RNN predicting the next character at every position."""

from zoo import Batching, ModelSpec, Reference, Stage, hookimpl
from zoo_lesson6 import DEFAULTS, LESSON


@hookimpl
def zoo_register_models(register):
    register(
        ModelSpec(
            name="char-seq",
            summary="Lesson 6 CharSeqRnn: nn.RNN predicting the next character at every position.",
            builder="zoo_lesson6.models:CharSeqRnn",
            hparams={**DEFAULTS, "identity_init": False, "nonlinearity": "tanh"},
            batching=Batching(kind="windows", length=8, stride=8, targets="every"),
            recipe=(Stage(lr=1e-3, epochs=4),),
            reference=Reference(
                source=LESSON,
                val_loss=(2.415, 2.206, 2.094, 2.017),
            ),
            tags=("lesson6", "rnn"),
            num_params=102215,
            tiny={"n_fac": 4, "n_hidden": 16},
        )
    )
