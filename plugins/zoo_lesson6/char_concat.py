"""Plugin: `char-concat` - Lesson 6 CharLoopConcatModel: the 8-character loop, input concatenated with the state."""

from zoo import Batching, ModelSpec, Reference, Stage, hookimpl
from zoo_lesson6 import DEFAULTS, LESSON


@hookimpl
def zoo_register_models(register):
    register(
        ModelSpec(
            name="char-concat",
            summary="Lesson 6 CharLoopConcatModel: the 8-character loop, input concatenated with the state.",
            builder="zoo_lesson6.models:CharLoopConcatModel",
            hparams={**DEFAULTS},
            batching=Batching(kind="windows", length=8, stride=1, targets="next"),
            recipe=(Stage(lr=1e-3, epochs=1),),
            reference=Reference(
                source=LESSON,
                trn_loss=(1.837,),
                val_loss=(1.805,),
            ),
            tags=("lesson6", "rnn"),
            num_params=167751,
            tiny={"n_fac": 4, "n_hidden": 16},
        )
    )
