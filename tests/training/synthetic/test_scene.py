"""The chest, the acquisition and the region renderer behind study and box mode."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.synthetic.acquisition import sample_acquisition
from training.synthetic.geometry import ellipsoid_wall_distance
from training.synthetic.phantom import NODULE_WALL_MARGIN_MM, sample_phantom
from training.synthetic.scene import Stream, item_seed_sequence, render_region, sample_scene


def _surface(centre: tuple[float, ...], semi: tuple[float, ...], n: int = 4000) -> np.ndarray:
    u = np.random.default_rng(0).standard_normal((n, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return np.asarray(centre) + u * np.asarray(semi)


def test_wall_distance_is_the_distance_to_the_surface() -> None:
    centre, semi = (10.0, -5.0, 3.0), (40.0, 80.0, 120.0)
    surface = _surface(centre, semi, 200_000)
    rng = np.random.default_rng(1)
    for _ in range(20):
        point = np.asarray(centre) + rng.uniform(-0.7, 0.7, 3) * np.asarray(semi)
        if ((point - centre) / semi @ ((point - centre) / semi)) >= 1:
            continue
        brute = np.min(np.linalg.norm(surface - point, axis=1))
        assert ellipsoid_wall_distance(point, centre, semi) == pytest.approx(brute, abs=0.3)


@pytest.mark.parametrize("seed", range(30))
def test_chest_follows_the_rules(seed: int) -> None:
    phantom = sample_phantom(np.random.default_rng(seed))
    a, b = phantom.body_semi_axes
    assert 150 <= a <= 190 and 100 <= b <= 130 and 10 <= phantom.fat_mm <= 25
    assert 60 <= phantom.mediastinum_width_mm <= 90 and 400 <= phantom.spine_hu <= 700
    assert -870 <= phantom.parenchyma_hu <= -830
    inner_a, inner_b = a - phantom.fat_mm - 5, b - phantom.fat_mm - 5
    for lung in phantom.lungs:
        assert 100 <= lung.semi_axes[2] <= 130
        points = _surface(lung.centre, lung.semi_axes)
        assert np.max((points[:, 0] / inner_a) ** 2 + (points[:, 1] / inner_b) ** 2) <= 1 + 2e-4
        assert np.min(np.abs(points[:, 0])) >= phantom.mediastinum_width_mm / 2 - 0.5
    generations = {v.generation for v in phantom.vessels}
    assert generations <= {0, 1, 2, 3} and {0, 1, 2} <= generations
    for vessel in phantom.vessels:
        assert vessel.radius_mm == 4.0 / 2**vessel.generation
        lung = min(phantom.lungs, key=lambda g: abs(g.centre[0] - vessel.end[0]))
        assert ellipsoid_wall_distance(vessel.end, lung.centre, lung.semi_axes) >= 0


@pytest.mark.parametrize("index", range(20))
def test_nodules_sit_deep_in_a_lung_and_apart(index: int) -> None:
    scene, _ = sample_scene(item_seed_sequence(3, index, Stream.STUDY), "fast", 3)
    for i, nodule in enumerate(scene.nodules):
        d = nodule.shape.diameter_mm
        wall = max(ellipsoid_wall_distance(nodule.centre_mm, lung.centre, lung.semi_axes)
                   for lung in scene.phantom.lungs)
        assert wall >= d / 2 + NODULE_WALL_MARGIN_MM
        for other in scene.nodules[:i]:
            gap = math.dist(nodule.centre_mm, other.centre_mm)
            assert gap >= (d + other.shape.diameter_mm) / 2


def test_acquisition_ranges_and_field_of_view() -> None:
    rng = np.random.default_rng(5)
    for _ in range(500):
        a = float(rng.uniform(150, 190))
        standard = sample_acquisition("standard", a, rng)
        assert standard.matrix == 512 and 0.6 <= standard.pixel_spacing_mm <= 0.8
        assert standard.pixel_spacing_mm * 512 >= 2 * a + 20 - 1e-9
        assert 1.0 <= standard.slice_thickness_mm <= 1.25
        assert 0.4 <= standard.blur_sigma_mm <= 0.8 and 8 <= standard.noise_sigma_hu <= 25
        fast = sample_acquisition("fast", a, rng)
        assert fast.matrix == 256 and fast.slice_thickness_mm == 2.5
        assert fast.pixel_spacing_mm * 256 == pytest.approx(2 * a + 20)


def test_a_region_renders_as_the_same_part_of_the_whole_volume() -> None:
    scene, _ = sample_scene(item_seed_sequence(8, 0, Stream.STUDY), "fast", 2)
    nz, ny, nx = scene.grid.shape
    whole = render_region(scene, scene.grid.full, None)
    k = nz // 3
    part = render_region(scene, ((k, k + 7), (40, 200), (30, 230)), None)
    assert np.allclose(part, whole[k:k + 7, 40:200, 30:230], atol=1e-2)
    assert whole.min() >= -1000.5 and whole.max() <= 700.5
    body_centre = whole[nz // 2, ny // 2, nx // 2]
    assert 30 <= body_centre <= 50  # mediastinum between the lungs
