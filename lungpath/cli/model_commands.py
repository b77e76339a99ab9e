"""Training, evaluation and batch prediction with SD-MdaNet."""

from __future__ import annotations

from pathlib import Path

import click

from lungpath.cli import main, not_available

_EXISTING_FILE = click.Path(path_type=Path, dir_okay=False, exists=True)


@main.group()
def train() -> None:
    """Train the teachers and the SD-MdaNet student."""


@train.command(name="synth")
@click.option("--budget", type=click.Choice(["small", "full"]), default="small",
              show_default=True)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--init", "init_checkpoint", type=_EXISTING_FILE,
              help="Fine-tune from this checkpoint.")
def train_synth(budget: str, out: Path | None, init_checkpoint: Path | None) -> None:
    """Train on the synthetic cohort (teachers, then the student)."""
    not_available("train synth", "training")


@train.command(name="manifest")
@click.argument("manifest", type=_EXISTING_FILE)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--init", "init_checkpoint", type=_EXISTING_FILE,
              help="Fine-tune from this checkpoint.")
def train_manifest(manifest: Path, out: Path | None, init_checkpoint: Path | None) -> None:
    """Train on real data described by a manifest CSV (docs/training.md)."""
    not_available("train manifest", "training")


@train.command(name="report")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
def train_report(run_dir: Path) -> None:
    """Write the ablation table and plots of a finished training run."""
    not_available("train report", "training")


@main.command()
@click.argument("checkpoint", type=_EXISTING_FILE)
@click.argument("manifest", type=_EXISTING_FILE)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False))
def evaluate(checkpoint: Path, manifest: Path, out: Path | None) -> None:
    """AUCs, calibration, confusion matrices and ROC plots of CHECKPOINT on MANIFEST."""
    not_available("evaluate", "evaluation")


@main.command()
@click.argument("checkpoint", type=_EXISTING_FILE)
@click.argument("manifest", type=_EXISTING_FILE)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="CSV file, one row per nodule.")
def predict(checkpoint: Path, manifest: Path, out: Path) -> None:
    """Predict every nodule of MANIFEST with CHECKPOINT into a CSV."""
    not_available("predict", "batch prediction")
