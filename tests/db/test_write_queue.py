"""The writers of one process take turns on a SQLite file, in arrival order, and a bounded
wait ends in ``DatabaseBusy`` whoever holds the database (db/engine.py)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from db.engine import (
    SQLITE_BUSY_TIMEOUT_MS,
    DatabaseBusy,
    bounded_wait,
    create_engine_for,
    transaction,
    write_queue,
)
from db.events import EventType, Outcome, audit
from db.models import AuditEvent, Study
from db.states import start_study

SQLITE = pytest.mark.parametrize("backend", ["sqlite"])
POSTGRESQL = pytest.mark.parametrize("backend", ["postgresql"])

#: How long a lock held elsewhere stays held at most: fifty times the bounded waits below, so
#: that a wait that is not bounded ends in success instead of ``DatabaseBusy``.
HELD_AT_MOST_S = 10.0
BOUND_S = 0.2


def _record(session: Session, actor: str) -> None:
    audit(session, actor=actor, event_type=EventType.SECURITY_ALERT, outcome=Outcome.SUCCESS)


def _actors(engine: Engine) -> list[str]:
    """The actors of the recorded events in commit order."""
    with transaction(engine) as session:
        return list(session.scalars(select(AuditEvent.actor).order_by(AuditEvent.id)))


def _until(predicate: Callable[[], bool]) -> None:
    """Wait for ``predicate``; a minute without it fails (the test would hang otherwise)."""
    deadline = time.monotonic() + 60
    while not predicate():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.001)


@contextmanager
def _held_elsewhere(take: Callable[[], Callable[[], None]]) -> Iterator[None]:
    """Run ``take`` (which locks something and returns how to let go) in another thread;
    it lets go when the block ends, or after ``HELD_AT_MOST_S`` if that comes first."""
    taken, done = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def hold() -> None:
        try:
            let_go = take()
        except BaseException as e:
            failures.append(e)
            taken.set()
            raise
        taken.set()
        done.wait(HELD_AT_MOST_S)
        let_go()

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait()
    try:
        assert not failures, failures
        yield
    finally:
        done.set()
        thread.join()


@SQLITE
def test_writers_of_one_process_take_the_lock_in_arrival_order(engine: Engine) -> None:
    queue = write_queue(str(engine.url.database))
    failures: list[BaseException] = []

    def write(actor: str) -> None:
        try:
            with transaction(engine) as session:
                _record(session, actor)
        except BaseException as e:
            failures.append(e)
            raise

    writers = [threading.Thread(target=write, args=(f"w{i}",)) for i in range(6)]
    with transaction(engine) as holder:
        _record(holder, "holder")
        for index, writer in enumerate(writers):
            writer.start()
            _until(lambda: queue.waiting == index + 1)  # noqa: B023 (called right here)
    for writer in writers:
        writer.join()
    assert failures == []
    assert _actors(engine) == ["holder"] + [f"w{i}" for i in range(6)]
    assert queue.waiting == 0


@SQLITE
def test_a_bounded_wait_behind_a_writer_of_this_process_ends_in_database_busy(
        engine: Engine) -> None:
    bounded = bounded_wait(engine, BOUND_S)
    with transaction(engine) as holder:
        _record(holder, "holder")
        with pytest.raises(DatabaseBusy, match="database busy"), \
                transaction(bounded) as session:
            _record(session, "late")
    with transaction(bounded) as session:
        _record(session, "next")
    assert _actors(engine) == ["holder", "next"]


@SQLITE
def test_a_bounded_wait_behind_another_process_ends_in_database_busy(engine: Engine) -> None:
    def take() -> Callable[[], None]:
        other = sqlite3.connect(str(engine.url.database), isolation_level=None,
                                check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")

        def let_go() -> None:
            other.execute("ROLLBACK")
            other.close()
        return let_go

    bounded = bounded_wait(engine, BOUND_S)
    # SQLite's busy handler, not only the queue, gives up within the bound
    with _held_elsewhere(take), pytest.raises(DatabaseBusy), transaction(bounded) as session:
        _record(session, "late")
    with transaction(bounded) as session:
        _record(session, "next")
    assert _actors(engine) == ["next"]


@SQLITE
def test_a_transaction_waits_at_most_its_bound_for_other_processes(engine: Engine) -> None:
    with engine.connect() as connection:
        default = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    with transaction(bounded_wait(engine, BOUND_S)) as session:
        bounded = session.execute(text("PRAGMA busy_timeout")).scalar()
    assert default is not None and 0 < default <= SQLITE_BUSY_TIMEOUT_MS
    assert bounded is not None and 0 <= bounded <= BOUND_S * 1000


@SQLITE
@pytest.mark.parametrize("ending", ["exception", "failed statement", "invalidated"])
def test_the_turn_is_given_back_however_the_transaction_ends(engine: Engine,
                                                            ending: str) -> None:
    with pytest.raises(Exception, match=r"boom|no such table"), \
            transaction(engine) as session:
        _record(session, "first")
        if ending == "failed statement":
            session.execute(text("SELECT * FROM no_such_table"))
        if ending == "invalidated":
            session.connection().invalidate()
        raise RuntimeError("boom")
    with transaction(bounded_wait(engine, BOUND_S)) as session:
        _record(session, "next")
    assert _actors(engine) == ["next"]


@SQLITE
def test_engines_of_one_process_on_one_file_share_the_queue(engine: Engine) -> None:
    second = create_engine_for(str(engine.url))
    try:
        with transaction(engine) as holder:
            _record(holder, "holder")
            with pytest.raises(DatabaseBusy, match="no turn"), \
                    transaction(bounded_wait(second, BOUND_S)) as session:
                _record(session, "late")
    finally:
        second.dispose()


@POSTGRESQL
def test_a_bounded_wait_on_postgresql_is_the_lock_timeout(engine: Engine) -> None:
    with transaction(engine) as session:
        start_study(session, study_uid="1.2.3", calling_ae=None, now=datetime.now(UTC), actor="x")

    def take() -> Callable[[], None]:
        holder = engine.connect()
        holder.execute(select(Study).with_for_update()).all()

        def let_go() -> None:
            holder.rollback()
            holder.close()
        return let_go

    bounded = bounded_wait(engine, BOUND_S)
    with _held_elsewhere(take), pytest.raises(DatabaseBusy), transaction(bounded) as session:
        session.execute(select(Study).with_for_update()).all()
    with transaction(bounded) as session:  # the bound is per transaction, not a lasting one
        assert session.execute(select(Study.study_uid).with_for_update()).scalars().all() == [
            "1.2.3"]
