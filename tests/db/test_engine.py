from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DBAPIError, StatementError

from db.engine import create_engine_for, normalise_url, transaction
from db.events import EventType, Outcome, audit
from db.models import AuditEvent
from db.states import start_study


def _sqlite_path(engine: Engine) -> str:
    return str(engine.url.database)


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_connections_are_set_up_for_several_writers(engine: Engine) -> None:
    with engine.connect() as connection:
        pragmas = {name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                   for name in ("journal_mode", "foreign_keys", "synchronous")}
    # the busy timeout is what is left of the transaction's wait (tests/db/test_write_queue.py)
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "synchronous": 2}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_sqlite_transactions_take_the_write_lock_up_front(engine: Engine) -> None:
    other = sqlite3.connect(_sqlite_path(engine), timeout=0, isolation_level=None)
    try:
        with transaction(engine) as session:
            session.execute(text("SELECT 1"))  # a read only, yet the write lock is held
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        other.execute("BEGIN IMMEDIATE")  # free again after commit
        other.execute("ROLLBACK")
    finally:
        other.close()


def test_read_only_engines_refuse_writes(engine: Engine, db_url: str) -> None:
    reader = create_engine_for(db_url, read_only=True)
    try:
        with transaction(reader) as session:
            assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0
        with pytest.raises(DBAPIError, match=r"(?i)read.?only"), transaction(reader) as session:
            audit(session, actor="x", event_type=EventType.SECURITY_ALERT,
                  outcome=Outcome.SUCCESS)
    finally:
        reader.dispose()


def test_transaction_rolls_back_on_error(engine: Engine) -> None:
    now = datetime.now(UTC)
    with pytest.raises(RuntimeError), transaction(engine) as session:
        start_study(session, study_uid="1.2", calling_ae=None, now=now, actor="x")
        raise RuntimeError("boom")
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def test_times_are_stored_in_utc_and_naive_times_refused(engine: Engine) -> None:
    local = datetime(2026, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    with transaction(engine) as session:
        audit(session, actor="x", event_type=EventType.SECURITY_ALERT, outcome="success",
              at=local)
    with transaction(engine) as session:
        stored = session.scalar(select(AuditEvent.occurred_at))
    assert stored == local and stored is not None and stored.tzinfo == UTC
    with pytest.raises(StatementError, match="naive datetime"), \
            transaction(engine) as session:
        audit(session, actor="x", event_type=EventType.SECURITY_ALERT, outcome="success",
              at=datetime(2026, 3, 1))


def test_urls() -> None:
    assert normalise_url("postgresql://u@h/db").startswith("postgresql+psycopg://u@h/db")
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(ValueError, match="url: unsupported database 'mysql'"):
        normalise_url("mysql://u@h/db")
    with pytest.raises(ValueError, match="needs a database file"):
        create_engine_for("sqlite://", read_only=True)


def test_a_missing_sqlite_file_cannot_be_opened_read_only(tmp_path: Path) -> None:
    reader = create_engine_for(f"sqlite:///{tmp_path / 'none.db'}", read_only=True)
    try:
        with pytest.raises(DBAPIError, match="unable to open"), reader.connect():
            pass
    finally:
        reader.dispose()
    assert not (tmp_path / "none.db").exists()
