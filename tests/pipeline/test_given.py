"""Nodules given in the study (a foreign SEG or TID 1500 SR) replace detection."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from pipeline.analysis_input import given_nodules
from pipeline.nodules import measure_given, study_nodules
from pipeline.volume import Volume, assemble_volume
from tests.pipeline.chest import Ball, patch
from tests.pipeline.dicom_factory import ct_series
from tests.pipeline.test_measure import lungs_of

CENTRE = (-50.0, 5.0, 10.0)
NODULE = Ball((-45.0, 8.0, 12.0), 10.0, -580.0)


@pytest.fixture(scope="module")
def series() -> list:
    image = patch([NODULE], centre=CENTRE)
    datasets = ct_series(sitk.GetArrayFromImage(image), spacing=image.GetSpacing(),
                         origin=image.GetOrigin())
    for ds in datasets:
        ds.StudyID, ds.AccessionNumber, ds.StudyDate, ds.StudyTime = "1", "A1", "20260101", "1200"
        ds.PatientBirthDate, ds.PatientSex, ds.ReferringPhysicianName = "19600101", "F", ""
        ds.Manufacturer, ds.SeriesNumber = "Scanner Co", 2
    return datasets


@pytest.fixture(scope="module")
def volume(series: list) -> Volume:
    return assemble_volume(series)


def _seg(
    series: list, volume: Volume, manufacturer: str, label: str = "Nodule"
) -> hd.seg.Segmentation:
    mask = np.zeros(volume.voxels.shape, dtype=bool)
    z, y, x = np.indices(mask.shape)
    centre = np.array(volume.image.TransformPhysicalPointToContinuousIndex(NODULE.centre))
    spacing = np.array(volume.image.GetSpacing())
    distance = np.sqrt(sum(((a - c) * s) ** 2
                           for a, c, s in zip((x, y, z), centre, spacing, strict=True)))
    mask[distance <= NODULE.diameter / 2] = True
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    return hd.seg.Segmentation(
        source_images=series, pixel_array=mask.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=generate_uid(),
        series_number=20, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer=manufacturer, manufacturer_model_name="Reader", software_versions="1",
        device_serial_number="1",
    )


def _sr(series: list, volume: Volume, manufacturer: str) -> hd.sr.Comprehensive3DSR:
    k = round(volume.image.TransformPhysicalPointToContinuousIndex(NODULE.centre)[2])
    source = next(ds for ds in series if ds.SOPInstanceUID == volume.sop_instance_uids[k])
    col, row, _ = volume.image.TransformPhysicalPointToContinuousIndex(NODULE.centre)
    angles = np.linspace(0, 2 * np.pi, 17)[:-1]
    radius_px = NODULE.diameter / 2 / volume.image.GetSpacing()[0]
    polygon = np.stack([col + 0.5 + radius_px * np.cos(angles),
                        row + 0.5 + radius_px * np.sin(angles)], axis=1)
    polygon = np.vstack([polygon, polygon[:1]])
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=polygon,
        source_image=hd.sr.SourceImageForRegion.from_source_image(source),
    )
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="n1"),
        referenced_region=region, finding_type=codes.SCT.Nodule,
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[group],
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[source], content=report, series_number=30, series_instance_uid=generate_uid(),
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=manufacturer,
    )


def test_a_foreign_seg_gives_its_nodule(series: list, volume: Volume) -> None:
    seg = _seg(series, volume, "Workstation Co")
    given = given_nodules([*series, seg], series[0].FrameOfReferenceUID, volume)
    assert len(given) == 1 and given[0].source.startswith("SEG")
    assert np.linalg.norm(np.subtract(given[0].centre_mm, NODULE.centre)) < 1.0
    assert given[0].diameter_mm == pytest.approx(NODULE.diameter, abs=1.0)
    nodules = measure_given(volume, lungs_of(volume.image), given)
    assert len(nodules) == 1 and nodules[0].source == given[0].source
    assert nodules[0].measurements.equivalent_diameter_mm == pytest.approx(10.0, abs=1.0)


def test_given_nodules_replace_detection(series: list, volume: Volume) -> None:
    lungs, frame = lungs_of(volume.image), series[0].FrameOfReferenceUID
    seg = _seg(series, volume, "Workstation Co")
    nodules, reason = study_nodules(volume, lungs, [*series, seg], frame)
    assert len(nodules) == 1 and nodules[0].source.startswith("SEG")
    assert reason.startswith("1 of 1 given nodules measured (SEG ")
    detected, reason = study_nodules(volume, lungs, series, frame)
    assert reason == f"{len(detected)} nodules detected"
    assert all(n.source == "detected" for n in detected)


def test_a_foreign_sr_gives_its_regions(series: list, volume: Volume) -> None:
    sr = _sr(series, volume, "Workstation Co")
    given = given_nodules([sr], series[0].FrameOfReferenceUID, volume)
    assert len(given) == 1 and given[0].source.startswith("SR")
    assert np.linalg.norm(np.subtract(given[0].centre_mm, NODULE.centre)) < 1.5
    assert given[0].diameter_mm == pytest.approx(NODULE.diameter, abs=1.0)


def test_own_objects_other_frames_and_other_segments_are_ignored(
    series: list, volume: Volume
) -> None:
    frame = series[0].FrameOfReferenceUID
    assert given_nodules([_seg(series, volume, "lungpath")], frame, volume) == []
    assert given_nodules([_sr(series, volume, "lungpath")], frame, volume) == []
    assert given_nodules([_seg(series, volume, "Other")], "1.2.3.4", volume) == []
    organ = _seg(series, volume, "Other", label="Liver")
    organ.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue = "10200004"
    organ.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeMeaning = "Liver"
    assert given_nodules([organ], frame, volume) == []
