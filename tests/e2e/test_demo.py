"""``lungpath demo`` as a user runs it: a child process, its output, the folder it leaves."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from lungpath.dispatch import WEIGHTS_DIR
from pipeline.results import read_findings
from tests.conftest import REPO_ROOT
from tests.integration.orchestration import tiny_checkpoint

__all__ = ["tiny_checkpoint"]

pytestmark = pytest.mark.slow


def demo(tmp_path: Path, checkpoint: Path | None, *args: str,
         timeout: float = 400) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNGPATH_")
           or k.startswith("LUNGPATH_TEST_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    if checkpoint is not None:
        env["LUNGPATH_CHECKPOINT"] = str(checkpoint)
    return subprocess.run([sys.executable, "-m", "lungpath", "demo", *args], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def checkpoint(request: pytest.FixtureRequest) -> Path | None:
    """The shipped weights when the checkout has them (what ``make demo`` runs), else a tiny
    untrained checkpoint with the same analysis path."""
    if sorted(WEIGHTS_DIR.glob("*.pt")):
        return None
    path: Path = request.getfixturevalue("tiny_checkpoint")
    return path


def test_demo_prints_findings_from_the_sr_truth_and_audit_trail(
        tmp_path: Path, checkpoint: Path | None) -> None:
    out = tmp_path / "demo"
    run = demo(tmp_path, checkpoint, "--out", str(out))
    assert run.returncode == 0, run.stdout + run.stderr
    text = run.stdout
    assert "research mode is on" in text and "trained on synthetic" in text
    # the progress lines poll the study's state and may miss a short one; the printed audit
    # trail has every transition
    for state in ("RECEIVING", "COMPLETE", "QUEUED", "PROCESSING", "DONE"):
        assert f"study.{state.lower()}" in text
    assert "study DONE" in text
    assert "lungpath result SR (contract 1): COMPLETED" in text
    assert "the SR next to the synthetic truth" in text
    assert "synthetic nodules found" in text
    assert "instance.received" in text and "delivery.sent" in text

    names = sorted(p.name for p in (out / "results").iterdir())
    assert {"SR-1.dcm", "SEG-1.dcm", "SC-1.dcm"} <= set(names), names
    report = read_findings(pydicom.dcmread(out / "results" / "SR-1.dcm"))
    truth = json.loads((out / "study" / "truth.json").read_text())
    assert report.study_instance_uid == truth["study_uid"]
    assert "synthetic data" in report.use_statement
    for nodule in report.nodules:  # the printed table is the SR's
        assert f"nodule-{nodule.number}\n" in text
        assert nodule.tracking_uid in text


def test_demo_refuses_a_folder_with_something_in_it(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    run = demo(tmp_path, None, "--out", "taken", timeout=120)
    assert run.returncode == 1
    assert "choose a new or empty folder" in run.stderr


def test_demo_with_a_study_folder_without_dicom_says_so(tmp_path: Path) -> None:
    (tmp_path / "notdicom").mkdir()
    (tmp_path / "notdicom" / "a.txt").write_text("not DICOM")
    run = demo(tmp_path, None, "--out", "out", "--study", "notdicom", timeout=120)
    assert run.returncode == 1
    assert "no DICOM instances found" in run.stderr
    assert not (tmp_path / "out" / "node.log").exists()  # nothing was started
