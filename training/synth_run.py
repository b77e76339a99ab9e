"""``lungpath train synth``: the whole recipe and its ablation on the synthetic cohort.

A budget fixes the cohort size, the crop, the network widths and the epochs. On the
reference 2-core CPU (docs/model-card.md) ``small`` ran in about a minute (idle) and ``full``,
which produced the shipped weights, in 61 minutes (its targets: 20 and 150 minutes);
``smoke`` is the seconds-long configuration of the tests.
Labelled boxes (set ``seed``) are split by patient (4 folds, fold 0 held out, 10 % of the
rest for early stopping); unlabelled boxes (the unlabelled set ``seed``) only ever train; a
``fast``-acquisition set from another seed measures robustness.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from model.checkpoint import IntendedUse, load_checkpoint
from model.crop_spec import CropSpec
from training.datasets import NoduleSet, Split, patient_folds, split
from training.loop import FitConfig
from training.recipe import RecipeConfig
from training.report import write_report
from training.run import run
from training.sources import synthetic_set

logger = logging.getLogger(__name__)
FOLDS = 4
TEST_FOLD = 0
VAL_FRACTION = 0.1
#: the robustness set comes from this seed offset, so it never overlaps the training boxes
FAST_SEED_OFFSET = 1000

_LEAN = {"stem_channels": 8, "block_layers": [2, 2, 2], "growth": 6, "bottleneck": 2,
         "embedding_dim": 16}


@dataclass(frozen=True)
class Budget:
    """Sizes of one synthetic run.

    Attributes:
        labelled: labelled boxes (split into train / validation / test by patient).
        unlabelled: unlabelled boxes (student training only).
        fast_holdout: boxes of the ``fast`` acquisition for the robustness check.
        crop: the CropSpec of every crop (recorded in the checkpoints).
        epochs: most epochs of each teacher and of the baseline.
        student_epochs: most epochs of the students.
        patience: early-stopping patience in epochs.
        resamples: bootstrap resamples of the report's 95 % intervals.
        mdanet: MdaNet hyper-parameters (teachers and students).
        baseline: plain CNN hyper-parameters.
    """

    labelled: int
    unlabelled: int
    fast_holdout: int
    crop: CropSpec
    epochs: int
    student_epochs: int
    patience: int = 3
    batch_size: int = 32
    resamples: int = 1000
    lr: float = 3e-3
    mdanet: dict[str, Any] = field(default_factory=lambda: dict(_LEAN))
    baseline: dict[str, Any] = field(default_factory=lambda: {"widths": [8, 16, 32],
                                                              "embedding_dim": 16})


BUDGETS: dict[str, Budget] = {
    "smoke": Budget(labelled=24, unlabelled=8, fast_holdout=6,
                    crop=CropSpec(spacing_mm=3.2, size=16), epochs=1, student_epochs=1,
                    patience=1, batch_size=16, resamples=100,
                    mdanet={"stem_channels": 4, "block_layers": [1, 1], "growth": 4,
                            "bottleneck": 1, "embedding_dim": 4},
                    baseline={"widths": [4, 8], "embedding_dim": 4}),
    "small": Budget(labelled=480, unlabelled=160, fast_holdout=200,
                    crop=CropSpec(spacing_mm=3.2, size=16), epochs=4, student_epochs=4,
                    patience=2, batch_size=24),
    "full": Budget(labelled=3200, unlabelled=1000, fast_holdout=800,
                   crop=CropSpec(spacing_mm=1.6, size=32), epochs=14, student_epochs=14,
                   patience=4),
}


def recipe_config(budget: Budget, seed: int, threads: int | None) -> RecipeConfig:
    """The recipe settings of ``budget``."""
    return RecipeConfig(
        crop=budget.crop,
        fit=FitConfig(epochs=budget.epochs, patience=budget.patience,
                      batch_size=budget.batch_size, lr=budget.lr, seed=seed, threads=threads),
        student_epochs=budget.student_epochs, mdanet=budget.mdanet, baseline=budget.baseline,
    )


def labelled_split(labelled: NoduleSet, unlabelled_count: int, seed: int) -> Split:
    """Patient-level split of the labelled boxes; the unlabelled boxes, appended after them
    in the combined set, all go to training."""
    folds = patient_folds(labelled.patient_ids, FOLDS, seed)
    parts = split(folds, labelled.patient_ids, TEST_FOLD, VAL_FRACTION, seed)
    extra = np.arange(len(labelled), len(labelled) + unlabelled_count)
    return Split(train=np.concatenate([parts.train, extra]), val=parts.val, test=parts.test)


def fine_tuning(budget: Budget, init: Path) -> Budget:
    """``budget`` with the crop and MdaNet hyper-parameters of the checkpoint ``init``, so
    that its weights fit the networks and its crops."""
    checkpoint = load_checkpoint(init).checkpoint
    if checkpoint.model_name != "mdanet":
        raise ValueError(f"--init needs an MdaNet checkpoint, got {checkpoint.model_name!r}")
    return replace(budget, crop=checkpoint.crop_spec, mdanet=dict(checkpoint.model_config))


def train_synth(budget_name: str, out: Path, *, seed: int = 0, init: Path | None = None,
                workers: int | None = None, threads: int | None = None,
                progress: bool = True) -> dict[str, Any]:
    """Generate the cohort, run the recipe and the ablation, write the report; return
    ``run.json``'s content plus the paths written."""
    if budget_name not in BUDGETS:
        raise ValueError(f"unknown budget {budget_name!r}; known: {', '.join(BUDGETS)}")
    budget = BUDGETS[budget_name]
    if init is not None:
        budget = fine_tuning(budget, init)
    began = time.perf_counter()
    label = (lambda text: text) if progress else (lambda text: None)
    labelled = synthetic_set(seed, budget.labelled, budget.crop, workers=workers,
                             progress=label("labelled boxes"))
    unlabelled = synthetic_set(seed, budget.unlabelled, budget.crop, labelled=False,
                               workers=workers, progress=label("unlabelled boxes"))
    fast = synthetic_set(seed + FAST_SEED_OFFSET, budget.fast_holdout, budget.crop,
                         acquisition="fast", workers=workers, progress=label("fast boxes"))
    generated = time.perf_counter() - began
    data = NoduleSet.concatenate([labelled, unlabelled])
    info = run(
        data, labelled_split(labelled, len(unlabelled), seed),
        recipe_config(budget, seed, threads), out, holdouts={"fast": fast}, init=init,
        intended_use=IntendedUse.RESEARCH_SYNTHETIC,
        training_data=(f"synthetic cohort (SYNTHETIC_COHORT.md), budget {budget_name}: "
                       f"{budget.labelled} labelled + {budget.unlabelled} unlabelled standard "
                       f"boxes of seed {seed}"),
    )
    report = write_report(out, budget.resamples)
    info["seconds"]["generate"] = round(generated, 1)
    info["seconds"]["total"] = round(time.perf_counter() - began, 1)
    info["report"] = str(report)
    info["student"] = str(out / "checkpoints" / "student.pt")
    (out / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
