"""``lungpath train manifest``: the recipe and its ablation on a real-data manifest.

Patients are dealt into ``folds`` folds (a manifest's ``fold`` column is kept); by default
fold 0 is held out once; with ``cross_validate`` every fold is held out in turn, each in its
own ``fold_<k>`` run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model.checkpoint import IntendedUse
from training.datasets import CropCache, patient_folds, split
from training.manifest import read_manifest
from training.recipe import RecipeConfig
from training.report import write_report
from training.run import run
from training.sources import manifest_set

VAL_FRACTION = 0.1


def train_manifest(manifest: Path, out: Path, config: RecipeConfig, *, cache_dir: Path,
                   folds: int = 4, cross_validate: bool = False, init: Path | None = None,
                   resamples: int = 1000) -> list[dict[str, Any]]:
    """Train and report on ``manifest``; one ``run.json`` content per held-out fold."""
    rows = read_manifest(manifest)
    data = manifest_set(rows, config.crop, CropCache(cache_dir))
    seed = config.fit.seed
    fold_of = patient_folds(data.patient_ids, folds, seed, assigned=data.folds)
    results = []
    for test_fold in range(folds) if cross_validate else [0]:
        run_dir = out / f"fold_{test_fold}" if cross_validate else out
        parts = split(fold_of, data.patient_ids, test_fold, VAL_FRACTION, seed)
        info = run(data, parts, config, run_dir, init=init, intended_use=IntendedUse.RESEARCH,
                   training_data=f"manifest {manifest.name}: {len(rows)} nodules, "
                                 f"test fold {test_fold} of {folds}")
        info["report"] = str(write_report(run_dir, resamples))
        results.append(info)
    return results
