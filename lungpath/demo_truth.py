"""The demo's comparison: each nodule of a returned SR next to the synthetic nodule it found.

An SR nodule is located at the centroid of its outline on the image it references (pixel
indices to patient millimetres through that image's position, orientation and spacing) and
matched to the nearest synthetic nodule of ``truth.json`` within that nodule's diameter (at
least ``MIN_MATCH_MM``). The table then shows, per matched pair, the model's outputs and the
measurements beside the generator's labels; unmatched nodules on either side are listed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset

from model.pathology import PATTERNS

if TYPE_CHECKING:  # pipeline.results loads highdicom and matplotlib: not at the demo's start
    from pipeline.results import ParsedNodule, ParsedReport

MIN_MATCH_MM = 10.0

Point = tuple[float, float, float]


def outline_centre(nodule: ParsedNodule, images: dict[str, Dataset]) -> Point | None:
    """The outline's centroid in patient mm; None if the referenced image is not at hand."""
    image = images.get(nodule.outline_image_uid)
    if image is None or not nodule.outline:
        return None
    column = sum(p[0] for p in nodule.outline) / len(nodule.outline)
    row = sum(p[1] for p in nodule.outline) / len(nodule.outline)
    position = [float(v) for v in image.ImagePositionPatient]
    along_row, along_column = ([float(v) for v in image.ImageOrientationPatient[:3]],
                               [float(v) for v in image.ImageOrientationPatient[3:]])
    spacing_rows, spacing_columns = (float(v) for v in image.PixelSpacing)
    x, y, z = (p + column * spacing_columns * r + row * spacing_rows * c
               for p, r, c in zip(position, along_row, along_column, strict=True))
    return (x, y, z)


def _truth_centre(nodule: dict[str, Any]) -> Point:
    return (float(nodule["centre_x_mm"]), float(nodule["centre_y_mm"]),
            float(nodule["centre_z_mm"]))


def match(report: ParsedReport, truth_nodules: Sequence[dict[str, Any]],
          images: dict[str, Dataset]) -> list[tuple[ParsedNodule, int | None, float]]:
    """(SR nodule, index of its synthetic nodule or None, distance mm), in SR order."""
    free = set(range(len(truth_nodules)))
    pairs: list[tuple[ParsedNodule, int | None, float]] = []
    for nodule in report.nodules:
        centre = outline_centre(nodule, images)
        best: tuple[float, int] | None = None
        if centre is not None:
            for index in free:
                distance = math.dist(centre, _truth_centre(truth_nodules[index]))
                limit = max(float(truth_nodules[index]["diameter_mm"]), MIN_MATCH_MM)
                if distance <= limit and (best is None or distance < best[0]):
                    best = (distance, index)
        if best is None:
            pairs.append((nodule, None, math.nan))
        else:
            free.discard(best[1])
            pairs.append((nodule, best[1], best[0]))
    return pairs


def _pair_rows(nodule: ParsedNodule, truth: dict[str, Any]) -> list[tuple[str, str, str]]:
    probabilities = "/".join(f"{v:.0f}" for v in nodule.probabilities_percent)
    rows = [
        ("invasiveness", nodule.invasiveness.value, str(truth["invasiveness"])),
        ("P(AIS/MIA/IAC) %", probabilities, "-"),
        ("predominant pattern", nodule.predominant.value, str(truth["predominant"])),
        ("IASLC grade", nodule.grade.value, str(truth["grade"])),
    ]
    rows += [(f"{p.value} %", str(v), str(truth[p.value]))
             for p, v in zip(PATTERNS, nodule.proportions, strict=True)]
    rows += [
        ("long axis | diameter mm", f"{nodule.long_axis_mm:.1f}",
         f"{float(truth['diameter_mm']):.1f}"),
        ("solid long axis | core mm", f"{nodule.solid_long_axis_mm:.1f}",
         f"{float(truth['core_diameter_mm']):.1f}"),
        ("volume mm3", f"{nodule.volume_mm3:.0f}", f"{float(truth['rendered_volume_mm3']):.0f}"),
        ("uncertainty %", f"{nodule.uncertainty:.1f}", "-"),
    ]
    return rows


def compare_with_truth(report: ParsedReport, truth: dict[str, Any],
                       datasets: Sequence[Dataset]) -> str:
    """The comparison as text: one table per SR nodule, then what either side lacks."""
    truth_nodules = list(truth.get("nodules", []))
    images = {str(ds.SOPInstanceUID): ds for ds in datasets if "PixelSpacing" in ds}
    pairs = match(report, truth_nodules, images)
    lines: list[str] = []
    agree = 0
    for nodule, index, distance in pairs:
        if index is None:
            lines += [f"nodule-{nodule.number}: no synthetic nodule at its place "
                      "(a false positive)", ""]
            continue
        truth_nodule = truth_nodules[index]
        agree += nodule.invasiveness.value == truth_nodule["invasiveness"]
        rows = _pair_rows(nodule, truth_nodule)
        width = max(len(name) for name, _, _ in rows)
        lines.append(f"nodule-{nodule.number} = synthetic nodule {index + 1} "
                     f"(centres {distance:.1f} mm apart)")
        lines.append(f"  {'':<{width}}  {'SR':>10}  {'truth':>10}")
        lines += [f"  {name:<{width}}  {ours:>10}  {theirs:>10}" for name, ours, theirs in rows]
        lines.append("")
    found = {index for _, index, _ in pairs if index is not None}
    for index, truth_nodule in enumerate(truth_nodules):
        if index not in found:
            x, y, z = _truth_centre(truth_nodule)
            lines.append(f"synthetic nodule {index + 1} at ({x:.0f}, {y:.0f}, {z:.0f}) mm, "
                         f"{float(truth_nodule['diameter_mm']):.1f} mm: not in the SR")
    lines.append(f"{len(found)} of {len(truth_nodules)} synthetic nodules found; "
                 f"invasiveness agrees for {agree} of {len(found)}")
    return "\n".join(lines)
