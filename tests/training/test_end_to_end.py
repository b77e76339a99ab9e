"""End to end on real files: synthetic DICOM studies -> manifest -> the whole recipe ->
``lungpath evaluate`` and ``lungpath predict``; and the smoke budget of ``train synth``.

The networks, crops and epochs are the ``smoke`` budget's (seconds, not accuracy): these
tests prove the plumbing, the run folder's contents and the commands' outputs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from lungpath.cli import main
from model.checkpoint import IntendedUse, load_checkpoint
from model.pathology import PATTERNS
from training.batch import PREDICTION_COLUMNS
from training.manifest_run import train_manifest
from training.recipe import ROLE_NAMES
from training.synth_run import BUDGETS, recipe_config
from training.synthetic.cohort import generate_studies

pytestmark = pytest.mark.slow


def _manifest(studies: Path, path: Path) -> int:
    """A manifest of every nodule of the studies; the last nodule is left unlabelled."""
    with (studies / "nodules.csv").open() as f:
        nodules = list(csv.DictReader(f))
    with (studies / "studies.csv").open() as f:
        patients = {row["study_uid"]: row["patient_id"] for row in csv.DictReader(f)}
    columns = ["patient_id", "series_dir", "centre_x_mm", "centre_y_mm", "centre_z_mm",
               "invasiveness", *(p.value for p in PATTERNS)]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i, n in enumerate(nodules):
            labels = [n["invasiveness"], *(n[p.value] for p in PATTERNS)]
            if i == len(nodules) - 1:
                labels = [""] * len(labels)
            writer.writerow([patients[n["study_uid"]], f"{studies.name}/{n['folder']}",
                             n["centre_x_mm"], n["centre_y_mm"], n["centre_z_mm"], *labels])
    return len(nodules)


@pytest.fixture(scope="module")
def manifest_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    root = tmp_path_factory.mktemp("manifest")
    generate_studies(root / "studies", 8, seed=5, acquisition="fast", workers=2)
    manifest = root / "manifest.csv"
    count = _manifest(root / "studies", manifest)
    config = recipe_config(BUDGETS["smoke"], seed=0, threads=2)
    train_manifest(manifest, root / "run", config, cache_dir=root / "cache", folds=2,
                   resamples=100)
    return root, manifest, count


def test_manifest_run_trains_every_role(manifest_run: tuple[Path, Path, int]) -> None:
    root, _, count = manifest_run
    run = root / "run"
    assert count >= 6  # the seed gives enough nodules for two folds with validation
    for role in ROLE_NAMES:
        checkpoint = load_checkpoint(run / "checkpoints" / f"{role}.pt").checkpoint
        assert checkpoint.intended_use is IntendedUse.RESEARCH
        assert checkpoint.crop_spec == BUDGETS["smoke"].crop
        log = (run / "models" / role / "log.csv").read_text().splitlines()
        assert log[0].startswith("epoch,train_loss,val_score")
        assert (run / "models" / role / "curves.png").stat().st_size > 0
    report = (run / "report.md").read_text()
    assert "SD-MdaNet without the unlabelled term" in report
    assert "does KD help" in (run / "report.json").read_text()
    assert len(list((root / "cache").glob("*.npy"))) == count


def test_evaluate_and_predict_commands(manifest_run: tuple[Path, Path, int],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    root, manifest, count = manifest_run
    monkeypatch.setenv("LUNGPATH_VAR_DIR", str(root / "var"))
    student = root / "run" / "checkpoints" / "student.pt"
    runner = CliRunner()
    out = root / "evaluation"
    result = runner.invoke(main, ["evaluate", str(student), str(manifest), "--out", str(out),
                                  "--compare", str(root / "run" / "checkpoints" /
                                                   "teacher_a.pt"), "--resamples", "100"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "metrics.json").read_text())
    assert report["nodules"] == count and report["with_class"] == count - 1
    assert 0 <= report["invasiveness_macro_auc"]["value"] <= 1
    assert "paired_difference" in report
    assert (out / "roc.png").is_file() and (out / "reliability.png").is_file()
    assert "invasiveness macro auc" in result.output

    csv_path = root / "predictions.csv"
    result = runner.invoke(main, ["predict", str(student), str(manifest), "--out",
                                  str(csv_path)])
    assert result.exit_code == 0, result.output
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == count and tuple(rows[0]) == PREDICTION_COLUMNS
    for row in rows:
        assert sum(int(row[f"{p.value}_percent"]) for p in PATTERNS) == 100
        assert abs(sum(float(row[f"p_{c}"]) for c in ("AIS", "MIA", "IAC")) - 1) < 1e-3


def test_train_report_rewrites_the_report(manifest_run: tuple[Path, Path, int]) -> None:
    run = manifest_run[0] / "run"
    (run / "report.md").unlink()
    result = CliRunner().invoke(main, ["train", "report", str(run)])
    assert result.exit_code == 0, result.output
    assert (run / "report.md").is_file()


def test_bad_manifest_ends_with_its_problems(tmp_path: Path, clean_env: Path) -> None:
    manifest = tmp_path / "bad.csv"
    manifest.write_text("patient_id,series_dir,centre_x_mm,centre_y_mm,centre_z_mm\n"
                        "p1,missing,1,2,3\n")
    result = CliRunner().invoke(main, ["train", "manifest", str(manifest)])
    assert result.exit_code == 1
    assert "line 2, column 'series_dir': folder" in result.output


def test_train_synth_smoke_budget(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "synth", "--budget", "smoke", "--out", str(out),
                                       "--workers", "2", "--threads", "2"])
    assert result.exit_code == 0, result.output
    assert f"student:      {out / 'checkpoints' / 'student.pt'}" in result.output
    info = json.loads((out / "run.json").read_text())
    assert set(info["seconds"]) >= {*ROLE_NAMES, "generate", "total"}
    assert set(info["sets"]) == {"test", "fast"}
    student = load_checkpoint(out / "checkpoints" / "student.pt").checkpoint
    assert student.intended_use is IntendedUse.RESEARCH_SYNTHETIC
    assert "Set `fast`" in (out / "report.md").read_text()
