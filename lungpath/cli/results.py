"""Reading lungpath's result objects."""

from __future__ import annotations

from pathlib import Path

import click

from lungpath.cli import main, not_available


@main.command(name="show-sr")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
def show_sr(file: Path) -> None:
    """Print the findings of a lungpath result SR as a table, one row per nodule."""
    not_available("show-sr", "the result objects")
