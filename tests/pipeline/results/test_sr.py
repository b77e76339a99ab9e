"""The result SR: contract v1 content, validity (dciodvfy, dsrdump) and the round trip
findings -> SR -> parsed back."""

from __future__ import annotations

import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom import Dataset
from pydicom.uid import Comprehensive3DSRStorage

from pipeline.findings import NoduleFinding
from pipeline.results import (
    SYNTHETIC_DISCLAIMER,
    AnalysisReport,
    AnalysisStatus,
    ParsedNodule,
    ParsedReport,
    PredecessorSR,
    build_sr,
    read_findings,
)
from tests.conftest import require_tool
from tests.pipeline.results.conftest import assert_valid, save
from tests.pipeline.results.synthetic import PIXEL_SPACING, SLICE_STEP, report

NOT_ANALYZABLE_REASON = "slice thickness 5.0 mm exceeds the 2.5 mm limit"


def _variants(series: list[Dataset]) -> dict[str, AnalysisReport]:
    first = report(series, 1)
    return {
        "0 nodules": report(series, 0),
        "1 nodule": first,
        "3 nodules": report(series, 3),
        "not analyzable": report(series, 0, AnalysisStatus.NOT_ANALYZABLE,
                                 reason=NOT_ANALYZABLE_REASON),
        "revision 2": report(series, 3, predecessor=PredecessorSR(
            sop_instance_uid=first.uids.sr_instance, sop_class_uid=Comprehensive3DSRStorage,
            series_instance_uid=first.uids.sr_series)),
    }


VARIANTS = ["0 nodules", "1 nodule", "3 nodules", "not analyzable", "revision 2"]


def _written(series: list[Dataset], variant: str, tmp_path: Path) -> tuple[AnalysisReport, Path]:
    analysis = _variants(series)[variant]
    return analysis, save(build_sr(analysis), tmp_path / "sr.dcm")


def _assert_same_nodule(parsed: ParsedNodule, finding: NoduleFinding, tracking_uid: str) -> None:
    m, p = finding.measurements, finding.prediction
    assert parsed.number == finding.number
    assert parsed.tracking_uid == tracking_uid
    assert parsed.laterality is m.laterality
    assert parsed.outline_image_uid == m.outline_image_uid
    np.testing.assert_allclose(parsed.outline, m.outline, atol=1e-4)
    # NUM values are written rounded for display: 0.01 mm, 0.1 mm3, 0.001, 0.1 HU, 0.01 %
    assert parsed.long_axis_mm == pytest.approx(m.long_axis_mm, abs=0.005)
    assert parsed.short_axis_mm == pytest.approx(m.short_axis_mm, abs=0.005)
    assert parsed.volume_mm3 == pytest.approx(m.volume_mm3, abs=0.05)
    assert parsed.solid_long_axis_mm == pytest.approx(m.solid_long_axis_mm, abs=0.005)
    assert parsed.ctr == pytest.approx(m.ctr, abs=0.0005)
    assert parsed.mean_hu == pytest.approx(m.mean_hu, abs=0.05)
    np.testing.assert_allclose(parsed.probabilities_percent,
                               [100 * v for v in p.probabilities], atol=0.005)
    assert parsed.proportions == p.proportions
    assert parsed.uncertainty == pytest.approx(p.uncertainty, abs=0.005)
    assert parsed.invasiveness is p.invasiveness
    assert parsed.predominant is p.predominant
    assert parsed.grade is p.grade


def _assert_same_report(parsed: ParsedReport, analysis: AnalysisReport) -> None:
    assert parsed.contract_version == "1"
    assert parsed.status is analysis.status
    assert parsed.reason == analysis.reason
    assert parsed.series_note == analysis.series_note
    assert parsed.use_statement == analysis.algorithm.use_statement
    assert parsed.study_instance_uid == analysis.study_instance_uid
    assert parsed.sop_instance_uid == analysis.uids.sr_instance
    expected_predecessors = () if analysis.predecessor is None else (
        analysis.predecessor.sop_instance_uid,)
    assert parsed.predecessor_uids == expected_predecessors
    assert len(parsed.nodules) == len(analysis.findings)
    for nodule, finding, uid in zip(parsed.nodules, analysis.findings, analysis.uids.tracking,
                                    strict=True):
        _assert_same_nodule(nodule, finding, uid)
        assert (nodule.algorithm_name, nodule.algorithm_version, nodule.checkpoint_sha256) == (
            analysis.algorithm.name, analysis.algorithm.version,
            analysis.algorithm.checkpoint_sha256)


@pytest.mark.parametrize("variant", VARIANTS)
def test_round_trip_gives_the_same_findings(
    series: list[Dataset], variant: str, tmp_path: Path
) -> None:
    analysis, path = _written(series, variant, tmp_path)
    _assert_same_report(read_findings(pydicom.dcmread(path)), analysis)


@pytest.mark.tools
@pytest.mark.parametrize("variant", VARIANTS)
def test_sr_passes_dciodvfy_and_renders_with_dsrdump(
    series: list[Dataset], variant: str, tmp_path: Path
) -> None:
    analysis, path = _written(series, variant, tmp_path)
    assert_valid(path)
    done = subprocess.run([require_tool("dsrdump"), "-Ee", str(path)], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "Imaging Measurement Report" in done.stdout
    assert f"({analysis.status.value},99LUNGPATH" in done.stdout
    assert done.stdout.count('"Tracking Identifier")="nodule-') == len(analysis.findings)


def test_sr_header_follows_the_contract(series: list[Dataset]) -> None:
    analysis = _variants(series)["revision 2"]
    sr = build_sr(analysis)
    assert sr.SOPClassUID == Comprehensive3DSRStorage
    assert sr.Modality == "SR"
    assert sr.StudyInstanceUID == series[0].StudyInstanceUID
    assert sr.SeriesInstanceUID not in {ds.SeriesInstanceUID for ds in series}
    assert sr.Manufacturer == "lungpath"
    assert sr.ManufacturerModelName
    assert list(sr.SoftwareVersions) == ["lungpath 0.1.0", "SD-MdaNet 1.0.0"]
    assert [i.CodingSchemeDesignator for i in sr.CodingSchemeIdentificationSequence] == [
        "99LUNGPATH"]
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    evidence = {uid for _, _, uid, _ in sr.get_evidence()}
    assert evidence == {ds.SOPInstanceUID for ds in series}
    assert {f.measurements.outline_image_uid for f in analysis.findings} <= evidence
    assert analysis.predecessor is not None
    predecessor = sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.SeriesInstanceUID == analysis.predecessor.series_instance_uid


def test_sr_names_the_device_observer_and_the_procedure(series: list[Dataset]) -> None:
    analysis = report(series, 1)
    content = hd.sr.Comprehensive3DSR.from_dataset(build_sr(analysis)).content
    assert isinstance(content, hd.sr.MeasurementReport)
    (observer,) = content.get_observer_contexts()
    assert observer.observer_type == hd.sr.CodedConcept("121007", "DCM", "Device")
    attributes = observer.observer_identifying_attributes
    assert isinstance(attributes, hd.sr.DeviceObserverIdentifyingAttributes)
    assert attributes.uid == analysis.observer.device_uid
    assert attributes.name == analysis.observer.ae_title
    procedure = [i for i in content[0].ContentSequence
                 if i.ConceptNameCodeSequence[0].CodeValue == "121058"]
    assert procedure[0].ConceptCodeSequence[0].CodeValue == "413815006"


def test_synthetic_checkpoint_results_carry_the_disclaimer(series: list[Dataset]) -> None:
    synthetic = read_findings(build_sr(report(series, 1)))
    real = read_findings(build_sr(report(series, 1, synthetic_trained=False)))
    assert synthetic.use_statement.endswith(SYNTHETIC_DISCLAIMER)
    assert SYNTHETIC_DISCLAIMER not in real.use_statement


def test_no_nodule_sr_has_no_measurement_groups(series: list[Dataset]) -> None:
    sr = hd.sr.Comprehensive3DSR.from_dataset(build_sr(report(series, 0)))
    assert isinstance(sr.content, hd.sr.MeasurementReport)
    assert sr.content.get_planar_roi_measurement_groups() == []


def test_outline_centroid_lies_on_the_nodule_centre(series: list[Dataset]) -> None:
    """Acceptance 3: the outline's centroid, mapped through the referenced image's geometry,
    lies within 2 mm in-plane of the nodule centre; the image is the nearest axial slice."""
    analysis = report(series, 3)
    content = hd.sr.Comprehensive3DSR.from_dataset(build_sr(analysis)).content
    assert isinstance(content, hd.sr.MeasurementReport)
    groups = content.get_planar_roi_measurement_groups()
    by_uid = {ds.SOPInstanceUID: ds for ds in series}
    for group, finding in zip(groups, analysis.findings, strict=True):
        roi = group.roi
        assert isinstance(roi, hd.sr.ImageRegion)
        image = by_uid[roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID]
        to_patient = hd.spatial.ImageToReferenceTransformer(
            image_position=image.ImagePositionPatient,
            image_orientation=image.ImageOrientationPatient,
            pixel_spacing=image.PixelSpacing,
        )
        scoord = np.asarray(roi.value)[:-1]  # SCOORD image coordinates, closing point dropped
        centroid = to_patient(scoord.mean(axis=0, keepdims=True))[0]
        centre = np.asarray(finding.measurements.centre_mm)
        in_plane = float(np.hypot(*(centroid[:2] - centre[:2])))
        assert in_plane <= 2.0
        assert in_plane <= 0.05  # the synthetic outline is exact: no half-pixel shift either
        assert abs(centroid[2] - centre[2]) <= SLICE_STEP / 2 + 1e-6
    assert PIXEL_SPACING[0] != PIXEL_SPACING[1]  # a swapped axis would show
