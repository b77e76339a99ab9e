"""The nodule SEG: one binary segment per nodule over the analysed series, linked to the SR
by label and Tracking UID, valid for dciodvfy."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom import Dataset

from pipeline.results import build_seg, build_sr, read_findings
from tests.pipeline.results.conftest import assert_valid, save
from tests.pipeline.results.synthetic import report


def test_no_seg_without_nodules(series: list[Dataset]) -> None:
    assert build_seg(report(series, 0)) is None


def test_segments_are_the_nodule_masks_on_the_source_grid(
    series: list[Dataset], tmp_path: Path
) -> None:
    analysis = report(series, 3)
    seg = build_seg(analysis)
    assert seg is not None
    path = save(seg, tmp_path / "seg.dcm")
    read = hd.seg.segread(path)
    assert read.SegmentationType == "BINARY"
    assert read.StudyInstanceUID == series[0].StudyInstanceUID
    assert read.ReferencedSeriesSequence[0].SeriesInstanceUID == series[0].SeriesInstanceUID
    parsed = read_findings(build_sr(analysis))
    source_uids = [ds.SOPInstanceUID for ds in series]
    for finding, nodule in zip(analysis.findings, parsed.nodules, strict=True):
        description = read.get_segment_description(finding.number)
        assert description.segment_label == f"nodule-{finding.number}"
        assert description.tracking_id == f"nodule-{finding.number}"
        assert description.tracking_uid == nodule.tracking_uid
        mask = read.get_pixels_by_source_instance(
            source_sop_instance_uids=source_uids, segment_numbers=[finding.number],
            ignore_spatial_locations=True, assert_missing_frames_are_empty=True,
        )[..., 0].astype(bool)
        np.testing.assert_array_equal(mask, finding.mask)


@pytest.mark.tools
def test_seg_passes_dciodvfy(series: list[Dataset], tmp_path: Path) -> None:
    seg = build_seg(report(series, 3))
    assert seg is not None
    path = save(seg, tmp_path / "seg.dcm")
    assert_valid(path)
    assert pydicom.dcmread(path).NumberOfFrames > 0


def test_overlapping_masks_keep_each_segment_whole(series: list[Dataset], tmp_path: Path) -> None:
    """Masks that share voxels cannot be one label map: each segment still reads back whole
    and the SEG says that segments overlap."""
    analysis = report(series, 2)
    first, second = analysis.findings
    grown = dataclasses.replace(second, mask=second.mask | first.mask)
    analysis = dataclasses.replace(analysis, findings=(first, grown))
    seg = build_seg(analysis)
    assert seg is not None
    read = hd.seg.segread(save(seg, tmp_path / "seg.dcm"))
    assert read.SegmentsOverlap == "YES"
    source_uids = [ds.SOPInstanceUID for ds in series]
    for finding in analysis.findings:
        mask = read.get_pixels_by_source_instance(
            source_sop_instance_uids=source_uids, segment_numbers=[finding.number],
            ignore_spatial_locations=True, assert_missing_frames_are_empty=True,
        )[..., 0].astype(bool)
        np.testing.assert_array_equal(mask, finding.mask)
