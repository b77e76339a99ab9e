"""Segmentation and measurements of known nodules at a CT's resolution."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.findings import Laterality, NoduleMeasurements
from pipeline.lungmask import LungMask
from pipeline.measure import NoduleRegion, measure_nodule, segment_nodule
from pipeline.volume import Volume
from tests.pipeline.chest import Ball, Tube, patch

CENTRE = (-60.0, 10.0, 20.0)


def volume_of(image: sitk.Image) -> Volume:
    """A ``Volume`` around an image made in memory (slice UIDs 1.2.3.k)."""
    voxels = sitk.GetArrayFromImage(image)
    uids = tuple(f"1.2.3.{k}" for k in range(voxels.shape[0]))
    return Volume(image, voxels, "1.2.3", uids, (0,) * len(uids), 0.0)


def lungs_of(image: sitk.Image) -> LungMask:
    """All lung: right for x < 0 (LPS), left otherwise."""
    x = np.array(image.GetOrigin()[0]) + np.arange(image.GetSize()[0]) * image.GetSpacing()[0]
    labels = np.broadcast_to(np.where(x < 0, 1, 2).astype(np.uint8),
                             sitk.GetArrayViewFromImage(image).shape).copy()
    out = sitk.GetImageFromArray(labels)
    out.CopyInformation(image)
    return LungMask(out, (1.0, 1.0))


def measure(
    balls: list[Ball], tubes: tuple[Tube, ...] = ()
) -> tuple[NoduleRegion, NoduleMeasurements, Volume]:
    image = patch(balls, tubes, centre=CENTRE)
    volume = volume_of(image)
    region = segment_nodule(volume.voxels, image, CENTRE, balls[0].diameter * 0.7)
    assert region is not None
    return region, measure_nodule(volume, region, lungs_of(image)), volume


def test_ground_glass_nodule_on_a_vessel() -> None:
    vessel = Tube((-80.0, -15.0, 20.0), (-40.0, 35.0, 20.0), 1.5, 40.0)
    region, m, _ = measure([Ball(CENTRE, 12.0, -600.0)], (vessel,))
    assert m.equivalent_diameter_mm == pytest.approx(12.0, abs=1.0)
    assert m.long_axis_mm == pytest.approx(12.0, abs=1.5)
    assert m.short_axis_mm == pytest.approx(12.0, abs=1.5)
    assert m.solid_long_axis_mm == 0.0 and m.ctr == 0.0
    assert -680 < m.mean_hu < -520
    assert m.laterality is Laterality.RIGHT
    assert np.linalg.norm(np.subtract(m.centre_mm, CENTRE)) < 1.0
    assert region.cut_fraction > 0.0  # the vessel was cut off
    assert m.volume_mm3 == pytest.approx(math.pi / 6 * 12.0**3, rel=0.25)


def test_part_solid_nodule_has_its_ctr() -> None:
    _, m, _ = measure([Ball(CENTRE, 16.0, -620.0), Ball(CENTRE, 8.0, 30.0)])
    assert m.equivalent_diameter_mm == pytest.approx(16.0, abs=1.0)
    assert m.solid_long_axis_mm == pytest.approx(8.0, abs=1.2)
    assert m.ctr == pytest.approx(0.5, abs=0.1)


def test_solid_nodule() -> None:
    _, m, _ = measure([Ball(CENTRE, 9.0, 40.0)])
    assert m.equivalent_diameter_mm == pytest.approx(9.0, abs=0.8)
    assert m.ctr == 1.0
    assert m.mean_hu > -250


def test_outline_lies_on_the_nodule_in_its_source_image() -> None:
    _, m, volume = measure([Ball(CENTRE, 10.0, -600.0)])
    k = volume.sop_instance_uids.index(m.outline_image_uid)
    z_mm = volume.image.TransformIndexToPhysicalPoint((0, 0, k))[2]
    assert abs(z_mm - CENTRE[2]) <= volume.image.GetSpacing()[2]
    outline = np.array(m.outline)
    assert len(outline) >= 12
    centre_px = volume.image.TransformPhysicalPointToContinuousIndex(CENTRE)[:2]
    radii = np.linalg.norm((outline - centre_px) * volume.image.GetSpacing()[0], axis=1)
    assert np.all(np.abs(radii - 5.0) < 1.2)


def test_nothing_there_gives_none() -> None:
    image = patch([Ball(CENTRE, 8.0, -600.0)], centre=CENTRE)
    far = (CENTRE[0] + 15.0, CENTRE[1], CENTRE[2])
    assert segment_nodule(sitk.GetArrayFromImage(image), image, far, 6.0) is None


def test_full_mask_places_the_box() -> None:
    region, _, volume = measure([Ball(CENTRE, 9.0, 40.0)])
    full = region.full_mask(volume.voxels.shape)
    assert full.sum() == region.mask.sum() and full.shape == volume.voxels.shape
