"""Plugin: `entity-embeddings` - categorical variables as learned embeddings (Guo & Berkhahn, 2016; fast.ai Lesson 6).

Registers the model, its tables (txhousing, offline once plotnine is installed; rossmann, from
Kaggle's files) and the command `zoo plot MODEL --column C`: a column's embedding on its first
two principal components. Never imports torch (the builder, `zoo_tabular.model`, does).
"""

from zoo import ModelSpec, Reference, Stage, hookimpl
from zoo_tabular.data import Rossmann, TxHousing

PAPER = "Guo & Berkhahn 2016, Entity Embeddings of Categorical Variables (arXiv:1604.06737), Rossmann"
PAPER_MAPE = {  # MAPE on Rossmann, without -> with entity embeddings (the paper's table)
    "KNN": (0.290, 0.116),
    "random forest": (0.158, 0.108),
    "gradient boosted trees": (0.152, 0.115),
    "neural network": (0.101, 0.093),
}


@hookimpl
def zoo_register_models(register):
    register(
        ModelSpec(
            name="entity-embeddings",
            summary="An nn.Embedding per categorical column, normalised continuous columns and an MLP; "
            "regression on the log of the target, MAPE (Guo & Berkhahn 2016).",
            builder="zoo_tabular.model:EntityEmbeddingNet",
            task="tabular-regression",
            dataset="txhousing",
            # fast.ai's Rossmann model had layers 1000,500; txhousing has 6,427 training rows, where 200,100
            # does as well in a third of the time (--set layers=1000,500 for the lesson's)
            hparams={"layers": "200,100", "dropout": "0.001,0.01", "emb_dropout": 0.04, "max_emb": 50},
            recipe=(Stage(lr=3e-3, epochs=10), Stage(lr=3e-4, epochs=5)),
            batch_size=128,
            optimizer="adam",
            split="random",
            reference=Reference(
                source=PAPER,
                note="MAPE without -> with entity embeddings: KNN 0.290 -> 0.116, random forest 0.158 -> 0.108, "
                "gradient boosted trees 0.152 -> 0.115, neural network 0.101 -> 0.093",
            ),
            tags=("lesson6", "tabular", "embeddings"),
            num_params=30773,  # at txhousing's cardinalities: city 46, year 16, month 12 (+1 each for missing/unseen)
            tiny={"layers": "32,16"},
        )
    )


@hookimpl
def zoo_register_datasets(register):
    register(TxHousing())
    register(Rossmann())


@hookimpl
def zoo_register_commands(cli):
    import click

    @cli.command("plot")
    @click.argument("model")
    @click.option("--column", required=True, help="A categorical column of the model's table, e.g. month or city.")
    @click.option("--out", type=click.Path(dir_okay=False), help="The PNG to write (default: MODEL_DIR/embedding-COLUMN.png).")
    def plot(model: str, column: str, out: str | None) -> None:
        """A learned embedding on its first two principal components, as a PNG (entity-embeddings).

        MODEL is a run directory, or a model name: its latest run in runs/ (runs/NAME, runs/NAME-2, ...).
        """
        from zoo_tabular.plot import plot_command

        click.echo(plot_command(model, column, out))
