"""A shipped checkpoint on a whole set of nodules: evaluation and batch prediction.

Both run the ``Predictor`` the node serves with (flip averaging, proportions rounded to 5 %
steps), so the figures describe what a radiologist would be sent.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from model.pathology import INVASIVENESS, PATTERNS, NodulePrediction
from model.predictor import Predictor
from training.datasets import NoduleSet
from training.evaluate import (
    CLASS_METRICS,
    PATTERN_METRICS,
    Predictions,
    fmt_estimate,
    paired_difference,
    write_evaluation,
)


def predict_set(predictor: Predictor, data: NoduleSet) -> tuple[Predictions,
                                                                list[NodulePrediction]]:
    """The predictor's outputs on every crop of ``data``, as arrays and as findings."""
    found = predictor.predict(data.crops.astype(np.float32))
    pred = Predictions(
        probabilities=np.array([f.probabilities for f in found], dtype=np.float64),
        proportions=np.array([f.proportions for f in found], dtype=np.float64) / 100.0,
        uncertainty=np.array([f.uncertainty for f in found], dtype=np.float64),
    )
    return pred, found


def evaluate_checkpoint(checkpoint: Path, data: NoduleSet, out: Path, title: str,
                        compare: Path | None = None, resamples: int = 1000) -> dict[str, Any]:
    """Write the evaluation of ``checkpoint`` on ``data`` into ``out`` (metrics.json,
    metrics.md, roc.png, reliability.png); with ``compare``, also the paired differences
    checkpoint − compare on the same nodules (comparison.json, appended to metrics.md)."""
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    pred, _ = predict_set(predictor, data)
    report = write_evaluation(pred, data, out, title, resamples)
    report["checkpoint_sha256"] = predictor.sha256
    if compare is not None:
        other, _ = predict_set(Predictor.from_checkpoint(compare, device="cpu"), data)
        diffs = {name: paired_difference(metric, pred, other, data, resamples).as_dict()
                 for name, metric in {**CLASS_METRICS, **PATTERN_METRICS}.items()}
        report["paired_difference"] = {"reference": str(compare), **diffs}
        lines = ["", f"Paired difference, this checkpoint − {compare.name} "
                 "(same nodules, paired bootstrap):", "", "| metric | difference [95 % CI] |",
                 "|---|---|"]
        lines += [f"| {k.replace('_', ' ')} | {fmt_estimate(v, '+')} |"
                  for k, v in diffs.items()]
        with (out / "metrics.md").open("a") as f:
            f.write("\n".join(lines) + "\n")
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


PREDICTION_COLUMNS = (
    "nodule_id", "patient_id",
    *(f"p_{c.value}" for c in INVASIVENESS), "invasiveness",
    *(f"{p.value}_percent" for p in PATTERNS), "predominant", "grade", "uncertainty",
)


def write_predictions(checkpoint: Path, data: NoduleSet, path: Path) -> int:
    """One CSV row per nodule of ``data``: probabilities, proportions, predominant pattern,
    IASLC grade, uncertainty. Returns the number of rows."""
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    _, found = predict_set(predictor, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(PREDICTION_COLUMNS)
        for nodule, patient, finding in zip(data.nodule_ids, data.patient_ids, found,
                                            strict=True):
            writer.writerow([
                nodule, patient, *(f"{p:.4f}" for p in finding.probabilities),
                finding.invasiveness.value, *finding.proportions, finding.predominant.value,
                finding.grade.value, f"{finding.uncertainty:.1f}",
            ])
    return len(found)
