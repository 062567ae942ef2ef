"""Plugin: `char-loop` - Lesson 6 CharLoopModel: an 8-character loop, h = tanh(W_h(h + relu(W_in(e(c)))))."""

from zoo import Batching, ModelSpec, Reference, Stage, hookimpl
from zoo_lesson6 import DEFAULTS, LESSON


@hookimpl
def zoo_register_models(register):
    register(
        ModelSpec(
            name="char-loop",
            summary="Lesson 6 CharLoopModel: an 8-character loop, h = tanh(W_h(h + relu(W_in(e(c))))).",
            builder="zoo_lesson6.models:CharLoopModel",
            hparams={**DEFAULTS},
            batching=Batching(kind="windows", length=8, stride=1, targets="next"),
            recipe=(Stage(lr=1e-2, epochs=1),),
            reference=Reference(
                source=LESSON,
                trn_loss=(2.056,),
                val_loss=(2.053,),
            ),
            tags=("lesson6", "rnn"),
            num_params=102215,
            tiny={"n_fac": 4, "n_hidden": 16},
        )
    )
