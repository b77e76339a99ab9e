"""Profile one analysis exactly as a worker runs it, with pyinstrument.

    python -m bench.profiles.analysis [--slices 300] [--index 1]

A node (``lungpath serve``, no worker) receives one of the latency bench's studies and
queues it; this process then runs ``pipeline.analysis.analyze_study`` on it in-process, with
the worker's own settings (``lungpath.worker.worker_runtime``), under pyinstrument. Writes
``bench/profiles/analysis-<slices>.txt`` (the call tree, ascii) and, into the cache folder,
the session it renders (``.pyisession``: ``pyinstrument --load FILE --show-all`` shows
every frame), and prints the Job row's
stage seconds with the CPU seconds of the whole analysis. Page-cache state as in the
worker: the node has just written the files.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from pyinstrument import Profiler

from bench.stack import STABLE_S, bench_stack, read_series, send, serving_checkpoint
from bench.synthetic_studies import resampled, study
from db.engine import create_engine_for
from lungpath.settings import load_settings
from lungpath.worker import worker_runtime
from model.predictor import Predictor
from pipeline.analysis import analyze_study
from tests.integration.orchestration import wait_for

OUT = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--index", type=int, default=1, help="which study of the latency set")
    parser.add_argument("--cache", type=Path, default=Path("var/bench/latency"))
    args = parser.parse_args()
    source, _ = study(args.cache / "source", args.index, nodules=2)
    folder = resampled(source, args.slices, args.cache / f"{source.name}-{args.slices}")
    checkpoint, _ = serving_checkpoint(args.cache / "checkpoint")
    stack = bench_stack(args.cache / "run" / f"profile-{time.time_ns()}", checkpoint, None,
                        embedded_worker=False, stable_seconds=STABLE_S)
    try:
        stack.node()
        study_uid, _ = send(stack, read_series(folder))
        wait_for(lambda: (s := stack.study(study_uid)) is not None and s.state == "QUEUED",
                 "the study queued", stack, timeout=600)
    finally:
        stack.stop_all()
    os.environ.update({k: v for k, v in stack.env.items() if k.startswith("LUNGPATH_")})
    runtime = worker_runtime(load_settings())
    predictor = Predictor.from_checkpoint(runtime.checkpoint, device="cpu")
    engine = create_engine_for(runtime.database_url)
    row = stack.study(study_uid)
    assert row is not None
    cpu = time.process_time()
    with Profiler(interval=0.002) as profiler:
        outcome = analyze_study(engine, runtime.analysis, predictor, study_id=row.id, revision=1,
                                task_id="profile", host="profile")
    cpu = time.process_time() - cpu
    timings = stack.jobs()[-1].timings
    path = OUT / f"analysis-{args.slices}.txt"
    path.write_text(profiler.output_text(unicode=False, color=False))
    session = profiler.last_session
    assert session is not None
    session.save(str(args.cache / path.with_suffix(".pyisession").name))  # for --load
    print(f"{outcome.state}; stages {timings}; CPU {cpu:.2f} s; load {os.getloadavg()[0]:.1f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
