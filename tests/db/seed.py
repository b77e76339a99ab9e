"""A small, known history written through the real API, for query and retention tests.

Relative to ``now``:
- 1.1 from CT1, 3 days ago: DONE (120 s from COMPLETE to DONE), result delivered to PACS1;
- 1.2 from CT2, 2 hours ago: FAILED, reason "decoding failed"; the association refused one;
- 1.3 from CT2, 1 hour ago: DONE (60 s), delivery to PACS2 failing (2 attempts);
- 1.4 from CT1, 10 minutes ago: RECEIVING.
Files lie where the node puts them: each instance at ``store/<study>/<series>/<sop>.dcm``,
each result's SR and two summary images (two nodules) in ``store/results/<study>/r1-<sha>/``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, select

from db import states
from db.deliveries import arm_deliveries, lock_delivery, record_attempt
from db.engine import transaction
from db.ingest import close_association, complete_stable_studies, open_association, record_instance
from db.models import Delivery, StudyState

CKPT = "e" * 64


@dataclass
class Seeded:
    now: datetime
    files: dict[str, list[Path]] = field(default_factory=dict)  # study UID -> its files


def _store(engine: Engine, seeded: Seeded, store: Path, *, study: str, ae: str, at: datetime,
           count: int, refused: int = 0) -> None:
    with transaction(engine) as session:
        association = open_association(session, calling_ae=ae, called_ae="LUNGPATH",
                                       peer_host="10.0.0.1", peer_port=4000, tls=False, now=at)
        folder = store / study / f"{study}.100"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            path = folder / f"{study}.{i}.dcm"
            path.write_bytes(f"{study}.{i}".encode())
            record_instance(
                session, association_id=association, sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                sop_instance_uid=f"{study}.{i}", study_uid=study, series_uid=f"{study}.100",
                transfer_syntax_uid="1.2.840.10008.1.2.1", size=path.stat().st_size,
                sha256=hashlib.sha256(path.read_bytes()).hexdigest(), path=str(path),
                received_at=at)
            seeded.files.setdefault(study, []).append(path)
        close_association(session, association, accepted=count, refused=refused,
                          aborted=False, now=at)


def _analyse(engine: Engine, seeded: Seeded, store: Path, *, study: str, at: datetime,
             seconds: float, outcome: StudyState, reason: str | None = None) -> int | None:
    complete = at + timedelta(minutes=2)
    assert complete_stable_studies(engine, now=complete, stable_seconds=60) == [study]
    end = complete + timedelta(seconds=seconds)
    with transaction(engine) as session:
        states.mark_queued(session, study_uid=study, revision=1, task_id=f"task-{study}",
                           deadline_at=end + timedelta(hours=1), now=complete, actor="dispatcher")
        states.mark_processing(session, study_uid=study, revision=1, task_id=f"task-{study}",
                               host="gpu1", device="cuda:0", model_version="1.0",
                               checkpoint_sha256=CKPT, deadline_at=end + timedelta(hours=1),
                               now=complete, actor="worker@gpu1")
        result_id = None
        if outcome is StudyState.DONE:
            folder = store / "results" / study / f"r1-{CKPT[:16]}"
            folder.mkdir(parents=True)
            sr, *summaries = (folder / name for name in ("SR.dcm", "SC-1.dcm", "SC-2.dcm"))
            for path in (sr, *summaries):
                path.write_bytes(path.name.encode())
            seeded.files[study] += [sr, *summaries]
            result_id = states.add_result(
                session, study_uid=study, revision=1, checkpoint_sha256=CKPT,
                objects={"SR": (f"{study}.900.1", f"{study}.900", str(sr)),
                         "SC": (f"{study}.901.1", f"{study}.901", str(summaries[0]))},
                findings={"nodules": 2}, now=end).id
        states.finish_analysis(session, study_uid=study, revision=1, outcome=outcome,
                               reason=reason, timings={"total": seconds}, error=reason,
                               now=end, actor="worker@gpu1")
    return result_id


def seed(engine: Engine, store: Path, now: datetime) -> Seeded:
    """Write the history of the module docstring; returns where its files are."""
    seeded = Seeded(now=now)
    store.mkdir(parents=True, exist_ok=True)
    a, b, c, d = (now - timedelta(days=3), now - timedelta(hours=2), now - timedelta(hours=1),
                  now - timedelta(minutes=10))
    _store(engine, seeded, store, study="1.1", ae="CT1", at=a, count=3)
    result_a = _analyse(engine, seeded, store, study="1.1", at=a, seconds=120,
                        outcome=StudyState.DONE)
    _store(engine, seeded, store, study="1.2", ae="CT2", at=b, count=2, refused=1)
    _analyse(engine, seeded, store, study="1.2", at=b, seconds=30, outcome=StudyState.FAILED,
             reason="decoding failed")
    _store(engine, seeded, store, study="1.3", ae="CT2", at=c, count=2)
    result_c = _analyse(engine, seeded, store, study="1.3", at=c, seconds=60,
                        outcome=StudyState.DONE)
    _store(engine, seeded, store, study="1.4", ae="CT1", at=d, count=1)
    assert result_a is not None and result_c is not None
    with transaction(engine) as session:
        arm_deliveries(session, result_id=result_a, objects=["SR"],
                       destinations=[("PACS1", "10.0.0.9", 104)], now=a + timedelta(minutes=5))
        arm_deliveries(session, result_id=result_c, objects=["SR"],
                       destinations=[("PACS2", "10.0.0.8", 104)], now=c + timedelta(minutes=5))
        sent, failing = (session.scalars(select(Delivery.id).where(Delivery.result_id == r)).one()
                         for r in (result_a, result_c))
        record_attempt(session, lock_delivery(session, sent), status="0x0000", delivered=True,
                       next_retry_at=None, now=a + timedelta(minutes=5), actor="worker@gpu1")
        for attempt in range(2):
            record_attempt(session, lock_delivery(session, failing),
                           status="association rejected", delivered=False,
                           next_retry_at=c + timedelta(minutes=10 + attempt),
                           now=c + timedelta(minutes=5 + attempt), actor="worker@gpu1")
    return seeded
