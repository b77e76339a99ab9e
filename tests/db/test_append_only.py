"""Audit events are append-only in the database itself, whichever client connects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, func, select, text, update
from sqlalchemy.exc import DBAPIError

from db.engine import transaction
from db.events import EventType, Outcome, audit
from db.models import AuditEvent, AuditRetention
from db.retention import purge_audit_events

NOW = datetime.now(UTC)


def _add(engine: Engine, *, age_days: float) -> None:
    with transaction(engine) as session:
        audit(session, actor="test", event_type=EventType.INSTANCE_RECEIVED,
              outcome=Outcome.SUCCESS, at=NOW - timedelta(days=age_days))


def _count(engine: Engine) -> int:
    with transaction(engine) as session:
        return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def test_update_is_refused(engine: Engine) -> None:
    _add(engine, age_days=400)
    with pytest.raises(DBAPIError, match="append-only"), transaction(engine) as session:
        session.execute(update(AuditEvent).values(outcome="major_failure"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text("UPDATE audit_events SET actor = 'someone else'"))
    with transaction(engine) as session:
        assert session.scalars(select(AuditEvent.actor)).all() == ["test"]


def test_delete_is_refused_without_a_retention(engine: Engine) -> None:
    _add(engine, age_days=400)
    with pytest.raises(DBAPIError, match="append-only"), transaction(engine) as session:
        session.execute(delete(AuditEvent))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_events"))
    assert _count(engine) == 1


def test_delete_younger_than_the_retention_is_refused(engine: Engine) -> None:
    _add(engine, age_days=40)
    _add(engine, age_days=10)
    with transaction(engine) as session:
        session.execute(update(AuditRetention).values(days=30))
    with pytest.raises(DBAPIError, match="append-only"), transaction(engine) as session:
        session.execute(delete(AuditEvent))
    assert _count(engine) == 2  # the statement failed as a whole
    with transaction(engine) as session:
        session.execute(delete(AuditEvent).where(AuditEvent.occurred_at < NOW - timedelta(35)))
    assert _count(engine) == 1


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite has no TRUNCATE
def test_truncate_is_refused_on_postgresql(engine: Engine) -> None:
    _add(engine, age_days=1)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
        connection.execute(text("TRUNCATE audit_events"))
    assert _count(engine) == 1


def test_purge_deletes_only_events_older_than_the_retention(engine: Engine) -> None:
    for age in (400, 200, 20, 1):
        _add(engine, age_days=age)
    assert purge_audit_events(engine, retention_days=100, dry_run=True, actor="test",
                              now=NOW) == 2
    assert _count(engine) == 4
    assert purge_audit_events(engine, retention_days=100, dry_run=False, actor="test",
                              now=NOW) == 2
    with transaction(engine) as session:
        rows = session.execute(select(AuditEvent.event_type, AuditEvent.detail)
                               .order_by(AuditEvent.occurred_at)).all()
        assert session.scalar(select(AuditRetention.days)) == 100
    assert [r.event_type for r in rows] == ["instance.received", "instance.received",
                                            "audit.purged"]
    assert rows[-1].detail["deleted"] == 2 and rows[-1].detail["retention_days"] == 100
    with pytest.raises(ValueError, match="retention_days"):
        purge_audit_events(engine, retention_days=0, dry_run=False, actor="test", now=NOW)
