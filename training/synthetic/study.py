"""Study mode: a complete synthetic chest CT study written as DICOM, with its ground truth.

The volume is rendered, blurred, noised and written slab by slab, so memory stays at a few
tens of slices whatever the study's length. With ``extra_series`` the study also holds a
LOCALIZER (an anterior-posterior projection) and a 5 mm soft-tissue reconstruction, the series
a pipeline must learn to pass over.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from training.synthetic.acquisition import (
    RESCALE_INTERCEPT,
    AcquisitionKind,
    to_int16,
)
from training.synthetic.dicom import (
    AXIAL_ORIENTATION,
    CORONAL_ORIENTATION,
    SeriesSpec,
    SeriesWriter,
    StudyIdentity,
)
from training.synthetic.geometry import Grid
from training.synthetic.scene import (
    NoduleSpec,
    Stream,
    item_seed_sequence,
    nodule_truth,
    render_region,
    sample_scene,
)
from training.synthetic.truth import SeriesTruth, StudyTruth

SLAB_SLICES = 48
THICK_MM = 5.0
THICK_SMOOTHING_MM = 0.8  #: in-plane blur of the soft-tissue kernel
LUNG_WINDOW = (-600, 1500)
SOFT_WINDOW = (40, 400)
TRUTH_FILE = "truth.json"


def generate_study(
    out_dir: Path,
    *,
    seed: int,
    index: int = 0,
    acquisition: AcquisitionKind | str = AcquisitionKind.STANDARD,
    n_nodules: int | None = None,
    extra_series: bool = False,
    nodules: Sequence[NoduleSpec] | None = None,
) -> StudyTruth:
    """Write study ``index`` of cohort ``seed`` into ``out_dir`` (created if needed) as one
    DICOM file per image plus ``truth.json``; return its ground truth.

    ``n_nodules`` None draws 0-3 nodules; ``nodules`` forces properties of each (tests).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    scene, noise_rng = sample_scene(
        item_seed_sequence(seed, index, Stream.STUDY), acquisition, n_nodules, nodules
    )
    identity = StudyIdentity.derive(seed, index)
    grid, acq = scene.grid, scene.acquisition
    nz, ny, nx = grid.shape
    px, _, dz = grid.spacing
    thin = SeriesWriter(out_dir, identity, SeriesSpec(
        number=2, description=f"Chest {dz:.2f} mm lung", kernel="LUNG",
        image_type=("ORIGINAL", "PRIMARY", "AXIAL"), rows=ny, columns=nx,
        pixel_spacing=(px, px), slice_thickness_mm=dz, orientation=AXIAL_ORIENTATION,
        window=LUNG_WINDOW,
    ), seed, index)
    projection = thick = None
    if extra_series:
        projection = np.zeros((nz, nx), dtype=np.float32)
        thick = np.zeros((max(1, int(nz * dz // THICK_MM)), ny, nx), dtype=np.float32)
    for k0 in range(0, nz, SLAB_SLICES):
        k1 = min(nz, k0 + SLAB_SLICES)
        hu = render_region(scene, ((k0, k1), (0, ny), (0, nx)), noise_rng)
        for k in range(k0, k1):
            thin.write(k + 1, to_int16(hu[k - k0], RESCALE_INTERCEPT), _position(grid, k))
        if projection is not None and thick is not None:
            projection[k0:k1] = hu.mean(axis=1)
            for k in range(k0, k1):
                for j, weight in _slab_weights(k, dz, len(thick)):
                    thick[j] += np.float32(weight) * hu[k - k0]
    series = [_series_truth(thin, "thin")]
    if projection is not None and thick is not None:
        series.append(_write_localizer(out_dir, identity, grid, projection, seed, index))
        series.append(_write_thick(out_dir, identity, grid, thick, seed, index))
    truth = StudyTruth(
        seed=seed, index=index, patient_id=identity.patient_id, study_uid=identity.study_uid,
        frame_of_reference_uid=identity.frame_of_reference_uid, acquisition=acq,
        rows=ny, columns=nx, slices=nz, anatomy=scene.phantom.summary(),
        nodules=tuple(nodule_truth(scene, n, labelled=True) for n in scene.nodules),
        series=tuple(sorted(series, key=lambda s: s.number)),
    )
    truth.write_json(out_dir / TRUTH_FILE)
    return truth


def _position(grid: Grid, k: int) -> tuple[float, float, float]:
    ox, oy, oz = grid.origin
    return ox, oy, oz + k * grid.spacing[2]


def _series_truth(writer: SeriesWriter, kind: str) -> SeriesTruth:
    spec = writer.spec
    return SeriesTruth(spec.number, writer.uid, spec.description, spec.kernel, kind, writer.count)


def _write_localizer(out_dir: Path, identity: StudyIdentity, grid: Grid, projection: np.ndarray,
                     seed: int, index: int) -> SeriesTruth:
    """An anterior-posterior projection: rows run from head to feet."""
    nz, nx = projection.shape
    px, _, dz = grid.spacing
    writer = SeriesWriter(out_dir, identity, SeriesSpec(
        number=1, description="Topogram 0.6 AP", kernel="T20s",
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"), rows=nz, columns=nx,
        pixel_spacing=(dz, px), slice_thickness_mm=None, orientation=CORONAL_ORIENTATION,
        window=(-500, 1000),
    ), seed, index)
    ox, _, oz = grid.origin
    top = (ox, 0.0, oz + (nz - 1) * dz)
    writer.write(1, to_int16(projection[::-1], RESCALE_INTERCEPT), top)
    return _series_truth(writer, "localizer")


def _slab_weights(k: int, dz: float, slabs: int) -> list[tuple[int, float]]:
    """The 5 mm slabs thin slice ``k`` falls in, with the fraction of each slab it fills.

    Slab j spans [5j, 5j + 5) mm from the bottom edge of the first thin slice, so the thick
    series has exactly 5 mm slices and spacing whatever the thin slice thickness.
    """
    low, high = k * dz, (k + 1) * dz
    first, last = int(low // THICK_MM), min(slabs - 1, int(high // THICK_MM))
    return [
        (j, (min(high, (j + 1) * THICK_MM) - max(low, j * THICK_MM)) / THICK_MM)
        for j in range(first, last + 1)
        if min(high, (j + 1) * THICK_MM) > max(low, j * THICK_MM)
    ]


def _write_thick(out_dir: Path, identity: StudyIdentity, grid: Grid, slabs: np.ndarray,
                 seed: int, index: int) -> SeriesTruth:
    """The 5 mm slabs (averages of the thin slices), smoothed in-plane like a soft-tissue
    kernel."""
    px, _, dz = grid.spacing
    writer = SeriesWriter(out_dir, identity, SeriesSpec(
        number=3, description=f"Chest {THICK_MM:.1f} mm soft tissue", kernel="STANDARD",
        image_type=("DERIVED", "SECONDARY", "AXIAL"), rows=grid.shape[1], columns=grid.shape[2],
        pixel_spacing=(px, px), slice_thickness_mm=THICK_MM, orientation=AXIAL_ORIENTATION,
        window=SOFT_WINDOW,
    ), seed, index)
    ox, oy, oz = grid.origin
    bottom = oz - dz / 2
    for j, slab in enumerate(slabs):
        image = gaussian_filter(slab, THICK_SMOOTHING_MM / px, truncate=3.0)
        centre_z = bottom + (j + 0.5) * THICK_MM
        writer.write(j + 1, to_int16(image, RESCALE_INTERCEPT), (ox, oy, centre_z))
    return _series_truth(writer, "thick")
