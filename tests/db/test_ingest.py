from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from db.engine import transaction
from db.events import EventType, Outcome
from db.ingest import (
    InstanceOutcome,
    audit,
    close_association,
    complete_stable_studies,
    open_association,
    own_output_series,
    record_instance,
)
from db.models import Association, AuditEvent, Instance, Study, StudyState
from db.states import add_result, finish_analysis, mark_processing, mark_queued

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
CT = "1.2.840.10008.5.1.4.1.1.2"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def store(session, assoc: int | None, sop: str, *, study: str = "1.2.3", series: str = "1.2.3.4",
          content: str | None = None, at: datetime = T0):
    return record_instance(
        session, association_id=assoc, sop_class_uid=CT, sop_instance_uid=sop, study_uid=study,
        series_uid=series, transfer_syntax_uid="1.2.840.10008.1.2.1", size=10,
        sha256=sha(content or sop), path=f"/store/{sop}.dcm", received_at=at,
    )


def events(engine: Engine, event_type: str | None = None) -> list[AuditEvent]:
    with transaction(engine) as session:
        query = select(AuditEvent).order_by(AuditEvent.id)
        if event_type:
            query = query.where(AuditEvent.event_type == event_type)
        return list(session.scalars(query))


def study_row(engine: Engine, uid: str = "1.2.3") -> Study:
    with transaction(engine) as session:
        return session.scalars(select(Study).where(Study.study_uid == uid)).one()


def test_association_open_close_is_recorded_and_audited(engine: Engine) -> None:
    with transaction(engine) as session:
        assoc = open_association(session, calling_ae="CT1", called_ae="LUNGPATH",
                                 peer_host="10.0.0.5", peer_port=40000, tls=True)
    with transaction(engine) as session:
        close_association(session, assoc, accepted=3, refused=1, aborted=False)
    with transaction(engine) as session:
        row = session.get_one(Association, assoc)
        assert (row.accepted, row.refused, row.tls, row.aborted) == (3, 1, True, False)
        assert row.ended_at is not None and row.ended_at.tzinfo is not None
    kinds = [(e.event_type, e.outcome, e.calling_ae) for e in events(engine)]
    assert kinds == [("association.opened", "success", "CT1"),
                     ("association.closed", "minor_failure", "CT1")]
    with transaction(engine) as session, pytest.raises(ValueError, match="association_id"):
        close_association(session, 999, accepted=0, refused=0, aborted=True)


def test_first_instances_open_revision_1_and_refresh_last_instance(engine: Engine) -> None:
    with transaction(engine) as session:
        assoc = open_association(session, calling_ae="CT1", called_ae="LUNGPATH",
                                 peer_host="h", peer_port=1, tls=False)
        first = store(session, assoc, "1.1")
        second = store(session, assoc, "1.2", at=T0 + timedelta(seconds=5))
    assert first.outcome is InstanceOutcome.NEW and first.revision == 1
    assert second.outcome is InstanceOutcome.NEW and second.revision == 1
    study = study_row(engine)
    assert (study.state, study.revision, study.calling_ae) == ("RECEIVING", 1, "CT1")
    assert study.last_instance_at == T0 + timedelta(seconds=5)
    assert [e.event_type for e in events(engine, "study.receiving")] == ["study.receiving"]
    assert len(events(engine, "instance.received")) == 2


def test_duplicate_and_replaced_instances(engine: Engine) -> None:
    with transaction(engine) as session:
        store(session, None, "1.1")
    with transaction(engine) as session:
        duplicate = store(session, None, "1.1")
    assert duplicate.outcome is InstanceOutcome.DUPLICATE_IDENTICAL
    with transaction(engine) as session:
        replaced = store(session, None, "1.1", content="other bytes")
    assert replaced.outcome is InstanceOutcome.REPLACED
    assert replaced.previous_sha256 == sha("1.1") and replaced.revision == 1
    with transaction(engine) as session:
        rows = list(session.scalars(select(Instance)))
    assert len(rows) == 1 and rows[0].sha256 == sha("other bytes")
    (event,) = events(engine, "instance.replaced")
    assert event.detail is not None
    assert event.detail["previous_sha256"] == sha("1.1")
    assert event.detail["sha256"] == sha("other bytes")


def _complete(engine: Engine, uid: str = "1.2.3") -> list[str]:
    return complete_stable_studies(engine, now=T0 + timedelta(minutes=5), stable_seconds=60)


def test_stability_sweep_completes_each_revision_once(engine: Engine) -> None:
    with transaction(engine) as session:
        store(session, None, "1.1")
        store(session, None, "9.1", study="9.9", at=T0 + timedelta(minutes=4, seconds=30))
    assert _complete(engine) == ["1.2.3"]
    assert _complete(engine) == []
    assert study_row(engine).state == "COMPLETE"
    assert study_row(engine, "9.9").state == "RECEIVING"
    assert len(events(engine, "study.complete")) == 1


def test_new_instance_of_an_idle_study_starts_a_new_revision(engine: Engine) -> None:
    with transaction(engine) as session:
        store(session, None, "1.1")
    _complete(engine)
    with transaction(engine) as session:
        outcome = store(session, None, "1.2", at=T0 + timedelta(minutes=6))
    assert (outcome.revision, outcome.study_state) == (2, "RECEIVING")
    with transaction(engine) as session:
        again = store(session, None, "1.3", at=T0 + timedelta(minutes=7))
    assert again.revision == 2


def _run_to_processing(engine: Engine) -> None:
    with transaction(engine) as session:
        store(session, None, "1.1")
    _complete(engine)
    with transaction(engine) as session:
        mark_queued(session, study_uid="1.2.3", revision=1, task_id="t1",
                    deadline_at=T0 + timedelta(hours=1), now=T0, actor="dispatcher")
        mark_processing(session, study_uid="1.2.3", revision=1, task_id="t1", host="gpu1",
                        device="cuda:0", model_version="1.0", checkpoint_sha256=sha("ckpt"),
                        deadline_at=T0 + timedelta(hours=1), now=T0, actor="worker")


def test_new_data_during_analysis_is_pending_then_receiving(engine: Engine) -> None:
    _run_to_processing(engine)
    with transaction(engine) as session:
        first = store(session, None, "1.2", at=T0 + timedelta(minutes=6))
        second = store(session, None, "1.3", at=T0 + timedelta(minutes=7))
    assert (first.revision, first.study_state) == (2, "PROCESSING")
    assert second.revision == 2
    assert len(events(engine, "study.revision_pending")) == 1
    with transaction(engine) as session:
        state = finish_analysis(session, study_uid="1.2.3", revision=1, outcome=StudyState.DONE,
                                reason=None, timings={"total": 1.0}, error=None,
                                now=T0 + timedelta(minutes=8), actor="worker")
    assert state == "RECEIVING"
    (done,) = events(engine, "study.done")
    assert done.detail is not None and done.detail["newer_revision_pending"] is True
    assert _complete(engine) == []  # the last instance came at +7 min: not yet stable
    assert complete_stable_studies(engine, now=T0 + timedelta(minutes=9),
                                   stable_seconds=60) == ["1.2.3"]
    assert study_row(engine).revision == 2


def test_own_outputs_are_stored_but_never_a_new_revision(engine: Engine) -> None:
    _run_to_processing(engine)
    with transaction(engine) as session:
        add_result(session, study_uid="1.2.3", revision=1, checkpoint_sha256=sha("ckpt"),
                   objects={"SR": ("5.1", "5.0", "/out/sr.dcm"),
                            "SC": ("6.1", "6.0", "/out/sc.dcm")},
                   findings={"nodules": 0}, now=T0)
        finish_analysis(session, study_uid="1.2.3", revision=1, outcome=StudyState.DONE,
                        reason=None, timings=None, error=None, now=T0, actor="worker")
    with transaction(engine) as session:
        assert own_output_series(session) == {"5.0", "6.0"}
        outcome = store(session, None, "5.1", series="5.0", at=T0 + timedelta(minutes=9))
    assert outcome.outcome is InstanceOutcome.OWN_OUTPUT
    assert (outcome.revision, outcome.study_state) == (1, "DONE")
    with transaction(engine) as session:
        own = session.scalars(select(Instance).where(Instance.sop_instance_uid == "5.1")).one()
        assert own.own_output is True


def test_audit_helper_validates_and_records(engine: Engine) -> None:
    with transaction(engine) as session:
        audit(session, actor="scp_node", event_type=EventType.ASSOCIATION_REFUSED,
              outcome=Outcome.MINOR_FAILURE, calling_ae="EVIL", detail={"reason": "unknown AE"})
    (event,) = events(engine)
    assert (event.event_type, event.calling_ae, event.detail) == (
        "association.refused", "EVIL", {"reason": "unknown AE"})
    with transaction(engine) as session:
        with pytest.raises(ValueError, match="event_type"):
            audit(session, actor="x", event_type="no.such", outcome="success")
        with pytest.raises(ValueError, match="outcome"):
            audit(session, actor="x", event_type="security.alert", outcome="meh")
        with pytest.raises(ValueError, match="calling_ae"):
            audit(session, actor="x", event_type="security.alert", outcome="success",
                  calling_ae="A" * 17)
    with transaction(engine) as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 1
