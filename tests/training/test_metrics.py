"""Metric functions against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from training import metrics


def test_auc_counts_pairs_and_half_ties() -> None:
    # positives 0.8, 0.4; negatives 0.6, 0.4, 0.1: pairs (0.8 > all three) = 3,
    # (0.4 > 0.1) = 1, (0.4 = 0.4) = 0.5 -> 4.5 / 6
    labels = np.array([1, 0, 1, 0, 0])
    scores = np.array([0.8, 0.6, 0.4, 0.4, 0.1])
    assert metrics.auc(labels, scores) == pytest.approx(4.5 / 6)


def test_auc_perfect_reversed_and_undefined() -> None:
    labels = np.array([0, 0, 1, 1])
    assert metrics.auc(labels, np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert metrics.auc(labels, np.array([0.4, 0.3, 0.2, 0.1])) == 0.0
    assert np.isnan(metrics.auc(np.ones(3), np.arange(3.0)))


def test_auc_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="same length"):
        metrics.auc(np.array([0, 1]), np.array([0.1, 0.2, 0.3]))


def test_roc_curve_ends_and_area_match_auc() -> None:
    labels = np.array([1, 0, 1, 0, 0])
    scores = np.array([0.8, 0.6, 0.4, 0.4, 0.1])
    fpr, tpr = metrics.roc_curve(labels, scores)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.trapezoid(tpr, fpr) == pytest.approx(metrics.auc(labels, scores))


def test_macro_auc_skips_classes_with_few_positives() -> None:
    classes = np.array([0, 0, 1, 1, 2])
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1],
                      [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    per_class = metrics.one_vs_rest_aucs(classes, probs)
    # class 0: positives 0.9, 0.8 vs 0.1, 0.6, 0.2 -> 6/6; class 1: 0.8, 0.3 vs 0.1, 0.1,
    # 0.2 -> 6/6; class 2: 0.6 vs 0.0, 0.1, 0.1, 0.1 -> 1
    assert per_class == [1.0, 1.0, 1.0]
    probs[3] = [0.05, 0.05, 0.9]  # class 1's second positive now scores lowest for class 1
    assert metrics.one_vs_rest_aucs(classes, probs)[1] == pytest.approx(3 / 6)
    assert metrics.macro_auc(classes, probs, min_positives=2) == pytest.approx(
        (metrics.one_vs_rest_aucs(classes, probs)[0] + 0.5) / 2)


def test_confusion_matrix_rows_are_truth() -> None:
    matrix = metrics.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]


def test_reliability_ece_by_hand() -> None:
    # two nodules at confidence 0.9 (one right), two at 0.6 (both right):
    # bins |0.5 - 0.9| * 2/4 + |1.0 - 0.6| * 2/4 = 0.2 + 0.2
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.4, 0.6]])
    classes = np.array([0, 1, 1, 1])
    rel = metrics.reliability(classes, probs, bins=10)
    assert rel.ece == pytest.approx(0.4)
    assert rel.counts.sum() == 4


def test_proportion_mse_in_fractions() -> None:
    truth = np.array([[1.0, 0.0], [0.5, 0.5]])
    pred = np.array([[0.8, 0.2], [0.5, 0.5]])
    assert metrics.proportion_mse(truth, pred) == pytest.approx((0.04 + 0.04) / 4)


def test_bootstrap_interval_contains_point_and_is_reproducible() -> None:
    values = np.random.default_rng(1).normal(size=200)
    first = metrics.bootstrap(lambda i: float(values[i].mean()), 200, resamples=300, seed=4)
    again = metrics.bootstrap(lambda i: float(values[i].mean()), 200, resamples=300, seed=4)
    assert first == again
    assert first.low < first.value < first.high
    # the standard error of a mean of 200 unit normals is ~0.07: the 95 % interval ~0.28 wide
    assert 0.15 < first.high - first.low < 0.45
