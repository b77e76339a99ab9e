"""``lungpath synth``: the synthetic cohort of SYNTHETIC_COHORT.md."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from lungpath.cli import fail, main


def _cohort_options(f: click.decorators.FC) -> click.decorators.FC:
    for option in reversed([
        click.option("--n", "count", type=click.IntRange(min=1), default=10, show_default=True,
                     help="How many studies, boxes or nodules."),
        click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
                     help="Cohort seed; the same seed gives the same files."),
        click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True),
        click.option("--acquisition", type=click.Choice(["standard", "fast"]),
                     default="standard", show_default=True),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Processes (default: all cores). Output does not depend on it."),
    ]):
        f = option(f)
    return f


@contextmanager
def _writing_to(out: Path) -> Iterator[None]:
    """End with one line, not a traceback, when the output folder cannot be written."""
    try:
        yield
    except OSError as e:
        fail(f"cannot write the synthetic data to {out}: {e.strerror or e}")


@main.group()
def synth() -> None:
    """Generate synthetic CT studies, nodule boxes and previews."""


@synth.command()
@_cohort_options
@click.option("--extra-series", is_flag=True,
              help="Add a LOCALIZER and a 5 mm soft-tissue series to every study.")
def studies(count: int, seed: int, out: Path, acquisition: str, workers: int | None,
            extra_series: bool) -> None:
    """Complete DICOM CT studies with 0-3 nodules and their ground truth.

    Writes OUT/study_NNNNN/ (one DICOM file per image and truth.json), studies.csv and
    nodules.csv. The same seed gives the same files whatever --workers is.
    """
    from training.synthetic.cohort import generate_studies

    with _writing_to(out):
        truths = generate_studies(out, count, seed=seed, acquisition=acquisition,
                                  workers=workers, extra_series=extra_series, progress=True)
    nodules = sum(len(t.nodules) for t in truths)
    click.echo(f"wrote {len(truths)} studies with {nodules} nodules to {out}")


@synth.command()
@_cohort_options
@click.option("--unlabelled", is_flag=True,
              help="An unlabelled set (for distillation): labels blank in boxes.csv, kept in "
                   "withheld.csv for evaluation only.")
@click.option("--box-mm", type=click.FloatRange(min=16, max=256), default=64.0,
              show_default=True, help="Edge length of each box in mm.")
def boxes(count: int, seed: int, out: Path, acquisition: str, workers: int | None,
          unlabelled: bool, box_mm: float) -> None:
    """Boxes around single nodules, on the grid a study would have, for training.

    Writes OUT/*.mha (int16 HU with origin, spacing and direction) and OUT/boxes.csv.
    """
    from training.synthetic.cohort import generate_boxes

    with _writing_to(out):
        rows = generate_boxes(out, count, seed=seed, acquisition=acquisition,
                              labelled=not unlabelled, workers=workers, box_mm=box_mm,
                              progress=True)
    click.echo(f"wrote {len(rows)} {'unlabelled' if unlabelled else 'labelled'} boxes to {out}")


@synth.command()
@_cohort_options
def preview(count: int, seed: int, out: Path, acquisition: str, workers: int | None) -> None:
    """A PNG mosaic of rendered nodules per class with their labels (--n per class).

    Writes OUT/synth-preview.png.
    """
    from training.synthetic.preview import render_preview

    with _writing_to(out):
        path = render_preview(out, per_class=count, seed=seed, acquisition=acquisition,
                              workers=workers, progress=True)
    click.echo(f"wrote {path}")
