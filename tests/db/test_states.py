"""Every row of the DESIGN.md state table: legal transitions write exactly one audit event in
the same transaction; everything else is refused and changes nothing."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import states
from db.engine import transaction
from db.models import AuditEvent, Job, Study, StudyState
from db.states import TRANSITIONS, TransitionError, Trigger

S = StudyState
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)
CKPT = "c" * 64
ACTOR = "test"

Action = Callable[[Session, str], object]


def _start(session: Session, uid: str) -> object:
    return states.start_study(session, study_uid=uid, calling_ae="CT1", now=T0, actor=ACTOR)


def _stable(session: Session, uid: str) -> object:
    study = session.scalars(select(Study).where(Study.study_uid == uid)).one()
    if not states.complete_stable(session, study_id=study.id, revision=study.revision,
                                  cutoff=T0 + timedelta(minutes=1), now=T0, actor=ACTOR):
        raise TransitionError(f"study {uid}: still RECEIVING or not RECEIVING")
    return True


def _revision(session: Session, uid: str) -> int:
    return session.scalars(select(Study.revision).where(Study.study_uid == uid)).one()


def _queue(session: Session, uid: str) -> object:
    return states.mark_queued(session, study_uid=uid, revision=_revision(session, uid),
                              task_id="t1", deadline_at=LATER, now=T0, actor=ACTOR)


def _analysis_revision(session: Session, uid: str) -> int:
    value = session.scalars(select(Study.analysis_revision).where(Study.study_uid == uid)).one()
    return value or 1


def _process(session: Session, uid: str) -> object:
    return states.mark_processing(
        session, study_uid=uid, revision=_analysis_revision(session, uid), task_id="t1",
        host="gpu1", device="cuda:0", model_version="1.0", checkpoint_sha256=CKPT,
        deadline_at=LATER, now=T0, actor=ACTOR)


def _finish(outcome: StudyState) -> Action:
    def finish(session: Session, uid: str) -> object:
        return states.finish_analysis(
            session, study_uid=uid, revision=_analysis_revision(session, uid), outcome=outcome,
            reason=None if outcome is S.DONE else "no lung found", timings={"total": 2.5},
            error=None, now=T0, actor=ACTOR)
    return finish


def _requeue(session: Session, uid: str) -> object:
    return states.requeue(session, study_uid=uid, task_id="t2", deadline_at=LATER,
                          max_attempts=3, now=T0, actor=ACTOR)


def _give_up(session: Session, uid: str) -> object:
    return states.give_up(session, study_uid=uid, max_attempts=1, now=T0, actor=ACTOR)


def _new_data(session: Session, uid: str) -> object:
    study = states.lock_study(session, uid)
    assert study is not None
    states.new_data(session, study, now=T0 + timedelta(minutes=2), actor=ACTOR)
    return study


def _reanalyse(session: Session, uid: str) -> object:
    return states.request_reanalysis(session, study_uid=uid, now=T0, actor=ACTOR)


ACTIONS: dict[Trigger, Action] = {
    Trigger.FIRST_INSTANCE: _start,
    Trigger.STABLE: _stable,
    Trigger.DISPATCHED: _queue,
    Trigger.WORKER_STARTED: _process,
    Trigger.ANALYSIS_ENDED: _finish(S.DONE),
    Trigger.DEADLINE_RETRY: _requeue,
    Trigger.DEADLINE_EXHAUSTED: _give_up,
    Trigger.NEW_DATA: _new_data,
    Trigger.REANALYSIS: _reanalyse,
}

PATH: list[tuple[StudyState, Action]] = [
    (S.RECEIVING, _start), (S.COMPLETE, _stable), (S.QUEUED, _queue), (S.PROCESSING, _process),
]


def bring(engine: Engine, state: StudyState | None, *, pending: bool = False) -> str:
    """A new study driven through legal transitions to ``state`` (None: no study)."""
    uid = f"2.25.{uuid.uuid4().int}"
    if state is None:
        return uid
    ends = {S.DONE: _finish(S.DONE), S.NOT_ANALYZABLE: _finish(S.NOT_ANALYZABLE),
            S.FAILED: _finish(S.FAILED)}
    steps = PATH if state in ends else PATH[: [s for s, _ in PATH].index(state) + 1]
    for _, action in steps:
        with transaction(engine) as session:
            action(session, uid)
    if state in ends:
        with transaction(engine) as session:
            ends[state](session, uid)
    if pending:
        with transaction(engine) as session:
            _new_data(session, uid)
    return uid


Snapshot = tuple[str | None, int | None, int | None, list[str]]


def snapshot(engine: Engine, uid: str) -> Snapshot:
    with transaction(engine) as session:
        study = session.scalars(select(Study).where(Study.study_uid == uid)).one_or_none()
        events = session.scalars(
            select(AuditEvent.event_type).where(AuditEvent.study_uid == uid)
            .order_by(AuditEvent.id)
        ).all()
        if study is None:
            return (None, None, None, list(events))
        return (study.state, study.revision, study.attempts, list(events))


# (name, from state, newer data pending, action, expected state, expected event)
LEGAL = [
    ("first instance", None, False, _start, S.RECEIVING, "study.receiving"),
    ("stable", S.RECEIVING, False, _stable, S.COMPLETE, "study.complete"),
    ("dispatched", S.COMPLETE, False, _queue, S.QUEUED, "study.queued"),
    ("worker starts", S.QUEUED, False, _process, S.PROCESSING, "study.processing"),
    ("ends DONE", S.PROCESSING, False, _finish(S.DONE), S.DONE, "study.done"),
    ("ends NOT_ANALYZABLE", S.PROCESSING, False, _finish(S.NOT_ANALYZABLE), S.NOT_ANALYZABLE,
     "study.not_analyzable"),
    ("ends FAILED", S.PROCESSING, False, _finish(S.FAILED), S.FAILED, "study.failed"),
    ("ends, newer data pending", S.PROCESSING, True, _finish(S.DONE), S.RECEIVING,
     "study.done"),
    ("re-sent from QUEUED", S.QUEUED, False, _requeue, S.QUEUED, "study.requeued"),
    ("re-sent from PROCESSING", S.PROCESSING, False, _requeue, S.QUEUED, "study.requeued"),
    ("exhausted in QUEUED", S.QUEUED, False, _give_up, S.FAILED, "study.failed"),
    ("exhausted in PROCESSING", S.PROCESSING, False, _give_up, S.FAILED, "study.failed"),
    ("exhausted in QUEUED, newer data pending", S.QUEUED, True, _give_up, S.RECEIVING,
     "study.failed"),
    ("exhausted in PROCESSING, newer data pending", S.PROCESSING, True, _give_up, S.RECEIVING,
     "study.failed"),
    *[(f"new data in {s}", s, False, _new_data, S.RECEIVING, "study.receiving")
      for s in states.IDLE],
    *[(f"new data in {s}", s, False, _new_data, s, "study.revision_pending")
      for s in states.BUSY],
    *[(f"reanalysis from {s}", s, False, _reanalyse, S.COMPLETE, "study.reanalysis")
      for s in states.ENDS],
]


def test_the_cases_cover_every_row_of_the_table() -> None:
    covered = {(case[1], _trigger(case[3])) for case in LEGAL}
    assert covered == set(TRANSITIONS)
    reached = {(case[1], _trigger(case[3]), case[4]) for case in LEGAL}
    assert reached == {(f, t, to) for (f, t), targets in TRANSITIONS.items() for to in targets}


def _trigger(action: Action) -> Trigger:
    if getattr(action, "__name__", "") == "finish":
        return Trigger.ANALYSIS_ENDED
    return next(t for t, a in ACTIONS.items() if a is action)


@pytest.mark.parametrize(("name", "start", "pending", "action", "to", "event"), LEGAL,
                         ids=[case[0] for case in LEGAL])
def test_legal_transition_writes_exactly_one_event(
    shared_engine: Engine, name: str, start: StudyState | None, pending: bool, action: Action,
    to: StudyState, event: str,
) -> None:
    uid = bring(shared_engine, start, pending=pending)
    _, revision, _, before = snapshot(shared_engine, uid)
    with transaction(shared_engine) as session:
        action(session, uid)
    state, new_revision, _, after = snapshot(shared_engine, uid)
    assert state == to
    assert after[: len(before)] == before and after[len(before):] == [event]
    if action is _new_data:
        assert new_revision == (revision or 0) + 1
    if action is _reanalyse:
        assert new_revision == (revision or 0) + 1


@pytest.mark.parametrize(("name", "start", "pending", "action", "to", "event"), LEGAL,
                         ids=[case[0] for case in LEGAL])
def test_a_transition_rolled_back_leaves_no_trace(
    shared_engine: Engine, name: str, start: StudyState | None, pending: bool, action: Action,
    to: StudyState, event: str,
) -> None:
    uid = bring(shared_engine, start, pending=pending)
    before = snapshot(shared_engine, uid)
    with pytest.raises(RuntimeError, match="crash"), transaction(shared_engine) as session:
        action(session, uid)
        session.flush()
        raise RuntimeError("crash after the transition, before commit")
    assert snapshot(shared_engine, uid) == before


ALL_STATES: list[StudyState | None] = [None, *StudyState]
# New data while RECEIVING is no transition: it only refreshes last_instance_at (tested below).
ILLEGAL = [
    (state, trigger) for state, trigger in itertools.product(ALL_STATES, Trigger)
    if (state, trigger) not in TRANSITIONS and (state, trigger) != (S.RECEIVING, Trigger.NEW_DATA)
    and not (state is None and trigger is not Trigger.FIRST_INSTANCE)
]


def test_new_data_while_receiving_only_refreshes(shared_engine: Engine) -> None:
    uid = bring(shared_engine, S.RECEIVING)
    before = snapshot(shared_engine, uid)
    with transaction(shared_engine) as session:
        study = _new_data(session, uid)
        assert isinstance(study, Study)
        assert study.last_instance_at == T0 + timedelta(minutes=2)
    assert snapshot(shared_engine, uid) == before


@pytest.mark.parametrize(("state", "trigger"), ILLEGAL, ids=[f"{s}-{t}" for s, t in ILLEGAL])
def test_illegal_transition_is_refused_and_changes_nothing(
    shared_engine: Engine, state: StudyState | None, trigger: Trigger
) -> None:
    uid = bring(shared_engine, state)
    before = snapshot(shared_engine, uid)
    with pytest.raises(TransitionError, match=uid), transaction(shared_engine) as session:
        ACTIONS[trigger](session, uid)
    assert snapshot(shared_engine, uid) == before


def test_a_transition_on_a_missing_study_is_refused(shared_engine: Engine) -> None:
    with pytest.raises(TransitionError, match="no such study"), \
            transaction(shared_engine) as session:
        _queue_missing(session)


def _queue_missing(session: Session) -> None:
    states.mark_queued(session, study_uid="9.9.9", revision=1, task_id="t", deadline_at=LATER,
                       now=T0, actor=ACTOR)


def test_stale_revisions_and_attempt_limits_are_refused(shared_engine: Engine) -> None:
    uid = bring(shared_engine, S.COMPLETE)
    with pytest.raises(TransitionError, match="revision 7"), \
            transaction(shared_engine) as session:
        states.mark_queued(session, study_uid=uid, revision=7, task_id="t", deadline_at=LATER,
                           now=T0, actor=ACTOR)
    uid = bring(shared_engine, S.QUEUED)
    with pytest.raises(TransitionError, match="revision 2"), \
            transaction(shared_engine) as session:
        states.mark_processing(session, study_uid=uid, revision=2, task_id="t", host="h",
                               device="cpu", model_version="1", checkpoint_sha256=CKPT,
                               deadline_at=LATER, now=T0, actor=ACTOR)
    with pytest.raises(TransitionError, match="give_up"), transaction(shared_engine) as session:
        states.requeue(session, study_uid=uid, task_id="t", deadline_at=LATER, max_attempts=1,
                       now=T0, actor=ACTOR)
    with pytest.raises(TransitionError, match="requeue"), transaction(shared_engine) as session:
        states.give_up(session, study_uid=uid, max_attempts=5, now=T0, actor=ACTOR)


def test_retries_count_attempts_and_overdue_finds_them(shared_engine: Engine) -> None:
    uid = bring(shared_engine, S.PROCESSING)
    with transaction(shared_engine) as session:
        assert (uid, 1, 1) in states.overdue(session, now=LATER + timedelta(seconds=1))
        assert (uid, 1, 1) not in states.overdue(session, now=T0)
        _requeue(session, uid)
        _requeue(session, uid)
    with transaction(shared_engine) as session:
        study = session.scalars(select(Study).where(Study.study_uid == uid)).one()
        job = session.scalars(select(Job).where(Job.study_id == study.id)).one()
        assert (study.attempts, job.attempt, job.celery_task_id) == (3, 3, "t2")
        assert states.give_up(session, study_uid=uid, max_attempts=3, now=T0,
                              actor=ACTOR) == S.FAILED
        assert study.reason == "no result after 3 attempts"


def test_the_idempotency_key_is_unique_in_the_database(shared_engine: Engine) -> None:
    uid = bring(shared_engine, S.PROCESSING)
    objects = {"SR": (f"{uid}.1", f"{uid}.2", "/out/sr.dcm")}
    with transaction(shared_engine) as session:
        first = states.add_result(session, study_uid=uid, revision=1, checkpoint_sha256=CKPT,
                                  objects=objects, findings=None, now=T0)
    with transaction(shared_engine) as session:
        found = states.find_result(session, study_uid=uid, revision=1, checkpoint_sha256=CKPT)
        assert found is not None and found.id == first.id
        assert states.find_result(session, study_uid=uid, revision=1,
                                  checkpoint_sha256="d" * 64) is None
    with pytest.raises(IntegrityError), transaction(shared_engine) as session:
        states.add_result(session, study_uid=uid, revision=1, checkpoint_sha256=CKPT,
                          objects=objects, findings=None, now=T0)
    with pytest.raises(ValueError, match="objects"), transaction(shared_engine) as session:
        states.add_result(session, study_uid=uid, revision=1, checkpoint_sha256=CKPT,
                          objects={"SC": ("1", "2", "3")}, findings=None, now=T0)


def test_a_later_result_names_its_predecessor(shared_engine: Engine) -> None:
    uid = bring(shared_engine, S.PROCESSING)
    with transaction(shared_engine) as session:
        first = states.add_result(session, study_uid=uid, revision=1, checkpoint_sha256=CKPT,
                                  objects={"SR": ("1.1", "1.2", "/a")}, findings=None, now=T0)
        _finish(S.DONE)(session, uid)
        _reanalyse(session, uid)
        _queue(session, uid)
        _process(session, uid)
        second = states.add_result(session, study_uid=uid, revision=2, checkpoint_sha256=CKPT,
                                   objects={"SR": ("2.1", "2.2", "/b")}, findings=None, now=T0)
        assert second.predecessor_id == first.id
        count = session.scalar(select(func.count()).select_from(Job)
                               .join(Study, Job.study_id == Study.id)
                               .where(Study.study_uid == uid))
        assert count == 2
