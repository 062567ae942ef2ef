"""Plugin: `linreg-sgd` - fast.ai 2018 Lesson 6 (lesson6-sgd.ipynb): linear regression by gradient descent, three ways.

The lesson fits y = a*x + b to fake data (a = 3, b = 8, noise 0.1*N(0, 3), x ~ U(0, 1)):

  --method manual     gradients derived by hand and applied in NumPy (the lesson's `upd()`);
  --method autograd   parameters with requires_grad, loss.backward(), a manual update, zeroed gradients;
  --method optim      torch.optim.SGD through zoo's trainer, like every other model (the default).

`--animate fit.gif` draws the line converging onto the scatter (the lesson's animation). This
module registers the model, its data and those two options of `zoo train`; it never imports
torch (`zoo_sgd.linreg` does, when training starts).
"""

from zoo import ModelSpec, Reference, Stage, hookimpl

LESSON = "fast.ai 2018 Lesson 6, lesson6-sgd.ipynb"
METHODS = ("manual", "autograd", "optim")
A, B = 3.0, 8.0  # the line the data come from
N_POINTS = 10_000  # "10,000 for PyTorch"; the animation shows 50 of them, as the lesson's picture did
DATA_SEED = 42


class LineData:
    """The lesson's `gen_fake_data(n, a, b)`: x ~ U(0, 1), y = a*x + b + 0.1*N(0, 3); fixed by its seed."""

    name = "line"
    summary = f"{N_POINTS:,} points y = {A:g}x + {B:g} + 0.1*N(0, 3), x ~ U(0, 1): the lesson's fake data (a table; seed {DATA_SEED})"

    def load_table(self, path=None):
        import numpy as np

        from zoo.data.table import Table, sha256_bytes

        rng = np.random.default_rng(DATA_SEED)
        x = rng.uniform(0, 1, N_POINTS)
        y = A * x + B + 0.1 * rng.normal(0, 3, N_POINTS)
        return Table("line", {"x": x, "y": y}, (), ("x",), "y", sha256=sha256_bytes(x.tobytes(), y.tobytes()))


@hookimpl
def zoo_register_models(register):
    register(
        ModelSpec(
            name="linreg-sgd",
            summary="Lesson 6 SGD: fit y = a*x + b by gradient descent: hand gradients (NumPy), autograd, or torch.optim.",
            builder="zoo_sgd.linreg:LinReg",
            fit="zoo_sgd.linreg:fit",
            options_check="zoo_sgd.linreg:validate_options",
            task="regression",
            dataset="line",
            recipe=(Stage(lr=0.1, epochs=10),),
            batch_size=100,
            optimizer="sgd",
            reference=Reference(
                source=LESSON,
                note="the lesson's autograd loop printed the loss every 1,000 steps, 85.9 -> 0.090; the noise alone gives 0.09",
            ),
            tags=("lesson6", "sgd"),
            num_params=2,
            train_options={"method": "optim", "animate": None},
        )
    )


@hookimpl
def zoo_register_datasets(register):
    register(LineData())


def _add_option(command, option) -> None:
    if all(p.name != option.name for p in command.params):  # main() may run more than once in a process
        command.params.append(option)


@hookimpl
def zoo_register_commands(cli):
    import click

    train = cli.commands.get("train")
    if train is None:
        return
    _add_option(
        train,
        click.Option(
            ["--method"],
            type=click.Choice(METHODS),
            help="linreg-sgd: manual (hand-derived gradients in NumPy), autograd (backward() and a manual update) "
            "or optim (torch.optim.SGD through zoo's trainer; the default).",
        ),
    )
    _add_option(
        train,
        click.Option(
            ["--animate"],
            metavar="GIF",
            type=click.Path(dir_okay=False),
            help="linreg-sgd: write the animation of the line converging onto the data, and a loss curve beside it (GIF-loss.png).",
        ),
    )
