"""The voxel grid a synthetic image lives on, and the soft-edged shapes drawn on it.

Everything is rendered in patient coordinates (LPS, mm) onto a regular grid whose axes are the
patient's (rows along +x, columns along +y, slices along +z). A renderer fills a *region* of
that grid, an index box that may reach beyond the grid (a nodule box near the top of the scan
range): each shape computes its own bounding box and touches only the voxels inside it, which
is what keeps a 512 x 512 x 300 study within seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import expit

Vec3 = tuple[float, float, float]
#: Index ranges ((z0, z1), (y0, y1), (x0, x1)), half-open, possibly outside the grid.
IndexBox = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


@dataclass(frozen=True)
class Grid:
    """A regular voxel grid aligned with the patient axes.

    Attributes:
        shape: (slices, rows, columns) = (nz, ny, nx), the numpy order of a volume.
        origin: patient position (x, y, z) in mm of voxel (0, 0, 0)'s centre.
        spacing: voxel size (x, y, z) in mm.
    """

    shape: tuple[int, int, int]
    origin: Vec3
    spacing: Vec3

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f'Argument "shape" must be 3 positive sizes, got {self.shape}.')
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f'Argument "spacing" must be 3 sizes > 0, got {self.spacing}.')

    @property
    def full(self) -> IndexBox:
        """The index box of the whole grid."""
        nz, ny, nx = self.shape
        return ((0, nz), (0, ny), (0, nx))

    @property
    def voxel_volume_mm3(self) -> float:
        return self.spacing[0] * self.spacing[1] * self.spacing[2]

    @property
    def edge_mm(self) -> float:
        """The width of the partial-volume ramp: the voxel's geometric mean size."""
        return self.voxel_volume_mm3 ** (1.0 / 3.0)

    def coords(self, box: IndexBox) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patient coordinates of the voxel centres of ``box``, shaped to broadcast as
        (z[:, None, None], y[None, :, None], x[None, None, :])."""
        (z0, z1), (y0, y1), (x0, x1) = box
        ox, oy, oz = self.origin
        sx, sy, sz = self.spacing
        z = (oz + sz * np.arange(z0, z1, dtype=np.float64)).astype(np.float32)
        y = (oy + sy * np.arange(y0, y1, dtype=np.float64)).astype(np.float32)
        x = (ox + sx * np.arange(x0, x1, dtype=np.float64)).astype(np.float32)
        return z[:, None, None], y[None, :, None], x[None, None, :]

    def bounds(self, low_mm: Sequence[float], high_mm: Sequence[float]) -> IndexBox:
        """The index box of the voxels whose centres may lie in [low_mm, high_mm] (x, y, z).
        (Plain floats: called for every vessel segment of every region.)"""
        return tuple(  # type: ignore[return-value]
            (math.floor((float(low_mm[axis]) - self.origin[axis]) / self.spacing[axis]),
             math.ceil((float(high_mm[axis]) - self.origin[axis]) / self.spacing[axis]) + 1)
            for axis in (2, 1, 0)
        )

    def index_of(self, point_mm: Sequence[float]) -> tuple[int, int, int]:
        """The (z, y, x) index of the voxel whose centre is nearest ``point_mm``."""
        return tuple(  # type: ignore[return-value]
            round((point_mm[axis] - self.origin[axis]) / self.spacing[axis]) for axis in (2, 1, 0)
        )


def box_shape(box: IndexBox) -> tuple[int, int, int]:
    return tuple(hi - lo for lo, hi in box)  # type: ignore[return-value]


def intersect(region: IndexBox, box: IndexBox) -> tuple[IndexBox, tuple[slice, ...]] | None:
    """``box`` clipped to ``region``, and where that lies in the region's array; None if empty."""
    clipped = tuple(
        (max(r0, b0), min(r1, b1)) for (r0, r1), (b0, b1) in zip(region, box, strict=True)
    )
    if any(lo >= hi for lo, hi in clipped):
        return None
    local = tuple(
        slice(lo - r0, hi - r0) for (lo, hi), (r0, _) in zip(clipped, region, strict=True)
    )
    return clipped, local  # type: ignore[return-value]


def grow(box: IndexBox, margin: Sequence[int]) -> IndexBox:
    """``box`` grown by ``margin`` voxels per axis (z, y, x) on each side."""
    return tuple((lo - m, hi + m) for (lo, hi), m in zip(box, margin, strict=True))  # type: ignore[return-value]


def soft_edge(inside_mm: np.ndarray, s_mm: float) -> np.ndarray:
    """The logistic edge 1 / (1 + exp(-inside / s)) of SYNTHETIC_COHORT.md, where ``inside``
    is R - r, the depth inside the surface (negative outside)."""
    return expit(inside_mm / np.float32(s_mm)).astype(np.float32, copy=False)


def ramp_edge(inside_mm: np.ndarray, width_mm: float) -> np.ndarray:
    """Partial-volume coverage of a voxel of size ``width_mm`` by a surface at depth
    ``inside`` from its centre: a linear ramp, the analytic stand-in for supersampling."""
    return np.clip(inside_mm / np.float32(width_mm) + np.float32(0.5), 0.0, 1.0).astype(
        np.float32, copy=False
    )


def blend(field: np.ndarray, weight: np.ndarray, hu: float) -> None:
    """Draw a layer of density ``hu`` with opacity ``weight`` over ``field``, in place."""
    delta = np.subtract(np.float32(hu), field)
    delta *= weight
    field += delta


def ellipsoid_depth(
    dz: np.ndarray, dy: np.ndarray, dx: np.ndarray, semi: Vec3
) -> np.ndarray:
    """Approximate depth inside an ellipsoid (mm, negative outside) of points at offsets
    (dx, dy, dz) from its centre, measured along the ray from the centre."""
    a, b, c = semi
    rho = np.sqrt((dx / a) ** 2 + (dy / b) ** 2 + (dz / c) ** 2)
    r = np.sqrt(dx * dx + dy * dy + dz * dz)
    return ((1.0 - rho) * r / np.maximum(rho, 1e-6)).astype(np.float32, copy=False)


def segment_distance(
    z: np.ndarray, y: np.ndarray, x: np.ndarray, p0: Vec3, p1: Vec3
) -> np.ndarray:
    """Distance (mm) from each voxel centre to the segment p0-p1."""
    d = np.subtract(p1, p0, dtype=np.float64)
    length2 = float(d @ d)
    px, py, pz = x - np.float32(p0[0]), y - np.float32(p0[1]), z - np.float32(p0[2])
    if length2 == 0:
        t = np.float32(0)
    else:
        t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / length2, 0.0, 1.0).astype(np.float32)
    ex = px - t * np.float32(d[0])
    ey = py - t * np.float32(d[1])
    ez = pz - t * np.float32(d[2])
    return np.sqrt(ex * ex + ey * ey + ez * ez)


def line_distance(
    z: np.ndarray, y: np.ndarray, x: np.ndarray, point: Vec3, direction: Vec3
) -> np.ndarray:
    """Distance (mm) from each voxel centre to the infinite line through ``point``."""
    u = np.asarray(direction, dtype=np.float64)
    u = u / np.linalg.norm(u)
    px, py, pz = x - np.float32(point[0]), y - np.float32(point[1]), z - np.float32(point[2])
    t = px * np.float32(u[0]) + py * np.float32(u[1]) + pz * np.float32(u[2])
    ex, ey, ez = px - t * np.float32(u[0]), py - t * np.float32(u[1]), pz - t * np.float32(u[2])
    return np.sqrt(ex * ex + ey * ey + ez * ez)


def ellipsoid_wall_distance(point: ArrayLike, centre: Vec3, semi: Vec3) -> float:
    """Exact distance from a point inside an ellipsoid to its surface.

    The nearest surface point is x_i = a_i^2 q_i / (t + a_i^2) for the root t in
    (-min a_i^2, 0] of sum (a_i q_i / (t + a_i^2))^2 = 1, found by bisection (the sum is
    monotone there). Points outside return a negative distance along the ray.
    """
    p = np.asarray(point, dtype=np.float64)
    qx, qy, qz = float(p[0]) - centre[0], float(p[1]) - centre[1], float(p[2]) - centre[2]
    ax, ay, az = semi[0] ** 2, semi[1] ** 2, semi[2] ** 2
    rho2 = qx * qx / ax + qy * qy / ay + qz * qz / az
    if rho2 >= 1.0:
        return -math.sqrt(qx * qx + qy * qy + qz * qz) * (1 - 1 / math.sqrt(rho2))
    lo, hi = -min(ax, ay, az), 0.0
    for _ in range(60):
        t = 0.5 * (lo + hi)
        value = ax * (qx / (t + ax)) ** 2 + ay * (qy / (t + ay)) ** 2 + az * (qz / (t + az)) ** 2
        lo, hi = (t, hi) if value > 1.0 else (lo, t)
    t = 0.5 * (lo + hi)
    return math.sqrt((ax * qx / (t + ax) - qx) ** 2 + (ay * qy / (t + ay) - qy) ** 2
                     + (az * qz / (t + az) - qz) ** 2)


def random_unit_vector(rng: np.random.Generator) -> np.ndarray:
    """A direction drawn uniformly on the sphere."""
    v = rng.standard_normal(3)
    return v / math.sqrt(float(v @ v))


def random_in_ball(rng: np.random.Generator, radius: float) -> np.ndarray:
    """A point drawn uniformly in the ball of ``radius`` around the origin."""
    return random_unit_vector(rng) * radius * float(rng.random()) ** (1.0 / 3.0)
