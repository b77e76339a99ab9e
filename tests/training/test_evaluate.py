"""Evaluation reports and paired comparisons on hand-made predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.datasets import NoduleSet
from training.evaluate import (
    Predictions,
    evaluate,
    macro_auc,
    markdown,
    paired_difference,
    write_evaluation,
)


def _truth() -> NoduleSet:
    classes = np.array([0, 0, 1, 1, 2, 2, 2, -1])
    props = np.tile(np.eye(7, dtype=np.float32)[0], (8, 1))
    props[4:7] = np.eye(7, dtype=np.float32)[1]
    props[7] = np.nan
    n = len(classes)
    return NoduleSet(np.zeros((n, 2, 2, 2), np.float16), classes, props,
                     np.array([f"p{i}" for i in range(n)]), np.array([str(i) for i in range(n)]),
                     np.full(n, -1))


def _perfect(truth: NoduleSet) -> Predictions:
    probs = np.full((8, 3), 0.05)
    probs[np.arange(8), np.maximum(truth.invasiveness, 0)] = 0.9
    return Predictions(probs, np.nan_to_num(truth.proportions, nan=1 / 7))


def test_perfect_predictions_score_one_and_zero_error() -> None:
    truth = _truth()
    report = evaluate(_perfect(truth), truth, resamples=50)
    assert report["with_class"] == 7 and report["with_proportions"] == 7
    assert report["invasiveness_macro_auc"]["value"] == 1.0
    assert report["iac_vs_rest_auc"]["value"] == 1.0
    assert report["invasiveness_accuracy"]["value"] == 1.0
    assert report["proportion_mse"]["value"] == 0.0
    assert report["confusion"] == [[2, 0, 0], [0, 2, 0], [0, 0, 3]]
    # 0.9 confidence, always right: ECE = 0.1
    assert report["ece"]["value"] == pytest.approx(0.1)
    # no pattern has 20 positives in 7 nodules: the pattern macro AUC is undefined
    assert np.isnan(report["predominant_macro_auc"]["value"])


def test_paired_difference_of_a_model_with_itself_is_zero() -> None:
    truth = _truth()
    pred = _perfect(truth)
    diff = paired_difference(macro_auc, pred, pred, truth, resamples=50)
    assert (diff.value, diff.low, diff.high) == (0.0, 0.0, 0.0)
    worse = Predictions(pred.probabilities[::-1].copy(), pred.proportions)
    assert paired_difference(macro_auc, pred, worse, truth, resamples=50).value > 0


def test_write_evaluation_files(tmp_path: Path) -> None:
    truth = _truth()
    write_evaluation(_perfect(truth), truth, tmp_path, "perfect", resamples=20)
    assert {p.name for p in tmp_path.iterdir()} == {"metrics.json", "metrics.md", "roc.png",
                                                    "reliability.png"}
    assert "| invasiveness macro auc | 1.000" in (tmp_path / "metrics.md").read_text()


def test_each_pattern_of_the_macro_auc_gets_its_own_auc() -> None:
    """60 nodules: 30 lepidic-, 20 acinar- and 10 solid-predominant. Lepidic and acinar have
    the 20 positives the macro AUC needs; solid does not and gets no AUC of its own."""
    rng = np.random.default_rng(0)
    winners = np.repeat([0, 1, 4], [30, 20, 10])
    props = np.full((60, 7), 0.05, dtype=np.float32)
    props[np.arange(60), winners] = 0.7
    n = len(winners)
    truth = NoduleSet(np.zeros((n, 2, 2, 2), np.float16), np.full(n, 2), props,
                      np.array([f"p{i}" for i in range(n)]), np.array([str(i) for i in range(n)]),
                      np.full(n, -1))
    noisy = props + rng.normal(0, 0.3, props.shape)
    report = evaluate(Predictions(np.full((n, 3), 1 / 3), noisy), truth, resamples=20)
    per_pattern = report["predominant_auc"]
    assert list(per_pattern) == ["lepidic", "acinar"]
    for k, name in ((0, "lepidic"), (1, "acinar")):
        expected = float(np.mean(noisy[winners == k, k][:, None] > noisy[winners != k, k]))
        assert per_pattern[name]["value"] == pytest.approx(expected)
    assert report["predominant_macro_auc"]["value"] == pytest.approx(
        np.mean([v["value"] for v in per_pattern.values()]))
    assert "| AUC acinar predominant vs rest |" in markdown(report, "noisy")
