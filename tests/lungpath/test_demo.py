"""The demo's parts that need no processes: the SR-to-truth comparison, the folded audit
trail, and the refusals that end the demo before anything starts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from lungpath.demo import DemoError, DemoOptions, audit_trail, child_env, read_study
from lungpath.demo_truth import compare_with_truth, outline_centre
from model.pathology import Grade, Invasiveness, Pattern
from pipeline.findings import Laterality
from pipeline.results import AnalysisStatus, ParsedNodule, ParsedReport


def image(uid: str, position: tuple[float, float, float]) -> Dataset:
    ds = Dataset()
    ds.SOPInstanceUID = uid
    ds.ImagePositionPatient = list(position)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.5, 2.0]  # between rows, between columns
    return ds


def nodule(number: int, image_uid: str, outline: tuple[tuple[float, float], ...],
           invasiveness: Invasiveness = Invasiveness.IAC) -> ParsedNodule:
    return ParsedNodule(
        number=number, tracking_uid=generate_uid(), laterality=Laterality.RIGHT,
        outline_image_uid=image_uid, outline=outline, long_axis_mm=10.0, short_axis_mm=8.0,
        volume_mm3=400.0, solid_long_axis_mm=6.0, ctr=0.6, mean_hu=-300.0,
        probabilities_percent=(10.0, 20.0, 70.0), proportions=(10, 50, 10, 10, 10, 5, 5),
        uncertainty=12.5, invasiveness=invasiveness, predominant=Pattern.ACINAR,
        grade=Grade.G2, algorithm_name="SD-MdaNet", algorithm_version="1",
        checkpoint_sha256="0" * 64)


def report(*nodules: ParsedNodule) -> ParsedReport:
    return ParsedReport(contract_version="1", status=AnalysisStatus.COMPLETED, reason="",
                        series_note="", use_statement="", study_instance_uid="1.2",
                        sop_instance_uid="1.3", predecessor_uids=(), nodules=nodules)


def truth_nodule(centre: tuple[float, float, float], invasiveness: str) -> dict[str, object]:
    return {"centre_x_mm": centre[0], "centre_y_mm": centre[1], "centre_z_mm": centre[2],
            "diameter_mm": 12.0, "core_diameter_mm": 5.0, "rendered_volume_mm3": 420.0,
            "invasiveness": invasiveness, "predominant": "acinar", "grade": "G2",
            "lepidic": 10, "acinar": 60, "papillary": 10, "micropapillary": 10, "solid": 10,
            "cribriform": 0, "complex_glandular": 0}


def test_outline_centre_uses_position_orientation_and_spacing_per_axis() -> None:
    ds = image("1.1", (-100.0, -50.0, 30.0))
    square = ((10.0, 4.0), (12.0, 4.0), (12.0, 6.0), (10.0, 6.0))  # (column, row)
    # column 11 x 2.0 mm along x, row 5 x 0.5 mm along y
    assert outline_centre(nodule(1, "1.1", square), {"1.1": ds}) == (-78.0, -47.5, 30.0)
    assert outline_centre(nodule(1, "9.9", square), {"1.1": ds}) is None


def test_comparison_matches_by_place_and_lists_what_either_side_lacks() -> None:
    ds = image("1.1", (0.0, 0.0, 10.0))
    found = nodule(1, "1.1", ((10.0, 10.0), (12.0, 10.0), (12.0, 12.0), (10.0, 12.0)))
    elsewhere = nodule(2, "1.1", ((200.0, 200.0), (202.0, 200.0), (202.0, 202.0)))
    truth = {"nodules": [truth_nodule((90.0, 90.0, 0.0), "MIA"),
                         truth_nodule((22.0, 5.5, 10.0), "IAC")]}
    text = compare_with_truth(report(found, elsewhere), truth, [ds])
    assert "nodule-1 = synthetic nodule 2 (centres 0.0 mm apart)" in text
    assert "nodule-2: no synthetic nodule at its place" in text
    assert "synthetic nodule 1 at (90, 90, 0) mm, 12.0 mm: not in the SR" in text
    assert "1 of 2 synthetic nodules found; invasiveness agrees for 1 of 1" in text
    row = next(line for line in text.splitlines() if line.strip().startswith("acinar %"))
    assert row.split()[-2:] == ["50", "60"]


def test_audit_trail_folds_runs_oldest_first_and_cuts_the_detail() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    newest_first = [
        {"actor": "worker", "event_type": "study.done", "outcome": "success",
         "occurred_at": at, "detail": {"note": "x" * 100}},
        *[{"actor": "scp_node", "event_type": "instance.received", "outcome": "success",
           "occurred_at": at, "detail": {"n": i}} for i in range(3)],
        {"actor": "scp_node", "event_type": "study.receiving", "outcome": "success",
         "occurred_at": at, "detail": None},
    ]
    rows = audit_trail(newest_first, detail_width=20)
    assert [(r["event_type"], r["count"]) for r in rows] == [
        ("study.receiving", 1), ("instance.received", 3), ("study.done", 1)]
    assert rows[0]["detail"] == ""
    assert len(rows[2]["detail"]) == 20 and rows[2]["detail"].endswith("...")


def test_a_folder_in_use_or_without_one_study_is_refused(tmp_path: Path) -> None:
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(DemoError, match="new or empty folder"):
        DemoOptions(out=tmp_path / "used")
    with pytest.raises(DemoError, match="timeout"):
        DemoOptions(out=tmp_path / "new", timeout_s=0)
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "truth.json").write_text(json.dumps({}))
    for index in range(2):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", generate_uid()
        ds.StudyInstanceUID = generate_uid()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(folder / f"{index}.dcm", enforce_file_format=True)
    with pytest.raises(DemoError, match="holds 2 studies"):
        read_study(folder)


def test_children_get_the_demo_settings_not_the_operators(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUNGPATH_DATABASE_URL", "postgresql://prod/lungpath")
    monkeypatch.setenv("LUNGPATH_TEST_REQUIRE_SERVICES", "1")
    env = child_env({"port": 1234, "research_mode": True,
                     "destinations": [{"ae_title": "P", "host": "h", "port": 1}]})
    assert "LUNGPATH_DATABASE_URL" not in env
    assert env["LUNGPATH_TEST_REQUIRE_SERVICES"] == "1"
    assert env["LUNGPATH_PORT"] == "1234" and env["LUNGPATH_RESEARCH_MODE"] == "true"
    assert json.loads(env["LUNGPATH_DESTINATIONS"])[0]["ae_title"] == "P"
