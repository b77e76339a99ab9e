"""A running lungpath for the end-to-end benches (latency, throughput, memory).

The processes, settings and PACS stand-in are the orchestration tests' own
(tests/integration/orchestration.py: ``make_stack``, ``Pacs``, ``send_study``, ``wait_for``),
so a bench measures exactly what those tests check. This module adds what a measurement
needs on top: the serving checkpoint, a PACS that notes when each kind of object arrives,
the timeline of one study from the database, and CPU and memory of the process trees read
from /proc.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from db.migrations import upgrade
from db.models import Job
from lungpath.dispatch import WEIGHTS_DIR
from tests.integration.orchestration import (
    KINDS,
    Pacs,
    Stack,
    child_pids,
    make_stack,
    send_study,
    wait_for,
)

#: a bound on every wait of a bench (a 600-image study on a loaded machine), not a target
BENCH_WAIT_S = 900.0
#: stable_seconds of a bench's node: short, yet longer than a pause between two C-STOREs of
#: one study on a loaded machine (a longer pause splits the study into two revisions)
STABLE_S = 3.0
_TICKS = 100.0  # USER_HZ of /proc/<pid>/stat on Linux


def serving_checkpoint(folder: Path) -> tuple[Path, str]:
    """The shipped weights when model/weights/ holds them, else an untrained student of the
    default size and CropSpec written into ``folder`` (inference costs the same); with a line
    saying which, for the result's notes."""
    shipped = sorted(WEIGHTS_DIR.glob("*.pt"))
    if shipped:
        return shipped[0].resolve(), f"checkpoint: shipped weights {shipped[0].name}"
    import torch

    from model.checkpoint import Checkpoint, IntendedUse, save_checkpoint
    from model.crop_spec import CropSpec
    from model.factory import create_model

    path = folder.resolve() / "untrained-student.pt"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        save_checkpoint(Checkpoint.of(
            create_model("mdanet"), "mdanet", crop_spec=CropSpec(), version="0.0.0-bench",
            intended_use=IntendedUse.RESEARCH_SYNTHETIC,
            training_data="none: untrained bench fixture"), path)
    return path, ("checkpoint: no shipped weights in model/weights/ yet, so an untrained "
                  "student of the default size and CropSpec (the same inference cost)")


class TimedPacs(Pacs):
    """The tests' PACS stand-in, noting when the first object of each kind of a study came."""

    def __init__(self) -> None:
        super().__init__()
        self._arrivals: dict[tuple[str, str], datetime] = {}
        self._times_lock = threading.Lock()

    def _on_store(self, event: Any) -> int:
        now = datetime.now(UTC)
        ds = event.dataset
        key = (str(ds.StudyInstanceUID), KINDS.get(str(ds.SOPClassUID), str(ds.SOPClassUID)))
        with self._times_lock:
            self._arrivals.setdefault(key, now)
        return super()._on_store(event)

    def arrived(self, study_uid: str, kind: str) -> datetime | None:
        """When the first ``kind`` ("SR", "SC", "SEG") object of the study arrived."""
        with self._times_lock:
            return self._arrivals.get((study_uid, kind))


def bench_stack(root: Path, checkpoint: Path, pacs: Pacs | None, **settings: Any) -> Stack:
    """The tests' stack settings in ``root`` (a fresh SQLite database and server-less
    broker; no destination without ``pacs``) with the production time limits and deadlines,
    so that a slow moment of a shared machine never re-sends or fails a study; ``settings``
    override them."""
    root = root.resolve()  # the processes run in ``root``
    root.mkdir(parents=True, exist_ok=True)
    template = root / "template.db"
    upgrade(f"sqlite:///{template}")
    broker = f"sqla+sqlite:///{(root / 'broker.db').resolve()}"
    limits = {"analysis_soft_time_limit": 900.0, "analysis_time_limit": 1200.0,
              "queued_deadline_seconds": 3600.0, "reconcile_grace_seconds": 60.0}
    return make_stack(root, template, broker, checkpoint.resolve(), pacs,
                      **{**limits, **settings})


def read_series(folder: Path) -> list[Dataset]:
    """Every image of a study folder, read into memory once (sent many times)."""
    return [pydicom.dcmread(p) for p in sorted(folder.glob("*.dcm"))]


def send(stack: Stack, template: list[Dataset]) -> tuple[str, datetime]:
    """C-STORE a fresh copy of ``template``: its Study UID and when the last response came
    (the association's release, milliseconds, included)."""
    study_uid = send_study(stack.node_port, template)
    return study_uid, datetime.now(UTC)


def wait_delivered(stack: Stack, pacs: TimedPacs, study_uid: str) -> None:
    """Until the study is analysed and every one of its delivery rows is delivered."""
    def done() -> bool:
        study = stack.study(study_uid)
        if study is None or study.state not in ("DONE", "NOT_ANALYZABLE", "FAILED"):
            return False
        rows = stack.deliveries(study_uid)
        return bool(rows) and all(r.delivered_at is not None for r in rows) \
            and pacs.arrived(study_uid, "SR") is not None

    wait_for(done, f"study {study_uid} delivered", stack, timeout=BENCH_WAIT_S)


@dataclass(frozen=True)
class Timeline:
    """One study from its last instance to its SR at the PACS, from the database."""

    sent_at: datetime  #: last C-STORE response
    last_instance_at: datetime
    complete_at: datetime
    job: Job
    sr_at: datetime

    def seconds(self) -> dict[str, float]:
        """Wall seconds: the hops between processes and the Job row's stages."""
        job, timings = self.job, self.job.timings or {}
        assert job.started_at is not None and job.ended_at is not None
        return {
            "stable-age wait": _s(self.complete_at, self.last_instance_at),
            "latency": _s(self.sr_at, self.complete_at),
            "store to SR": _s(self.sr_at, self.sent_at),
            "dispatch": _s(job.queued_at, self.complete_at),
            "queue wait": _s(job.started_at, job.queued_at),
            **{name: float(value) for name, value in timings.items()},
            "finish": _s(job.ended_at, job.started_at) - float(timings.get("total", 0.0)),
            "delivery": _s(self.sr_at, job.ended_at),
        }


def timeline(stack: Stack, pacs: TimedPacs, study_uid: str, sent_at: datetime) -> Timeline:
    """The timeline of a delivered study."""
    study = stack.study(study_uid)
    sr_at = pacs.arrived(study_uid, "SR")
    assert study is not None and study.complete_at is not None and sr_at is not None
    if study.state != "DONE" or study.revision != 1:
        raise RuntimeError(f"study {study_uid} ended {study.state} at revision {study.revision} "
                           f"({study.reason}): a pause in sending longer than stable_seconds "
                           "splits a study; raise it on a loaded machine")
    job = [j for j in stack.jobs() if j.study_id == study.id][-1]
    return Timeline(sent_at, study.last_instance_at, study.complete_at, job, sr_at)


def _s(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


# -- process trees, from /proc --------------------------------------------------------------

def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants that are still alive."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            todo += child_pids(current)
        except OSError:
            continue
        found.append(current)
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes and of their reaped children."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(v) for v in fields[11:15]) / _TICKS  # utime stime cutime cstime
    return total


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB: its resident memory now and its peak so far."""
    values = {"VmRSS": 0, "VmHWM": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in values:
                values[key] = int(line.split()[1])
    except OSError:
        pass
    return values["VmRSS"], values["VmHWM"]
