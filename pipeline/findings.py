"""The records that pass from analysis to the result objects (SR, SC, SEG).

The imaging stages fill ``NoduleMeasurements`` from a nodule's segmentation, the model fills
``NodulePrediction`` (model.pathology), and the result writers read ``NoduleFinding``s — one
set of types, so the SR, the summary image and the segmentation always describe the same
nodules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from model.pathology import NodulePrediction


class Laterality(StrEnum):
    """Which lung the nodule lies in (patient's right or left)."""

    RIGHT = "right"
    LEFT = "left"


@dataclass(frozen=True)
class NoduleMeasurements:
    """Geometry and attenuation of one nodule, measured on its segmentation.

    Attributes:
        centre_mm: centre in patient coordinates (DICOM LPS, mm).
        laterality: the lung it lies in.
        long_axis_mm / short_axis_mm: on the axial source image through the centre.
        volume_mm3 / equivalent_diameter_mm: of the whole nodule (ground glass + solid).
        solid_long_axis_mm: long axis of the solid component (0 for pure ground glass).
        ctr: consolidation-to-tumour ratio, solid long axis / long axis, in [0, 1].
        mean_hu: mean attenuation of the nodule in Hounsfield units.
        outline_image_uid: SOP Instance UID of the axial source image nearest the centre.
        outline: closed polygon outlining the nodule on that image, as (column, row) pixel
            coordinates (DICOM SCOORD order); the first point is not repeated at the end.
    """

    centre_mm: tuple[float, float, float]
    laterality: Laterality
    long_axis_mm: float
    short_axis_mm: float
    volume_mm3: float
    equivalent_diameter_mm: float
    solid_long_axis_mm: float
    ctr: float
    mean_hu: float
    outline_image_uid: str
    outline: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if len(self.outline) < 3:
            raise ValueError('Argument "outline" must have at least 3 points.')
        if not 0.0 <= self.ctr <= 1.0:
            raise ValueError(f'Argument "ctr" must lie in [0, 1], got {self.ctr}.')
        if self.short_axis_mm > self.long_axis_mm + 1e-6:
            raise ValueError('Argument "short_axis_mm" must not exceed "long_axis_mm".')


@dataclass(frozen=True)
class NoduleFinding:
    """One analysed nodule: what was measured, what the model predicts, and its mask.

    Attributes:
        number: 1-based, by decreasing P(IAC) (the SR's "nodule-N").
        mask: boolean segmentation on the analysed series' voxel grid, indexed
            (slice, row, column) in the order of the assembled volume's slices.
    """

    number: int
    measurements: NoduleMeasurements
    prediction: NodulePrediction
    mask: np.ndarray = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.number < 1:
            raise ValueError(f'Argument "number" must be >= 1, got {self.number}.')
        if self.mask.ndim != 3 or self.mask.dtype != np.bool_:
            raise ValueError('Argument "mask" must be a 3-D boolean array.')


def number_by_iac_probability(
    items: list[tuple[NoduleMeasurements, NodulePrediction, np.ndarray]],
) -> list[NoduleFinding]:
    """Number nodules 1..N by decreasing P(IAC), as the result contract requires."""
    ordered = sorted(items, key=lambda item: -item[1].probabilities[2])
    return [
        NoduleFinding(number=i, measurements=m, prediction=p, mask=mask)
        for i, (m, p, mask) in enumerate(ordered, start=1)
    ]
