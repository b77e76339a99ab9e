"""Ground truth of the synthetic cohort: per nodule, per study (JSON) and per cohort (CSV).

A nodule's labels are always known to the generator; ``labelled`` says whether a training set
may see them. ``NoduleTruth.as_row()`` blanks the labels of an unlabelled nodule, so that what
a training set reads is what it is allowed to use.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.pathology import PATTERNS
from training.synthetic.acquisition import Acquisition
from training.synthetic.geometry import Vec3
from training.synthetic.nodule import NoduleShape
from training.synthetic.pathology import NodulePathology

LABEL_COLUMNS = ("invasiveness", *(p.value for p in PATTERNS), "predominant", "grade")
NODULE_COLUMNS = (
    "centre_x_mm", "centre_y_mm", "centre_z_mm", "diameter_mm", "core_diameter_mm",
    "rendered_volume_mm3", "volume_equivalent_diameter_mm", "shell_hu", "core_hu",
    "lobulation", "spikes", "bubbles", "air_bronchogram", "labelled", *LABEL_COLUMNS,
)


def _round(value: float) -> float:
    """Four decimals: enough for mm and HU, and stable text across platforms."""
    return round(float(value), 4)


@dataclass(frozen=True)
class NoduleTruth:
    """What the generator knows about one nodule."""

    centre_mm: Vec3
    pathology: NodulePathology
    shape: NoduleShape
    rendered_volume_mm3: float
    volume_equivalent_diameter_mm: float
    labelled: bool

    @property
    def diameter_mm(self) -> float:
        """D, the nominal diameter of the ground-glass shell's base sphere."""
        return self.shape.diameter_mm

    @property
    def core_diameter_mm(self) -> float:
        """d_s, the solid core's base diameter (0 without a core)."""
        return self.shape.core_diameter_mm

    def as_row(self, reveal: bool = False) -> dict[str, Any]:
        """A flat record; an unlabelled nodule's labels are blank unless ``reveal``."""
        shape = self.shape
        row: dict[str, Any] = {
            "centre_x_mm": _round(self.centre_mm[0]),
            "centre_y_mm": _round(self.centre_mm[1]),
            "centre_z_mm": _round(self.centre_mm[2]),
            "diameter_mm": _round(shape.diameter_mm),
            "core_diameter_mm": _round(shape.core_diameter_mm),
            "rendered_volume_mm3": _round(self.rendered_volume_mm3),
            "volume_equivalent_diameter_mm": _round(self.volume_equivalent_diameter_mm),
            "shell_hu": _round(shape.shell_hu),
            "core_hu": _round(shape.core_hu) if shape.core_diameter_mm else "",
            "lobulation": _round(shape.lobulation),
            "spikes": len(shape.spikes),
            "bubbles": len(shape.bubbles),
            "air_bronchogram": int(shape.bronchogram is not None),
            "labelled": int(self.labelled),
        }
        show = self.labelled or reveal
        labels: dict[str, Any] = {
            "invasiveness": self.pathology.invasiveness.value,
            **{p.value: v for p, v in zip(PATTERNS, self.pathology.proportions, strict=True)},
            "predominant": self.pathology.predominant.value,
            "grade": self.pathology.grade.value,
        }
        row.update({k: (v if show else "") for k, v in labels.items()})
        return row


@dataclass(frozen=True)
class SeriesTruth:
    """One series the study writer produced."""

    number: int
    uid: str
    description: str
    kernel: str
    kind: str  #: "thin", "localizer" or "thick"
    instances: int


@dataclass(frozen=True)
class StudyTruth:
    """What the generator knows about one study: its UIDs, acquisition, anatomy, nodules."""

    seed: int
    index: int
    patient_id: str
    study_uid: str
    frame_of_reference_uid: str
    acquisition: Acquisition
    rows: int
    columns: int
    slices: int
    anatomy: Mapping[str, float | int]
    nodules: tuple[NoduleTruth, ...]
    series: tuple[SeriesTruth, ...] = field(default=())

    @property
    def series_uid(self) -> str:
        """The UID of the thin (diagnostic) series, the one the nodules are measured on."""
        return next(s.uid for s in self.series if s.kind == "thin")

    def as_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "index": self.index,
            "patient_id": self.patient_id,
            "study_uid": self.study_uid,
            "frame_of_reference_uid": self.frame_of_reference_uid,
            "acquisition": {k: (_round(v) if isinstance(v, float) else v)
                            for k, v in self.acquisition.as_dict().items()},
            "grid": {"rows": self.rows, "columns": self.columns, "slices": self.slices},
            "anatomy": {k: (_round(v) if isinstance(v, float) else v)
                        for k, v in self.anatomy.items()},
            "series": [s.__dict__ for s in self.series],
            "nodules": [n.as_row(reveal=True) for n in self.nodules],
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n")

    def study_row(self) -> dict[str, Any]:
        """The study's line in the cohort's studies.csv."""
        acquisition = self.acquisition
        return {
            "index": self.index, "patient_id": self.patient_id, "study_uid": self.study_uid,
            "series_uid": self.series_uid, "acquisition": acquisition.kind.value,
            "pixel_spacing_mm": _round(acquisition.pixel_spacing_mm),
            "slice_thickness_mm": _round(acquisition.slice_thickness_mm),
            "blur_sigma_mm": _round(acquisition.blur_sigma_mm),
            "noise_sigma_hu": _round(acquisition.noise_sigma_hu),
            "slices": self.slices, "nodules": len(self.nodules),
        }


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]] | Iterable[Mapping[str, Any]],
              columns: Sequence[str] | None = None) -> None:
    """Rows as CSV (``columns`` for the header when there may be no rows)."""
    rows = list(rows)
    header = list(columns or (rows[0] if rows else []))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
