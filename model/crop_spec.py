"""``CropSpec``: the preprocessing contract between the pipeline's crop function and a model.

A checkpoint records the CropSpec it was trained with; the pipeline's one crop function
(``pipeline.crop.crop``) takes it, in training and in serving alike, so a model never sees
crops made differently from those it learned on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CropSpec:
    """How to cut a nodule out of a CT volume for the model.

    Attributes:
        spacing_mm: isotropic voxel spacing of the crop, in mm; the volume is resampled
            (linear interpolation) onto this grid around the nodule centre.
        size: edge length of the cubic crop in voxels; the field of view is
            ``size * spacing_mm`` mm.
        hu_window: (low, high) Hounsfield units mapped linearly to [0, 1] and clipped.
        version: bumped whenever the crop function's behaviour for this spec changes; crop
            caches are keyed by it.

    The defaults (32 voxels of 1.6 mm, a 51.2 mm field of view) hold the largest synthetic
    nodule with its spicules (30 mm + 2 x 0.35 x 30 mm = 51 mm) and keep the student within
    its CPU budget; the measurements behind the choice are in docs/model.md.
    """

    spacing_mm: float = 1.6
    size: int = 32
    hu_window: tuple[float, float] = (-1000.0, 400.0)
    version: str = "1"

    def __post_init__(self) -> None:
        if not self.spacing_mm > 0:
            raise ValueError(f'Argument "spacing_mm" must be > 0, got {self.spacing_mm}.')
        if self.size < 8:
            raise ValueError(f'Argument "size" must be >= 8 voxels, got {self.size}.')
        low, high = self.hu_window
        if not low < high:
            raise ValueError(
                f'Argument "hu_window" must be (low, high) with low < high, got {self.hu_window}.'
            )
        if not self.version:
            raise ValueError('Argument "version" must not be empty.')

    @property
    def field_of_view_mm(self) -> float:
        """Edge length of the crop in mm."""
        return self.size * self.spacing_mm

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form for checkpoints and caches."""
        data = asdict(self)
        data["hu_window"] = list(self.hu_window)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CropSpec:
        """Inverse of ``to_dict``; unknown or missing keys raise ``ValueError``/``TypeError``."""
        return cls(
            spacing_mm=float(data["spacing_mm"]),
            size=int(data["size"]),
            hu_window=(float(data["hu_window"][0]), float(data["hu_window"][1])),
            version=str(data["version"]),
        )
