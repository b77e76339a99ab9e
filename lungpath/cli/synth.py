"""``lungpath synth``: the synthetic cohort of SYNTHETIC_COHORT.md."""

from __future__ import annotations

from pathlib import Path

import click

from lungpath.cli import main, not_available


def _cohort_options(f: click.decorators.FC) -> click.decorators.FC:
    for option in reversed([
        click.option("--n", "count", type=click.IntRange(min=1), default=10, show_default=True,
                     help="How many studies, boxes or nodules."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True),
        click.option("--acquisition", type=click.Choice(["standard", "fast"]),
                     default="standard", show_default=True),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Processes (default: all cores). Output does not depend on it."),
    ]):
        f = option(f)
    return f


@main.group()
def synth() -> None:
    """Generate synthetic CT studies, nodule boxes and previews."""


@synth.command()
@_cohort_options
def studies(count: int, seed: int, out: Path, acquisition: str, workers: int | None) -> None:
    """Complete DICOM CT studies with 0-3 nodules and their ground truth."""
    not_available("synth studies", "the synthetic cohort generator")


@synth.command()
@_cohort_options
def boxes(count: int, seed: int, out: Path, acquisition: str, workers: int | None) -> None:
    """Boxes around single nodules (labelled and unlabelled) for training."""
    not_available("synth boxes", "the synthetic cohort generator")


@synth.command()
@_cohort_options
def preview(count: int, seed: int, out: Path, acquisition: str, workers: int | None) -> None:
    """A PNG mosaic of rendered nodules per class with their labels."""
    not_available("synth preview", "the synthetic cohort generator")
