"""zoo's built-in plugin for plugin authors: `zoo new-plugin NAME` writes a complete, installable plugin.

Like every built-in feature, it is a plugin (entry point `scaffold`); it never imports torch.
"""

from __future__ import annotations

from pathlib import Path

import click

from zoo import hookimpl


@hookimpl
def zoo_register_commands(cli):
    @cli.command("new-plugin")
    @click.argument("name")
    @click.option(
        "--dir",
        "parent",
        type=click.Path(file_okay=False, path_type=Path),
        default=".",
        show_default=True,
        help="Where to create the zoo-NAME folder.",
    )
    def new_plugin(name: str, parent: Path) -> None:
        """Write a new plugin package zoo-NAME: one model, its spec, a README and tests.

        \b
        Then:  pip install -e zoo-NAME && pytest zoo-NAME/tests && zoo train NAME
        Writing plugins: docs/plugins.md in zoo.
        """
        from zoo_scaffold.generate import generate

        root, files = generate(name, parent)
        click.echo(f"created {root} with the plugin and model {name!r}:")
        for path in files:
            click.echo(f"  {path}")
        click.echo("next:")
        for line in (f"pip install -e {root}", f"pytest {root / 'tests'}", f"zoo list {name}", f"zoo train {name}"):
            click.echo(f"  {line}")
