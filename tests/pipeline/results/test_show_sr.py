"""``lungpath show-sr``: a table per nodule; exit 1 with a message for other files."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from pydicom import Dataset

from lungpath.cli import main
from pipeline.results import AnalysisStatus, build_sc, build_sr
from tests.pipeline.results.conftest import save
from tests.pipeline.results.synthetic import report


def test_prints_a_table_per_nodule(series: list[Dataset], tmp_path: Path) -> None:
    analysis = report(series, 3)
    path = save(build_sr(analysis), tmp_path / "sr.dcm")
    result = CliRunner().invoke(main, ["show-sr", str(path)])
    assert result.exit_code == 0, result.output
    assert "COMPLETED" in result.output
    for finding in analysis.findings:
        p = finding.prediction
        block = result.output.split(f"nodule-{finding.number}\n")[1].split("\n\n")[0]
        assert f"{finding.measurements.laterality.value} lung" in block
        assert f"{100 * p.probabilities[2]:.2f} %" in block
        assert f"IASLC grade            {p.grade.value}" in block
        assert f"invasiveness           {p.invasiveness.value}" in block


def test_shows_the_reason_of_a_study_not_analysable(
    series: list[Dataset], tmp_path: Path
) -> None:
    analysis = report(series, 0, AnalysisStatus.NOT_ANALYZABLE, reason="no axial CT series")
    path = save(build_sr(analysis), tmp_path / "sr.dcm")
    result = CliRunner().invoke(main, ["show-sr", str(path)])
    assert result.exit_code == 0, result.output
    assert "NOT_ANALYZABLE" in result.output
    assert "reason       no axial CT series" in result.output
    assert "no nodules" in result.output


def test_other_files_exit_1_with_a_message(series: list[Dataset], tmp_path: Path) -> None:
    sc = save(build_sc(report(series, 1))[0], tmp_path / "sc.dcm")
    text = tmp_path / "notes.txt"
    text.write_text("not DICOM")
    whole = save(build_sr(report(series, 3)), tmp_path / "sr.dcm").read_bytes()
    cases = [(sc, "not a lungpath result SR"), (text, "not a readable DICOM")]
    for fraction in (0.3, 0.5, 0.7, 0.9):
        truncated = tmp_path / f"truncated-{fraction}.dcm"
        truncated.write_bytes(whole[: int(len(whole) * fraction)])
        cases.append((truncated, "not a lungpath result SR"))
    for path, message in cases:
        result = CliRunner().invoke(main, ["show-sr", str(path)])
        assert result.exit_code == 1, (path.name, result.exception)
        assert message in result.output
        assert "Traceback" not in result.output
