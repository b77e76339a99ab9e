"""Studies per minute with one and with two single-threaded workers.

    python -m bench.throughput [--studies 20] [--distinct 10] [--workers 1 2]

For each worker count: a fresh node (``lungpath serve`` without its embedded worker,
server-less broker, SQLite) receives ``--studies`` studies back to back (the latency bench's
300-image studies, sent again under new UIDs); once the dispatcher has queued them all,
that many ``lungpath worker`` processes start together, each with one pool process and one
thread for torch, OpenMP, BLAS and ITK, and drain the queue. The queue is filled first so
that the node's receiving, which shares the two cores, does not decide the workers' rate (the
ingest bench measures receiving). Rate = studies / (first analysis start -> last SR at the
PACS); the figure with the workers' start-up is reported next to it. Target: two workers
>= 1.6x the studies per minute of one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import BenchResult, load_average, write_result
from bench.latency import studies
from bench.stack import (
    BENCH_WAIT_S,
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
from tests.integration.orchestration import wait_for

TARGET_RATIO = 1.6
#: one thread per worker process: torch reads OMP_NUM_THREADS, SimpleITK the ITK variable
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                 "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1", "LUNGPATH_WORKER_CONCURRENCY": "1"}


def drain(folders: list[Path], count: int, workers: int, root: Path, checkpoint: Path
          ) -> dict[str, Any]:
    """Fill the queue with ``count`` studies, then drain it with ``workers`` workers."""
    pacs = TimedPacs()
    pacs.start()
    stack = bench_stack(root, checkpoint, pacs, embedded_worker=False,
                        stable_seconds=STABLE_S)
    try:
        stack.node()
        pushed = time.perf_counter()
        sent = [send(stack, read_series(folders[i % len(folders)])) for i in range(count)]
        pushed = time.perf_counter() - pushed

        def queued() -> bool:
            return all((s := stack.study(uid)) is not None and s.state == "QUEUED"
                       for uid, _ in sent)

        wait_for(queued, "every study queued", stack, timeout=BENCH_WAIT_S)
        started_at = datetime.now(UTC)
        pids = [stack.worker(**SINGLE_THREAD).pid for _ in range(workers)]
        cpu = 0.0
        for uid, _ in sent:
            wait_delivered(stack, pacs, uid)
            cpu = max(cpu, sum(cpu_seconds(process_tree(pid)) for pid in pids))
        lines = [timeline(stack, pacs, uid, at) for uid, at in sent]
    finally:
        stack.stop_all()
        pacs.stop()
    first = min(t.job.started_at for t in lines if t.job.started_at is not None)
    last = max(t.sr_at for t in lines)
    window = (last - first).total_seconds()
    return {
        "workers": workers, "studies": count, "push s": pushed,
        "rate": count / window * 60, "window s": window,
        "rate with start-up": count / (last - started_at).total_seconds() * 60,
        "queue waits": [(t.job.started_at - max(t.job.queued_at, started_at)).total_seconds()
                        for t in lines if t.job.started_at is not None],
        "analysis stage s": [float((t.job.timings or {}).get("total", 0.0)) for t in lines],
        "worker CPU s": cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--distinct", type=int, default=10, help="different studies sent")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cache", type=Path, default=Path("var/bench/latency"))
    args = parser.parse_args()
    folders = studies(args.cache, args.distinct)
    checkpoint, checkpoint_note = serving_checkpoint(args.cache / "checkpoint")
    load_before = load_average()
    runs = []
    for workers in args.workers:
        root = args.cache / "run" / f"throughput-{workers}-{time.time_ns()}"
        runs.append(drain(folders, args.studies, workers, root, checkpoint))
        print(f"{workers} worker(s): {runs[-1]['rate']:.2f} studies/min, "
              f"load {load_average()}", flush=True)
    result = BenchResult(name="throughput",
                         title="Throughput: single-threaded workers (512 x 512 x 300 studies)")
    base = runs[0]["rate"]
    result.add_table("Draining a full queue (wall seconds unless CPU)", [{
        "workers": r["workers"], "studies": r["studies"],
        "studies/min": f"{r['rate']:.2f}", "ratio to 1 worker": f"{r['rate'] / base:.2f}x",
        "studies/min with start-up": f"{r['rate with start-up']:.2f}",
        "window s": f"{r['window s']:.1f}",
        "queue wait p50 s": f"{statistics.median(r['queue waits']):.1f}",
        "queue wait max s": f"{max(r['queue waits']):.1f}",
        "analysis p50 s": f"{statistics.median(r['analysis stage s']):.2f}",
        "worker CPU s / study": f"{r['worker CPU s'] / r['studies']:.2f}",
        "push s": f"{r['push s']:.1f}",
    } for r in runs])
    by_workers = {r["workers"]: r["rate"] for r in runs}
    if 1 in by_workers and 2 in by_workers:
        ratio = by_workers[2] / by_workers[1]
        result.add_target("studies/min, 2 single-threaded workers / 1",
                          f">= {TARGET_RATIO}x", f"{ratio:.2f}x", ratio >= TARGET_RATIO)
    result.notes += [
        f"{args.studies} studies per row ({args.distinct} different synthetic studies, "
        "2 nodules, resampled to 300 images of 512 x 512, each sent again under new UIDs).",
        checkpoint_note + ".",
        "Queue wait = an analysis's start - max(its queuing, the workers' start): the time a "
        "study waits for a free worker (the first ones wait for the workers' start-up). "
        "Worker CPU = user + system seconds of the worker processes (from /proc, their "
        "start-up with torch's import and the model load included), divided by the studies.",
        "The node (dispatcher, delivery answers) and the PACS share the two cores with the "
        "workers during the window.",
        f"Load average (1 min) {load_before} before the run and {load_average()} after.",
    ]
    write_result(result)


if __name__ == "__main__":
    main()
