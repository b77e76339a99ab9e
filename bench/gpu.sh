#!/usr/bin/env bash
# Model inference on a CUDA host, in one table: ms per nodule (batch 1 and 16) and the latency
# bench's model stage (Predictor.predict on a study's 2 nodules, test-time flips included),
# on the GPU and, in the same run, on this host's CPU. Writes bench/results/gpu.json, which
# `python -m bench.report` then renders into docs/performance.md.
#
#   bench/gpu.sh [--repeats 50]        # from anywhere; PYTHON overrides .venv/bin/python
#
# A host without a CUDA device is detected and said; nothing is measured or written (exit 2).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "bench/gpu.sh: no NVIDIA driver on this host (nvidia-smi not found): nothing measured." >&2
    exit 2
fi
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "bench/gpu.sh: torch sees no CUDA device on this host: nothing measured." >&2
    exit 2
fi

exec "$PYTHON" - "$@" <<'PY'
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from bench.common import BenchResult, load_average, write_result
from bench.latency import NODULES
from bench.model import median_seconds
from bench.stack import serving_checkpoint
from model.predictor import Predictor

parser = argparse.ArgumentParser(prog="bench/gpu.sh")
parser.add_argument("--repeats", type=int, default=50)
args = parser.parse_args()
checkpoint, note = serving_checkpoint(Path("var/bench/latency/checkpoint"))
rows = []
for device in ("cuda:0", "cpu"):
    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    size = predictor.crop_spec.size

    def synchronized(run):
        def call():
            run()
            if predictor.device.type == "cuda":
                torch.cuda.synchronize()
        return call

    row = {"device": torch.cuda.get_device_name(0) if device != "cpu" else "CPU"}
    for batch in (1, 16):
        x = torch.rand(batch, 1, size, size, size, device=predictor.device)
        with torch.inference_mode():
            seconds = median_seconds(synchronized(lambda: predictor.model(x)), args.repeats)
        row[f"ms/nodule, batch {batch}"] = f"{1000 * seconds / batch:.2f}"
    crops = np.random.default_rng(0).random((NODULES, size, size, size), dtype=np.float32)
    stage = median_seconds(synchronized(lambda: predictor.predict(crops)), args.repeats)
    row[f"model stage, {NODULES} nodules, ms"] = f"{1000 * stage:.1f}"
    rows.append(row)
result = BenchResult(name="gpu", title="Model inference on a CUDA host")
result.command = "bench/gpu.sh " + " ".join(sys.argv[1:])
result.add_table(f"Median of {args.repeats} runs after a warm-up (network only, then "
                 "Predictor.predict with its flips)", rows)
gpu_stage = float(rows[0][f"model stage, {NODULES} nodules, ms"])
cpu_stage = float(rows[1][f"model stage, {NODULES} nodules, ms"])
result.notes += [note + ".", f"Model stage on the GPU: {cpu_stage / gpu_stage:.1f}x faster "
                 f"than this host's CPU. Load average (1 min) {load_average()}."]
header = list(rows[0])
print(" | ".join(header))
for row in rows:
    print(" | ".join(str(row[c]) for c in header))
print(write_result(result))
PY
