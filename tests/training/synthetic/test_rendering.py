"""The nodule renderer and box mode: densities at the centres, the rendered volume, geometry."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from model.pathology import Invasiveness
from training.synthetic import harmonics
from training.synthetic.boxes import generate_box
from training.synthetic.geometry import Grid
from training.synthetic.nodule import (
    render_nodule,
    rendered_volume_mm3,
    sample_shape,
    volume_equivalent_diameter,
)
from training.synthetic.pathology import NodulePathology
from training.synthetic.scene import NoduleSpec

AIS = NodulePathology(Invasiveness.AIS, (100, 0, 0, 0, 0, 0, 0))
#: a solid IAC without spikes, bubbles or bronchogram (lobulated by its acinar part)
SOLID_IAC = NodulePathology(Invasiveness.IAC, (40, 60, 0, 0, 0, 0, 0))
BACKGROUND_HU = -850.0


def _value_at(image: sitk.Image, point: tuple[float, float, float]) -> float:
    index = image.TransformPhysicalPointToIndex(point)
    return float(image[index])


@pytest.mark.parametrize(
    ("spacing", "diameter"),
    [((0.7, 0.7, 1.0), 5.0), ((0.65, 0.65, 1.25), 8.0), ((0.8, 0.8, 1.2), 12.5),
     ((0.7, 0.7, 1.1), 15.0), ((1.4, 1.4, 2.5), 15.0)],
)
def test_volume_equivalent_diameter_of_a_smooth_nodule_is_d(
    spacing: tuple[float, float, float], diameter: float
) -> None:
    rng = np.random.default_rng(int(diameter * 10))
    shape = sample_shape(AIS, rng, diameter_mm=diameter)
    assert shape.lobulation == 0 and shape.spikes == () and shape.bronchogram is None
    grid = Grid((64, 96, 96), (-40.0, -40.0, -40.0), spacing)
    centre = tuple(float(v) for v in rng.uniform(-1, 1, 3))
    field = np.full(grid.shape, BACKGROUND_HU, dtype=np.float32)
    render_nodule(field, grid, grid.full, centre, shape)  # no blur, no noise
    threshold = BACKGROUND_HU + 0.5 * (shape.shell_hu - BACKGROUND_HU)
    volume = np.count_nonzero(field > threshold) * grid.voxel_volume_mm3
    assert abs(volume_equivalent_diameter(volume) - diameter) <= 0.5
    assert rendered_volume_mm3(grid, centre, shape, BACKGROUND_HU) == pytest.approx(volume)


@pytest.mark.parametrize("index", range(4))
def test_shell_density_at_the_centre_of_a_ground_glass_nodule(index: int) -> None:
    image, truth = generate_box(seed=11, index=index, clean=True, nodule=NoduleSpec(AIS))
    value = _value_at(image, truth.centre_mm)
    assert -702 <= value <= -498
    assert value == pytest.approx(truth.shape.shell_hu, abs=2.0)


@pytest.mark.parametrize("index", range(4))
def test_core_density_at_the_centre_of_the_solid_core(index: int) -> None:
    image, truth = generate_box(seed=12, index=index, clean=True, nodule=NoduleSpec(SOLID_IAC))
    core_centre = tuple(np.add(truth.centre_mm, truth.shape.core_offset_mm))
    value = _value_at(image, core_centre)  # type: ignore[arg-type]
    assert -2 <= value <= 62
    assert value == pytest.approx(truth.shape.core_hu, abs=2.0)


def test_box_sits_on_the_study_grid_around_its_nodule() -> None:
    image, truth = generate_box(seed=5, index=0, acquisition="standard")
    spacing = image.GetSpacing()
    assert spacing[0] == spacing[1] and 0.6 <= spacing[0] <= 0.8 + 1e-9
    assert 1.0 <= spacing[2] <= 1.25
    assert all(abs(n * s - 64) <= s for n, s in zip(image.GetSize(), spacing, strict=True))
    assert image.GetPixelID() == sitk.sitkInt16
    assert image.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    middle = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
    assert np.allclose(middle, truth.centre_mm, atol=max(spacing))
    pixels = sitk.GetArrayViewFromImage(image)
    assert pixels.min() >= -1200 and pixels.max() <= 800
    assert abs(truth.volume_equivalent_diameter_mm - truth.diameter_mm) < 0.35 * truth.diameter_mm


def test_unlabelled_boxes_are_other_draws_with_withheld_labels() -> None:
    _, labelled = generate_box(seed=5, index=0, acquisition="fast")
    _, unlabelled = generate_box(seed=5, index=0, acquisition="fast", labelled=False)
    assert labelled.centre_mm != unlabelled.centre_mm
    row = unlabelled.as_row()
    assert row["labelled"] == 0 and row["invasiveness"] == "" and row["lepidic"] == ""
    assert unlabelled.as_row(reveal=True)["invasiveness"] in {"AIS", "MIA", "IAC"}


def test_harmonics_are_the_orthonormal_real_spherical_harmonics() -> None:
    x, y, z = harmonics.fibonacci_sphere(20000)
    values = np.stack(harmonics.basis(x, y, z))
    gram = values @ values.T * (4 * np.pi / len(x))
    assert np.allclose(gram, np.eye(len(harmonics.TERMS)), atol=2e-3)


def test_lobulation_is_normalised_to_max_one() -> None:
    c = harmonics.random_lobulation(np.random.default_rng(3))
    assert np.max(np.abs(harmonics.combine(c, *harmonics.fibonacci_sphere()))) == pytest.approx(1)


def test_bad_box_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="box_mm"):
        generate_box(seed=1, index=0, box_mm=0)
    with pytest.raises(ValueError, match="seed"):
        generate_box(seed=-1, index=0)
    with pytest.raises(ValueError, match="fast"):
        generate_box(seed=1, index=0, acquisition="slow")
