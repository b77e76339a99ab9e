"""Nodule candidates: blob-shaped densities of 5-30 mm inside the lungs, vessels rejected.

Full-resolution multi-scale filtering of a whole study costs tens of seconds (MEASURED.md),
so the search runs on a coarse grid restricted to the lungs' bounding box:
1. the box is shrunk by averaging to about ``GRID_MM``; HU are clipped to [-1000, -500] so a
   pure ground-glass nodule (-700..-500 HU) is not drowned by vessels (40 HU), and voxels
   outside the (slightly dilated) lung mask read as parenchyma, so the chest wall gives no
   response;
2. at each scale sigma the Gaussian-smoothed box gives the scale-normalised Laplacian; its
   local maxima are the blob-centre candidates (scales of 3 mm and more are computed on a grid
   twice as coarse);
3. at each candidate the Hessian's eigenvalues separate blobs (three strongly negative
   curvatures) from vessels (two; the one along the vessel is near zero): the blob measure is
   sigma^2 times the smallest-magnitude curvature, and the ratio smallest/largest must reach
   ``MIN_BLOB_RATIO``;
4. non-maximum suppression keeps the strongest candidate of each neighbourhood.
``pipeline.measure`` then segments each candidate at full resolution; its shape (elongation)
and size make the final decision (``pipeline.nodules``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from pipeline.lungmask import LungMask, shrink_factors

GRID_MM = 1.8
#: Smoothing scales (mm); a blob of radius r answers best at sigma = r / sqrt(3).
SCALES_MM = (1.5, 2.1, 3.0, 4.2, 6.0, 8.5)
COARSE_FROM_MM = 3.0
CLIP_HU = (-1000.0, -500.0)
PARENCHYMA_HU = -850.0
MIN_BLOB_RATIO = 0.5
#: Blob measure (HU) below which a local maximum is not a candidate.
MIN_SCORE = 15.0
#: Candidates kept per scale before suppression, and in all after it.
PER_SCALE = 300
MAX_CANDIDATES = 60
#: Margin (mm) around the lung mask searched: the mask's grid is coarse.
MARGIN_MM = 4.0


@dataclass(frozen=True)
class Candidate:
    """A possible nodule.

    Attributes:
        centre_mm: centre in patient coordinates (LPS, mm).
        diameter_mm: size estimate from the best-answering scale (2 * sqrt(3) * sigma).
        score: blob measure in HU (higher is more nodule-like).
        blob_ratio: smallest / largest Hessian curvature (1 = sphere, 0 = tube).
    """

    centre_mm: tuple[float, float, float]
    diameter_mm: float
    score: float
    blob_ratio: float


def find_candidates(volume: sitk.Image, lungs: LungMask) -> list[Candidate]:
    """Blob candidates inside ``lungs``, strongest first, after non-maximum suppression."""
    box = _search_box(volume, lungs)
    if box is None:
        return []
    fine = _grid(box, lungs, shrink_factors(box.GetSpacing(), GRID_MM))
    coarse = _grid(fine[0], lungs, [2, 2, 2])
    found: list[Candidate] = []
    for sigma in SCALES_MM:
        image, inside = coarse if sigma >= COARSE_FROM_MM else fine
        found += _candidates_at_scale(image, inside, sigma)
    return _suppress(sorted(found, key=lambda c: -c.score))[:MAX_CANDIDATES]


def _search_box(volume: sitk.Image, lungs: LungMask) -> sitk.Image | None:
    """The volume cropped to the lungs' bounding box plus ``MARGIN_MM``."""
    labels = lungs.array()
    occupied = np.nonzero(labels)
    if occupied[0].size == 0:
        return None
    bounds = [(int(a.min()), int(a.max())) for a in occupied[::-1]]  # x, y, z
    corners = [lungs.labels.TransformIndexToPhysicalPoint(corner)
               for corner in itertools.product(*bounds)]
    indices = np.array([volume.TransformPhysicalPointToContinuousIndex(c) for c in corners])
    margin = MARGIN_MM / np.array(volume.GetSpacing())
    start = np.clip(np.floor(indices.min(axis=0) - margin).astype(int), 0, None)
    stop = np.minimum(
        np.ceil(indices.max(axis=0) + margin).astype(int), np.array(volume.GetSize()) - 1
    )
    size = [int(v) for v in stop - start + 1]
    return sitk.RegionOfInterest(volume, size, [int(v) for v in start])


def _grid(
    image: sitk.Image, lungs: LungMask, factors: list[int]
) -> tuple[sitk.Image, np.ndarray]:
    """``image`` averaged by ``factors``, clipped, with outside-lung voxels set to parenchyma."""
    shrunk = sitk.Cast(sitk.BinShrink(image, factors), sitk.sitkFloat32)
    inside = sitk.Resample(lungs.labels, shrunk, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    hu = np.clip(sitk.GetArrayFromImage(shrunk), *CLIP_HU)
    mask = ndimage.binary_dilation(sitk.GetArrayViewFromImage(inside) > 0, iterations=1)
    hu[~mask] = PARENCHYMA_HU
    out = sitk.GetImageFromArray(hu)
    out.CopyInformation(shrunk)
    return out, mask


_NEIGHBOURS = [(dz, dy, dx) for dz in (-1, 0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
               if (dz, dy, dx) != (0, 0, 0)]


def _candidates_at_scale(image: sitk.Image, inside: np.ndarray, sigma: float) -> list[Candidate]:
    """Blob-shaped local maxima of the scale-normalised Laplacian at ``sigma`` mm."""
    smooth = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, sigma))
    sx, sy, sz = image.GetSpacing()
    d2 = [_second(smooth, axis, h) for axis, h in ((0, sz), (1, sy), (2, sx))]
    response = -(sigma**2) * (d2[0] + d2[1] + d2[2])
    response[:, :, [0, -1]] = response[:, [0, -1], :] = response[[0, -1], :, :] = 0.0
    # -Laplacian = sum of |curvatures| >= the blob measure: a safe first cut
    flat = np.flatnonzero((response > MIN_SCORE) & inside)
    if flat.size == 0:
        return []
    strides = np.array([response.shape[1] * response.shape[2], response.shape[2], 1])
    values = response.ravel()[flat]
    is_max = np.ones(flat.size, dtype=bool)
    for offset in _NEIGHBOURS:
        is_max &= values >= response.ravel()[flat + int(np.dot(offset, strides))]
    flat = flat[is_max]
    index = np.array(np.unravel_index(flat, response.shape)).T
    hessian = _hessian_at(smooth, index, (sz, sy, sx))
    eig = np.linalg.eigvalsh(hessian)  # ascending: most negative first
    ratio = np.where(eig[:, 0] < 0, eig[:, 2] / np.minimum(eig[:, 0], -1e-6), 0.0)
    score = -(sigma**2) * eig[:, 2]
    keep = np.flatnonzero((score >= MIN_SCORE) & (ratio >= MIN_BLOB_RATIO))
    keep = keep[np.argsort(-score[keep])[:PER_SCALE]]
    out = []
    for (k, j, i), s, r in zip(index[keep], score[keep], ratio[keep], strict=True):
        centre = image.TransformIndexToPhysicalPoint((int(i), int(j), int(k)))
        out.append(Candidate(tuple(centre), 2 * np.sqrt(3) * sigma, float(s), float(r)))
    return out


def _second(a: np.ndarray, axis: int, h: float) -> np.ndarray:
    """Second derivative along ``axis`` (spacing ``h``) by central differences; 0 at the ends."""
    out = np.zeros_like(a)
    core = [slice(1, -1) if ax == axis else slice(None) for ax in range(3)]
    lo = [slice(None, -2) if ax == axis else slice(None) for ax in range(3)]
    hi = [slice(2, None) if ax == axis else slice(None) for ax in range(3)]
    out[tuple(core)] = (a[tuple(lo)] + a[tuple(hi)] - 2 * a[tuple(core)]) / (h * h)
    return out


def _hessian_at(
    a: np.ndarray, index: np.ndarray, spacing: tuple[float, float, float]
) -> np.ndarray:
    """3x3 Hessians (z, y, x order) at the given voxel indices, by central differences."""
    out = np.empty((len(index), 3, 3))
    k = [index[:, 0], index[:, 1], index[:, 2]]

    def at(dz: int, dy: int, dx: int) -> np.ndarray:
        return a[k[0] + dz, k[1] + dy, k[2] + dx]

    unit = [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
    centre = at(0, 0, 0)
    for p in range(3):
        up, down = at(*unit[p]), at(*(-v for v in unit[p]))
        out[:, p, p] = (up + down - 2 * centre) / spacing[p] ** 2
        for q in range(p + 1, 3):
            plus = np.add(unit[p], unit[q])
            minus = np.subtract(unit[p], unit[q])
            cross = (at(*plus) + at(*-plus) - at(*minus) - at(*-minus)) / (
                4 * spacing[p] * spacing[q]
            )
            out[:, p, q] = out[:, q, p] = cross
    return out


def _suppress(ordered: list[Candidate]) -> list[Candidate]:
    """Drop each candidate closer to a stronger one than half the larger diameter."""
    if not ordered:
        return []
    centres = np.array([c.centre_mm for c in ordered])
    diameters = np.array([c.diameter_mm for c in ordered])
    alive = np.ones(len(ordered), dtype=bool)
    for i in range(len(ordered)):
        if not alive[i]:
            continue
        distance = np.linalg.norm(centres[i + 1 :] - centres[i], axis=1)
        reach = 0.5 * np.maximum(diameters[i + 1 :], diameters[i])
        alive[i + 1 :] &= distance > reach
    return [c for c, a in zip(ordered, alive, strict=True) if a]
