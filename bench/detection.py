"""Detection and measurement accuracy on synthetic `standard` studies.

    python -m bench.detection [--studies 32] [--cache var/bench/studies]

Each study (bench.synthetic_studies: three nodules, a forced pure ground-glass nodule of
5-10 mm in every other study) goes through the analysis path: series selection, volume
assembly, lung mask, candidates, refinement and measurement. A truth nodule is found when a
detected nodule's centre lies within max(4 mm, its radius); every other detection is a false
positive. Targets (issue: CT imaging pipeline): sensitivity >= 95 % at <= 2 false positives
per study, median absolute error of the volume-equivalent diameter <= 1.5 mm.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import BenchResult, write_result
from bench.synthetic_studies import study
from pipeline.lungmask import lung_mask
from pipeline.nodules import DetectedNodule, find_nodules
from pipeline.series import read_headers, select_series, summarize_series
from pipeline.volume import assemble_volume

MIN_IMAGES = 30


def match(truth: dict[str, Any], found: list[DetectedNodule]) -> tuple[list[Any], int]:
    """Pair truth nodules with detections: [(truth, detection or None)], false positives."""
    used: set[int] = set()
    pairs = []
    for nodule in truth["nodules"]:
        centre = np.array([nodule["centre_x_mm"], nodule["centre_y_mm"], nodule["centre_z_mm"]])
        reach = max(4.0, nodule["volume_equivalent_diameter_mm"] / 2)
        hit = next(
            (i for i, d in enumerate(found) if i not in used
             and np.linalg.norm(np.array(d.measurements.centre_mm) - centre) <= reach),
            None,
        )
        if hit is not None:
            used.add(hit)
        pairs.append((nodule, None if hit is None else found[hit]))
    return pairs, len(found) - len(used)


def run_study(folder: Path) -> tuple[list[DetectedNodule], dict[str, float]]:
    """The analysis path on one study folder, with the seconds of each stage."""
    times: dict[str, float] = {}
    t = time.perf_counter()
    choice = select_series(summarize_series(read_headers(sorted(folder.glob("*.dcm"))),
                                            MIN_IMAGES))
    if choice.series is None:
        raise RuntimeError(f"{folder}: {choice.reason}")
    volume = assemble_volume(choice.series.headers)
    times["read"] = time.perf_counter() - t
    t = time.perf_counter()
    lungs = lung_mask(volume.image)
    times["lung mask"] = time.perf_counter() - t
    t = time.perf_counter()
    found = find_nodules(volume, lungs)
    times["detect + measure"] = time.perf_counter() - t
    return found, times


def kind(nodule: dict[str, Any]) -> str:
    """pure GGO 5-10 mm, pure GGO, part-solid or solid (by the truth's core)."""
    if not nodule["core_diameter_mm"]:
        return "pure GGO 5-10 mm" if nodule["diameter_mm"] <= 10 else "pure GGO > 10 mm"
    return "solid" if nodule["core_diameter_mm"] >= nodule["diameter_mm"] - 0.5 else "part-solid"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=32)
    parser.add_argument("--cache", type=Path, default=Path("var/bench/studies"))
    args = parser.parse_args()
    per_kind: dict[str, list[bool]] = {}
    errors: list[float] = []
    false_positives: list[int] = []
    timings: list[dict[str, float]] = []
    for index in range(args.studies):
        folder, truth = study(args.cache, index)
        found, times = run_study(folder)
        pairs, fp = match(truth, found)
        false_positives.append(fp)
        timings.append(times)
        for nodule, detection in pairs:
            per_kind.setdefault(kind(nodule), []).append(detection is not None)
            if detection is not None:
                errors.append(detection.measurements.equivalent_diameter_mm
                              - nodule["volume_equivalent_diameter_mm"])
        print(f"study {index}: {sum(d is not None for _, d in pairs)}/{len(pairs)} found, "
              f"{fp} FP, {sum(times.values()):.1f} s", flush=True)
    hits = [h for values in per_kind.values() for h in values]
    sensitivity = float(np.mean(hits))
    fp_rate = float(np.mean(false_positives))
    median_error = float(np.median(np.abs(errors)))
    result = BenchResult(name="detection", title="Nodule detection and measurement (synthetic)")
    result.add_table("Sensitivity by nodule kind", [
        {"kind": k, "nodules": len(v), "found": sum(v), "sensitivity": f"{np.mean(v):.1%}"}
        for k, v in sorted(per_kind.items())
    ])
    result.add_table("Volume-equivalent diameter error (detected - truth, mm)", [{
        "nodules": len(errors), "median |error|": f"{median_error:.2f}",
        "mean error": f"{np.mean(errors):+.2f}", "95th pct |error|":
        f"{np.percentile(np.abs(errors), 95):.2f}", "max |error|": f"{np.max(np.abs(errors)):.2f}",
    }])
    result.add_table("Wall seconds per study (512 x 512, 220-280 images; a shared machine)", [
        {"stage": stage, "median s": f"{np.median([t[stage] for t in timings]):.2f}",
         "max s": f"{np.max([t[stage] for t in timings]):.2f}"} for stage in timings[0]
    ])
    result.add_target("sensitivity", ">= 95 %", f"{sensitivity:.1%} ({sum(hits)}/{len(hits)})",
                      sensitivity >= 0.95)
    result.add_target("false positives per study", "<= 2", f"{fp_rate:.2f}", fp_rate <= 2)
    result.add_target("median |error| of volume-equivalent diameter", "<= 1.5 mm",
                      f"{median_error:.2f} mm", median_error <= 1.5)
    result.notes.append(
        f"{args.studies} synthetic `standard` studies (seed {truth['seed']}), three nodules "
        "each; every other study forces a pure ground-glass nodule of 5-10 mm. A synthetic "
        "cohort says nothing about clinical accuracy."
    )
    print(write_result(result))


if __name__ == "__main__":
    main()
