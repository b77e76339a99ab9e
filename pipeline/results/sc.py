"""The summary image: a Secondary Capture for viewers without SR support.

One 512 x 512 RGB instance per nodule, in one series, in the order nodule-1..N (viewers page
through instances; one nodule per image keeps every label legible at 512 x 512). Each shows
the axial crop around the nodule with its outline, the three class probabilities, the seven
pattern proportions as a bar chart, the IASLC grade, the uncertainty and the intended-use
statement. NO_NODULE and NOT_ANALYZABLE get one image with the status and the reason.
"""

from __future__ import annotations

import textwrap

import highdicom as hd
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pydicom import Dataset

from model.pathology import INVASIVENESS, PATTERNS
from pipeline.findings import Laterality, NoduleFinding
from pipeline.results.codes import AnalysisStatus
from pipeline.results.headers import with_type2_attributes
from pipeline.results.report import (
    MANUFACTURER,
    MODEL_NAME,
    SYNTHETIC_DISCLAIMER,
    AnalysisReport,
)

SIZE = 512  #: pixels, square
SERIES_DESCRIPTION = "lungpath SD-MdaNet summary"
LUNG_WINDOW = (-1350.0, 150.0)  #: HU shown from black to white (centre -600, width 1500)
_DPI = 100
_ACCENT = "#d62728"
_BAR = "#1f77b4"
_STATUS_TEXT = {
    AnalysisStatus.NO_NODULE: "No nodule found",
    AnalysisStatus.NOT_ANALYZABLE: "Study not analysable",
}


def build_sc(report: AnalysisReport) -> list[hd.sc.SCImage]:
    """The summary images of one analysis: one per nodule, or one status image."""
    if report.findings:
        images = [render_nodule(report, f) for f in report.findings]
    else:
        images = [render_status(report)]
    first = with_type2_attributes(report.sources[0])
    sides: list[Laterality | None] = [f.measurements.laterality for f in report.findings]
    captures = [
        hd.sc.SCImage.from_ref_dataset(
            ref_dataset=first,
            pixel_array=pixels,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=report.uids.sc_series,
            series_number=report.series_numbers.sc,
            sop_instance_uid=uid,
            instance_number=number,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=MODEL_NAME,
            software_versions=list(report.software_versions),
            series_description=SERIES_DESCRIPTION,
            patient_orientation=_orientation(first),
        )
        for number, (uid, pixels) in enumerate(zip(report.uids.sc_instances, images,
                                                   strict=True), start=1)
    ]
    for capture, side in zip(captures, sides or [None], strict=True):
        # Image Laterality satisfies General Series' Laterality (2C): lungs are paired.
        capture.ImageLaterality = "B" if side is None else side.value[0].upper()
    return captures


def _orientation(ds: Dataset) -> tuple[str, str]:
    """Patient Orientation of the crop: the source image's row and column directions."""
    cosines = [float(v) for v in ds.get("ImageOrientationPatient", [1, 0, 0, 0, 1, 0])]

    def letter(vector: list[float]) -> str:
        axis = int(np.argmax(np.abs(vector)))
        return ("LR", "PA", "HF")[axis][0 if vector[axis] > 0 else 1]

    return letter(cosines[:3]), letter(cosines[3:])


def _figure() -> Figure:
    figure = Figure(figsize=(SIZE / _DPI, SIZE / _DPI), dpi=_DPI, facecolor="black")
    figure.text(0.02, 0.975, "lungpath", color="#9ecae1", fontsize=9, va="top")
    return figure


def _to_rgb(figure: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[:, :, :3], dtype=np.uint8)


def _footer(figure: Figure, report: AnalysisReport) -> None:
    """Intended use (shortened to one line) and, for synthetic-trained checkpoints, the
    disclaimer in red on a line of its own: two lines, whatever the statement's length."""
    algorithm = report.algorithm
    figure.text(0.5, 0.045, textwrap.shorten(algorithm.intended_use, width=84,
                                             placeholder=" ..."),
                color="#cccccc", fontsize=8, ha="center", va="bottom")
    if algorithm.synthetic_trained:
        figure.text(0.5, 0.01, SYNTHETIC_DISCLAIMER, color=_ACCENT, fontsize=8.5,
                    fontweight="bold", ha="center", va="bottom")


def render_nodule(report: AnalysisReport, finding: NoduleFinding) -> np.ndarray:
    """The summary of one nodule as a SIZE x SIZE x 3 uint8 array."""
    m, p = finding.measurements, finding.prediction
    figure = _figure()
    figure.text(0.5, 0.975, f"nodule-{finding.number} of {len(report.findings)}"
                f"  ·  {m.laterality.value} lung", color="white", fontsize=12,
                fontweight="bold", ha="center", va="top")
    _draw_crop(figure.add_axes((0.02, 0.47, 0.46, 0.46)), report, finding)
    _draw_probabilities(figure.add_axes((0.62, 0.70, 0.35, 0.20)), finding)
    figure.text(0.52, 0.62, f"Grade {p.grade.value}" + (" (IASLC)" if p.grade.value != "NA"
                                                        else " (not applicable)"),
                color="white", fontsize=11, fontweight="bold")
    figure.text(0.52, 0.565, f"Uncertainty {p.uncertainty:.1f} %", color="white", fontsize=11)
    figure.text(0.52, 0.51, f"{m.long_axis_mm:.1f} x {m.short_axis_mm:.1f} mm, CTR {m.ctr:.2f}",
                color="#cccccc", fontsize=9.5)
    _draw_proportions(figure.add_axes((0.30, 0.155, 0.66, 0.275)), finding)
    _footer(figure, report)
    return _to_rgb(figure)


def _draw_crop(ax: Axes, report: AnalysisReport, finding: NoduleFinding) -> None:
    """The axial source image around the nodule (lung window) with its outline. Both use
    pixel indices (imshow's default extent puts pixel (i, j)'s centre at x=j, y=i)."""
    m = finding.measurements
    image = report.source(m.outline_image_uid)
    hu = image.pixel_array * float(image.get("RescaleSlope", 1)) + float(
        image.get("RescaleIntercept", 0)
    )
    row_mm, col_mm = (float(v) for v in image.PixelSpacing)
    outline = np.asarray(m.outline)
    cx, cy = outline.mean(axis=0)
    half_mm = max(15.0, 1.5 * m.long_axis_mm)  # at least 30 mm across
    ax.set_facecolor("black")
    ax.imshow(hu, cmap="gray", vmin=LUNG_WINDOW[0], vmax=LUNG_WINDOW[1],
              aspect=row_mm / col_mm, interpolation="bilinear")
    closed = np.vstack([outline, outline[:1]])
    ax.plot(closed[:, 0], closed[:, 1], color="#ffdd00", linewidth=1.6)
    ax.set_xlim(cx - half_mm / col_mm, cx + half_mm / col_mm)
    ax.set_ylim(cy + half_mm / row_mm, cy - half_mm / row_mm)
    bar_x = cx - half_mm / col_mm * 0.9
    bar_y = cy + half_mm / row_mm * 0.85
    ax.plot([bar_x, bar_x + 10 / col_mm], [bar_y, bar_y], color="white", linewidth=2)
    ax.text(bar_x, bar_y - 1.2 / row_mm, "10 mm", color="white", fontsize=8, va="bottom")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#555555")


def _draw_probabilities(ax: Axes, finding: NoduleFinding) -> None:
    p = finding.prediction
    values = [100 * v for v in p.probabilities]
    labels = [cls.value for cls in INVASIVENESS]
    colors = [_ACCENT if cls is p.invasiveness else "#7f7f7f" for cls in INVASIVENESS]
    y = np.arange(len(values))[::-1]
    ax.barh(y, values, color=colors, height=0.7)
    ax.set_yticks(y, labels, color="white", fontsize=10.5, fontweight="bold")
    ax.set_xlim(0, 100)
    for yi, v in zip(y, values, strict=True):
        inside = v > 65
        ax.text(v - 2 if inside else v + 2, yi, f"{v:.1f} %", va="center", color="white",
                fontsize=10, ha="right" if inside else "left")
    _style(ax, "Class probability")


def _draw_proportions(ax: Axes, finding: NoduleFinding) -> None:
    p = finding.prediction
    labels = [pattern.value.replace("_", " ") for pattern in PATTERNS]
    colors = [_ACCENT if pattern is p.predominant else _BAR for pattern in PATTERNS]
    y = np.arange(len(PATTERNS))[::-1]
    ax.barh(y, p.proportions, color=colors, height=0.7)
    ax.set_yticks(y, labels, color="white", fontsize=9.5)
    ax.set_xlim(0, 100)
    for yi, v in zip(y, p.proportions, strict=True):
        ax.text(v + 1.5, yi, f"{v} %", va="center", color="white", fontsize=9)
    _style(ax, "Growth pattern proportions (predominant in red)")


def _style(ax: Axes, title: str) -> None:
    ax.set_facecolor("black")
    ax.set_title(title, color="white", fontsize=9.5, loc="left")
    ax.tick_params(axis="x", colors="#aaaaaa", labelsize=8)
    ax.tick_params(axis="y", length=0)
    for name, spine in ax.spines.items():
        spine.set_visible(name == "bottom")
        spine.set_color("#aaaaaa")


def render_status(report: AnalysisReport) -> np.ndarray:
    """The summary of an analysis without nodules: the status, the reason, the series."""
    figure = _figure()
    figure.text(0.5, 0.80, _STATUS_TEXT[report.status], color="white", fontsize=20,
                fontweight="bold", ha="center", va="center")
    lines = []
    if report.reason:
        lines.append(textwrap.fill(f"Reason: {report.reason}", width=52))
    lines.append(textwrap.fill(f"Series: {report.series_note}", width=52))
    figure.text(0.5, 0.62, "\n\n".join(lines), color="#dddddd", fontsize=11, ha="center",
                va="top", linespacing=1.4)
    _footer(figure, report)
    return _to_rgb(figure)
