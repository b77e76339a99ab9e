"""``record_instance`` for the common case: a new instance of a study that is receiving.

That case takes three statements and no ORM object (``db.ingest._record_new_data``); these
tests hold it to what the state machine's ORM path does in every neighbouring case, on both
back ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, text

from db.engine import create_engine_for, transaction
from db.ingest import InstanceOutcome, complete_stable_studies, open_association, record_instance
from db.models import Instance, Study, StudyState
from db.states import add_result, finish_analysis, mark_processing, mark_queued
from tests.db.databases import fresh_url
from tests.db.test_ingest import CT, T0, events, sha, store, study_row

DML = ("SELECT", "INSERT", "UPDATE", "DELETE")


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """The SELECT/INSERT/UPDATE/DELETE statements ``engine`` runs inside the block."""
    seen: list[str] = []

    def _record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(DML):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", _record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", _record)


def _association(engine: Engine) -> int:
    with transaction(engine) as session:
        return open_association(session, calling_ae="CT1", called_ae="LUNGPATH",
                                peer_host="h", peer_port=1, tls=False)


def test_new_instance_of_a_receiving_study_takes_three_statements(engine: Engine) -> None:
    assoc = _association(engine)
    with transaction(engine) as session:
        store(session, assoc, "1.1")
    with statements(engine) as seen, transaction(engine) as session:
        # as the Storage SCP calls it: the calling AE title is known, not looked up
        outcome = record_instance(
            session, association_id=assoc, sop_class_uid=CT, sop_instance_uid="1.2",
            study_uid="1.2.3", series_uid="1.2.3.4", transfer_syntax_uid="1.2.840.10008.1.2.1",
            size=10, sha256=sha("1.2"), path="/store/1.2.dcm",
            received_at=T0 + timedelta(seconds=5), calling_ae="CT1")
    assert (outcome.outcome, outcome.revision, outcome.study_state) == (
        InstanceOutcome.NEW, 1, "RECEIVING")
    assert [" ".join(s.split()[:3]) for s in seen] == [
        "UPDATE studies SET", "INSERT INTO instances", "INSERT INTO audit_events"]
    assert study_row(engine).last_instance_at == T0 + timedelta(seconds=5)
    received = events(engine, "instance.received")
    assert [(e.sop_instance_uid, e.calling_ae, e.study_uid) for e in received] == [
        ("1.1", "CT1", "1.2.3"), ("1.2", "CT1", "1.2.3")]
    assert received[1].detail == {"series_uid": "1.2.3.4", "sha256": sha("1.2"), "size": 10,
                                  "association_id": assoc}
    assert [e.event_type for e in events(engine)].count("study.receiving") == 1


def test_an_earlier_instance_does_not_move_last_instance_back(engine: Engine) -> None:
    with transaction(engine) as session:
        store(session, None, "1.1", at=T0 + timedelta(seconds=10))
    with transaction(engine) as session:
        late = store(session, None, "1.2", at=T0 + timedelta(seconds=4))
    assert late.outcome is InstanceOutcome.NEW
    assert study_row(engine).last_instance_at == T0 + timedelta(seconds=10)
    assert len(events(engine, "instance.received")) == 2


def test_a_duplicate_does_not_refresh_a_receiving_study(engine: Engine) -> None:
    with transaction(engine) as session:
        store(session, None, "1.1")
    with transaction(engine) as session:
        again = store(session, None, "1.1", at=T0 + timedelta(seconds=30))
    assert again.outcome is InstanceOutcome.DUPLICATE_IDENTICAL
    assert study_row(engine).last_instance_at == T0
    assert len(events(engine, "instance.duplicate")) == 1


def test_a_study_the_session_holds_sees_what_the_statements_changed(engine: Engine) -> None:
    with transaction(engine) as session:
        store(session, None, "1.1")
        held = session.scalars(select(Study)).one()  # a caller holding the ORM's copy
        store(session, None, "1.2", at=T0 + timedelta(seconds=5))
        assert held.last_instance_at == T0 + timedelta(seconds=5)
        # an older instance goes through the ORM, which must not write a stale copy back
        store(session, None, "1.3", at=T0 + timedelta(seconds=3))
    assert study_row(engine).last_instance_at == T0 + timedelta(seconds=5)
    with transaction(engine) as session:
        rows = session.scalars(select(Instance.sop_instance_uid).order_by(Instance.id)).all()
    assert rows == ["1.1", "1.2", "1.3"]


def test_the_sessions_pending_changes_come_first(engine: Engine) -> None:
    _processing(engine)
    with transaction(engine) as session:
        store(session, None, "1.2", at=T0 + timedelta(minutes=6))  # revision 2 pending
    with transaction(engine) as session:
        state = finish_analysis(session, study_uid="1.2.3", revision=1, outcome=StudyState.DONE,
                                reason=None, timings=None, error=None,
                                now=T0 + timedelta(minutes=7), actor="worker")
        outcome = store(session, None, "1.3", at=T0 + timedelta(minutes=8))
    assert state == outcome.study_state == "RECEIVING"
    assert outcome.revision == 2
    assert study_row(engine).last_instance_at == T0 + timedelta(minutes=8)


def _processing(engine: Engine) -> None:
    """Study 1.2.3 (one instance) stable, queued and processing as revision 1."""
    with transaction(engine) as session:
        store(session, None, "1.1")
    complete_stable_studies(engine, now=T0 + timedelta(minutes=5), stable_seconds=60)
    hour = T0 + timedelta(hours=1)
    with transaction(engine) as session:
        mark_queued(session, study_uid="1.2.3", revision=1, task_id="t1", deadline_at=hour,
                    now=T0, actor="dispatcher")
        mark_processing(session, study_uid="1.2.3", revision=1, task_id="t1", host="gpu1",
                        device="cpu", model_version="1.0", checkpoint_sha256=sha("ckpt"),
                        deadline_at=hour, now=T0, actor="worker")


def _analysed(engine: Engine) -> None:
    """Study 1.2.3 analysed once (revision 1, DONE) with its SR in series 5.0."""
    _processing(engine)
    with transaction(engine) as session:
        add_result(session, study_uid="1.2.3", revision=1, checkpoint_sha256=sha("ckpt"),
                   objects={"SR": ("5.1", "5.0", "/out/sr.dcm")}, findings=None, now=T0)
        finish_analysis(session, study_uid="1.2.3", revision=1, outcome=StudyState.DONE,
                        reason=None, timings=None, error=None, now=T0, actor="worker")


def test_own_output_sent_back_while_receiving_is_no_new_data(engine: Engine) -> None:
    _analysed(engine)
    with transaction(engine) as session:
        new = store(session, None, "1.2", at=T0 + timedelta(minutes=10))
    assert (new.revision, new.study_state) == (2, "RECEIVING")
    with transaction(engine) as session:
        own = store(session, None, "5.1", series="5.0", at=T0 + timedelta(minutes=11))
    assert (own.outcome, own.revision, own.study_state) == (
        InstanceOutcome.OWN_OUTPUT, 2, "RECEIVING")
    assert study_row(engine).last_instance_at == T0 + timedelta(minutes=10)
    with transaction(engine) as session:
        row = session.scalars(select(Instance).where(Instance.sop_instance_uid == "5.1")).one()
        assert row.own_output is True
    assert len(events(engine, "instance.own_output")) == 1


def test_instances_after_the_pending_revision_only_refresh_it(engine: Engine) -> None:
    _processing(engine)
    outcomes = []
    for minute, sop in ((6, "1.2"), (7, "1.3"), (8, "1.4")):
        with transaction(engine) as session:
            outcomes.append(store(session, None, sop, at=T0 + timedelta(minutes=minute)))
    assert [(o.outcome, o.revision, o.study_state) for o in outcomes] == [
        (InstanceOutcome.NEW, 2, "PROCESSING")] * 3
    study = study_row(engine)
    assert (study.state, study.revision, study.analysis_revision) == ("PROCESSING", 2, 1)
    assert study.last_instance_at == T0 + timedelta(minutes=8)
    assert len(events(engine, "study.revision_pending")) == 1


def test_the_same_new_instance_from_two_transactions_at_once(
        request: pytest.FixtureRequest, tmp_path: Path) -> None:
    # PostgreSQL only: SQLite writers take turns at BEGIN, so the second one already sees
    # the row. Here the second waits on the study's row lock with its duplicate check done
    # before the wait, finds the instance row taken, and takes the ORM path.
    engine = create_engine_for(fresh_url(request, "postgresql", tmp_path))
    try:
        with transaction(engine) as session:
            store(session, None, "1.1")
        results: list[InstanceOutcome] = []
        with transaction(engine) as first:
            store(first, None, "1.2", at=T0 + timedelta(seconds=5))
            second = threading.Thread(target=lambda: results.append(_store_alone(engine)))
            second.start()
            _wait_for_a_lock_wait(engine)
        second.join()
        assert results == [InstanceOutcome.DUPLICATE_IDENTICAL]
        assert [e.sop_instance_uid for e in events(engine, "instance.received")] == ["1.1", "1.2"]
        assert [e.sop_instance_uid for e in events(engine, "instance.duplicate")] == ["1.2"]
    finally:
        engine.dispose()


def _store_alone(engine: Engine) -> InstanceOutcome:
    with transaction(engine) as session:
        return store(session, None, "1.2", at=T0 + timedelta(seconds=6)).outcome


def _wait_for_a_lock_wait(engine: Engine) -> None:
    """Return once another session of this database waits for a row lock."""
    waiting = text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                   " AND wait_event_type = 'Lock'")
    while True:
        with engine.connect() as connection:
            if connection.execute(waiting).scalar():
                return
        time.sleep(0.05)
