"""``lungpath train report RUN_DIR``: the ablation table with paired differences, and plots.

Every model of a run was scored on the same held-out nodules, so models are compared by a
paired bootstrap of the metric difference (each resample scores both on the same nodules).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from model.pathology import INVASIVENESS
from training import metrics
from training.evaluate import (
    CLASS_METRICS,
    IAC,
    PATTERN_METRICS,
    Metric,
    Predictions,
    evaluate,
    fmt_estimate,
    paired_difference,
)
from training.recipe import ROLES
from training.run import load_predictions, load_set

#: (model, reference, why): the comparisons the ablation answers
COMPARISONS = (
    ("student", "teacher_a", "does KD help? (SD-MdaNet vs MdaNet without KD)"),
    ("student", "student_labelled_only", "does the unlabelled term help?"),
    ("student", "baseline", "SD-MdaNet vs the plain 3D CNN"),
    ("student", "teacher_b", "SD-MdaNet vs teacher B (invasiveness)"),
    ("student", "teacher_c", "SD-MdaNet vs teacher C (growth)"),
)
TABLE_METRICS = ("invasiveness_macro_auc", "iac_vs_rest_auc", "invasiveness_accuracy", "ece",
                 "predominant_macro_auc", "proportion_mse")
DIFF_METRICS = ("invasiveness_macro_auc", "iac_vs_rest_auc", "predominant_macro_auc",
                "proportion_mse")


def _roles_in(run_dir: Path, set_name: str) -> dict[str, Predictions]:
    folder = run_dir / "predictions" / set_name
    return {r.name: load_predictions(folder / f"{r.name}.npz") for r in ROLES
            if (folder / f"{r.name}.npz").is_file()}


def _cell(report: dict[str, Any], name: str) -> str:
    if name not in report:
        return "–"
    return fmt_estimate(report[name])


def _metric(name: str) -> Metric:
    return {**CLASS_METRICS, **PATTERN_METRICS}[name]


def _applies(name: str, a: Predictions, b: Predictions) -> bool:
    needs = "probabilities" if name in CLASS_METRICS else "proportions"
    return getattr(a, needs) is not None and getattr(b, needs) is not None


def ablation(run_dir: Path, set_name: str, resamples: int = 1000) -> dict[str, Any]:
    """Metrics of every role and the paired differences of ``COMPARISONS`` on one set."""
    truth = load_set(run_dir / "sets" / f"{set_name}.npz")
    preds = _roles_in(run_dir, set_name)
    result: dict[str, Any] = {"set": set_name, "nodules": len(truth), "models": {},
                              "differences": []}
    for name, pred in preds.items():
        result["models"][name] = evaluate(pred, truth, resamples)
    for a, b, why in COMPARISONS:
        if a not in preds or b not in preds:
            continue
        for name in DIFF_METRICS:
            if _applies(name, preds[a], preds[b]):
                diff = paired_difference(_metric(name), preds[a], preds[b], truth, resamples)
                result["differences"].append({"model": a, "reference": b, "question": why,
                                              "metric": name, **diff.as_dict()})
    return result


def markdown(results: list[dict[str, Any]], info: dict[str, Any]) -> str:
    """The ablation tables of every set as Markdown."""
    titles = {r.name: r.title for r in ROLES}
    lines = ["# Ablation", "",
             f"Split: {info.get('split')}; labelled training nodules: "
             f"{info.get('labelled_train')}. Values with 95 % bootstrap intervals; "
             "differences by paired bootstrap on the same nodules. Proportion MSE and ECE: "
             "lower is better.", ""]
    for result in results:
        lines += [f"## Set `{result['set']}` ({result['nodules']} nodules)", "",
                  "| model | " + " | ".join(m.replace("_", " ") for m in TABLE_METRICS) + " |",
                  "|---" * (len(TABLE_METRICS) + 1) + "|"]
        for name, report in result["models"].items():
            cells = " | ".join(_cell(report, m) for m in TABLE_METRICS)
            lines.append(f"| {titles[name]} | {cells} |")
        if result["differences"]:
            lines += ["", "| comparison | metric | difference [95 % CI] |", "|---|---|---|"]
            for d in result["differences"]:
                lines.append(f"| {titles[d['model']]} − {titles[d['reference']]} "
                             f"| {d['metric'].replace('_', ' ')} "
                             f"| {fmt_estimate(d, '+')} |")
        lines.append("")
    seconds = info.get("seconds", {})
    if seconds:
        lines += ["Training time per model (s): "
                  + ", ".join(f"{k} {v}" for k, v in seconds.items()) + ".", ""]
    return "\n".join(lines)


def plot_iac_roc(run_dir: Path, set_name: str, path: Path) -> None:
    """IAC-vs-rest ROC curve of every model with an invasiveness output."""
    truth = load_set(run_dir / "sets" / f"{set_name}.npz")
    keep = truth.has_class
    titles = {r.name: r.title for r in ROLES}
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    for name, pred in _roles_in(run_dir, set_name).items():
        if pred.probabilities is None:
            continue
        labels = truth.invasiveness[keep] == IAC
        scores = pred.probabilities[keep, IAC]
        fpr, tpr = metrics.roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{titles[name]} ({metrics.auc(labels, scores):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate",
           title=f"{INVASIVENESS[IAC].value} vs rest, set '{set_name}'")
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def plot_training_curves(run_dir: Path, path: Path) -> None:
    """Validation score against the epoch for every role trained in the run."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for role in ROLES:
        log = run_dir / "models" / role.name / "log.csv"
        if not log.is_file():
            continue
        with log.open() as f:
            rows = list(csv.DictReader(f))
        ax.plot([int(r["epoch"]) for r in rows], [float(r["val_score"]) for r in rows],
                marker="o", label=role.title)
    ax.set(xlabel="epoch", ylabel="validation score (macro AUC − 10 × MSE)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_report(run_dir: Path, resamples: int = 1000) -> Path:
    """Write ``report.md``, ``report.json`` and the PNGs into ``run_dir``; return report.md."""
    info = json.loads((run_dir / "run.json").read_text())
    sets = sorted(p.stem for p in (run_dir / "sets").glob("*.npz"))
    sets.sort(key=lambda s: s != "test")
    results = [ablation(run_dir, s, resamples) for s in sets]
    (run_dir / "report.json").write_text(json.dumps(results, indent=2) + "\n")
    for s in sets:
        plot_iac_roc(run_dir, s, run_dir / f"roc_iac_{s}.png")
    plot_training_curves(run_dir, run_dir / "training_curves.png")
    text = markdown(results, info)
    text += "\n" + "\n".join(f"![IAC ROC, {s}](roc_iac_{s}.png)" for s in sets)
    text += "\n\n![training curves](training_curves.png)\n"
    path = run_dir / "report.md"
    path.write_text(text)
    return path

