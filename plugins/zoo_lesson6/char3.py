"""Plugin: `char3` - Lesson 6 Char3Model: predict the 4th character from the 3 before it."""

from zoo import Batching, ModelSpec, Reference, Stage, hookimpl
from zoo_lesson6 import DEFAULTS, LESSON


@hookimpl
def zoo_register_models(register):
    register(
        ModelSpec(
            name="char3",
            summary="Lesson 6 Char3Model: predict the 4th character from the 3 before it.",
            builder="zoo_lesson6.models:Char3Model",
            hparams={**DEFAULTS},
            batching=Batching(kind="windows", length=3, stride=3, targets="next"),
            recipe=(Stage(lr=1e-2, epochs=1), Stage(lr=1e-3, epochs=1)),
            reference=Reference(
                source=LESSON,
                trn_loss=(None, 2.08),
                note="the lesson validated on a single row, so only its training loss compares",
            ),
            tags=("lesson6", "rnn"),
            num_params=102215,
            tiny={"n_fac": 4, "n_hidden": 16},
        )
    )
