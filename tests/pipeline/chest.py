"""A small analytic chest CT (body, two lungs, airways, vessels, nodules) for imaging tests.

Coarse and quick to build; the synthetic cohort (training.synthetic) is the realistic one.
Coordinates are patient LPS mm: x towards the patient's left, y posterior, z superior.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

SPACING = (1.5, 1.5, 2.0)
SHAPE = (90, 150, 200)  # z, y, x
ORIGIN = (-150.0, -110.0, -90.0)


@dataclass(frozen=True)
class Ball:
    centre: tuple[float, float, float]
    diameter: float
    hu: float


@dataclass(frozen=True)
class Tube:
    start: tuple[float, float, float]
    end: tuple[float, float, float]
    radius: float
    hu: float


def _points(
    shape: tuple[int, int, int], origin: Sequence[float], spacing: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z, y, x = np.indices(shape, dtype=np.float32)
    return (origin[0] + x * spacing[0], origin[1] + y * spacing[1], origin[2] + z * spacing[2])


def _segment_distance(
    p: tuple[np.ndarray, ...], a: Sequence[float], b: Sequence[float]
) -> np.ndarray:
    ab = np.subtract(b, a)
    t = sum((p[i] - a[i]) * ab[i] for i in range(3)) / float(ab @ ab)
    t = np.clip(t, 0, 1)
    return np.sqrt(sum((p[i] - (a[i] + t * ab[i])) ** 2 for i in range(3)))


def chest(
    balls: Sequence[Ball] = (),
    tubes: Sequence[Tube] = (),
    airways: bool = True,
    lung_gap_mm: float = 30.0,
    noise_hu: float = 10.0,
    seed: int = 0,
) -> sitk.Image:
    """An int16 HU image; ``lung_gap_mm`` 0 makes the lungs touch in the midline."""
    x, y, z = _points(SHAPE, ORIGIN, SPACING)
    hu = np.full(SHAPE, -1000.0, dtype=np.float32)
    hu[(x / 140) ** 2 + (y / 100) ** 2 <= 1] = 40
    half = lung_gap_mm / 2
    for side in (-1, 1):
        cx = side * (half + 55)
        hu[((x - cx) / 55) ** 2 + (y / 75) ** 2 + (z / 80) ** 2 <= 1] = -850
    shapes = list(tubes)
    if airways:
        shapes += [Tube((0, -20, 90), (0, -20, 30), 8, -1000)]
        shapes += [Tube((0, -20, 30), (s * (half + 45), -10, 10), 5, -1000) for s in (-1, 1)]
    return _finish(hu, (x, y, z), balls, shapes, SPACING, ORIGIN, noise_hu, seed)


def patch(
    balls: Sequence[Ball],
    tubes: Sequence[Tube] = (),
    centre: Sequence[float] = (0.0, 0.0, 0.0),
    spacing: Sequence[float] = (0.7, 0.7, 1.0),
    size_mm: float = 48.0,
    noise_hu: float = 12.0,
    seed: int = 0,
) -> sitk.Image:
    """A cube of lung parenchyma (-850 HU) at a CT's resolution, for measurement tests."""
    shape = tuple(int(size_mm / s) for s in spacing[::-1])
    origin = [c - size_mm / 2 for c in centre]
    points = _points(shape, origin, spacing)  # type: ignore[arg-type]
    hu = np.full(shape, -850.0, dtype=np.float32)
    return _finish(hu, points, balls, tubes, spacing, origin, noise_hu, seed)


def _finish(
    hu: np.ndarray, points: tuple[np.ndarray, ...], balls: Sequence[Ball],
    tubes: Sequence[Tube], spacing: Sequence[float], origin: Sequence[float],
    noise_hu: float, seed: int,
) -> sitk.Image:
    """Draw tubes then balls, blur (0.6 mm), add noise, store as int16."""
    for tube in tubes:
        hu[_segment_distance(points, tube.start, tube.end) <= tube.radius] = tube.hu
    for ball in balls:
        r2 = sum((p - c) ** 2 for p, c in zip(points, ball.centre, strict=True))
        hu[r2 <= (ball.diameter / 2) ** 2] = ball.hu
    hu = ndimage.gaussian_filter(hu, [0.6 / s for s in spacing[::-1]])
    hu += np.random.default_rng(seed).normal(0, noise_hu, hu.shape).astype(np.float32)
    image = sitk.GetImageFromArray(np.clip(np.rint(hu), -1024, 3000).astype(np.int16))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetOrigin(tuple(float(o) for o in origin))
    return image
