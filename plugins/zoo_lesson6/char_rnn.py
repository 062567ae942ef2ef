"""Plugin: `char-rnn` - Lesson 6 CharRnn: nn.RNN over 8 characters, predicting the 9th."""

from zoo import Batching, ModelSpec, Reference, Stage, hookimpl
from zoo_lesson6 import DEFAULTS, LESSON


@hookimpl
def zoo_register_models(register):
    register(
        ModelSpec(
            name="char-rnn",
            summary="Lesson 6 CharRnn: nn.RNN over 8 characters, predicting the 9th.",
            builder="zoo_lesson6.models:CharRnn",
            hparams={**DEFAULTS},
            batching=Batching(kind="windows", length=8, stride=1, targets="next"),
            recipe=(Stage(lr=1e-3, epochs=4),),
            reference=Reference(
                source=LESSON,
                val_loss=(1.837, 1.668, 1.586, 1.547),
            ),
            tags=("lesson6", "rnn"),
            num_params=102215,
            tiny={"n_fac": 4, "n_hidden": 16},
        )
    )
