"""Study mode: DICOM validity (dciodvfy), geometry, ground truth, and the extra series."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.conftest import require_tool
from training.synthetic.study import TRUTH_FILE, generate_study
from training.synthetic.truth import StudyTruth


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, StudyTruth]:
    out = tmp_path_factory.mktemp("study")
    return out, generate_study(out, seed=4, acquisition="fast", n_nodules=2, extra_series=True)


def _series(folder: Path, number: int) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(p) for p in sorted(folder.glob(f"{number:03d}-*.dcm"))]


@pytest.mark.tools
def test_every_series_passes_dciodvfy(study: tuple[Path, StudyTruth]) -> None:
    dciodvfy = require_tool("dciodvfy")
    folder, _ = study
    files = sorted(folder.glob("*.dcm"))
    picked = [f for f in files if not f.name.startswith("002-")] + [
        f for f in files if f.name.startswith("002-")][::20]
    for path in picked:
        done = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
        report = done.stdout + done.stderr
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert not errors, (path.name, errors)
        assert "CTImage" in report, report


def test_thin_series_geometry_matches_the_truth(study: tuple[Path, StudyTruth]) -> None:
    folder, truth = study
    slices = _series(folder, 2)
    assert len(slices) == truth.slices
    first = slices[0]
    assert first.SOPClassUID == pydicom.uid.CTImageStorage
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert first.StudyInstanceUID == truth.study_uid == slices[-1].StudyInstanceUID
    assert first.SeriesInstanceUID == truth.series_uid
    assert first.ConvolutionKernel == "LUNG" and first.Rows == first.Columns == 256
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert float(first.PixelSpacing[0]) == pytest.approx(truth.acquisition.pixel_spacing_mm)
    z = np.array([float(s.ImagePositionPatient[2]) for s in slices])
    assert np.allclose(np.diff(z), truth.acquisition.slice_thickness_mm)
    assert len({s.SOPInstanceUID for s in slices}) == len(slices)
    assert all(pydicom.uid.UID(s.SOPInstanceUID).is_valid for s in slices)
    assert first.RescaleIntercept == -1024 and first.RescaleSlope == 1


def test_nodules_are_in_the_lungs_and_visible(study: tuple[Path, StudyTruth]) -> None:
    folder, truth = study
    slices = _series(folder, 2)
    volume = np.stack([s.pixel_array for s in slices]).astype(np.float32) - 1024
    spacing = truth.acquisition.pixel_spacing_mm
    origin = [float(v) for v in slices[0].ImagePositionPatient]
    assert len(truth.nodules) == 2
    for nodule in truth.nodules:
        x, y, z = nodule.centre_mm
        k = round((z - origin[2]) / truth.acquisition.slice_thickness_mm)
        j, i = round((y - origin[1]) / spacing), round((x - origin[0]) / spacing)
        centre = volume[k, j - 1:j + 2, i - 1:i + 2].mean()
        assert centre > -750, nodule  # denser than the parenchyma (-870..-830)
        assert nodule.labelled


def test_truth_json_and_extra_series(study: tuple[Path, StudyTruth]) -> None:
    folder, truth = study
    saved = json.loads((folder / TRUTH_FILE).read_text())
    assert saved["study_uid"] == truth.study_uid
    assert {s["kind"] for s in saved["series"]} == {"thin", "localizer", "thick"}
    assert len(saved["nodules"]) == 2 and saved["nodules"][0]["invasiveness"]
    localizer = _series(folder, 1)
    assert len(localizer) == 1 and "LOCALIZER" in localizer[0].ImageType
    thick = _series(folder, 3)
    assert thick and float(thick[0].SliceThickness) == pytest.approx(5.0)
    z = np.array([float(s.ImagePositionPatient[2]) for s in thick])
    assert np.allclose(np.diff(z), 5.0)
    assert len(thick) == int(truth.slices * truth.acquisition.slice_thickness_mm // 5)
    assert {s.SeriesInstanceUID for s in thick}.isdisjoint({truth.series_uid})
    assert {s.StudyInstanceUID for s in [*thick, *localizer]} == {truth.study_uid}
