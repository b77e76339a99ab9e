"""Slice-stack geometry: the order of a series' images and the grid they form in patient space.

Images are ordered by their position along the slice normal (the cross product of the row and
column directions of ImageOrientationPatient), never by InstanceNumber, so feet-first and
head-first acquisitions and shuffled numbering give the same stack. The checks here decide
whether a series forms one regular grid; each refusal is a ``GeometryError`` whose message is
the reason recorded in the audit log.

Policies (docs/pipeline.md):
- all images must share orientation, matrix size and pixel spacing;
- consecutive spacings must lie within [0.5, 1.5] x their median (a larger step is a gap of
  missing images, a smaller one an overlapping second acquisition); accepted stacks use the
  mean spacing;
- a gantry tilt (slice positions moving along a direction other than the normal) up to
  ``MAX_TILT_DEGREES`` is accepted and the stack is resampled onto an orthogonal grid by
  ``pipeline.volume``; a steeper tilt is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Largest gantry tilt the pipeline resamples; scanners tilt at most about 30 degrees.
MAX_TILT_DEGREES = 30.0
#: A tilt below this is treated as none (rounding in the stored positions).
TILT_TOLERANCE_DEGREES = 0.5
#: A step between consecutive images larger than this multiple of the median is a gap.
GAP_FACTOR = 1.5


class GeometryError(ValueError):
    """The images do not form one regular grid; ``str(error)`` is the reason."""


@dataclass(frozen=True)
class ImagePlane:
    """Where one image (or one frame of a multi-frame image) lies in patient space.

    Attributes:
        position: ImagePositionPatient, centre of the first transmitted pixel (mm, LPS).
        orientation: ImageOrientationPatient, row direction then column direction.
        pixel_spacing: (between rows, between columns) in mm, DICOM PixelSpacing order.
        shape: (rows, columns).
    """

    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    pixel_spacing: tuple[float, float]
    shape: tuple[int, int]


@dataclass(frozen=True)
class StackGeometry:
    """The regular grid a checked stack of images forms.

    Attributes:
        order: indices into the input planes, sorted by position along the normal.
        origin: position of the first sorted image (mm).
        direction: 3x3 matrix whose columns are the column-index, row-index and slice-index
            directions (SimpleITK's convention).
        spacing: (column, row, slice) spacing in mm; slice spacing along the normal.
        shift_per_slice_px: in-plane displacement of each next image caused by a gantry tilt,
            (rows, columns) in pixels; (0, 0) when not tilted.
        tilt_degrees: the gantry tilt angle (0 when below the tolerance).
    """

    order: tuple[int, ...]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    spacing: tuple[float, float, float]
    shift_per_slice_px: tuple[float, float]
    tilt_degrees: float


def stack_geometry(planes: Sequence[ImagePlane]) -> StackGeometry:
    """Order ``planes`` along the slice normal and check that they form one regular grid."""
    if len(planes) < 2:
        raise GeometryError(f"a volume needs at least 2 images, got {len(planes)}")
    _require_same(planes)
    row = np.array(planes[0].orientation[:3], dtype=float)
    col = np.array(planes[0].orientation[3:], dtype=float)
    normal = np.cross(row, col)
    if not math.isclose(float(np.linalg.norm(normal)), 1.0, abs_tol=1e-3):
        raise GeometryError("ImageOrientationPatient is not two orthonormal directions")
    positions = np.array([p.position for p in planes], dtype=float)
    along = positions @ normal
    order = np.argsort(along, kind="stable")
    steps = np.diff(along[order])
    _check_steps(steps)
    n = len(planes)
    sorted_pos = positions[order]
    step_vec = (sorted_pos[-1] - sorted_pos[0]) / (n - 1)
    slice_spacing = float(step_vec @ normal)
    in_plane = step_vec - slice_spacing * normal
    tilt = math.degrees(math.atan2(float(np.linalg.norm(in_plane)), slice_spacing))
    row_spacing, col_spacing = planes[0].pixel_spacing
    if tilt > MAX_TILT_DEGREES:
        raise GeometryError(
            f"gantry tilt of {tilt:.1f} degrees exceeds the {MAX_TILT_DEGREES:.0f} degrees "
            "the pipeline resamples"
        )
    if tilt < TILT_TOLERANCE_DEGREES:
        tilt, shift = 0.0, (0.0, 0.0)
    else:
        shift = (float(in_plane @ col) / row_spacing, float(in_plane @ row) / col_spacing)
    direction = np.column_stack([row, col, normal])
    return StackGeometry(
        order=tuple(int(i) for i in order),
        origin=tuple(float(v) for v in sorted_pos[0]),  # type: ignore[arg-type]
        direction=tuple(float(v) for v in direction.ravel()),
        spacing=(col_spacing, row_spacing, slice_spacing),
        shift_per_slice_px=shift,
        tilt_degrees=round(tilt, 2),
    )


def _require_same(planes: Sequence[ImagePlane]) -> None:
    first = planes[0]
    shapes = {p.shape for p in planes}
    if len(shapes) > 1:
        counts = {s: sum(p.shape == s for p in planes) for s in shapes}
        listed = ", ".join(f"{r}x{c}: {k}" for (r, c), k in sorted(counts.items()))
        raise GeometryError(f"mixed matrix sizes ({listed} images)")
    for p in planes:
        if not np.allclose(p.orientation, first.orientation, atol=1e-3):
            raise GeometryError("images have different orientations")
        if not np.allclose(p.pixel_spacing, first.pixel_spacing, rtol=1e-3):
            raise GeometryError("images have different pixel spacings")
    if min(first.pixel_spacing) <= 0:
        raise GeometryError(f"pixel spacing {first.pixel_spacing} is not positive")


def _check_steps(steps: np.ndarray) -> None:
    median = float(np.median(steps))
    if median < 1e-3:
        raise GeometryError("several images share one position (more than one acquisition?)")
    largest, smallest = float(steps.max()), float(steps.min())
    if largest > GAP_FACTOR * median:
        raise GeometryError(
            f"gap of {largest:.2f} mm between images, more than {GAP_FACTOR} x the median "
            f"spacing of {median:.2f} mm (missing images)"
        )
    if smallest < median / 2:
        raise GeometryError(
            f"images {smallest:.2f} mm apart, under half the median spacing of {median:.2f} mm "
            "(overlapping acquisitions)"
        )
