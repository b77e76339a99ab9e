"""From candidates to nodules: segment each candidate and keep the nodule-shaped ones.

The coarse search (``pipeline.detect``) proposes blob centres; here each of the strongest is
segmented at full resolution (``pipeline.measure``) and judged by what the segmentation
shows: a nodule is compact (low elongation) and 4-35 mm across, a vessel junction or a
vessel segment is elongated or falls apart when its branches are cut. Survivors are ranked
by the candidate's blob score and two candidates that segmented the same object are merged.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from pydicom.dataset import Dataset

from pipeline.analysis_input import GivenNodule, given_nodules
from pipeline.detect import Candidate, find_candidates
from pipeline.findings import NoduleMeasurements
from pipeline.lungmask import LungMask, shrink_factors
from pipeline.measure import NoduleRegion, measure_nodule, segment_nodule
from pipeline.volume import Volume

#: Candidates segmented per study (the strongest first).
REFINED = 30
MAX_ELONGATION = 2.2
DIAMETER_RANGE_MM = (4.0, 35.0)
#: In-plane spacing of the copy candidates are screened on.
SCREEN_MM = 1.4
#: Size assumed for a nodule given as a single point.
GIVEN_DIAMETER_MM = 10.0


@dataclass(frozen=True)
class DetectedNodule:
    """A nodule to analyse: where it came from, its segmentation and measurements.

    Attributes:
        source: "detected", or the SEG/SR region it was given by (``GivenNodule.source``).
    """

    candidate: Candidate
    region: NoduleRegion
    measurements: NoduleMeasurements
    source: str = "detected"


def nodule_shaped(region: NoduleRegion | None, spacing: Sequence[float]) -> bool:
    """Compact and of nodule size (``spacing``: the region's grid, z, y, x)."""
    if region is None or region.elongation > MAX_ELONGATION:
        return False
    diameter = (6.0 * region.mask.sum() * float(np.prod(spacing)) / math.pi) ** (1.0 / 3.0)
    low, high = DIAMETER_RANGE_MM
    return low <= diameter <= high


def refine(
    volume: Volume, lungs: LungMask, candidate: Candidate, screen: tuple[np.ndarray, sitk.Image]
) -> DetectedNodule | None:
    """Screen a candidate on the coarse copy, then segment and measure it at full resolution;
    ``None`` when it is not nodule-shaped."""
    voxels, grid = screen
    coarse = segment_nodule(voxels, grid, candidate.centre_mm, candidate.diameter_mm)
    if not nodule_shaped(coarse, grid.GetSpacing()[::-1]):
        return None
    region = segment_nodule(volume.voxels, volume.image, candidate.centre_mm, candidate.diameter_mm)
    if region is None or not nodule_shaped(region, volume.image.GetSpacing()[::-1]):
        return None
    return DetectedNodule(candidate, region, measure_nodule(volume, region, lungs))


def screening_copy(volume: Volume) -> tuple[np.ndarray, sitk.Image]:
    """The volume averaged onto a ~``SCREEN_MM`` in-plane grid, for quick segmentations."""
    factors = shrink_factors(volume.image.GetSpacing(), SCREEN_MM)
    factors[2] = 1
    coarse = sitk.BinShrink(volume.image, factors)
    return sitk.GetArrayFromImage(coarse), coarse


def study_nodules(
    volume: Volume, lungs: LungMask, datasets: Iterable[Dataset], frame_of_reference_uid: str
) -> tuple[list[DetectedNodule], str]:
    """The nodules to analyse and where they came from (for the audit log): those given by a
    foreign SEG or SR among ``datasets`` when there are any, else the detected ones."""
    given = given_nodules(datasets, frame_of_reference_uid, volume)
    if given:
        nodules = measure_given(volume, lungs, given)
        sources = sorted({g.source.split(" region")[0].split(" segment")[0] for g in given})
        measured = f"{len(nodules)} of {len(given)} given nodules measured"
        return nodules, f"{measured} ({', '.join(sources)})"
    nodules = find_nodules(volume, lungs)
    return nodules, f"{len(nodules)} nodules detected"


def find_nodules(volume: Volume, lungs: LungMask) -> list[DetectedNodule]:
    """The nodules of a study, strongest first."""
    return refine_candidates(volume, lungs, find_candidates(volume.image, lungs))


def refine_candidates(
    volume: Volume, lungs: LungMask, candidates: Sequence[Candidate]
) -> list[DetectedNodule]:
    """Refine the ``REFINED`` strongest candidates; merge those that found the same nodule."""
    found: list[DetectedNodule] = []
    screen = screening_copy(volume)
    for candidate in candidates[:REFINED]:
        nodule = refine(volume, lungs, candidate, screen)
        if nodule is not None and not any(_same(nodule, other) for other in found):
            found.append(nodule)
    return found


def measure_given(
    volume: Volume, lungs: LungMask, given: Sequence[GivenNodule]
) -> list[DetectedNodule]:
    """Segment and measure nodules given in the study (no shape screening: a reader or
    another system marked them). A marking with nothing denser than lung under it is
    skipped."""
    out = []
    for nodule in given:
        diameter = nodule.diameter_mm or GIVEN_DIAMETER_MM
        candidate = Candidate(nodule.centre_mm, diameter, score=0.0, blob_ratio=1.0)
        region = segment_nodule(volume.voxels, volume.image, nodule.centre_mm, diameter)
        if region is not None:
            measurements = measure_nodule(volume, region, lungs)
            out.append(DetectedNodule(candidate, region, measurements, nodule.source))
    return out


def _same(a: DetectedNodule, b: DetectedNodule) -> bool:
    distance = np.linalg.norm(np.subtract(a.measurements.centre_mm, b.measurements.centre_mm))
    reach = 0.5 * max(a.measurements.equivalent_diameter_mm, b.measurements.equivalent_diameter_mm)
    return bool(distance < reach)
