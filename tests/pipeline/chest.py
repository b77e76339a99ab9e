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


def _points() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    z, y, x = np.indices(SHAPE, dtype=np.float32)
    return (ORIGIN[0] + x * SPACING[0], ORIGIN[1] + y * SPACING[1], ORIGIN[2] + z * SPACING[2])


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
    x, y, z = _points()
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
    for tube in shapes:
        hu[_segment_distance((x, y, z), tube.start, tube.end) <= tube.radius] = tube.hu
    for ball in balls:
        r2 = sum((p - c) ** 2 for p, c in zip((x, y, z), ball.centre, strict=True))
        hu[r2 <= (ball.diameter / 2) ** 2] = ball.hu
    hu = ndimage.gaussian_filter(hu, 0.6)
    hu += np.random.default_rng(seed).normal(0, noise_hu, SHAPE).astype(np.float32)
    image = sitk.GetImageFromArray(np.clip(np.rint(hu), -1024, 3000).astype(np.int16))
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN)
    return image
