"""Crop sources: a nodule given by a SEG segment, series lookup in a study folder."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from tests.pipeline.dicom_factory import ct_series, write_series
from training.sources import SourceError, seg_centre, series_paths

SPACING = (0.8, 0.8, 2.0)
ORIGIN = (-10.0, -20.0, -100.0)


def _study(folder: Path) -> tuple[list, Path]:
    hu = np.full((6, 16, 16), -800, dtype=np.int16)
    series = ct_series(hu, spacing=SPACING, origin=ORIGIN)
    for ds in series:
        ds.StudyID, ds.AccessionNumber, ds.StudyDate, ds.StudyTime = "1", "A1", "20260101", "120000"
        ds.PatientBirthDate, ds.PatientSex, ds.ReferringPhysicianName = "19600101", "F", ""
        ds.Manufacturer, ds.SeriesNumber = "Scanner Co", 2
    write_series(series, folder / "ct")
    return series, folder / "ct"


def test_seg_centre_is_the_segment_centroid(tmp_path: Path) -> None:
    series, _ = _study(tmp_path)
    mask = np.zeros((6, 16, 16), dtype=np.uint8)
    mask[2:4, 5:7, 8:12] = 1  # slices 2-3, rows 5-6, columns 8-11
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="Nodule",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=series, pixel_array=mask,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=generate_uid(),
        series_number=20, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer="Reader Co", manufacturer_model_name="Reader", software_versions="1",
        device_serial_number="1",
    )
    path = tmp_path / "seg.dcm"
    seg.save_as(path)
    x, y, z = seg_centre(path, 1)
    assert x == pytest.approx(ORIGIN[0] + 9.5 * SPACING[0])
    assert y == pytest.approx(ORIGIN[1] + 5.5 * SPACING[1])
    assert z == pytest.approx(ORIGIN[2] + 2.5 * SPACING[2])
    with pytest.raises(SourceError, match=r"segment 2 .* is empty or absent"):
        seg_centre(path, 2)
    with pytest.raises(SourceError, match="cannot read segmentation"):
        seg_centre(tmp_path / "ct" / "absent.dcm", 1)


def test_series_lookup_by_uid_and_refusal_of_ambiguity(tmp_path: Path) -> None:
    series, folder = _study(tmp_path)
    uid = str(series[0].SeriesInstanceUID)
    assert len(series_paths(folder, None)) == 6
    assert len(series_paths(tmp_path, uid)) == 6
    with pytest.raises(SourceError, match=r"no series 1\.2\.3"):
        series_paths(tmp_path, "1.2.3")
    other = ct_series(np.zeros((2, 8, 8), np.int16))
    write_series(other, tmp_path / "other")
    with pytest.raises(SourceError, match="holds 2 series"):
        series_paths(tmp_path, None)
