"""Where crops come from: manifest rows (DICOM series on disk) and synthetic boxes.

Both end in the pipeline's one crop function, ``pipeline.crop.crop``, with the recipe's
CropSpec: a box rendered by the synthetic generator is cropped exactly like a study is.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from functools import partial
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from model.crop_spec import CropSpec
from pipeline.analysis_input import segment_points
from pipeline.crop import crop
from pipeline.series import read_headers
from pipeline.volume import VolumeError, read_volume
from training.datasets import CropCache, NoduleSet, encode_labels
from training.manifest import ManifestRow
from training.synthetic.acquisition import AcquisitionKind
from training.synthetic.boxes import generate_box
from training.synthetic.cohort import parallel_map

logger = logging.getLogger(__name__)


class SourceError(ValueError):
    """A manifest row's image or segmentation cannot be used; the message names the line."""


def series_paths(folder: Path, series_uid: str | None) -> list[Path]:
    """The DICOM files of one series in ``folder`` (searched recursively): the series
    ``series_uid``, or the folder's only series when no UID is given."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for path, ds in read_headers(p for p in sorted(folder.rglob("*")) if p.is_file()):
        groups[str(ds.get("SeriesInstanceUID", ""))].append(path)
    if series_uid is not None:
        if series_uid not in groups:
            raise SourceError(f"no series {series_uid} in {folder}")
        return groups[series_uid]
    if len(groups) != 1:
        raise SourceError(f"{folder} holds {len(groups)} series; give study_dir + series_uid")
    return next(iter(groups.values()))


def seg_centre(path: Path, segment: int) -> tuple[float, float, float]:
    """The centroid (patient mm) of segment ``segment`` of a DICOM SEG file."""
    try:
        points = segment_points(pydicom.dcmread(path), [segment])[segment]
    except (InvalidDicomError, OSError, AttributeError, IndexError, KeyError, ValueError) as e:
        raise SourceError(f"cannot read segmentation {path}: {e}") from None
    if not len(points):
        raise SourceError(f"segment {segment} of {path} is empty or absent")
    x, y, z = points.mean(axis=0)
    return float(x), float(y), float(z)


def _row_crop(row: ManifestRow, spec: CropSpec, volumes: dict[str, sitk.Image]) -> np.ndarray:
    """The crop of one manifest row (volumes of a series are read once per run)."""
    key = f"{row.series_dir}|{row.series_uid}"
    try:
        if key not in volumes:
            volumes.clear()  # keep one volume in memory: rows of a series are adjacent
            volumes[key] = read_volume(series_paths(row.series_dir, row.series_uid)).image
        return crop(volumes[key], _centre(row), spec)
    except (VolumeError, OSError, ValueError) as e:
        raise SourceError(f"line {row.line}: cannot crop {row.series_dir}: {e}") from None


def _cache_key(row: ManifestRow, spec: CropSpec) -> str:
    """The crop cache key of a row: its series, its nodule position and the CropSpec."""
    series = f"{row.series_dir.resolve()}|{row.series_uid or ''}"
    if row.centre_mm is not None:
        return CropCache.key(series, row.centre_mm, spec)
    assert row.seg_file is not None
    return CropCache.key(f"{series}|{row.seg_file.resolve()}", (row.segment_number or 0, 0, 0),
                         spec)


def _centre(row: ManifestRow) -> tuple[float, float, float]:
    if row.centre_mm is not None:
        return row.centre_mm
    assert row.seg_file is not None and row.segment_number is not None
    return seg_centre(row.seg_file, row.segment_number)


def manifest_set(rows: list[ManifestRow], spec: CropSpec, cache: CropCache) -> NoduleSet:
    """Crops and labels of every manifest row, through the crop cache. A row whose image
    cannot be read raises ``SourceError`` naming its line: nothing is silently dropped."""
    ordered = sorted(rows, key=lambda r: (str(r.series_dir), r.series_uid or "", r.line))
    volumes: dict[str, sitk.Image] = {}
    crops = {row.line: cache.get(_cache_key(row, spec), partial(_row_crop, row, spec, volumes))
             for row in ordered}
    labels = [encode_labels(r.invasiveness, r.proportions) for r in rows]
    return NoduleSet(
        crops=np.stack([crops[r.line] for r in rows]),
        invasiveness=np.array([c for c, _ in labels], dtype=np.int64),
        proportions=np.stack([p for _, p in labels]),
        patient_ids=np.array([r.patient_id for r in rows]),
        nodule_ids=np.array([r.nodule_id for r in rows]),
        folds=np.array([-1 if r.fold is None else r.fold for r in rows], dtype=np.int64),
    )


def _box_crop(index: int, *, seed: int, acquisition: str, labelled: bool, spec: CropSpec
              ) -> tuple[np.ndarray, int, np.ndarray]:
    """Render box ``index`` and crop it; labels only where the set may see them."""
    image, truth = generate_box(seed=seed, index=index, acquisition=acquisition,
                                labelled=labelled, box_mm=spec.field_of_view_mm + 8.0)
    pathology = truth.pathology
    label, props = encode_labels(
        pathology.invasiveness if truth.labelled else None,
        [p / 100 for p in pathology.proportions] if truth.labelled else None,
    )
    return crop(image, truth.centre_mm, spec).astype(np.float16), label, props


def synthetic_set(seed: int, count: int, spec: CropSpec, *, labelled: bool = True,
                  acquisition: AcquisitionKind | str = AcquisitionKind.STANDARD,
                  workers: int | None = None, progress: str | None = None) -> NoduleSet:
    """``count`` synthetic nodules of the labelled (or unlabelled) box set ``seed``, rendered
    by several processes and cropped with ``spec``. Each box is its own patient."""
    job = partial(_box_crop, seed=seed, acquisition=str(acquisition), labelled=labelled,
                  spec=spec)
    items = parallel_map(job, count, workers, progress)
    kind = "box" if labelled else "unlabelled"
    ids = np.array([f"synthetic-{seed}-{kind}-{i:06d}" for i in range(count)])
    return NoduleSet(
        crops=np.stack([c for c, _, _ in items]) if items else np.zeros((0, *[spec.size] * 3),
                                                                           np.float16),
        invasiveness=np.array([c for _, c, _ in items], dtype=np.int64),
        proportions=np.stack([p for _, _, p in items]) if items else np.zeros((0, 7),
                                                                              np.float32),
        patient_ids=ids,
        nodule_ids=ids.copy(),
        folds=np.full(count, -1, dtype=np.int64),
    )


def cached_synthetic_set(cache: CropCache, seed: int, count: int, spec: CropSpec, *,
                         acquisition: AcquisitionKind | str = AcquisitionKind.STANDARD,
                         progress: str | None = None) -> NoduleSet:
    """``synthetic_set`` of labelled boxes, kept in the crop cache: the same seed, count,
    acquisition and CropSpec always give the same crops, so a second evaluation on the
    held-out set does not render it again."""
    key = CropCache.key(f"synthetic|{seed}|{count}|{acquisition}", (0.0, 0.0, 0.0), spec)
    path = cache.folder / f"{key}.npz"
    if path.is_file():
        with np.load(path) as f:
            return NoduleSet(*(f[name] for name in _SET_FIELDS))
    data = synthetic_set(seed, count, spec, acquisition=acquisition, progress=progress)
    partial_path = cache.folder / f"{key}.tmp.npz"
    np.savez(partial_path, **{name: getattr(data, name) for name in _SET_FIELDS})
    partial_path.replace(path)
    return data


_SET_FIELDS = ("crops", "invasiveness", "proportions", "patient_ids", "nodule_ids", "folds")
