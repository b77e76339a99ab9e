"""The crop function: geometry, window, orientation independence, argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from model.crop_spec import CropSpec
from pipeline.crop import crop, crop_batch


def _linear_volume(direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1)) -> sitk.Image:
    """A volume whose HU is a known linear function of the patient position."""
    image = sitk.Image(60, 50, 40, sitk.sitkFloat32)
    image.SetSpacing((0.7, 0.8, 1.25))
    image.SetDirection(direction)
    image.SetOrigin((-20.0, -20.0, -25.0) if direction[0] > 0 else (20.0, -20.0, 25.0))
    index = np.indices((40, 50, 60)).reshape(3, -1)[::-1].T.astype(float)
    d = np.array(direction).reshape(3, 3)
    points = np.array(image.GetOrigin()) + (d @ (index * image.GetSpacing()).T).T
    values = _field(points).reshape(40, 50, 60).astype(np.float32)
    out = sitk.GetImageFromArray(values)
    out.CopyInformation(image)
    return out


def _field(points: np.ndarray) -> np.ndarray:
    return -400 + 6.0 * points[..., 0] - 4.0 * points[..., 1] + 3.0 * points[..., 2]


SPEC = CropSpec(spacing_mm=1.0, size=9, hu_window=(-1000.0, 400.0))


def test_crop_samples_the_volume_on_a_patient_aligned_grid() -> None:
    centre = (1.5, -2.0, 3.0)
    out = crop(_linear_volume(), centre, SPEC)
    assert out.shape == (9, 9, 9) and out.dtype == np.float32
    z, y, x = np.indices(out.shape)
    points = np.stack([x, y, z], -1) * 1.0 + np.array(centre) - 4.0
    expected = (_field(points) + 1000) / 1400
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_crop_is_independent_of_the_series_direction() -> None:
    flipped = _linear_volume((-1, 0, 0, 0, 1, 0, 0, 0, -1))
    np.testing.assert_allclose(
        crop(flipped, (0, 0, 0), SPEC), crop(_linear_volume(), (0, 0, 0), SPEC), atol=1e-4
    )


def test_window_clips_and_outside_reads_as_air() -> None:
    narrow = CropSpec(spacing_mm=2.0, size=8, hu_window=(-420.0, -380.0))
    out = crop(_linear_volume(), (0, 0, 0), narrow)
    assert out.min() == 0.0 and out.max() == 1.0
    outside = crop(_linear_volume(), (500, 0, 0), SPEC)
    assert np.all(outside == 0.0)


def test_batch_matches_single_crops() -> None:
    volume, centres = _linear_volume(), [(0, 0, 0), (5, 5, -5)]
    batch = crop_batch(volume, centres, SPEC)
    assert batch.shape == (2, 9, 9, 9)
    np.testing.assert_array_equal(batch[1], crop(volume, centres[1], SPEC))


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match='"centre_mm"'):
        crop(_linear_volume(), (0, 0), SPEC)
    with pytest.raises(ValueError, match='"volume"'):
        crop(sitk.Image(10, 10, sitk.sitkInt16), (0, 0, 0), SPEC)
