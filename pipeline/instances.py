"""What the imaging stages read from one CT instance: its image planes and its rescale.

Classic CT Image Storage holds one image per instance; Enhanced CT Image Storage holds many
frames, with position, orientation, spacing and rescale in its functional groups (per frame or
shared). Both are flattened here into one ``ImageFrame`` per image so that series selection and
volume assembly treat them alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from pipeline.geometry import ImagePlane

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
CT_STORAGE_CLASSES = (CT_IMAGE_STORAGE, ENHANCED_CT_IMAGE_STORAGE)


class InstanceError(ValueError):
    """An instance lacks what the imaging stages need; ``str(error)`` is the reason."""


@dataclass(frozen=True)
class ImageFrame:
    """One image of an instance: its plane, rescale and reference for result objects.

    Attributes:
        frame: 0-based frame index inside the instance (0 for single-frame images).
        slope / intercept: RescaleSlope and RescaleIntercept to Hounsfield units.
    """

    sop_instance_uid: str
    frame: int
    plane: ImagePlane
    slope: float
    intercept: float


def image_frames(ds: Dataset) -> list[ImageFrame]:
    """The images of ``ds`` (one, or one per frame), or ``InstanceError`` saying what is missing."""
    uid = str(ds.get("SOPInstanceUID", ""))
    if not uid:
        raise InstanceError("instance has no SOPInstanceUID")
    try:
        shape = (int(ds.Rows), int(ds.Columns))
    except AttributeError:
        raise InstanceError(f"instance {uid} has no Rows/Columns") from None
    if "PerFrameFunctionalGroupsSequence" in ds:
        return _enhanced_frames(ds, uid, shape)
    plane = _plane(ds, ds, shape, uid)
    slope, intercept = _rescale(ds)
    return [ImageFrame(uid, 0, plane, slope, intercept)]


def _enhanced_frames(ds: Dataset, uid: str, shape: tuple[int, int]) -> list[ImageFrame]:
    shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
    frames = []
    for index, per_frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        position = _group(per_frame, shared, "PlanePositionSequence")
        orientation = _group(per_frame, shared, "PlaneOrientationSequence")
        measures = _group(per_frame, shared, "PixelMeasuresSequence")
        if position is None or orientation is None or measures is None:
            raise InstanceError(f"frame {index + 1} of {uid} lacks plane position/orientation")
        plane = _plane(position, _merged(orientation, measures), shape, uid)
        transform = _group(per_frame, shared, "PixelValueTransformationSequence")
        slope, intercept = _rescale(transform if transform is not None else ds)
        frames.append(ImageFrame(uid, index, plane, slope, intercept))
    return frames


def _group(per_frame: Dataset, shared: Dataset, keyword: str) -> Dataset | None:
    for source in (per_frame, shared):
        if keyword in source and len(source[keyword].value):
            item: Dataset = source[keyword].value[0]
            return item
    return None


def _merged(a: Dataset, b: Dataset) -> Dataset:
    out = Dataset()
    for source in (a, b):
        for element in source:
            out.add(element)
    return out


def _plane(pos_source: Any, geo_source: Any, shape: tuple[int, int], uid: str) -> ImagePlane:
    try:
        position = tuple(float(v) for v in pos_source.ImagePositionPatient)
        orientation = tuple(float(v) for v in geo_source.ImageOrientationPatient)
        spacing = tuple(float(v) for v in geo_source.PixelSpacing)
    except (AttributeError, TypeError, ValueError):
        raise InstanceError(
            f"instance {uid} lacks ImagePositionPatient, ImageOrientationPatient or PixelSpacing"
        ) from None
    if len(position) != 3 or len(orientation) != 6 or len(spacing) != 2:
        raise InstanceError(f"instance {uid} has malformed plane attributes")
    return ImagePlane(position, orientation, spacing, shape)


def _rescale(source: Any) -> tuple[float, float]:
    slope = source.get("RescaleSlope", 1.0)
    intercept = source.get("RescaleIntercept", 0.0)
    return float(slope if slope not in (None, "") else 1.0), float(intercept or 0.0)
