"""Study-to-SR latency of a running node, stage by stage, against the stage budget.

    python -m bench.latency [--studies 10] [--compressed 3] [--stable 1.0]

``lungpath serve`` (node, dispatcher, embedded worker, server-less broker, SQLite) receives
synthetic `standard` studies with 2 nodules, each resampled to 300 images of 512 x 512
(bench.synthetic_studies), over C-STORE from this process; the result objects go to a test
PACS here (bench.stack.TimedPacs). Latency runs from the study's COMPLETE mark to the SR's
arrival at the PACS: the stable-age wait (``stable_seconds``, set short) comes before it and
is reported on its own. Stages come from the Job row (``pipeline.analysis``); the hops
between processes (dispatcher pass, broker polling, the delivery task) from the database.
The floor is SimpleITK's ImageSeriesReader reading the same files, in the same run. One
warm-up study (imports, model load) is not counted. JPEG-LS and JPEG 2000 copies
(pydicom with pyjpegls and pylibjpeg-openjpeg) are reported separately.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless

from bench.common import BenchResult, load_average, write_result
from bench.crops import compressed_copy
from bench.stack import (
    STABLE_S,
    TimedPacs,
    bench_stack,
    cpu_seconds,
    process_tree,
    read_series,
    send,
    serving_checkpoint,
    timeline,
    wait_delivered,
)
from bench.synthetic_studies import resampled, study
from tests.integration.orchestration import Stack

SLICES = 300
NODULES = 2
P50_TARGET_S, P95_TARGET_S = 8.0, 12.0
#: budget line -> (the Job row's stages or the measured hops it sums, seconds)
BUDGET: dict[str, tuple[tuple[str, ...], float]] = {
    "read + assemble": (("read", "select", "volume"), 1.0),
    "lung mask": (("lung_mask",), 1.5),
    "detection": (("nodules",), 2.5),
    "crops + measurements": (("crop",), 0.5),
    "model": (("predict",), 0.5),
    "SR + SC + SEG": (("write",), 1.0),
    "delivery": (("delivery",), 0.3),
}
HOPS = ("dispatch", "queue wait", "finish")
#: where the time of a stage over its budget goes (bench/profiles/README.md)
WHY_OVER = {
    "read + assemble": "parsing 300 headers with pydicom and reading the pixel data; on "
                       "compressed studies decoding dominates (JPEG-LS about 10 ms, JPEG 2000 "
                       "about 40 ms per image)",
    "lung mask": "on a 2 mm copy of the volume; a loaded machine stretches it",
    "detection": "candidates and the refinement of up to 30 of them, with measurements",
    "model": "the network with its test-time flips on 2 torch threads; a slow study here is "
             "a moment when the other core was taken (the p95 column)",
    "SR + SC + SEG": "highdicom builds the SEG over every source image (a plane position per "
                     "image, pydicom's check of every decimal string) and the SR; matplotlib "
                     "renders one summary image per nodule; three files written with fsync",
    "delivery": "the delivery is a second Celery task: the analysis task ends, the worker "
                "fetches the delivery task through the broker (polled every 0.2 s), opens an "
                "association and sends the SR first; the C-STORE itself is milliseconds on "
                "loopback",
    "crops + measurements": "resampling the crops",
}
COMPRESSED = {"JPEG-LS lossless": (JPEGLSLossless, "jpeg-ls"),
              "JPEG 2000 lossless": (JPEG2000Lossless, "jpeg-2000")}


def studies(cache: Path, count: int) -> list[Path]:
    """``count`` uncompressed 300-image studies with 2 nodules (generated once)."""
    folders = []
    for index in range(count):
        source, _ = study(cache / "source", index, nodules=NODULES)
        folders.append(resampled(source, SLICES, cache / f"{source.name}-{SLICES}"))
    return folders


def floor(folder: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of SimpleITK's ImageSeriesReader reading the series into a volume."""
    start, cpu = time.perf_counter(), time.process_time()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    reader.Execute()
    return time.perf_counter() - start, time.process_time() - cpu


def measure(stack: Stack, pacs: TimedPacs, node_pid: int, folder: Path) -> dict[str, float]:
    """Send one study, wait for its objects; the seconds of every stage and hop, the floor
    and the CPU seconds of every lungpath process during the study."""
    template = read_series(folder)
    floor_wall, floor_cpu = floor(folder)
    cpu_before = cpu_seconds(process_tree(node_pid))
    study_uid, sent_at = send(stack, template)
    wait_delivered(stack, pacs, study_uid)
    seconds = timeline(stack, pacs, study_uid, sent_at).seconds()
    seconds["lungpath CPU"] = cpu_seconds(process_tree(node_pid)) - cpu_before
    seconds["floor"], seconds["floor CPU"] = floor_wall, floor_cpu
    return seconds


def budget_rows(runs: list[dict[str, float]]) -> list[dict[str, Any]]:
    """Each budget line: median and 95th percentile against its budget, then the hops."""
    rows = []
    for line, (parts, budget) in BUDGET.items():
        values = [sum(r.get(p, 0.0) for p in parts) for r in runs]
        p50 = float(np.median(values))
        rows.append({"stage": line, "Job row / hop": " + ".join(parts),
                     "budget s": f"{budget:.1f}", "p50 s": f"{p50:.2f}",
                     "p95 s": f"{np.percentile(values, 95):.2f}",
                     "within": "yes" if p50 <= budget else "**no**"})
    for hop in HOPS:
        values = [r[hop] for r in runs]
        rows.append({"stage": f"({hop})", "Job row / hop": hop, "budget s": "-",
                     "p50 s": f"{np.median(values):.2f}",
                     "p95 s": f"{np.percentile(values, 95):.2f}", "within": "-"})
    return rows


def summary_row(name: str, runs: list[dict[str, float]]) -> dict[str, Any]:
    """p50/p95 latency, its CPU seconds and the ratio to the floor, for one set of studies."""
    latency = [r["latency"] for r in runs]
    p50, floor_p50 = float(np.median(latency)), statistics.median(r["floor"] for r in runs)
    read = statistics.median(sum(r[s] for s in BUDGET["read + assemble"][0]) for r in runs)
    return {
        "studies": f"{name} ({len(runs)})",
        "latency p50 s": f"{p50:.2f}", "latency p95 s": f"{np.percentile(latency, 95):.2f}",
        "stable-age wait p50 s": f"{statistics.median(r['stable-age wait'] for r in runs):.2f}",
        "last C-STORE -> SR p50 s": f"{statistics.median(r['store to SR'] for r in runs):.2f}",
        "lungpath CPU s p50": f"{statistics.median(r['lungpath CPU'] for r in runs):.2f}",
        "floor p50 s": f"{floor_p50:.2f}",
        "floor CPU s p50": f"{statistics.median(r['floor CPU'] for r in runs):.2f}",
        "latency / floor": f"{p50 / floor_p50:.1f}x",
        "read + assemble / floor": f"{read / floor_p50:.1f}x",
    }


def run_set(measure_one: Callable[[Path], dict[str, float]], folders: list[Path],
            name: str) -> list[dict[str, float]]:
    runs = []
    for index, folder in enumerate(folders):
        runs.append(measure_one(folder))
        print(f"{name} {index}: latency {runs[-1]['latency']:.2f} s, "
              f"CPU {runs[-1]['lungpath CPU']:.1f} s, load {load_average()}", flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--compressed", type=int, default=3,
                        help="studies of each compressed transfer syntax")
    parser.add_argument("--stable", type=float, default=STABLE_S,
                        help="stable_seconds of the node")
    parser.add_argument("--cache", type=Path, default=Path("var/bench/latency"))
    args = parser.parse_args()
    folders = studies(args.cache, args.studies)
    compressed = {name: [compressed_copy(f, f.with_name(f"{f.name}-{tag}"), syntax)
                         for f in folders[:args.compressed]]
                  for name, (syntax, tag) in COMPRESSED.items()}
    checkpoint, checkpoint_note = serving_checkpoint(args.cache / "checkpoint")
    pacs = TimedPacs()
    pacs.start()
    run_root = args.cache / "run"
    stack = bench_stack(run_root / f"stack-{time.time_ns()}", checkpoint, pacs,
                        embedded_worker=True, stable_seconds=args.stable)
    load_before = load_average()
    try:
        node = stack.node()

        def measure_one(folder: Path) -> dict[str, float]:
            return measure(stack, pacs, node.pid, folder)

        run_set(measure_one, folders[:1], "warm-up")
        runs = run_set(measure_one, folders, "uncompressed")
        compressed_runs = {name: run_set(measure_one, items, name)
                           for name, items in compressed.items()}
    finally:
        stack.stop_all()
        pacs.stop()
    write_result(report(args, runs, compressed_runs, checkpoint_note, load_before))


def report(args: argparse.Namespace, runs: list[dict[str, float]],
           compressed_runs: dict[str, list[dict[str, float]]], checkpoint_note: str,
           load_before: float) -> BenchResult:
    result = BenchResult(name="latency", title="Study-to-SR latency (512 x 512 x 300, 2 nodules)")
    latency = [r["latency"] for r in runs]
    p50, p95 = float(np.median(latency)), float(np.percentile(latency, 95))
    result.add_target("latency p50, uncompressed, stable-age wait excluded",
                      f"<= {P50_TARGET_S:.0f} s", f"{p50:.2f} s", p50 <= P50_TARGET_S)
    result.add_target("latency p95, uncompressed, stable-age wait excluded",
                      f"<= {P95_TARGET_S:.0f} s", f"{p95:.2f} s", p95 <= P95_TARGET_S)
    for line, (parts, budget) in BUDGET.items():
        value = float(np.median([sum(r.get(p, 0.0) for p in parts) for r in runs]))
        result.add_target(f"stage {line} (p50)", f"<= {budget:.1f} s", f"{value:.2f} s",
                          value <= budget)
        if value > budget:
            result.notes.append(f"Over budget, {line} ({value:.2f} s > {budget:.1f} s): "
                                f"{WHY_OVER[line]}.")
    result.add_table("Latency and floor per set of studies (wall seconds unless CPU)", [
        summary_row("uncompressed", runs),
        *(summary_row(name, items) for name, items in compressed_runs.items() if items)])
    result.add_table(f"Stages against the budget, uncompressed ({len(runs)} studies)",
                     budget_rows(runs))
    for name, items in compressed_runs.items():
        if items:
            result.add_table(f"Stages, {name} ({len(items)} studies)", budget_rows(items))
    result.notes += [
        f"{len(runs)} synthetic `standard` studies (seed 2026, {NODULES} nodules each) "
        f"resampled to {SLICES} images of 512 x 512; sent over one association from the "
        "bench process; `lungpath serve` with its embedded worker (torch and SimpleITK "
        "threads: default, both cores), server-less broker, SQLite; the bench's PACS "
        "on the same machine. One warm-up study (imports, model load) is not counted.",
        checkpoint_note + ".",
        f"stable_seconds {args.stable:g} s; dispatch_interval 0.5 s and broker polling 0.2 s "
        "(the orchestration tests' settings; the defaults, 2 s and 1 s, add up to about "
        "2.5 s of hops to every study).",
        "Latency = SR at the PACS - the study's COMPLETE mark. (dispatch) = COMPLETE -> "
        "queued; (queue wait) = queued -> the worker starts; (finish) = the Result row and "
        "state change after the stages; delivery = the Job's end -> the SR at the PACS "
        "(the delivery task's trip through the broker included). Detection includes the "
        "nodules' segmentation and measurements (one stage of pipeline.analysis), so the "
        "'crops + measurements' line holds the crops only.",
        "lungpath CPU = user + system CPU seconds of the node and its worker over the whole "
        "study (receiving included), from /proc; the floor's CPU is this process's.",
        f"Load average (1 min) {load_before} before the run and {load_average()} after; on a "
        "2-core machine a load above 2 stretches every wall-clock figure, CPU seconds do not.",
    ]
    return result


if __name__ == "__main__":
    main()
