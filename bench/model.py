"""SD-MdaNet on the CPU: size, FLOPs and speed of the student, the teachers and the baseline.

    python -m bench.model            # writes bench/results/model.json (a few minutes)

Measures, at the default CropSpec: parameters, FLOPs per crop (``FlopCounterMode``), ms per
nodule at batch 1 and 16 with 2 threads and 1 thread; the student's model stage for a study
of 5 nodules (``Predictor.predict`` with its test-time flips, from a checkpoint file) against
the 0.5 s target; and, for the CropSpec choice, inference and training speed of the student
at candidate crop sizes (on 1 thread). Each figure is the median of repeated runs after a
warm-up.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.common import BenchResult, write_result
from model.checkpoint import Checkpoint, IntendedUse, save_checkpoint
from model.crop_spec import CropSpec
from model.factory import create_model
from model.losses import growth_loss, invasiveness_loss
from model.predictor import Predictor

STAGE_TARGET_S = 0.5
ROLES = [
    ("student and teacher A", "mdanet"),
    ("teacher B (invasiveness)", "mdanet_invasiveness"),
    ("teacher C (growth)", "mdanet_growth"),
    ("ablation baseline", "plain_cnn"),
]
#: (size, spacing) pairs whose field of view holds a 30 mm nodule with its spicules (51 mm)
CANDIDATES = [(32, 1.6), (36, 1.45), (40, 1.3), (48, 1.1)]


def median_seconds(run: Callable[[], object], repeats: int,
                   clock: Callable[[], float] = time.perf_counter) -> float:
    """Median time of ``run`` over ``repeats`` calls, after one warm-up call; ``clock`` is the
    wall clock, or ``time.process_time`` for the CPU time this process used."""
    run()
    times = []
    for _ in range(repeats):
        start = clock()
        run()
        times.append(clock() - start)
    return statistics.median(times)


def flops_per_crop(model: torch.nn.Module, size: int) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.rand(1, 1, size, size, size))
    return int(counter.get_total_flops())


def ms_per_nodule(model: torch.nn.Module, size: int, batch: int, repeats: int) -> float:
    x = torch.rand(batch, 1, size, size, size)
    with torch.inference_mode():
        seconds = median_seconds(lambda: model(x), repeats)
    return 1000 * seconds / batch


def train_samples_per_s(size: int, repeats: int, batch: int = 8) -> float:
    """Forward, backward and Adam step of the student on a batch of ``batch`` crops."""
    model = create_model("mdanet").train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, size, size, size)
    classes = torch.randint(0, 3, (batch,))
    fractions = torch.softmax(torch.randn(batch, 7), dim=1)

    def step() -> None:
        optimizer.zero_grad()
        out = model(x)
        assert out.invasiveness is not None and out.growth is not None
        (invasiveness_loss(out.invasiveness, classes) + growth_loss(out.growth, fractions)
         ).backward()
        optimizer.step()

    return batch / median_seconds(step, repeats)


def stage_seconds(spec: CropSpec, repeats: int, nodules: int = 5,
                  clock: Callable[[], float] = time.perf_counter) -> float:
    """The student's model stage for one study: ``Predictor.predict`` on ``nodules`` crops."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "student.pt"
        model = create_model("mdanet")
        save_checkpoint(Checkpoint.of(
            model, "mdanet", crop_spec=spec, version="bench",
            intended_use=IntendedUse.RESEARCH_SYNTHETIC, training_data="untrained"), path)
        predictor = Predictor.from_checkpoint(path, device="cpu")
    crops = np.random.default_rng(0).random((nodules, spec.size, spec.size, spec.size),
                                            dtype=np.float32)
    return median_seconds(lambda: predictor.predict(crops), repeats, clock)


def network_rows(spec: CropSpec, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for role, name in ROLES:
        model = create_model(name).eval()
        row: dict[str, Any] = {
            "network": f"{name} ({role})",
            "parameters": f"{sum(p.numel() for p in model.parameters()):,}",
            "GFLOP/crop": round(flops_per_crop(model, spec.size) / 1e9, 3),
        }
        for threads in (2, 1):
            torch.set_num_threads(threads)
            for batch, reps in ((1, 3 * repeats), (16, repeats)):
                row[f"ms/nodule b{batch} {threads}t"] = round(
                    ms_per_nodule(model, spec.size, batch, reps), 1)
        rows.append(row)
        print(row, flush=True)
    return rows


def candidate_rows(repeats: int) -> list[dict[str, Any]]:
    """On 1 thread, so the candidates compare fairly on a machine that others share too."""
    torch.set_num_threads(1)
    rows = []
    model = create_model("mdanet").eval()
    for size, spacing in CANDIDATES:
        spec = CropSpec(spacing_mm=spacing, size=size)
        row = {
            "crop": f"{size}^3 x {spacing} mm",
            "field of view mm": round(spec.field_of_view_mm, 1),
            "student GFLOP/crop": round(flops_per_crop(model, size) / 1e9, 3),
            "student ms/crop b16": round(ms_per_nodule(model, size, 16, repeats), 1),
            "student train samples/s (b8)": round(train_samples_per_s(size, repeats), 1),
            "5-nodule stage CPU s": round(
                stage_seconds(spec, repeats, clock=time.process_time), 3),
        }
        rows.append(row)
        print(row, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    spec = CropSpec()
    result = BenchResult(name="model", title="SD-MdaNet on the CPU")
    load_before = os.getloadavg()[0]

    torch.set_num_threads(2)
    stage = stage_seconds(spec, 3 * args.repeats)
    result.add_target(
        f"student model stage, 5 nodules, {spec.size}^3 crops, 4 flips each, 2 threads, wall",
        f"<= {STAGE_TARGET_S} s", f"{stage:.3f} s", stage <= STAGE_TARGET_S)
    torch.set_num_threads(1)
    stage_cpu = stage_seconds(spec, 3 * args.repeats, clock=time.process_time)
    result.add_target(
        "the same on 1 thread, CPU time of the process (a bound for the 2-thread wall time "
        "on an idle machine, less affected by other processes than the wall time)",
        f"<= {STAGE_TARGET_S} s", f"{stage_cpu:.3f} s", stage_cpu <= STAGE_TARGET_S)
    result.add_table(f"Networks at the default CropSpec ({spec.size}^3 voxels of "
                     f"{spec.spacing_mm} mm), inference", network_rows(spec, args.repeats))
    result.add_table("CropSpec candidates (student, 1 thread; training: forward, backward and "
                     "Adam step on batches of 8; the stage includes the 4 test-time flips)",
                     candidate_rows(args.repeats))
    result.notes += [
        "ms/nodule bN Kt: batch of N crops, K threads (torch.set_num_threads), "
        "one forward pass, median of repeats (wall clock).",
        "The student and teacher A share the architecture (the default MdaNetConfig), so "
        "they share a row.",
        f"Load average (1 min) of the shared machine: {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end; other processes slow every figure.",
    ]
    print(f"wrote {write_result(result)}")


if __name__ == "__main__":
    main()
