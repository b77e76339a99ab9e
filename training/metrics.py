"""Metric functions of the evaluation, on plain numpy arrays.

Written here rather than taken from scikit-learn to keep the dependency list short; each is a
few lines and is tested against hand-computed values (tests/training/test_metrics.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

FloatArray = np.ndarray


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve of binary ``labels`` (0/1) ranked by ``scores``.

    The Mann-Whitney form: the probability that a random positive outranks a random negative,
    ties counting one half (mid-ranks). NaN when either class is absent: there is no curve.
    """
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError('Arguments "labels" and "scores" must be 1-D arrays of the same length.')
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold, from (0, 0) to (1, 1)."""
    labels = np.asarray(labels).astype(bool)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    sorted_scores = np.asarray(scores, dtype=np.float64)[order]
    hits = labels[order]
    last_of_tie = np.r_[np.diff(sorted_scores) != 0, True]
    tp = np.cumsum(hits)[last_of_tie]
    fp = np.cumsum(~hits)[last_of_tie]
    tpr = np.r_[0.0, tp / max(int(labels.sum()), 1)]
    fpr = np.r_[0.0, fp / max(int((~labels).sum()), 1)]
    return fpr, tpr


def one_vs_rest_aucs(classes: np.ndarray, probabilities: np.ndarray) -> list[float]:
    """AUC of each class against the rest; ``classes`` are indices into the columns."""
    classes = np.asarray(classes)
    return [auc(classes == k, probabilities[:, k]) for k in range(probabilities.shape[1])]


def macro_auc(classes: np.ndarray, probabilities: np.ndarray, min_positives: int = 1) -> float:
    """Mean one-vs-rest AUC over the classes with at least ``min_positives`` positives
    (and at least one negative); NaN when no class qualifies."""
    classes = np.asarray(classes)
    kept = [
        a
        for k, a in enumerate(one_vs_rest_aucs(classes, probabilities))
        if (classes == k).sum() >= min_positives and not np.isnan(a)
    ]
    return float(np.mean(kept)) if kept else float("nan")


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(truth), np.asarray(predicted)), 1)
    return matrix


@dataclass(frozen=True)
class Reliability:
    """Top-label calibration in equal-width confidence bins.

    ``confidence``/``accuracy`` are per-bin means (NaN for empty bins), ``counts`` the
    nodules per bin, ``ece`` the expected calibration error: the count-weighted mean of
    |accuracy - confidence| over the bins.
    """

    edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray
    ece: float


def reliability(classes: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> Reliability:
    """Calibration of the most probable class (the usual ECE with ``bins`` equal bins)."""
    if bins < 1:
        raise ValueError(f'Argument "bins" must be >= 1, got {bins}.')
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(classes)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=confidence, minlength=bins) / counts
        mean_acc = np.bincount(which, weights=correct.astype(float), minlength=bins) / counts
    gaps = np.where(counts > 0, np.abs(mean_acc - mean_conf), 0.0)
    ece = float((gaps * counts).sum() / max(counts.sum(), 1))
    return Reliability(edges, mean_conf, mean_acc, counts, ece)


def proportion_mse(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Mean squared error over the seven patterns and the nodules, both as fractions 0-1."""
    return float(np.mean((np.asarray(truth) - np.asarray(predicted)) ** 2))


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap 95 % percentile interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


Statistic = Callable[[np.ndarray], float]


def bootstrap(statistic: Statistic, n: int, resamples: int = 1000, seed: int = 0) -> Estimate:
    """``statistic(indices)`` on all ``n`` items and its 95 % percentile interval over
    ``resamples`` resamples of the items with replacement.

    The statistic receives index arrays so that one function serves single metrics and
    paired differences (both models see the same resampled nodules). Resamples where the
    statistic is undefined (NaN: a class missing) are left out of the interval.
    """
    if n < 1:
        raise ValueError(f'Argument "n" must be >= 1, got {n}.')
    rng = np.random.default_rng(seed)
    point = statistic(np.arange(n))
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)])
    values = values[~np.isnan(values)]
    if values.size == 0:
        return Estimate(point, float("nan"), float("nan"))
    low, high = np.percentile(values, [2.5, 97.5])
    return Estimate(float(point), float(low), float(high))
