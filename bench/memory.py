"""Peak memory of the node receiving, and of a worker analysing, a 512 x 512 x 600 study.

    python -m bench.memory [--slices 600]

A fresh node (``lungpath serve`` without its embedded worker, server-less broker, SQLite)
and one ``lungpath worker`` (default threads, one pool process); the study is the latency
bench's first, resampled to 600 images. A thread polls /proc every 50 ms for each process
tree's resident memory (the sum over its processes: the node with its receiving processes,
the worker with its pool process), and reads each process's own peak (VmHWM, kept by the
kernel, so no spike escapes between polls). Targets: worker peak RSS <= 3 GB, node peak
RSS <= 500 MB while receiving.
"""

from __future__ import annotations

import argparse
import resource
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import BenchResult, load_average, write_result
from bench.stack import (
    STABLE_S,
    TimedPacs,
    bench_stack,
    memory_kib,
    process_tree,
    read_series,
    send,
    serving_checkpoint,
    timeline,
    wait_delivered,
)
from bench.synthetic_studies import resampled, study

WORKER_TARGET_MB = 3000
NODE_TARGET_MB = 500
POLL_S = 0.05


class TreeMemory:
    """Peak resident memory of a process tree, polled in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_sum_kib = 0
        self.peak_process_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def start(self) -> TreeMemory:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def reset(self) -> None:
        """Forget the polled peak (the kernel's per-process peak stays)."""
        self.peak_sum_kib = 0

    def _poll(self) -> None:
        while not self._stop.is_set():
            readings = [memory_kib(pid) for pid in process_tree(self.pid)]
            self.peak_sum_kib = max(self.peak_sum_kib, sum(rss for rss, _ in readings))
            self.peak_process_kib = max([self.peak_process_kib, *(hwm for _, hwm in readings)])
            time.sleep(POLL_S)


def measure(folder: Path, root: Path, checkpoint: Path) -> dict[str, Any]:
    """Peaks of the node while receiving the study and of the worker until it is delivered."""
    template = read_series(folder)
    pacs = TimedPacs()
    pacs.start()
    stack = bench_stack(root, checkpoint, pacs, embedded_worker=False,
                        stable_seconds=STABLE_S)
    try:
        node = TreeMemory(stack.node().pid).start()
        worker = TreeMemory(stack.worker().pid).start()
        time.sleep(1.0)
        idle_node_kib = node.peak_sum_kib
        node.reset()
        study_uid, sent_at = send(stack, template)
        receiving_kib = node.peak_sum_kib
        wait_delivered(stack, pacs, study_uid)
        seconds = timeline(stack, pacs, study_uid, sent_at).seconds()
        node.stop()
        worker.stop()
    finally:
        stack.stop_all()
        pacs.stop()
    return {
        "node idle": idle_node_kib, "node receiving": receiving_kib,
        "node process peak": node.peak_process_kib, "node whole run": node.peak_sum_kib,
        "worker": worker.peak_sum_kib, "worker process peak": worker.peak_process_kib,
        "children ru_maxrss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "analysis s": seconds.get("total", 0.0),
        "images": len(template),
    }


def mb(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=600)
    parser.add_argument("--cache", type=Path, default=Path("var/bench/latency"))
    args = parser.parse_args()
    source, _ = study(args.cache / "source", 0, nodules=2)
    folder = resampled(source, args.slices, args.cache / f"{source.name}-{args.slices}")
    checkpoint, checkpoint_note = serving_checkpoint(args.cache / "checkpoint")
    load_before = load_average()
    m = measure(folder, args.cache / "run" / f"memory-{time.time_ns()}", checkpoint)
    result = BenchResult(name="memory", title=f"Peak memory, 512 x 512 x {args.slices} study")
    volume_kib = m["images"] * 512 * 512 * 2 / 1024

    def ratio(kib: int) -> str:
        return f"{kib / volume_kib:.1f}x"

    result.add_table("Resident memory (MB), and as a multiple of the study's int16 volume", [
        {"process": "node: serve + receiving processes", "while": "idle",
         "peak RSS MB (tree sum, polled)": mb(m["node idle"]), "largest process VmHWM MB": "-",
         "x volume": ratio(m["node idle"])},
        {"process": "node: serve + receiving processes", "while": "receiving the study",
         "peak RSS MB (tree sum, polled)": mb(m["node receiving"]),
         "largest process VmHWM MB": mb(m["node process peak"]),
         "x volume": ratio(m["node receiving"])},
        {"process": "worker: main + pool process", "while": "analysing and delivering",
         "peak RSS MB (tree sum, polled)": mb(m["worker"]),
         "largest process VmHWM MB": mb(m["worker process peak"]),
         "x volume": ratio(m["worker"])},
    ])
    worker_mb, node_mb = m["worker"] / 1024, m["node receiving"] / 1024
    result.add_target(f"worker peak RSS, {args.slices}-image study", f"<= {WORKER_TARGET_MB} MB",
                      f"{worker_mb:.0f} MB", worker_mb <= WORKER_TARGET_MB)
    result.add_target("node peak RSS while receiving it", f"<= {NODE_TARGET_MB} MB",
                      f"{node_mb:.0f} MB", node_mb <= NODE_TARGET_MB)
    result.notes += [
        f"Study: the latency bench's first study resampled to {m['images']} images (int16 "
        f"volume {volume_kib / 1024:.0f} MB); analysis {m['analysis s']:.1f} s wall.",
        checkpoint_note + ".",
        "Tree sums are polled every 50 ms; VmHWM is each process's own peak from the "
        "kernel. The largest ru_maxrss among this bench's reaped children (a cross-check) "
        f"was {m['children ru_maxrss'] / 1024:.0f} MB.",
        f"Load average (1 min) {load_before} before the run and {load_average()} after.",
    ]
    write_result(result)


if __name__ == "__main__":
    main()
