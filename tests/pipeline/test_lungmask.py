"""Lung mask: airways removed, lungs separated and labelled by side, holes filled."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline.findings import Laterality
from pipeline.lungmask import LungMaskError, lung_mask
from tests.pipeline.chest import Ball, Tube, chest

NODULE = Ball((-70.0, 10.0, 0.0), 10.0, -600.0)
VESSEL = Tube((60.0, -20.0, -20.0), (90.0, 20.0, 20.0), 2.0, 40.0)


@pytest.fixture(scope="module")
def image() -> sitk.Image:
    return chest(balls=[NODULE], tubes=[VESSEL])


def test_lungs_are_labelled_by_side_without_airways(image: sitk.Image) -> None:
    mask = lung_mask(image)
    assert mask.laterality_at((-70, 0, 0)) is Laterality.RIGHT
    assert mask.laterality_at((70, 0, 0)) is Laterality.LEFT
    assert mask.laterality_at((0, -20, 60)) is None  # trachea
    assert mask.laterality_at((0, -20, 31)) is None  # carina
    assert mask.laterality_at((0, 60, 0)) is None  # mediastinum
    assert mask.laterality_at((500, 0, 0)) is None  # outside the grid
    ellipsoid_ml = 4 / 3 * np.pi * 55 * 75 * 80 / 1000
    for ml in mask.volumes_ml:
        assert 0.85 * ellipsoid_ml < ml < 1.05 * ellipsoid_ml


def test_nodules_and_vessels_inside_the_lung_are_in_the_mask(image: sitk.Image) -> None:
    mask = lung_mask(image)
    assert mask.laterality_at(NODULE.centre) is Laterality.RIGHT
    assert mask.laterality_at((75.0, 0.0, 0.0)) is Laterality.LEFT  # on the vessel


def test_touching_lungs_are_separated() -> None:
    mask = lung_mask(chest(lung_gap_mm=0.0, airways=False))
    assert mask.laterality_at((-50, 0, 0)) is Laterality.RIGHT
    assert mask.laterality_at((50, 0, 0)) is Laterality.LEFT
    right, left = mask.volumes_ml
    assert abs(right - left) < 0.1 * right


def test_no_lungs_is_a_reason() -> None:
    solid = sitk.Image(40, 40, 20, sitk.sitkInt16) + 40
    with pytest.raises(LungMaskError, match="no lungs"):
        lung_mask(solid)


def test_a_single_lung_keeps_its_side() -> None:
    image = chest(airways=False, tubes=[Tube((-150.0, 0.0, 0.0), (-15.0, 0.0, 0.0), 90.0, 40.0)])
    mask = lung_mask(image)
    right, left = mask.volumes_ml
    assert right == 0.0 and left > 500.0
    assert mask.laterality_at((100, 0, 40)) is Laterality.LEFT
