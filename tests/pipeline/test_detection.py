"""Detection: candidates on an analytic chest, and the whole path on synthetic studies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.detection import match, run_study
from bench.synthetic_studies import study
from pipeline.detect import find_candidates
from pipeline.lungmask import lung_mask
from tests.pipeline.chest import Ball, Tube, chest

GGO = Ball((-70.0, 10.0, 10.0), 9.0, -620.0)
SOLID = Ball((75.0, -10.0, -25.0), 7.0, 40.0)
VESSELS = [Tube((50.0, -40.0, 30.0), (100.0, 30.0, 30.0), 2.0, 40.0),
           Tube((-100.0, -30.0, -30.0), (-40.0, 20.0, -10.0), 1.5, 40.0)]


def _near(candidates: list, point: tuple[float, float, float], reach: float) -> list:
    return [c for c in candidates if np.linalg.norm(np.subtract(c.centre_mm, point)) < reach]


def test_candidates_are_blobs_not_vessels() -> None:
    image = chest(balls=[GGO, SOLID], tubes=VESSELS)
    candidates = find_candidates(image, lung_mask(image))
    assert _near(candidates, GGO.centre, 4.0) and _near(candidates, SOLID.centre, 4.0)
    for tube in VESSELS:
        middle = tuple((np.add(tube.start, tube.end) / 2).tolist())
        assert not _near(candidates, middle, 10.0)
    best = _near(candidates, GGO.centre, 4.0)[0]
    assert 5.0 <= best.diameter_mm <= 16.0 and best.blob_ratio > 0.5


def test_no_lungs_no_candidates() -> None:
    image = chest(balls=[GGO])
    lungs = lung_mask(image)
    empty = type(lungs)(lungs.labels * 0, (0.0, 0.0))
    assert find_candidates(image, empty) == []


@pytest.mark.slow
@pytest.mark.parametrize("index", [1, 2])
def test_synthetic_fast_studies_are_found_and_measured(tmp_path_factory: pytest.TempPathFactory,
                                                       index: int) -> None:
    folder, truth = study(tmp_path_factory.mktemp("studies"), index, "fast")
    found, _ = run_study(Path(folder))
    pairs, false_positives = match(truth, found)
    assert all(detection is not None for _, detection in pairs)
    assert false_positives <= 2
    errors = [d.measurements.equivalent_diameter_mm - n["volume_equivalent_diameter_mm"]
              for n, d in pairs if d is not None]
    assert float(np.median(np.abs(errors))) <= 1.5
    for nodule, detection in pairs:
        side = "right" if nodule["centre_x_mm"] < 0 else "left"
        assert detection is not None and detection.measurements.laterality.value == side
