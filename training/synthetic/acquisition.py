"""The scanner of the synthetic cohort: voxel grid, blur (the kernel), noise and int16 storage.

Order of operations, as SYNTHETIC_COHORT.md fixes it: render in HU on the grid, 3D Gaussian
blur, white Gaussian noise, then store as int16 (RescaleIntercept -1024, slope 1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter

from training.synthetic.geometry import Grid

RESCALE_INTERCEPT = -1024
BLUR_TRUNCATE = 3.0  #: kernel half-width in sigmas (99.7 % of the mass); also a region's halo
BLUR_SIGMA_RANGE = (0.4, 0.8)
NOISE_SIGMA_RANGE = (8.0, 25.0)


class AcquisitionKind(StrEnum):
    """The two acquisition protocols of the cohort."""

    STANDARD = "standard"  #: training: 512 x 512, slices of 1.0-1.25 mm
    FAST = "fast"  #: tests and quick runs: 256 x 256, 2.5 mm slices; not for accuracy


def acquisition_kind(value: AcquisitionKind | str) -> AcquisitionKind:
    """``value`` as an ``AcquisitionKind``, with a message naming the choices if it is none."""
    try:
        return AcquisitionKind(value)
    except ValueError:
        choices = ", ".join(k.value for k in AcquisitionKind)
        message = f'Argument "acquisition" must be one of {choices}; got {value!r}.'
        raise ValueError(message) from None


@dataclass(frozen=True)
class Acquisition:
    """The drawn acquisition settings of one study (or of the study a box comes from)."""

    kind: AcquisitionKind
    matrix: int
    pixel_spacing_mm: float
    slice_thickness_mm: float  #: equal to the slice spacing
    blur_sigma_mm: float
    noise_sigma_hu: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", acquisition_kind(self.kind))
        if self.matrix < 16:
            raise ValueError(f'Argument "matrix" must be >= 16, got {self.matrix}.')
        for name in ("pixel_spacing_mm", "slice_thickness_mm"):
            if not getattr(self, name) > 0:
                raise ValueError(f'Argument "{name}" must be > 0, got {getattr(self, name)}.')
        for name in ("blur_sigma_mm", "noise_sigma_hu"):
            if getattr(self, name) < 0:
                raise ValueError(f'Argument "{name}" must be >= 0, got {getattr(self, name)}.')

    def grid(self, z_half_extent_mm: float) -> Grid:
        """The study grid: the matrix centred on the body axis, slices covering
        [-z_half_extent_mm, +z_half_extent_mm]."""
        px, dz = self.pixel_spacing_mm, self.slice_thickness_mm
        nz = math.ceil(2 * z_half_extent_mm / dz) + 1
        half_xy = (self.matrix - 1) / 2 * px
        return Grid(
            shape=(nz, self.matrix, self.matrix),
            origin=(-half_xy, -half_xy, -(nz - 1) / 2 * dz),
            spacing=(px, px, dz),
        )

    def halo(self, grid: Grid) -> tuple[int, int, int]:
        """Voxels (z, y, x) a region needs beyond its edge so that its blur is exact."""
        return tuple(  # type: ignore[return-value]
            math.ceil(BLUR_TRUNCATE * self.blur_sigma_mm / s) if self.blur_sigma_mm else 0
            for s in (grid.spacing[2], grid.spacing[1], grid.spacing[0])
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        return data


def sample_acquisition(
    kind: AcquisitionKind | str, body_semi_lr_mm: float, rng: np.random.Generator
) -> Acquisition:
    """Draw the settings of one study; the field of view always holds the body (2a + 20 mm)."""
    kind = acquisition_kind(kind)
    fov = 2 * body_semi_lr_mm + 20
    if kind is AcquisitionKind.STANDARD:
        matrix = 512
        spacing = max(float(rng.uniform(0.6, 0.8)), fov / matrix)
        thickness = float(rng.uniform(1.0, 1.25))
    else:
        matrix = 256
        spacing = fov / matrix
        thickness = 2.5
    return Acquisition(
        kind=kind, matrix=matrix, pixel_spacing_mm=spacing, slice_thickness_mm=thickness,
        blur_sigma_mm=float(rng.uniform(*BLUR_SIGMA_RANGE)),
        noise_sigma_hu=float(rng.uniform(*NOISE_SIGMA_RANGE)),
    )


def blur(field: np.ndarray, grid: Grid, sigma_mm: float) -> np.ndarray:
    """The 3D Gaussian blur of the reconstruction kernel (float32, separable)."""
    if sigma_mm == 0:
        return field
    sigma = (sigma_mm / grid.spacing[2], sigma_mm / grid.spacing[1], sigma_mm / grid.spacing[0])
    return gaussian_filter(field, sigma, truncate=BLUR_TRUNCATE, mode="nearest", output=np.float32)


def add_noise(field: np.ndarray, sigma_hu: float, rng: np.random.Generator) -> None:
    """White Gaussian noise, in place."""
    if sigma_hu:
        noise = rng.standard_normal(field.shape, dtype=np.float32)
        noise *= np.float32(sigma_hu)
        field += noise


def to_int16(hu: np.ndarray, intercept: int = 0) -> np.ndarray:
    """HU rounded and stored as int16 with ``RescaleIntercept = intercept`` (slope 1)."""
    info = np.iinfo(np.int16)
    stored = np.subtract(hu, np.float32(intercept), dtype=np.float32)
    np.rint(stored, out=stored)
    np.clip(stored, info.min, info.max, out=stored)
    return stored.astype(np.int16)
