"""What the Storage SCP writes: associations, instances, refusals, and study stability.

Every function takes a session already inside a transaction (``db.engine.transaction``) and
adds its audit event(s) to it, so a row and its record commit together. Times are
timezone-aware UTC.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    Connection,
    Engine,
    String,
    Table,
    bindparam,
    exists,
    or_,
    select,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from db.engine import transaction
from db.events import EventType, Outcome, audit
from db.models import Association, Instance, Result, Study
from db.states import (
    QUIET_NEW_DATA,
    complete_stable,
    new_data,
    open_study,
    stable_candidates,
)

ACTOR = "scp_node"

__all__ = [
    "InstanceOutcome",
    "RecordOutcome",
    "audit",
    "close_association",
    "complete_stable_studies",
    "open_association",
    "own_output_series",
    "record_instance",
]


class InstanceOutcome(enum.StrEnum):
    """What storing one instance meant for the database."""

    NEW = "NEW"
    """A SOP Instance UID not seen before: new row, new data for its study."""
    DUPLICATE_IDENTICAL = "DUPLICATE_IDENTICAL"
    """Same SOP Instance UID and same bytes: no new row, no new revision."""
    REPLACED = "REPLACED"
    """Same SOP Instance UID, other bytes: the sender's latest is kept; new data."""
    OWN_OUTPUT = "OWN_OUTPUT"
    """One of lungpath's own SR/SC/SEG sent back: stored and marked, never a new revision."""


@dataclass(frozen=True)
class RecordOutcome:
    """The result of ``record_instance``.

    ``revision`` and ``study_state`` are the study's after the call. For REPLACED,
    ``previous_sha256`` and ``previous_path`` describe the bytes that were replaced (the
    caller removes the old file if its path differs from the new one).
    """

    outcome: InstanceOutcome
    study_uid: str
    revision: int
    study_state: str
    previous_sha256: str | None = None
    previous_path: str | None = None


def open_association(session: Session, *, calling_ae: str, called_ae: str, peer_host: str,
                     peer_port: int, tls: bool, now: datetime | None = None) -> int:
    """Record an accepted association; returns its id for the instances it carries."""
    at = now or _utcnow()
    row = Association(calling_ae=calling_ae, called_ae=called_ae, peer_host=peer_host,
                      peer_port=peer_port, tls=tls, started_at=at, accepted=0, refused=0,
                      aborted=False)
    session.add(row)
    session.flush()
    audit(session, actor=ACTOR, event_type=EventType.ASSOCIATION_OPENED,
          outcome=Outcome.SUCCESS, calling_ae=calling_ae, at=at,
          detail={"association_id": row.id, "called_ae": called_ae, "peer_host": peer_host,
                  "peer_port": peer_port, "tls": tls})
    return row.id


def close_association(session: Session, association_id: int, *, accepted: int, refused: int,
                      aborted: bool, now: datetime | None = None) -> None:
    """Record the end of an association with its counts of accepted and refused instances."""
    if accepted < 0 or refused < 0:
        raise ValueError(f"accepted and refused must be >= 0, got {accepted}, {refused}")
    row = session.get(Association, association_id)
    if row is None:
        raise ValueError(f"association_id: no association {association_id}")
    at = now or _utcnow()
    row.ended_at, row.accepted, row.refused, row.aborted = at, accepted, refused, aborted
    audit(session, actor=ACTOR, event_type=EventType.ASSOCIATION_CLOSED,
          outcome=Outcome.MINOR_FAILURE if aborted or refused else Outcome.SUCCESS,
          calling_ae=row.calling_ae, at=at,
          detail={"association_id": association_id, "accepted": accepted, "refused": refused,
                  "aborted": aborted})


def own_output_series(session: Session) -> set[str]:
    """Series UIDs of every SR, SC and SEG lungpath produced (to recognise them coming back)."""
    rows: Any = session.execute(union(
        select(Result.sr_series_uid),
        select(Result.sc_series_uid).where(Result.sc_series_uid.is_not(None)),
        select(Result.seg_series_uid).where(Result.seg_series_uid.is_not(None)),
    ))
    return {str(row[0]) for row in rows}


# The statements on the per-instance path are built once: SQLAlchemy memoises their cache
# keys, which roughly halves the Python time of each instance's transaction.
_STUDIES, _RESULTS, _INSTANCES = (cast(Table, model.__table__)
                                   for model in (Study, Result, Instance))
_SERIES: BindParameter[str] = bindparam("series", type_=String())
_OWN_SERIES = or_(_RESULTS.c.sr_series_uid == _SERIES, _RESULTS.c.sc_series_uid == _SERIES,
                  _RESULTS.c.seg_series_uid == _SERIES)
_OWNER = select(_RESULTS.c.study_id).where(_OWN_SERIES).limit(1)
_CALLING_AE = select(Association.__table__.c.calling_ae).where(
    Association.__table__.c.id == bindparam("id"))
_INSERT_INSTANCE = {
    name: dialect.insert(_INSTANCES)
    .on_conflict_do_nothing(index_elements=["sop_instance_uid"])
    .returning(_INSTANCES.c.id)
    for name, dialect in (("sqlite", sqlite), ("postgresql", postgresql))
}
_NOW: BindParameter[datetime] = bindparam("now", type_=_STUDIES.c.last_instance_at.type)
#: The common case of ``db.states.new_data`` as one statement: a new (unknown SOP Instance
#: UID), non-own instance of a study in ``QUIET_NEW_DATA`` only moves ``last_instance_at``
#: forward. The UPDATE locks the study's row like the
#: ORM path's ``SELECT ... FOR UPDATE``; no row back means "not that case".
_REFRESH_STUDY = (
    update(_STUDIES)
    .where(_STUDIES.c.study_uid == bindparam("uid"),
           QUIET_NEW_DATA,
           _STUDIES.c.last_instance_at <= _NOW,
           ~exists().where(_OWN_SERIES),
           ~exists().where(_INSTANCES.c.sop_instance_uid == bindparam("sop")))
    .values(last_instance_at=_NOW)
    .returning(_STUDIES.c.id, _STUDIES.c.revision, _STUDIES.c.state)
)


def _owning_study(session: Session, series_uid: str) -> Study | None:
    """The study whose Result produced ``series_uid``, locked; None if not ours."""
    study_id = session.connection().execute(_OWNER, {"series": series_uid}).scalar()
    if study_id is None:
        return None
    return session.scalars(select(Study).where(Study.id == study_id).with_for_update()).one()


def record_instance(session: Session, *, association_id: int | None, sop_class_uid: str,
                    sop_instance_uid: str, study_uid: str, series_uid: str,
                    transfer_syntax_uid: str, size: int, sha256: str, path: str,
                    received_at: datetime, calling_ae: str | None = None) -> RecordOutcome:
    """Record one stored instance and move its study as DESIGN.md "Study states" says.

    ``calling_ae`` is the association's calling AE title when the caller knows it (the
    Storage SCP does); left out, it is read from the association's row.

    Most instances are new instances of a study that is receiving: those take three
    statements (``_record_new_data``); the others (a study's first instance, new data for an
    idle study, duplicates, lungpath's own outputs) go through the state machine's ORM path
    (``_record_other``). Both write the same rows and the same audit events.

    Safe against concurrent callers: the study row is created with INSERT ... ON CONFLICT DO
    NOTHING and then locked, so two associations delivering the same new study at once
    serialise on it instead of failing on the unique key.
    """
    if size < 0:
        raise ValueError(f"size must be >= 0, got {size}")
    if len(sha256) != 64:
        raise ValueError(f"sha256 must be a hex SHA-256 digest, got {sha256!r}")
    if calling_ae is None:
        calling_ae = _calling_ae(session, association_id)
    columns: dict[str, Any] = dict(
        association_id=association_id, sop_class_uid=sop_class_uid, series_uid=series_uid,
        transfer_syntax_uid=transfer_syntax_uid, size=size, sha256=sha256, path=path,
        received_at=received_at)
    return (_record_new_data(session, study_uid, sop_instance_uid, calling_ae, columns)
            or _record_other(session, study_uid, sop_instance_uid, calling_ae, columns))


def _record_other(session: Session, study_uid: str, sop_instance_uid: str,
                  calling_ae: str | None, columns: dict[str, Any]) -> RecordOutcome:
    """Any instance, through the ORM and ``db.states``: find or open the study, insert the
    row or replace it, audit, and move the study for new data."""
    received_at, sha256 = columns["received_at"], columns["sha256"]
    owner = _owning_study(session, columns["series_uid"])
    study = owner or open_study(session, study_uid=study_uid, calling_ae=calling_ae,
                                now=received_at, actor=ACTOR)
    inserted = _insert_instance(session.connection(), study.id, sop_instance_uid,
                                owner is not None, columns)
    detail = _detail(columns)
    previous: _Previous | None = None
    if inserted is not None:
        outcome, event = InstanceOutcome.NEW, EventType.INSTANCE_RECEIVED
    else:
        previous = _replace(session, sop_instance_uid, sha256, study.id, owner is not None,
                            columns)
        detail["previous_sha256"] = previous.sha256 if previous else sha256
        outcome, event = ((InstanceOutcome.REPLACED, EventType.INSTANCE_REPLACED) if previous
                          else (InstanceOutcome.DUPLICATE_IDENTICAL,
                                EventType.INSTANCE_DUPLICATE))
    if owner is not None and outcome is not InstanceOutcome.DUPLICATE_IDENTICAL:
        outcome, event = InstanceOutcome.OWN_OUTPUT, EventType.INSTANCE_OWN_OUTPUT
    audit(session, actor=ACTOR, event_type=event, outcome=Outcome.SUCCESS,
          study_uid=study.study_uid, sop_instance_uid=sop_instance_uid, calling_ae=calling_ae,
          at=received_at, detail=detail)
    if outcome in (InstanceOutcome.NEW, InstanceOutcome.REPLACED):
        new_data(session, study, now=received_at, actor=ACTOR)
    return RecordOutcome(outcome=outcome, study_uid=study.study_uid, revision=study.revision,
                         study_state=study.state,
                         previous_sha256=previous.sha256 if previous else None,
                         previous_path=previous.path if previous else None)


def _record_new_data(session: Session, study_uid: str, sop_instance_uid: str,
                     calling_ae: str | None, columns: dict[str, Any]) -> RecordOutcome | None:
    """The NEW instance of a study that ``_REFRESH_STUDY`` covers, in three statements and
    no ORM object; None for every other case, which the ORM path then handles.

    None means nothing was written, but for one race: of two transactions bringing the same
    new SOP Instance UID at once (PostgreSQL), the second finds the instance row taken only
    after its UPDATE, which has moved the study's ``last_instance_at`` to the duplicate's
    arrival, a moment after the first copy's.
    """
    session.flush()  # the statements below go past the ORM: its pending changes go first
    connection = session.connection()
    study = connection.execute(_REFRESH_STUDY, {
        "uid": study_uid, "now": columns["received_at"], "series": columns["series_uid"],
        "sop": sop_instance_uid}).first()
    if study is None:
        return None
    _forget_study(session, study.id)
    if _insert_instance(connection, study.id, sop_instance_uid, False, columns) is None:
        return None
    audit(session, actor=ACTOR, event_type=EventType.INSTANCE_RECEIVED, outcome=Outcome.SUCCESS,
          study_uid=study_uid, sop_instance_uid=sop_instance_uid, calling_ae=calling_ae,
          at=columns["received_at"], detail=_detail(columns))
    return RecordOutcome(outcome=InstanceOutcome.NEW, study_uid=study_uid,
                         revision=study.revision, study_state=study.state)


def _forget_study(session: Session, study_id: int) -> None:
    """Expire this session's copy of the study, if it loaded one: a Core UPDATE changed it."""
    if session.identity_map:
        loaded = session.identity_map.get(identity_key(Study, study_id))
        if loaded is not None:
            session.expire(loaded)


def _insert_instance(connection: Connection, study_id: int, sop_instance_uid: str,
                     own_output: bool, columns: dict[str, Any]) -> int | None:
    """The new instance row's id; None if the SOP Instance UID already has a row."""
    return connection.execute(
        _INSERT_INSTANCE[connection.dialect.name],
        {"study_id": study_id, "sop_instance_uid": sop_instance_uid, "own_output": own_output,
         **columns},
    ).scalar()


def _detail(columns: dict[str, Any]) -> dict[str, Any]:
    """The audit detail every instance event carries."""
    return {"series_uid": columns["series_uid"], "sha256": columns["sha256"],
            "size": columns["size"], "association_id": columns["association_id"]}


@dataclass(frozen=True)
class _Previous:
    sha256: str
    path: str


def _replace(session: Session, sop_instance_uid: str, sha256: str, study_id: int,
             own_output: bool, columns: dict[str, Any]) -> _Previous | None:
    """Overwrite a known instance's row with other bytes; None if the bytes are the same."""
    existing = session.scalars(
        select(Instance).where(Instance.sop_instance_uid == sop_instance_uid).with_for_update()
    ).one()
    if existing.sha256 == sha256:
        return None
    previous = _Previous(existing.sha256, existing.path)
    for name, value in columns.items():
        setattr(existing, name, value)
    existing.study_id, existing.own_output = study_id, own_output
    return previous


def _calling_ae(session: Session, association_id: int | None) -> str | None:
    if association_id is None:
        return None
    calling = session.connection().execute(_CALLING_AE, {"id": association_id}).scalar()
    if calling is None:
        raise ValueError(f"association_id: no association {association_id}")
    return calling


def complete_stable_studies(session_or_engine: Session | Engine, *, now: datetime,
                            stable_seconds: float) -> list[str]:
    """RECEIVING studies with no instance for ``stable_seconds`` -> COMPLETE; their UIDs.

    Exactly once per revision even with several processes sweeping at once (see
    ``db.states.complete_stable``). Given an engine, each study commits on its own; given a
    session, the caller's transaction holds them all.
    """
    if stable_seconds <= 0:
        raise ValueError(f"stable_seconds must be > 0, got {stable_seconds}")
    cutoff = now - timedelta(seconds=stable_seconds)
    if isinstance(session_or_engine, Session):
        return _sweep(session_or_engine, cutoff, now)
    with transaction(session_or_engine) as session:
        candidates = stable_candidates(session, cutoff=cutoff)
    completed = []
    for study_id, uid, revision in candidates:
        with transaction(session_or_engine) as session:
            if complete_stable(session, study_id=study_id, revision=revision, cutoff=cutoff,
                               now=now, actor=ACTOR):
                completed.append(uid)
    return completed


def _sweep(session: Session, cutoff: datetime, now: datetime) -> list[str]:
    return [
        uid for study_id, uid, revision in stable_candidates(session, cutoff=cutoff)
        if complete_stable(session, study_id=study_id, revision=revision, cutoff=cutoff,
                           now=now, actor=ACTOR)
    ]


def _utcnow() -> datetime:
    return datetime.now(UTC)
