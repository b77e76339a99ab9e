"""Several processes writing and sweeping one database at once, as the node does."""

from __future__ import annotations

import hashlib
import multiprocessing
import shutil
import tempfile
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, Select, func, select

from db.engine import create_engine_for, transaction
from db.ingest import (
    close_association,
    complete_stable_studies,
    open_association,
    record_instance,
)
from db.models import AuditEvent, Instance, Study
from tests.db.databases import fresh_url

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
STUDIES = 4
WRITERS = 8


def _writer(url: str, writer: int, count: int, errors: multiprocessing.Queue[str]) -> None:
    """One association storing ``count`` instances, one transaction each (as the SCP does),
    spread over studies that the other writers also fill."""
    engine = create_engine_for(url)
    try:
        with transaction(engine) as session:
            association = open_association(session, calling_ae=f"CT{writer}",
                                           called_ae="LUNGPATH", peer_host="127.0.0.1",
                                           peer_port=50000 + writer, tls=False)
        for i in range(count):
            sop = f"1.2.{writer}.{i}"
            with transaction(engine) as session:
                record_instance(
                    session, association_id=association, sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                    sop_instance_uid=sop, study_uid=f"1.2.99.{i % STUDIES}",
                    series_uid=f"1.2.99.{i % STUDIES}.1",
                    transfer_syntax_uid="1.2.840.10008.1.2.1", size=1000,
                    sha256=hashlib.sha256(sop.encode()).hexdigest(), path=f"/store/{sop}",
                    received_at=T0 + timedelta(milliseconds=i),
                )
        with transaction(engine) as session:
            close_association(session, association, accepted=count, refused=0, aborted=False)
    except Exception:
        errors.put(traceback.format_exc())
        raise
    finally:
        engine.dispose()


def _count(engine: Engine, query: Select[int]) -> int:
    with transaction(engine) as session:
        return session.scalar(query) or 0


def _run_all(target: Callable[..., None], args_list: list[tuple[object, ...]]) -> list[str]:
    context = multiprocessing.get_context("fork")
    errors: multiprocessing.Queue[str] = context.Queue()
    processes = [context.Process(target=target, args=(*args, errors)) for args in args_list]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    found = []
    while not errors.empty():
        found.append(errors.get())
    found += [f"exit code {p.exitcode}" for p in processes if p.exitcode != 0]
    return found


@pytest.fixture
def memory_backed_url(request: pytest.FixtureRequest, backend: str,
                      tmp_path: Path) -> Iterator[str]:
    """A migrated database; on SQLite in /dev/shm where there is one.

    The test is about lock contention, not the disk: 8,000 commits each waiting for an fsync
    (synchronous=FULL) would make it minutes long on a busy disk without testing more.
    """
    shm = Path("/dev/shm")
    if backend != "sqlite" or not shm.is_dir():
        yield fresh_url(request, backend, tmp_path)
        return
    folder = Path(tempfile.mkdtemp(prefix="lungpath-test-", dir=shm))
    try:
        yield fresh_url(request, backend, folder)
    finally:
        shutil.rmtree(folder)


@pytest.mark.slow
@pytest.mark.parametrize(("backend", "per_writer"), [("sqlite", 1000), ("postgresql", 50)])
def test_eight_concurrent_writers_lose_nothing(memory_backed_url: str, per_writer: int) -> None:
    errors = _run_all(_writer, [(memory_backed_url, w, per_writer) for w in range(WRITERS)])
    assert not any("database is locked" in e for e in errors), errors
    assert errors == []
    engine = create_engine_for(memory_backed_url)
    total = WRITERS * per_writer
    assert _count(engine, select(func.count()).select_from(Instance)) == total
    received = select(func.count()).where(AuditEvent.event_type == "instance.received")
    assert _count(engine, received) == total
    # every study was created exactly once although all writers raced for its first instance
    opened = select(func.count()).where(AuditEvent.event_type == "study.receiving")
    assert _count(engine, opened) == STUDIES
    with transaction(engine) as session:
        assert {(s.state, s.revision) for s in session.scalars(select(Study))} == {
            ("RECEIVING", 1)}
    engine.dispose()


def _sweeper(url: str, errors: multiprocessing.Queue[str]) -> None:
    engine = create_engine_for(url)
    try:
        completed = complete_stable_studies(engine, now=T0 + timedelta(hours=1),
                                            stable_seconds=60)
        errors.put("completed:" + ",".join(completed))
    except Exception:
        errors.put(traceback.format_exc())
        raise
    finally:
        engine.dispose()


@pytest.mark.slow
def test_concurrent_sweepers_complete_each_study_once(db_url: str, engine: Engine) -> None:
    with transaction(engine) as session:
        for i in range(30):
            record_instance(
                session, association_id=None, sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
                sop_instance_uid=f"1.3.{i}", study_uid=f"1.3.{i}.0", series_uid=f"1.3.{i}.1",
                transfer_syntax_uid="1.2.840.10008.1.2.1", size=1, sha256="a" * 64,
                path=f"/s/{i}", received_at=T0,
            )
    reports = _run_all(_sweeper, [(db_url,) for _ in range(4)])
    failures = [r for r in reports if not r.startswith("completed:")]
    assert failures == []
    completed = [uid for r in reports for uid in r.removeprefix("completed:").split(",") if uid]
    assert sorted(completed) == sorted(f"1.3.{i}.0" for i in range(30))
    events = select(func.count()).where(AuditEvent.event_type == "study.complete")
    assert _count(engine, events) == 30
