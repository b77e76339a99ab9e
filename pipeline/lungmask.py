"""Lung mask: where in the volume the lungs are, right and left apart.

Detection searches only inside the lungs and reports laterality from this mask, so it must be
fast (the whole study budget is seconds) rather than voxel-exact at the pleura. It works on a
grid shrunk by averaging to about ``MASK_SPACING_MM``:
1. low-density voxels (< -400 HU) not connected to the air around the body;
2. the airways (trachea, main bronchi) found from the top of that air and grown below -950 HU
   (lumen air, denser than parenchyma) are removed, so the two lungs part at the carina;
3. the two largest remaining components are the lungs; if the lungs touch (anterior
   junction), the one component is cut at the sagittal plane of least lung when that plane
   is a waist; a single lung (the other collapsed or resected) keeps one label;
4. holes (vessels, nodules enclosed in the parenchyma) are filled image by image;
5. labels: 1 = right lung (the patient's right: smaller LPS x than the body's midline),
   2 = left lung.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from pipeline.findings import Laterality

MASK_SPACING_MM = 2.0
LUNG_MAX_HU = -400
AIRWAY_MAX_HU = -950
#: A lung is at least this large; smaller air pockets (bowel gas, oesophagus) are ignored.
MIN_LUNG_ML = 50.0
#: The top image of the air region is airway, not lung apex, when its median is below this.
AIRWAY_MEDIAN_HU = -940.0
#: 4-connectivity within an image, none across images.
_IN_PLANE = np.zeros((3, 3, 3), dtype=bool)
_IN_PLANE[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
#: The second air region counts as a lung only if at least this fraction of the first.
SECOND_LUNG_FRACTION = 0.25
#: Lungs touching in the midline are cut where the left-right profile is below this
#: fraction of both lungs' thickest parts.
WAIST = 0.5


class LungMaskError(ValueError):
    """No lungs were found; ``str(error)`` is the reason for the audit log."""


@dataclass(frozen=True)
class LungMask:
    """Lung labels (0 outside, 1 right, 2 left) on a coarse grid in patient space.

    Attributes:
        labels: uint8 SimpleITK image sharing the volume's origin and direction.
        volumes_ml: (right, left) lung volumes in millilitres.
    """

    labels: sitk.Image
    volumes_ml: tuple[float, float]

    def array(self) -> np.ndarray:
        """The labels as a (z, y, x) uint8 array (a copy)."""
        return sitk.GetArrayFromImage(self.labels)

    def laterality_at(self, point_mm: Sequence[float]) -> Laterality | None:
        """The lung containing ``point_mm``, or ``None`` outside both lungs."""
        index = self.labels.TransformPhysicalPointToIndex(tuple(float(v) for v in point_mm))
        size = self.labels.GetSize()
        if not all(0 <= i < n for i, n in zip(index, size, strict=True)):
            return None
        label = self.labels[index]
        return {1: Laterality.RIGHT, 2: Laterality.LEFT}.get(int(label))


def shrink_factors(spacing: Sequence[float], target_mm: float) -> list[int]:
    """Integer factors that bring ``spacing`` close to ``target_mm`` without exceeding it much."""
    return [max(1, round(target_mm / s)) for s in spacing]


def lung_mask(volume: sitk.Image) -> LungMask:
    """Segment and label the lungs of a HU volume (``pipeline.volume``)."""
    coarse = sitk.BinShrink(volume, shrink_factors(volume.GetSpacing(), MASK_SPACING_MM))
    hu = sitk.GetArrayViewFromImage(coarse)
    voxel_ml = float(np.prod(coarse.GetSpacing())) / 1000.0
    air = _internal_air(hu)
    superior_last = coarse.GetDirection()[8] > 0
    air &= ~_airways(hu, air, superior_last)
    lungs = _two_lungs(air, voxel_ml)
    lungs = _fill_in_plane(lungs)
    labels = _right_left(lungs, coarse, hu > LUNG_MAX_HU)
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(coarse)
    counts = np.bincount(labels.ravel(), minlength=3)
    return LungMask(image, (float(counts[1] * voxel_ml), float(counts[2] * voxel_ml)))


def _internal_air(hu: np.ndarray) -> np.ndarray:
    """Low-density voxels not connected to the air around the body."""
    low = hu < LUNG_MAX_HU
    labels, _ = ndimage.label(low)
    edge = np.concatenate([labels[:, 0].ravel(), labels[:, -1].ravel(),
                           labels[:, :, 0].ravel(), labels[:, :, -1].ravel()])
    outside = np.unique(edge[edge > 0])
    return low & ~np.isin(labels, outside)


def _airways(hu: np.ndarray, air: np.ndarray, superior_last: bool) -> np.ndarray:
    """Trachea and main bronchi: lumen air grown from the top of the internal air."""
    occupied = np.flatnonzero(air.any(axis=(1, 2)))
    if occupied.size == 0:
        return np.zeros_like(air)
    z = occupied[-1] if superior_last else occupied[0]
    if not np.median(hu[z][air[z]]) < AIRWAY_MEDIAN_HU:
        return np.zeros_like(air)  # the top of the air is lung apex: no trachea in view
    lumen = air & (hu < AIRWAY_MAX_HU)
    labels, _ = ndimage.label(lumen)
    seeds = np.unique(labels[z][lumen[z]])
    airway = np.isin(labels, seeds[seeds > 0])
    if airway.sum() > 0.2 * air.sum():
        return np.zeros_like(air)  # leaked into emphysematous lung: keep the lungs whole
    return ndimage.binary_dilation(airway, iterations=1)


def _two_lungs(air: np.ndarray, voxel_ml: float) -> np.ndarray:
    labels, n = ndimage.label(air)
    if n == 0:
        raise LungMaskError("no air-filled region inside the body: no lungs found")
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    largest = sizes[order[0]]
    if largest * voxel_ml < MIN_LUNG_ML:
        raise LungMaskError(
            f"largest air region inside the body is {largest * voxel_ml:.0f} mL: no lungs"
        )
    keep = [order[0] + 1]
    if n > 1 and sizes[order[1]] >= SECOND_LUNG_FRACTION * largest:
        keep.append(order[1] + 1)
    return np.isin(labels, keep)


def _fill_in_plane(mask: np.ndarray) -> np.ndarray:
    """Fill holes image by image (vessels and nodules enclosed in the lung)."""
    background, _ = ndimage.label(~mask, structure=_IN_PLANE)
    edge = np.concatenate([background[:, 0].ravel(), background[:, -1].ravel(),
                           background[:, :, 0].ravel(), background[:, :, -1].ravel()])
    outside = np.zeros(int(background.max()) + 1, dtype=bool)
    outside[edge] = True
    outside[0] = True
    return mask | ~outside[background]


def _right_left(lungs: np.ndarray, grid: sitk.Image, body: np.ndarray) -> np.ndarray:
    """Label each lung by its side. One component holding both lungs (a waist in its
    left-right profile) is cut at the waist; a single lung takes the side of the body's
    midline it lies on."""
    labels, n = ndimage.label(lungs)
    if n < 2:
        labels = _cut_at_waist(lungs)
    origin, spacing = grid.GetOrigin()[0], grid.GetSpacing()[0]
    physical_x = origin + grid.GetDirection()[0] * np.arange(lungs.shape[2]) * spacing
    midline = float(physical_x[np.nonzero(body)[2]].mean())
    out = np.zeros(lungs.shape, dtype=np.uint8)
    for k in (1, 2):
        part = labels == k
        if part.any():
            out[part] = 1 if physical_x[np.nonzero(part)[2]].mean() < midline else 2
    return out


def _cut_at_waist(lungs: np.ndarray) -> np.ndarray:
    """Labels 1 and 2 on either side of the sagittal plane of least lung, if that plane is a
    waist (under ``WAIST`` of the thickest part on each side); else all 1."""
    profile = lungs.sum(axis=(0, 1))
    columns = np.flatnonzero(profile)
    lo, hi = columns[0], columns[-1]
    middle = slice(lo + (hi - lo) // 4, hi - (hi - lo) // 4 + 1)
    cut = middle.start + int(np.argmin(profile[middle]))
    labels = lungs.astype(np.int32)
    if profile[cut] < WAIST * min(profile[:cut].max(initial=0), profile[cut:].max(initial=0)):
        labels[:, :, cut:][lungs[:, :, cut:]] = 2
    return labels
