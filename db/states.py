"""The study state machine of DESIGN.md, "Study states": every transition in one place.

Each public function here is one row (or one pair of rows) of the table. It locks the
study's row, checks that the transition is legal from the current state (``TransitionError``
otherwise, naming the study, both states and what is legal), applies it, and adds exactly one
audit event to the same session, so the change and its record commit or roll back together.

Revisions: ``Study.revision`` counts bursts of new data. A new instance (not one of
lungpath's own outputs) while the study is idle (COMPLETE, DONE, NOT_ANALYZABLE, FAILED)
bumps the revision and goes to RECEIVING. While QUEUED or PROCESSING it bumps the revision
once and leaves the state alone: the analysis in flight keeps ``analysis_revision``, and
``revision > analysis_revision`` marks newer data as pending. When that analysis ends (by the
worker, or by the reconciler giving up) its outcome is recorded on the Job and in the audit
event, and the study goes to RECEIVING instead of the end state; the stability sweep then
completes the new revision and the dispatcher queues it.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm import Session

from db.engine import upsert_insert
from db.events import EventType, Outcome, audit
from db.models import Job, Result, Study, StudyState

S = StudyState
IDLE = (S.COMPLETE, S.DONE, S.NOT_ANALYZABLE, S.FAILED)
BUSY = (S.QUEUED, S.PROCESSING)
ENDS = (S.DONE, S.NOT_ANALYZABLE, S.FAILED)


class Trigger(enum.StrEnum):
    """The events of the DESIGN.md table."""

    FIRST_INSTANCE = "first instance"
    STABLE = "no instance for stable_seconds"
    DISPATCHED = "dispatcher sends the task"
    WORKER_STARTED = "worker starts"
    ANALYSIS_ENDED = "analysis ends"
    DEADLINE_RETRY = "reconciler: past deadline, attempts left"
    DEADLINE_EXHAUSTED = "reconciler: attempts exhausted"
    NEW_DATA = "new instance of the study"
    REANALYSIS = "administrator asks for a new analysis"


#: (from, trigger) -> the states it may lead to. ``None`` is "no study yet".
TRANSITIONS: dict[tuple[StudyState | None, Trigger], tuple[StudyState, ...]] = {
    (None, Trigger.FIRST_INSTANCE): (S.RECEIVING,),
    (S.RECEIVING, Trigger.STABLE): (S.COMPLETE,),
    (S.COMPLETE, Trigger.DISPATCHED): (S.QUEUED,),
    (S.QUEUED, Trigger.WORKER_STARTED): (S.PROCESSING,),
    (S.PROCESSING, Trigger.ANALYSIS_ENDED): (*ENDS, S.RECEIVING),
    (S.QUEUED, Trigger.DEADLINE_RETRY): (S.QUEUED,),
    (S.PROCESSING, Trigger.DEADLINE_RETRY): (S.QUEUED,),
    (S.QUEUED, Trigger.DEADLINE_EXHAUSTED): (S.FAILED, S.RECEIVING),
    (S.PROCESSING, Trigger.DEADLINE_EXHAUSTED): (S.FAILED, S.RECEIVING),
    **{(s, Trigger.NEW_DATA): (S.RECEIVING,) for s in IDLE},
    **{(s, Trigger.NEW_DATA): (s,) for s in BUSY},
    **{(s, Trigger.REANALYSIS): (S.COMPLETE,) for s in ENDS},
}

_END_EVENTS = {
    S.DONE: (EventType.STUDY_DONE, Outcome.SUCCESS),
    S.NOT_ANALYZABLE: (EventType.STUDY_NOT_ANALYZABLE, Outcome.MINOR_FAILURE),
    S.FAILED: (EventType.STUDY_FAILED, Outcome.SERIOUS_FAILURE),
}


class TransitionError(ValueError):
    """A transition the state table does not allow, or one for a stale revision."""


def _check(study: Study | None, trigger: Trigger, study_uid: str) -> StudyState | None:
    current = StudyState(study.state) if study is not None else None
    if (current, trigger) not in TRANSITIONS:
        legal = sorted(str(s) for (s, t) in TRANSITIONS if t is trigger and s is not None)
        raise TransitionError(
            f"study {study_uid}: '{trigger}' is not allowed in state {current or 'none'}"
            f" (allowed in: {', '.join(legal) or 'no existing study'})"
        )
    return current


def _check_revision(study: Study, revision: int, what: str) -> None:
    if revision != study.analysis_revision:
        raise TransitionError(
            f"study {study.study_uid}: {what} for revision {revision}, but the analysis in"
            f" flight is for revision {study.analysis_revision}"
        )


_LOCK_STUDY = select(Study).where(Study.study_uid == bindparam("uid")).with_for_update()


def lock_study(session: Session, study_uid: str) -> Study | None:
    """The study row, locked for this transaction (``SELECT ... FOR UPDATE`` on PostgreSQL;
    SQLite's ``BEGIN IMMEDIATE`` already serialises writers)."""
    return session.scalars(_LOCK_STUDY, {"uid": study_uid}).one_or_none()


def _require(session: Session, study_uid: str) -> Study:
    study = lock_study(session, study_uid)
    if study is None:
        raise TransitionError(f"study {study_uid}: no such study")
    return study


def _event(session: Session, study: Study, event: EventType, outcome: Outcome, actor: str,
           now: datetime, **detail: Any) -> None:
    audit(session, actor=actor, event_type=event, outcome=outcome, study_uid=study.study_uid,
          calling_ae=study.calling_ae, at=now,
          detail={"state": study.state, "revision": study.revision, **detail})


def start_study(session: Session, *, study_uid: str, calling_ae: str | None, now: datetime,
                actor: str) -> Study:
    """The first instance of a study: a new row in RECEIVING, revision 1, returned locked."""
    _check(lock_study(session, study_uid), Trigger.FIRST_INSTANCE, study_uid)
    return open_study(session, study_uid=study_uid, calling_ae=calling_ae, now=now, actor=actor)


def open_study(session: Session, *, study_uid: str, calling_ae: str | None, now: datetime,
               actor: str) -> Study:
    """The study, locked; created in RECEIVING, revision 1 (with its event) if it is new.

    INSERT ... ON CONFLICT DO NOTHING, then a locking read: when two associations bring the
    first instances of one study at the same time (PostgreSQL), one creates it and writes the
    event; the other waits for that row and gets it back as for any later instance.
    """
    study = lock_study(session, study_uid)
    if study is not None:
        return study
    created = session.execute(
        upsert_insert(session)(Study)
        .values(study_uid=study_uid, state=S.RECEIVING, revision=1, calling_ae=calling_ae,
                attempts=0, created_at=now, updated_at=now, last_instance_at=now,
                receiving_at=now)
        .on_conflict_do_nothing(index_elements=["study_uid"])
        .returning(Study.id)
    ).scalar()
    study = _require(session, study_uid)
    if created is not None:
        _event(session, study, EventType.STUDY_RECEIVING, Outcome.SUCCESS, actor, now)
    return study


#: The studies for which ``new_data`` only refreshes ``last_instance_at`` (no transition, no
#: event), as a condition on the row: RECEIVING, or busy with a newer revision already
#: pending. The Storage SCP's one-statement path for a new instance (db.ingest) updates under
#: it; every other study goes through ``new_data``.
QUIET_NEW_DATA = or_(
    Study.__table__.c.state == S.RECEIVING,
    and_(Study.__table__.c.state.in_(BUSY),
         Study.__table__.c.revision > Study.__table__.c.analysis_revision),
)


def new_data(session: Session, study: Study, *, now: datetime, actor: str) -> None:
    """New (non-own) data for a locked ``study``: see the module docstring.

    For the studies of ``QUIET_NEW_DATA`` this only refreshes ``last_instance_at`` (no
    transition, no event).
    """
    study.last_instance_at = max(study.last_instance_at, now)
    state = StudyState(study.state)
    if state is S.RECEIVING:
        return
    _check(study, Trigger.NEW_DATA, study.study_uid)
    if state in BUSY:
        if study.revision > (study.analysis_revision or 0):
            return
        study.revision += 1
        study.updated_at = now
        _event(session, study, EventType.STUDY_REVISION_PENDING, Outcome.SUCCESS, actor, now,
               analysis_revision=study.analysis_revision)
        return
    previous = state
    study.revision += 1
    study.state = S.RECEIVING
    study.receiving_at = study.updated_at = now
    study.attempts = 0
    study.reason = None
    _event(session, study, EventType.STUDY_RECEIVING, Outcome.SUCCESS, actor, now,
           previous_state=str(previous))


def complete_stable(session: Session, *, study_id: int, revision: int, cutoff: datetime,
                    now: datetime, actor: str) -> bool:
    """RECEIVING -> COMPLETE for one study if it is still RECEIVING at ``revision`` with no
    instance after ``cutoff``.

    A conditional UPDATE decides, not an earlier read: of several processes sweeping at once,
    exactly one sees a row count of 1 and writes the audit event.
    """
    changed = session.execute(
        update(Study)
        .where(Study.id == study_id, Study.state == S.RECEIVING, Study.revision == revision,
               Study.last_instance_at <= cutoff)
        .values(state=S.COMPLETE, complete_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if changed.rowcount != 1:  # type: ignore[attr-defined]
        return False
    study = session.get_one(Study, study_id, populate_existing=True)
    _event(session, study, EventType.STUDY_COMPLETE, Outcome.SUCCESS, actor, now,
           stable_since=cutoff.isoformat())
    return True


def stable_candidates(session: Session, *, cutoff: datetime) -> list[tuple[int, str, int]]:
    """(id, study UID, revision) of RECEIVING studies with no instance after ``cutoff``."""
    rows = session.execute(
        select(Study.id, Study.study_uid, Study.revision)
        .where(Study.state == S.RECEIVING, Study.last_instance_at <= cutoff)
        .order_by(Study.last_instance_at)
    )
    return [(r.id, r.study_uid, r.revision) for r in rows]


def mark_queued(session: Session, *, study_uid: str, revision: int, task_id: str,
                deadline_at: datetime, now: datetime, actor: str) -> Job:
    """COMPLETE -> QUEUED: the dispatcher sent the analysis task of ``revision``."""
    study = _require(session, study_uid)
    _check(study, Trigger.DISPATCHED, study_uid)
    if revision != study.revision:
        raise TransitionError(
            f"study {study_uid}: dispatching revision {revision}, but the study is at"
            f" revision {study.revision}"
        )
    job = Job(study_id=study.id, revision=revision, celery_task_id=task_id, attempt=1,
              queued_at=now, deadline_at=deadline_at)
    session.add(job)
    study.state = S.QUEUED
    study.analysis_revision = revision
    study.attempts = 1
    study.queued_at = study.updated_at = now
    _event(session, study, EventType.STUDY_QUEUED, Outcome.SUCCESS, actor, now,
           task_id=task_id, attempt=1)
    return job


def _job(session: Session, study: Study, revision: int) -> Job:
    return session.scalars(
        select(Job).where(Job.study_id == study.id, Job.revision == revision)
    ).one()


def mark_processing(session: Session, *, study_uid: str, revision: int, task_id: str,
                    host: str, device: str, model_version: str, checkpoint_sha256: str,
                    deadline_at: datetime, now: datetime, actor: str) -> Job:
    """QUEUED -> PROCESSING: a worker starts the analysis. A repeated message for a study
    already PROCESSING or finished is refused (``TransitionError``): the worker skips it."""
    study = _require(session, study_uid)
    _check(study, Trigger.WORKER_STARTED, study_uid)
    _check_revision(study, revision, "a worker starts")
    job = _job(session, study, revision)
    job.celery_task_id = task_id
    job.host, job.device, job.model_version = host, device, model_version
    job.checkpoint_sha256 = checkpoint_sha256
    job.started_at, job.deadline_at = now, deadline_at
    study.state = S.PROCESSING
    study.processing_at = study.updated_at = now
    _event(session, study, EventType.STUDY_PROCESSING, Outcome.SUCCESS, actor, now,
           task_id=task_id, host=host, device=device, model_version=model_version,
           checkpoint_sha256=checkpoint_sha256, attempt=job.attempt)
    return job


def _end(session: Session, study: Study, job: Job, outcome: StudyState, reason: str | None,
         now: datetime, actor: str, **detail: Any) -> StudyState:
    pending = study.revision > (study.analysis_revision or 0)
    job.ended_at = now
    study.ended_at = study.updated_at = now
    study.reason = reason
    if pending:
        study.state = S.RECEIVING
        study.receiving_at = now
        study.attempts = 0
    else:
        study.state = outcome
    event, result = _END_EVENTS[outcome]
    _event(session, study, event, result, actor, now, analysis_revision=job.revision,
           reason=reason, newer_revision_pending=pending, **detail)
    return StudyState(study.state)


def finish_analysis(session: Session, *, study_uid: str, revision: int, outcome: StudyState,
                    reason: str | None, timings: dict[str, float] | None, error: str | None,
                    now: datetime, actor: str) -> StudyState:
    """PROCESSING -> DONE, NOT_ANALYZABLE or FAILED (or RECEIVING if newer data is pending).

    Returns the study's new state.
    """
    if outcome not in ENDS:
        raise ValueError(f"outcome must be one of {', '.join(ENDS)}, got {outcome!r}")
    study = _require(session, study_uid)
    _check(study, Trigger.ANALYSIS_ENDED, study_uid)
    _check_revision(study, revision, "an analysis ends")
    job = _job(session, study, revision)
    job.timings, job.error = timings, error
    return _end(session, study, job, outcome, reason, now, actor)


def requeue(session: Session, *, study_uid: str, task_id: str, deadline_at: datetime,
            max_attempts: int, now: datetime, actor: str) -> Job:
    """QUEUED/PROCESSING past its deadline with attempts left -> QUEUED, task re-sent."""
    study = _require(session, study_uid)
    _check(study, Trigger.DEADLINE_RETRY, study_uid)
    if study.attempts >= max_attempts:
        raise TransitionError(
            f"study {study_uid}: {study.attempts} of {max_attempts} attempts used; use give_up"
        )
    job = _job(session, study, study.analysis_revision or 0)
    previous = study.state
    job.attempt = study.attempts = study.attempts + 1
    job.celery_task_id, job.deadline_at, job.started_at = task_id, deadline_at, None
    study.state = S.QUEUED
    study.queued_at = study.updated_at = now
    _event(session, study, EventType.STUDY_REQUEUED, Outcome.MINOR_FAILURE, actor, now,
           previous_state=previous, task_id=task_id, attempt=job.attempt)
    return job


def give_up(session: Session, *, study_uid: str, max_attempts: int, now: datetime,
            actor: str) -> StudyState:
    """QUEUED/PROCESSING past its deadline with every attempt used -> FAILED (or RECEIVING
    if newer data is pending). Returns the study's new state."""
    study = _require(session, study_uid)
    _check(study, Trigger.DEADLINE_EXHAUSTED, study_uid)
    if study.attempts < max_attempts:
        raise TransitionError(
            f"study {study_uid}: only {study.attempts} of {max_attempts} attempts used; requeue"
        )
    job = _job(session, study, study.analysis_revision or 0)
    reason = f"no result after {study.attempts} attempts"
    job.error = reason
    return _end(session, study, job, S.FAILED, reason, now, actor, attempts=study.attempts)


def request_reanalysis(session: Session, *, study_uid: str, now: datetime, actor: str) -> int:
    """DONE/NOT_ANALYZABLE/FAILED -> COMPLETE as revision + 1 (same data, new analysis).

    Returns the new revision.
    """
    study = _require(session, study_uid)
    previous = study.state
    _check(study, Trigger.REANALYSIS, study_uid)
    study.revision += 1
    study.state = S.COMPLETE
    study.attempts, study.reason = 0, None
    study.complete_at = study.updated_at = now
    _event(session, study, EventType.STUDY_REANALYSIS, Outcome.SUCCESS, actor, now,
           previous_state=previous)
    return study.revision


def overdue(session: Session, *, now: datetime) -> list[tuple[str, int, int]]:
    """(study UID, analysis revision, attempts) of QUEUED/PROCESSING studies past deadline."""
    rows = session.execute(
        select(Study.study_uid, Study.analysis_revision, Study.attempts)
        .join(Job, (Job.study_id == Study.id) & (Job.revision == Study.analysis_revision))
        .where(Study.state.in_(BUSY), Job.deadline_at <= now)
    )
    return [(r.study_uid, r.analysis_revision or 0, r.attempts) for r in rows]


def find_result(session: Session, *, study_uid: str, revision: int,
                checkpoint_sha256: str) -> Result | None:
    """The result for the idempotency key (study, revision, checkpoint SHA-256), if any."""
    return session.scalars(
        select(Result).join(Study, Result.study_id == Study.id)
        .where(Study.study_uid == study_uid, Result.revision == revision,
               Result.checkpoint_sha256 == checkpoint_sha256)
    ).one_or_none()



def add_result(session: Session, *, study_uid: str, revision: int, checkpoint_sha256: str,
               objects: dict[str, tuple[str, str, str]], findings: dict[str, Any] | None,
               now: datetime) -> Result:
    """Record what an analysis produced (call it with ``finish_analysis(..., DONE)``).

    ``objects`` maps ``"SR"`` (required), ``"SC"`` and ``"SEG"`` to (SOP Instance UID, series
    UID, path). The predecessor is the study's latest earlier result, whose SR the new SR
    names in its Predecessor Documents Sequence. The unique key (study, revision, checkpoint
    SHA-256) makes a repeated analysis fail here instead of producing a second result.
    """
    unknown = set(objects) - {"SR", "SC", "SEG"}
    if "SR" not in objects or unknown:
        raise ValueError(f"objects: needs SR, may hold SC and SEG; got {sorted(objects)}")
    study = _require(session, study_uid)
    predecessor = session.scalars(
        select(Result.id).where(Result.study_id == study.id, Result.revision < revision)
        .order_by(Result.revision.desc(), Result.id.desc()).limit(1)
    ).first()
    columns: dict[str, str | None] = {}
    for kind in ("SR", "SC", "SEG"):
        sop, series, path = objects.get(kind, (None, None, None))
        prefix = kind.lower()
        columns |= {f"{prefix}_sop_instance_uid": sop, f"{prefix}_series_uid": series,
                    f"{prefix}_path": path}
    job_id = session.scalars(
        select(Job.id).where(Job.study_id == study.id, Job.revision == revision)
    ).first()
    result = Result(study_id=study.id, revision=revision, checkpoint_sha256=checkpoint_sha256,
                    job_id=job_id, predecessor_id=predecessor, findings=findings,
                    created_at=now, **columns)
    session.add(result)
    session.flush()
    return result
