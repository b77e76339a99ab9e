"""The summary Secondary Capture: one legible 512 x 512 RGB image per nodule (or one status
image), in the CT's study, valid for dciodvfy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.uid import SecondaryCaptureImageStorage

from pipeline.results import AnalysisStatus, build_sc
from pipeline.results.sc import SIZE, render_nodule
from tests.pipeline.results.conftest import assert_valid, save
from tests.pipeline.results.synthetic import report

OUTLINE_RGB = (255, 221, 0)  # the outline's colour (#ffdd00)


@pytest.mark.parametrize("count", [1, 3])
def test_one_image_per_nodule_in_the_ct_study(series: list[Dataset], count: int) -> None:
    analysis = report(series, count)
    images = build_sc(analysis)
    assert len(images) == count
    assert [im.SOPInstanceUID for im in images] == list(analysis.uids.sc_instances)
    assert [im.InstanceNumber for im in images] == list(range(1, count + 1))
    for image, finding in zip(images, analysis.findings, strict=True):
        assert image.SOPClassUID == SecondaryCaptureImageStorage
        assert image.StudyInstanceUID == series[0].StudyInstanceUID
        assert image.SeriesInstanceUID == analysis.uids.sc_series
        assert image.PatientID == series[0].PatientID
        assert image.pixel_array.shape == (SIZE, SIZE, 3)
        assert image.ImageLaterality == finding.measurements.laterality.value[0].upper()


def test_the_outline_is_drawn_on_the_crop(series: list[Dataset]) -> None:
    analysis = report(series, 1)
    pixels = render_nodule(analysis, analysis.findings[0])
    outline = np.all(np.abs(pixels.astype(int) - OUTLINE_RGB) <= 30, axis=-1)
    assert outline.sum() > 100
    rows, cols = np.nonzero(outline)
    # the crop occupies the upper-left quarter of the layout
    assert rows.max() < SIZE // 2 + 20 and cols.max() < SIZE // 2 + 20


def test_summaries_differ_between_nodules(series: list[Dataset]) -> None:
    analysis = report(series, 3)
    first, second = (render_nodule(analysis, f) for f in analysis.findings[:2])
    assert np.mean(np.any(first != second, axis=-1)) > 0.01


@pytest.mark.parametrize("status", [AnalysisStatus.NO_NODULE, AnalysisStatus.NOT_ANALYZABLE])
def test_status_image_without_nodules(series: list[Dataset], status: AnalysisStatus) -> None:
    reason = "no axial CT series" if status is AnalysisStatus.NOT_ANALYZABLE else ""
    (image,) = build_sc(report(series, 0, status, reason=reason))
    assert image.pixel_array.shape == (SIZE, SIZE, 3)
    assert image.ImageLaterality == "B"
    assert image.pixel_array.max() > 200  # text is drawn


@pytest.mark.tools
@pytest.mark.parametrize("count", [0, 3])
def test_sc_passes_dciodvfy(series: list[Dataset], count: int, tmp_path: Path) -> None:
    for i, image in enumerate(build_sc(report(series, count))):
        assert_valid(save(image, tmp_path / f"sc{i}.dcm"))
