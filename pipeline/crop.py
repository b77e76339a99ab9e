"""The one crop function: a nodule's neighbourhood as the model sees it.

Training (study crops and box-mode renders) and serving both call ``crop`` with the
checkpoint's ``CropSpec``, so the model is never shown crops made differently from those it
learned on. The crop is resampled (linear interpolation) onto an isotropic grid whose axes are
the patient axes (LPS), whatever the source's direction, so feet-first and head-first series
give the same crop. It is indexed (z, y, x), the numpy order of a SimpleITK image with identity
direction: z increases towards +S (head), y towards +P, x towards +L.
HU are mapped linearly from the spec's window to [0, 1] and clipped; space outside the volume
reads as air.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from model.crop_spec import CropSpec

AIR_HU = -1024.0


def crop(volume: sitk.Image, centre_mm: Sequence[float], spec: CropSpec) -> np.ndarray:
    """A (size, size, size) float32 array in [0, 1] centred on ``centre_mm`` (patient mm)."""
    if volume.GetDimension() != 3 or volume.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError('Argument "volume" must be a 3-D scalar image.')
    centre = np.asarray(centre_mm, dtype=float)
    if centre.shape != (3,) or not np.all(np.isfinite(centre)):
        raise ValueError(f'Argument "centre_mm" must be 3 finite numbers, got {centre_mm!r}.')
    half = (spec.size - 1) / 2 * spec.spacing_mm
    resampled = sitk.Resample(
        volume,
        [spec.size] * 3,
        sitk.Transform(),
        sitk.sitkLinear,
        tuple(float(v) for v in centre - half),
        [spec.spacing_mm] * 3,
        (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0),
        AIR_HU,
        sitk.sitkFloat32,
    )
    hu = sitk.GetArrayFromImage(resampled)
    low, high = spec.hu_window
    out = (hu - np.float32(low)) / np.float32(high - low)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def crop_batch(
    volume: sitk.Image, centres_mm: Sequence[Sequence[float]], spec: CropSpec
) -> np.ndarray:
    """Crops of several nodules as one (N, size, size, size) float32 array."""
    out = np.empty((len(centres_mm), spec.size, spec.size, spec.size), dtype=np.float32)
    for i, centre in enumerate(centres_mm):
        out[i] = crop(volume, centre, spec)
    return out
