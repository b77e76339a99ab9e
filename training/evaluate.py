"""Evaluation of predictions against labels: the numbers of the model card and the ablation.

Invasiveness: one-vs-rest AUC per class, their macro mean, IAC-vs-rest, accuracy, confusion
matrix, calibration (ECE, reliability diagram). Growth pattern: predominant-pattern macro AUC
over the patterns with enough positives, proportion MSE (fractions), predominant accuracy.
Every headline number has a bootstrap 95 % interval over nodules; two models are compared on
the same nodules by a paired bootstrap of the difference.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from model.pathology import INVASIVENESS, PATTERNS, Invasiveness
from training import metrics
from training.datasets import NoduleSet
from training.metrics import Estimate

#: A pattern enters the predominant-pattern macro AUC with at least this many positives.
MIN_PATTERN_POSITIVES = 20
IAC = INVASIVENESS.index(Invasiveness.IAC)


@dataclass(frozen=True)
class Predictions:
    """Model outputs for N nodules: class probabilities (N, 3), proportions as fractions
    (N, 7) and uncertainty 0-100 (N,). A task the model does not learn is None."""

    probabilities: np.ndarray | None
    proportions: np.ndarray | None
    uncertainty: np.ndarray | None = None

    def subset(self, index: np.ndarray) -> Predictions:
        return Predictions(*(None if a is None else a[index] for a in (
            self.probabilities, self.proportions, self.uncertainty)))


Metric = Callable[[Predictions, NoduleSet, np.ndarray], float]


def macro_auc(pred: Predictions, truth: NoduleSet, idx: np.ndarray) -> float:
    """Invasiveness macro AUC (one-vs-rest) of the nodules at ``idx``."""
    assert pred.probabilities is not None
    return metrics.macro_auc(truth.invasiveness[idx], pred.probabilities[idx])


def iac_auc(pred: Predictions, truth: NoduleSet, idx: np.ndarray) -> float:
    """IAC-vs-rest AUC of the nodules at ``idx``."""
    assert pred.probabilities is not None
    return metrics.auc(truth.invasiveness[idx] == IAC, pred.probabilities[idx, IAC])


def accuracy(pred: Predictions, truth: NoduleSet, idx: np.ndarray) -> float:
    """Invasiveness accuracy (most probable class) of the nodules at ``idx``."""
    assert pred.probabilities is not None
    return float(np.mean(pred.probabilities[idx].argmax(1) == truth.invasiveness[idx]))


def ece(pred: Predictions, truth: NoduleSet, idx: np.ndarray) -> float:
    """Expected calibration error (10 bins) of the nodules at ``idx``."""
    assert pred.probabilities is not None
    return metrics.reliability(truth.invasiveness[idx], pred.probabilities[idx]).ece


def predominant_classes(proportions: np.ndarray) -> np.ndarray:
    """Index of the largest pattern per row (ties: the earlier pattern, as in pathology.py)."""
    return np.asarray(proportions).argmax(axis=1)


def pattern_auc(pred: Predictions, truth: NoduleSet, idx: np.ndarray) -> float:
    """Predominant-pattern macro AUC over the patterns with >= MIN_PATTERN_POSITIVES
    positives in the nodules at ``idx`` (score: the predicted proportion of the pattern)."""
    assert pred.proportions is not None
    return metrics.macro_auc(predominant_classes(truth.proportions[idx]), pred.proportions[idx],
                             min_positives=MIN_PATTERN_POSITIVES)


def proportion_mse(pred: Predictions, truth: NoduleSet, idx: np.ndarray) -> float:
    """Proportion MSE (fractions) of the nodules at ``idx``."""
    assert pred.proportions is not None
    return metrics.proportion_mse(truth.proportions[idx], pred.proportions[idx])


def predominant_accuracy(pred: Predictions, truth: NoduleSet, idx: np.ndarray) -> float:
    """How often the predicted predominant pattern is the true one."""
    assert pred.proportions is not None
    return float(np.mean(predominant_classes(pred.proportions[idx])
                         == predominant_classes(truth.proportions[idx])))


CLASS_METRICS: dict[str, Metric] = {
    "invasiveness_macro_auc": macro_auc, "iac_vs_rest_auc": iac_auc,
    "invasiveness_accuracy": accuracy, "ece": ece,
}
PATTERN_METRICS: dict[str, Metric] = {
    "predominant_macro_auc": pattern_auc, "proportion_mse": proportion_mse,
    "predominant_accuracy": predominant_accuracy,
}


def _scored(pred: Predictions, truth: NoduleSet) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the nodules each task can be scored on (labelled, and predicted)."""
    cls = np.flatnonzero(truth.has_class) if pred.probabilities is not None else np.array([], int)
    pat = (np.flatnonzero(truth.has_proportions) if pred.proportions is not None
           else np.array([], int))
    return cls, pat


def estimate(metric: Metric, pred: Predictions, truth: NoduleSet, idx: np.ndarray,
             resamples: int, seed: int) -> Estimate:
    """``metric`` on the nodules at ``idx`` with its bootstrap 95 % interval."""
    return metrics.bootstrap(lambda i: metric(pred, truth, idx[i]), len(idx), resamples, seed)


def paired_difference(metric: Metric, a: Predictions, b: Predictions, truth: NoduleSet,
                      resamples: int = 1000, seed: int = 0) -> Estimate:
    """``metric(a) - metric(b)`` on the same nodules, with a paired bootstrap 95 % interval:
    each resample draws one set of nodules and scores both models on it."""
    cls, pat = _scored(a, truth)
    idx = cls if metric in CLASS_METRICS.values() else pat
    return metrics.bootstrap(
        lambda i: metric(a, truth, idx[i]) - metric(b, truth, idx[i]), len(idx), resamples, seed
    )


def evaluate(pred: Predictions, truth: NoduleSet, resamples: int = 1000,
             seed: int = 0) -> dict[str, Any]:
    """All metrics of ``pred`` on ``truth`` as a JSON-able dict (estimates as
    ``{value, low, high}``)."""
    if len(truth) == 0:
        raise ValueError("nothing to evaluate: the set is empty")
    cls, pat = _scored(pred, truth)
    report: dict[str, Any] = {"nodules": len(truth), "with_class": int(cls.size),
                              "with_proportions": int(pat.size), "bootstrap_resamples": resamples}
    if cls.size:
        assert pred.probabilities is not None
        for name, metric in CLASS_METRICS.items():
            report[name] = estimate(metric, pred, truth, cls, resamples, seed).as_dict()
        report["class_auc"] = {
            c.value: estimate(_one_vs_rest(k), pred, truth, cls, resamples, seed).as_dict()
            for k, c in enumerate(INVASIVENESS)
        }
        report["class_counts"] = {c.value: int((truth.invasiveness[cls] == k).sum())
                                  for k, c in enumerate(INVASIVENESS)}
        report["confusion"] = metrics.confusion_matrix(
            truth.invasiveness[cls], pred.probabilities[cls].argmax(1), len(INVASIVENESS)
        ).tolist()
    if pat.size:
        assert pred.proportions is not None
        for name, metric in PATTERN_METRICS.items():
            report[name] = estimate(metric, pred, truth, pat, resamples, seed).as_dict()
        true_pre = predominant_classes(truth.proportions[pat])
        counts = np.bincount(true_pre, minlength=len(PATTERNS))
        report["predominant_counts"] = {p.value: int(n) for p, n in zip(PATTERNS, counts,
                                                                         strict=True)}
        report["patterns_in_macro_auc"] = [p.value for p, n in zip(PATTERNS, counts, strict=True)
                                           if n >= MIN_PATTERN_POSITIVES]
        report["predominant_auc"] = {
            p.value: estimate(_predominant_vs_rest(k), pred, truth, pat, resamples, seed).as_dict()
            for k, p in enumerate(PATTERNS) if counts[k] >= MIN_PATTERN_POSITIVES
        }
        report["predominant_confusion"] = metrics.confusion_matrix(
            true_pre, predominant_classes(pred.proportions[pat]), len(PATTERNS)).tolist()
    return report


def _one_vs_rest(k: int) -> Metric:
    def metric(pred: Predictions, truth: NoduleSet, idx: np.ndarray) -> float:
        assert pred.probabilities is not None
        return metrics.auc(truth.invasiveness[idx] == k, pred.probabilities[idx, k])
    return metric


def _predominant_vs_rest(k: int) -> Metric:
    """AUC of pattern ``k`` being predominant, scored by its predicted proportion (one term of
    the predominant-pattern macro AUC)."""
    def metric(pred: Predictions, truth: NoduleSet, idx: np.ndarray) -> float:
        assert pred.proportions is not None
        return metrics.auc(predominant_classes(truth.proportions[idx]) == k,
                           pred.proportions[idx, k])
    return metric


def write_evaluation(pred: Predictions, truth: NoduleSet, folder: Path, title: str,
                     resamples: int = 1000) -> dict[str, Any]:
    """Evaluate and write ``metrics.json``, ``metrics.md``, ``roc.png`` and
    ``reliability.png`` into ``folder``; return the report."""
    folder.mkdir(parents=True, exist_ok=True)
    report = evaluate(pred, truth, resamples)
    (folder / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    (folder / "metrics.md").write_text(markdown(report, title))
    cls, _ = _scored(pred, truth)
    if cls.size and pred.probabilities is not None:
        plot_roc(truth.invasiveness[cls], pred.probabilities[cls], folder / "roc.png", title)
        plot_reliability(truth.invasiveness[cls], pred.probabilities[cls],
                         folder / "reliability.png", title)
    return report


def fmt_estimate(value: dict[str, float], sign: str = "") -> str:
    """``value [low, high]`` with three decimals; "n/a" where the metric is undefined (a
    class or pattern without positives)."""
    if math.isnan(value["value"]):
        return "n/a"
    return (f"{value['value']:{sign}.3f} [{value['low']:{sign}.3f}, "
            f"{value['high']:{sign}.3f}]")


def markdown(report: dict[str, Any], title: str) -> str:
    """The report as a Markdown section (values with 95 % bootstrap intervals)."""
    lines = [f"## {title}", "",
             f"{report['nodules']} nodules ({report['with_class']} with an invasiveness label, "
             f"{report['with_proportions']} with proportions); 95 % intervals from "
             f"{report['bootstrap_resamples']} bootstrap resamples of the nodules.", "",
             "| metric | value [95 % CI] |", "|---|---|"]
    for name in (*CLASS_METRICS, *PATTERN_METRICS):
        if name in report:
            lines.append(f"| {name.replace('_', ' ')} | {fmt_estimate(report[name])} |")
    for cls, value in report.get("class_auc", {}).items():
        lines.append(f"| AUC {cls} vs rest | {fmt_estimate(value)} |")
    for pattern, value in report.get("predominant_auc", {}).items():
        lines.append(f"| AUC {pattern} predominant vs rest | {fmt_estimate(value)} |")
    if "confusion" in report:
        names = [c.value for c in INVASIVENESS]
        lines += ["", "Invasiveness confusion matrix (rows: truth, columns: predicted):", "",
                  "| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        lines += [f"| {n} | " + " | ".join(str(v) for v in row) + " |"
                  for n, row in zip(names, report["confusion"], strict=True)]
    if "patterns_in_macro_auc" in report:
        lines += ["", "Predominant-pattern macro AUC over: "
                  + ", ".join(report["patterns_in_macro_auc"])
                  + f" (patterns with >= {MIN_PATTERN_POSITIVES} positives; counts "
                  + ", ".join(f"{k} {v}" for k, v in report["predominant_counts"].items()) + ")."]
    return "\n".join(lines) + "\n"


def plot_roc(classes: np.ndarray, probabilities: np.ndarray, path: Path, title: str) -> None:
    """One-vs-rest ROC curve of each invasiveness class."""
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    for k, name in enumerate(INVASIVENESS):
        fpr, tpr = metrics.roc_curve(classes == k, probabilities[:, k])
        value = metrics.auc(classes == k, probabilities[:, k])
        ax.plot(fpr, tpr, label=f"{name.value} vs rest (AUC {value:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_reliability(classes: np.ndarray, probabilities: np.ndarray, path: Path,
                     title: str) -> None:
    """Reliability diagram of the most probable class, with the ECE."""
    rel = metrics.reliability(classes, probabilities)
    centres = (rel.edges[:-1] + rel.edges[1:]) / 2
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.subplots()
    filled = rel.counts > 0
    ax.bar(centres[filled], rel.accuracy[filled], width=0.09, alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    ax.set(xlabel="confidence (top class)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title=f"{title}\nECE {rel.ece:.3f}")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
