"""Training, evaluation and batch prediction with SD-MdaNet.

torch and the training code are imported inside the commands, so the CLI (and the node
process that shares it) starts without them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from lungpath.cli import Context, fail, main, pass_context

if TYPE_CHECKING:
    from training.datasets import NoduleSet

T = TypeVar("T")
_EXISTING_FILE = click.Path(path_type=Path, dir_okay=False, exists=True)
_SEED = click.option("--seed", type=int, default=0, show_default=True,
                     help="Seeds the split, the initial weights and the batch order.")
_THREADS = click.option("--threads", type=click.IntRange(min=1), default=None,
                        help="torch CPU threads (default: torch's choice).")


@main.group()
def train() -> None:
    """Train the teachers and the SD-MdaNet student."""


@train.command(name="synth")
@click.option("--budget", type=click.Choice(["small", "full", "smoke"]), default="small",
              show_default=True,
              help="small: ~1 min on a 2-core CPU; full (shipped weights): ~1 h; smoke: seconds.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--init", "init_checkpoint", type=_EXISTING_FILE,
              help="Fine-tune from this checkpoint.")
@_SEED
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Processes generating boxes (default: all cores).")
@_THREADS
@pass_context
def train_synth(ctx: Context, budget: str, out: Path | None, init_checkpoint: Path | None,
                seed: int, workers: int | None, threads: int | None) -> None:
    """Train on the synthetic cohort: teachers, student and the ablation models, on one
    patient-level split, then write the ablation report."""
    from training.synth_run import train_synth as run_synth

    out = out or ctx.settings().var_dir / "runs" / f"synth-{budget}-seed{seed}"
    info = _guarded(lambda: run_synth(budget, out, seed=seed, init=init_checkpoint,
                                      workers=workers, threads=threads))
    click.echo(f"run folder:   {out}")
    click.echo(f"student:      {info['student']}")
    click.echo(f"report:       {info['report']}")
    click.echo(f"wall time:    {info['seconds']['total']:.0f} s")


@train.command(name="manifest")
@click.argument("manifest", type=_EXISTING_FILE)
@click.option("--out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--init", "init_checkpoint", type=_EXISTING_FILE,
              help="Fine-tune from this checkpoint.")
@click.option("--folds", type=click.IntRange(min=2), default=4, show_default=True)
@click.option("--cross-validate", is_flag=True, help="Hold out every fold in turn.")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@_SEED
@_THREADS
@pass_context
def train_manifest(ctx: Context, manifest: Path, out: Path | None, init_checkpoint: Path | None,
                   folds: int, cross_validate: bool, epochs: int, batch_size: int, seed: int,
                   threads: int | None) -> None:
    """Train on real data described by a manifest CSV (docs/training.md)."""
    from model.checkpoint import load_checkpoint
    from model.crop_spec import CropSpec
    from training.loop import FitConfig
    from training.manifest_run import train_manifest as run_manifest
    from training.recipe import RecipeConfig

    settings = ctx.settings()
    fit = FitConfig(epochs=epochs, batch_size=batch_size, seed=seed, threads=threads)
    config = RecipeConfig(crop=CropSpec(), fit=fit)
    if init_checkpoint is not None:  # the crops and widths its weights were trained with
        checkpoint = _guarded(lambda: load_checkpoint(init_checkpoint).checkpoint)
        if checkpoint.model_name != "mdanet":
            fail(f"--init needs an MdaNet checkpoint, got {checkpoint.model_name!r}")
        config = RecipeConfig(crop=checkpoint.crop_spec, fit=fit,
                              mdanet=dict(checkpoint.model_config))
    out = out or settings.var_dir / "runs" / f"manifest-{manifest.stem}-seed{seed}"
    results = _guarded(lambda: run_manifest(
        manifest, out, config,
        cache_dir=settings.var_dir / "crop-cache", folds=folds, cross_validate=cross_validate,
        init=init_checkpoint))
    click.echo(f"run folder:   {out}")
    for info in results:
        click.echo(f"report:       {info['report']}")


@train.command(name="report")
@click.argument("run_dir", type=click.Path(path_type=Path, file_okay=False, exists=True))
def train_report(run_dir: Path) -> None:
    """Write the ablation table and plots of a finished training run."""
    from training.report import write_report

    if not (run_dir / "run.json").is_file():
        fail(f"{run_dir} is not a training run folder (no run.json)")
    click.echo(f"wrote {write_report(run_dir)}")


def _guarded(work: Callable[[], T]) -> T:
    """Run ``work``; a bad manifest, image, checkpoint or argument (all ``ValueError``s:
    ManifestError, SourceError, CheckpointError) ends the command with its message."""
    try:
        return work()
    except ValueError as e:
        fail(str(e))


def _nodules(ctx: Context, checkpoint: Path, manifest: Path | None, synthetic_seed: int | None,
             count: int, acquisition: str) -> NoduleSet:
    """The nodules to score: a manifest's, or a synthetic held-out set, cropped with the
    checkpoint's CropSpec."""
    from model.checkpoint import load_checkpoint
    from training.datasets import CropCache
    from training.manifest import read_manifest
    from training.sources import cached_synthetic_set, manifest_set

    if (manifest is None) == (synthetic_seed is None):
        fail("give a MANIFEST or --synthetic-seed (one of them)", 2)
    spec = _guarded(lambda: load_checkpoint(checkpoint).checkpoint.crop_spec)
    cache = CropCache(ctx.settings().var_dir / "crop-cache")
    if manifest is not None:
        return _guarded(lambda: manifest_set(read_manifest(manifest), spec, cache))
    assert synthetic_seed is not None
    return cached_synthetic_set(cache, synthetic_seed, count, spec, acquisition=acquisition,
                                progress="synthetic boxes")


_SOURCE_OPTIONS = [
    click.option("--synthetic-seed", type=int, default=None,
                 help="Score a synthetic held-out set of this seed instead of a manifest."),
    click.option("--count", type=click.IntRange(min=1), default=1500, show_default=True,
                 help="Nodules of the synthetic set."),
    click.option("--acquisition", type=click.Choice(["standard", "fast"]), default="standard",
                 show_default=True, help="Acquisition of the synthetic set."),
]


def _source_options(f: click.decorators.FC) -> click.decorators.FC:
    for option in reversed(_SOURCE_OPTIONS):
        f = option(f)
    return f


@main.command()
@click.argument("checkpoint", type=_EXISTING_FILE)
@click.argument("manifest", type=_EXISTING_FILE, required=False)
@_source_options
@click.option("--out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--compare", type=_EXISTING_FILE,
              help="A second checkpoint: paired differences on the same nodules.")
@click.option("--resamples", type=click.IntRange(min=100), default=1000, show_default=True,
              help="Bootstrap resamples for the 95 % intervals.")
@pass_context
def evaluate(ctx: Context, checkpoint: Path, manifest: Path | None, synthetic_seed: int | None,
             count: int, acquisition: str, out: Path | None, compare: Path | None,
             resamples: int) -> None:
    """AUCs, calibration, confusion matrices and ROC plots of CHECKPOINT on MANIFEST (or on
    a synthetic held-out set)."""
    from training.batch import evaluate_checkpoint

    data = _nodules(ctx, checkpoint, manifest, synthetic_seed, count, acquisition)
    what = manifest.name if manifest else f"synthetic {acquisition} seed {synthetic_seed}"
    out = out or ctx.settings().var_dir / "evaluations" / f"{checkpoint.stem}-{Path(what).stem}"
    report = _guarded(lambda: evaluate_checkpoint(checkpoint, data, out,
                                                  f"{checkpoint.name} on {what}", compare,
                                                  resamples))
    click.echo((out / "metrics.md").read_text())
    click.echo(f"written to {out} (metrics.json, metrics.md, roc.png, reliability.png)")
    if not report.get("with_class"):
        click.echo("note: no nodule has an invasiveness label; class metrics are absent")


@main.command()
@click.argument("checkpoint", type=_EXISTING_FILE)
@click.argument("manifest", type=_EXISTING_FILE)
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="CSV file, one row per nodule.")
@pass_context
def predict(ctx: Context, checkpoint: Path, manifest: Path, out: Path) -> None:
    """Predict every nodule of MANIFEST with CHECKPOINT into a CSV."""
    from training.batch import write_predictions

    data = _nodules(ctx, checkpoint, manifest, None, 0, "standard")
    rows = _guarded(lambda: write_predictions(checkpoint, data, out))
    click.echo(json.dumps({"rows": rows, "csv": str(out)}))
