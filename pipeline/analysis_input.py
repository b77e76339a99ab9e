"""Nodules given in the study: a segmentation (SEG) or a TID 1500 report (SR) from elsewhere.

A radiologist's workstation or another CAD may already have marked the nodules. When the
study carries such an object, not produced by lungpath itself (Manufacturer "lungpath"), on
the analysed series' frame of reference, its nodules are analysed instead of detected ones:
a SEG segment whose label or property type names a nodule, or each region of interest
(SCOORD on a referenced image, or SCOORD3D) of an SR measurement group.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from pipeline.volume import Volume

OWN_MANUFACTURER = "lungpath"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: SNOMED CT codes of a nodule: Nodule, Pulmonary nodule, Lung nodule, Mass.
NODULE_CODES = {"27925004", "786838002", "427359005", "4147007"}
MEASUREMENT_GROUP = "125007"


@dataclass(frozen=True)
class GivenNodule:
    """A nodule marked in the study.

    Attributes:
        centre_mm: centre in patient coordinates (LPS, mm).
        diameter_mm: size of the marking (volume-equivalent for a segment, largest extent
            for a region), ``None`` for a point.
        source: which object and which segment or region, for the audit log.
    """

    centre_mm: tuple[float, float, float]
    diameter_mm: float | None
    source: str


def given_nodules(
    datasets: Iterable[Dataset], frame_of_reference_uid: str, volume: Volume
) -> list[GivenNodule]:
    """The nodules marked by foreign SEG and SR objects on ``frame_of_reference_uid``."""
    found: list[GivenNodule] = []
    for ds in datasets:
        if str(ds.get("Manufacturer", "")).strip().lower() == OWN_MANUFACTURER:
            continue
        modality = str(ds.get("Modality", ""))
        if modality == "SEG" and str(ds.get("FrameOfReferenceUID", "")) == frame_of_reference_uid:
            found += _segments(ds)
        elif modality == "SR":
            found += _regions(ds, volume)
    return found


def _is_nodule_segment(segment: Dataset) -> bool:
    label = str(segment.get("SegmentLabel", "")).lower()
    codes = segment.get("SegmentedPropertyTypeCodeSequence", [])
    meanings = " ".join(str(c.get("CodeMeaning", "")).lower() for c in codes)
    values = {str(c.get("CodeValue", "")) for c in codes}
    return "nodule" in label or "nodule" in meanings or bool(values & NODULE_CODES)


def segment_points(ds: Dataset, numbers: Iterable[int]) -> dict[int, np.ndarray]:
    """Patient coordinates (LPS, mm) of the set voxels of each segment in ``numbers`` of a
    DICOM SEG, one (N, 3) array per segment (N = 0 for an empty segment).

    The one reading of a SEG's geometry: the node uses it for nodules given in a study, the
    training manifest for a nodule given by a segment.
    """
    wanted = set(numbers)
    shared = ds.SharedFunctionalGroupsSequence[0]
    orientation = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    row_spacing, col_spacing = (float(v) for v in
                                shared.PixelMeasuresSequence[0].PixelSpacing)
    frames = np.asarray(ds.pixel_array).reshape(-1, int(ds.Rows), int(ds.Columns))
    points: dict[int, list[np.ndarray]] = {n: [] for n in wanted}
    for frame, item in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        # with one segment, its identification may sit in the shared groups
        identification = item if "SegmentIdentificationSequence" in item else shared
        number = int(identification.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        if number not in wanted or not frame.any():
            continue
        position = np.array(item.PlanePositionSequence[0].ImagePositionPatient, float)
        rows, cols = np.nonzero(frame)
        points[number].append(
            position
            + np.outer(cols * col_spacing, orientation[:3])
            + np.outer(rows * row_spacing, orientation[3:])
        )
    return {n: np.concatenate(chunks) if chunks else np.zeros((0, 3)) for n, chunks in
            points.items()}


def _segments(ds: Dataset) -> list[GivenNodule]:
    segments = ds.get("SegmentSequence", [])
    wanted = {int(s.SegmentNumber): s for s in segments if _is_nodule_segment(s)}
    if not wanted:
        return []
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    row_spacing, col_spacing = (float(v) for v in measures.PixelSpacing)
    thickness = float(measures.get("SliceThickness", 0) or measures.get("SpacingBetweenSlices", 1))
    out = []
    for number, voxels in segment_points(ds, wanted).items():
        if not len(voxels):
            continue
        volume = len(voxels) * row_spacing * col_spacing * thickness
        out.append(GivenNodule(
            centre_mm=_triple(voxels.mean(axis=0)),
            diameter_mm=(6 * volume / math.pi) ** (1 / 3),
            source=f"SEG {ds.SOPInstanceUID} segment {number} "
                   f"({wanted[number].get('SegmentLabel', '')})",
        ))
    return out


def _regions(ds: Dataset, volume: Volume) -> list[GivenNodule]:
    out = []
    for group in _measurement_groups(ds.get("ContentSequence", [])):
        for item in _walk(group.get("ContentSequence", [])):
            points = _points(item, volume)
            if points is None:
                continue
            extent = _extent(points, str(item.GraphicType))
            out.append(GivenNodule(
                centre_mm=_triple(_centre(points, str(item.GraphicType))),
                diameter_mm=extent,
                source=f"SR {ds.SOPInstanceUID} region {str(item.GraphicType).lower()}",
            ))
    return out


def _walk(items: Sequence[Dataset]) -> Iterable[Dataset]:
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def _measurement_groups(items: Sequence[Dataset]) -> Iterable[Dataset]:
    for item in _walk(items):
        concept = item.get("ConceptNameCodeSequence", [Dataset()])[0]
        if item.get("ValueType") == "CONTAINER" and concept.get("CodeValue") == MEASUREMENT_GROUP:
            yield item


def _points(item: Dataset, volume: Volume) -> np.ndarray | None:
    """The region's points in patient mm (SCOORD through its referenced image)."""
    kind = item.get("ValueType")
    data = np.array(item.get("GraphicData", []), dtype=float)
    if kind == "SCOORD3D":
        return data.reshape(-1, 3)
    if kind != "SCOORD":
        return None
    image = next((i for i in item.get("ContentSequence", []) if i.get("ValueType") == "IMAGE"),
                 None)
    if image is None:
        return None
    uid = str(image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
    if uid not in volume.sop_instance_uids:
        return None  # an image of another series
    z = volume.sop_instance_uids.index(uid)
    columns_rows = data.reshape(-1, 2) - 0.5  # SCOORD: pixel corner origin; ITK: centres
    return np.array([
        volume.image.TransformContinuousIndexToPhysicalPoint((float(c), float(r), float(z)))
        for c, r in columns_rows
    ])


def _centre(points: np.ndarray, graphic: str) -> np.ndarray:
    if graphic == "CIRCLE":
        return points[0]
    closed = len(points) > 1 and np.allclose(points[0], points[-1])
    if graphic in ("POLYGON", "POLYLINE") and closed:
        points = points[:-1]
    return points.mean(axis=0)


def _extent(points: np.ndarray, graphic: str) -> float | None:
    if graphic == "POINT" or len(points) < 2:
        return None
    if graphic == "CIRCLE":
        return float(2 * np.linalg.norm(points[1] - points[0]))
    return float(np.max(np.linalg.norm(points[:, None] - points[None], axis=2)))


def _triple(v: np.ndarray) -> tuple[float, float, float]:
    return float(v[0]), float(v[1]), float(v[2])
