"""Cohorts: many studies or boxes made by several processes, with their CSV ground truth.

Every item draws from its own seed sequence (cohort seed, item index, set), and the CSV rows
are written in item order once all items are done, so the files do not depend on how many
processes made them or in which order they finished.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from training.synthetic.acquisition import AcquisitionKind, acquisition_kind
from training.synthetic.boxes import DEFAULT_BOX_MM, box_name, generate_box, write_box
from training.synthetic.study import generate_study
from training.synthetic.truth import (
    LABEL_COLUMNS,
    NODULE_COLUMNS,
    NoduleTruth,
    StudyTruth,
    write_csv,
)

T = TypeVar("T")
STUDIES_CSV = "studies.csv"
NODULES_CSV = "nodules.csv"
BOXES_CSV = "boxes.csv"
WITHHELD_CSV = "withheld.csv"


def parallel_map(
    function: Callable[[int], T], count: int, workers: int | None, label: str | None
) -> list[T]:
    """``[function(i) for i in range(count)]`` over ``workers`` processes (None: all cores),
    in index order, with a progress bar when ``label`` is given."""
    if count < 0:
        raise ValueError(f'Argument "count" must be >= 0, got {count}.')
    if workers is not None and workers < 1:
        raise ValueError(f'Argument "workers" must be >= 1, got {workers}.')
    workers = workers or os.cpu_count() or 1
    if workers == 1 or count <= 1:
        return list(_progress(map(function, range(count)), count, label))
    chunk = max(1, count // (workers * 16))  # fewer round trips for many small items
    with ProcessPoolExecutor(workers) as pool:
        return list(_progress(pool.map(function, range(count), chunksize=chunk), count, label))


def _progress(results: Iterable[T], count: int, label: str | None) -> Iterable[T]:
    return tqdm(results, total=count, desc=label, unit="item", disable=label is None)


def study_folder(index: int) -> str:
    return f"study_{index:05d}"


def _one_study(index: int, *, out: Path, seed: int, acquisition: str,
               extra_series: bool) -> StudyTruth:
    return generate_study(out / study_folder(index), seed=seed, index=index,
                          acquisition=acquisition, extra_series=extra_series)


def generate_studies(
    out: Path,
    count: int,
    *,
    seed: int,
    acquisition: AcquisitionKind | str = AcquisitionKind.STANDARD,
    workers: int | None = None,
    extra_series: bool = False,
    progress: bool = False,
) -> list[StudyTruth]:
    """``count`` studies in ``out/study_NNNNN/`` plus ``studies.csv`` and ``nodules.csv``."""
    out.mkdir(parents=True, exist_ok=True)
    job = partial(_one_study, out=out, seed=seed, acquisition=str(acquisition_kind(acquisition)),
                  extra_series=extra_series)
    truths = parallel_map(job, count, workers, "studies" if progress else None)
    studies = [{"folder": study_folder(t.index), **t.study_row()} for t in truths]
    write_csv(out / STUDIES_CSV, studies)
    write_csv(out / NODULES_CSV, [
        {"folder": study_folder(t.index), "study_uid": t.study_uid, "series_uid": t.series_uid,
         "nodule": i, **n.as_row()}
        for t in truths for i, n in enumerate(t.nodules)
    ], columns=_nodule_columns(["folder", "study_uid", "series_uid", "nodule"]))
    return truths


def _one_box(index: int, *, out: Path, seed: int, acquisition: str, labelled: bool,
             box_mm: float) -> dict[str, Any]:
    image, truth = generate_box(seed=seed, index=index, acquisition=acquisition,
                                labelled=labelled, box_mm=box_mm)
    name = box_name(index, labelled)
    write_box(out, name, image)
    return _box_row(name, image.GetSpacing(), image.GetSize(), truth)


def _box_row(name: str, spacing: tuple[float, ...], size: tuple[int, ...],
             truth: NoduleTruth) -> dict[str, Any]:
    return {
        "file": f"{name}.mha", "spacing_x_mm": round(spacing[0], 6),
        "spacing_y_mm": round(spacing[1], 6), "spacing_z_mm": round(spacing[2], 6),
        "size_x": size[0], "size_y": size[1], "size_z": size[2],
        "_revealed": truth.as_row(reveal=True), **truth.as_row(),
    }


def generate_boxes(
    out: Path,
    count: int,
    *,
    seed: int,
    acquisition: AcquisitionKind | str = AcquisitionKind.STANDARD,
    labelled: bool = True,
    workers: int | None = None,
    box_mm: float = DEFAULT_BOX_MM,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """``count`` boxes as ``.mha`` files in ``out`` with ``boxes.csv`` (and, for an unlabelled
    set, the withheld labels in ``withheld.csv``); returns the CSV rows."""
    out.mkdir(parents=True, exist_ok=True)
    job = partial(_one_box, out=out, seed=seed, acquisition=str(acquisition_kind(acquisition)),
                  labelled=labelled, box_mm=box_mm)
    rows = parallel_map(job, count, workers, "boxes" if progress else None)
    revealed = [row.pop("_revealed") for row in rows]
    write_csv(out / BOXES_CSV, rows)
    if not labelled:
        write_csv(out / WITHHELD_CSV, [
            {"file": row["file"], **{k: r[k] for k in LABEL_COLUMNS}}
            for row, r in zip(rows, revealed, strict=True)
        ])
    return rows


def _nodule_columns(prefix: list[str]) -> list[str]:
    """The header of a nodule CSV (also when the cohort holds no nodule)."""
    return [*prefix, *NODULE_COLUMNS]
