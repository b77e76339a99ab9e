"""The administrators' questions, answered from the database alone (``lungpath audit``).

Each query returns plain rows (dicts of column -> value) so that the CLI can print them as a
table, JSON or CSV. Filters that make no sense for a query (``--state`` on events) are
refused with a message rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from db.events import Outcome
from db.models import Association, AuditEvent, Delivery, Instance, Result, Study, StudyState

Row = dict[str, Any]

#: ``--outcome failure`` matches every failure grade.
ANY_FAILURE = "failure"


@dataclass(frozen=True)
class Filters:
    """The common ``lungpath audit`` filters; ``None`` means "any"."""

    since: datetime | None = None
    until: datetime | None = None
    study_uid: str | None = None
    ae: str | None = None
    state: str | None = None
    outcome: str | None = None

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in StudyState.__members__:
            raise ValueError(
                f"state: {self.state!r} is not one of {', '.join(StudyState.__members__)}"
            )
        known = [o.value for o in Outcome] + [ANY_FAILURE]
        if self.outcome is not None and self.outcome not in known:
            raise ValueError(f"outcome: {self.outcome!r} is not one of {', '.join(known)}")
        if self.since and self.until and self.since > self.until:
            raise ValueError("since must not be after until")

    def refuse(self, query: str, *names: str) -> None:
        """Raise ``ValueError`` if any of ``names`` is set: it does not apply to ``query``."""
        for field in fields(self):
            if field.name in names and getattr(self, field.name) is not None:
                option = "--study" if field.name == "study_uid" else f"--{field.name}"
                raise ValueError(f"{option} does not apply to audit {query}")


def _window(column: InstrumentedAttribute[datetime] | InstrumentedAttribute[datetime | None],
            filters: Filters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.since is not None:
        conditions.append(column >= filters.since)
    if filters.until is not None:
        conditions.append(column < filters.until)
    return conditions


def _matching(filters: Filters, when: Any, *, study: Any = None,
              ae: Any = None) -> list[ColumnElement[bool]]:
    """The window on ``when`` and the ``--study`` / ``--ae`` filters on the given columns."""
    conditions = _window(when, filters)
    if filters.study_uid and study is not None:
        conditions.append(study == filters.study_uid)
    if filters.ae and ae is not None:
        conditions.append(ae == filters.ae)
    return conditions


def _rows(session: Session, query: Select[*tuple[Any, ...]], limit: int | None) -> list[Row]:
    if limit:
        query = query.limit(limit)
    return [dict(row._mapping) for row in session.execute(query)]


def studies(session: Session, filters: Filters, *, limit: int | None = None) -> list[Row]:
    """Studies changed in the window, newest change first."""
    filters.refuse("studies", "outcome")
    conditions = _matching(filters, Study.updated_at, study=Study.study_uid, ae=Study.calling_ae)
    if filters.state:
        conditions.append(Study.state == filters.state)
    query = (
        select(Study.study_uid, Study.state, Study.revision, Study.calling_ae, Study.attempts,
               Study.reason, Study.created_at, Study.complete_at, Study.ended_at,
               Study.updated_at)
        .where(*conditions).order_by(Study.updated_at.desc(), Study.id.desc())
    )
    return _rows(session, query, limit)


def _outcome_condition(filters: Filters) -> ColumnElement[bool] | None:
    if filters.outcome is None:
        return None
    if filters.outcome == ANY_FAILURE:
        return AuditEvent.outcome != Outcome.SUCCESS.value
    return AuditEvent.outcome == filters.outcome


def events(session: Session, filters: Filters, *, limit: int | None = None) -> list[Row]:
    """Audit events in the window, newest first; ``--ae`` matches the calling AE."""
    filters.refuse("events", "state")
    conditions = _matching(filters, AuditEvent.occurred_at, study=AuditEvent.study_uid,
                           ae=AuditEvent.calling_ae)
    outcome = _outcome_condition(filters)
    if outcome is not None:
        conditions.append(outcome)
    query = (
        select(AuditEvent.id, AuditEvent.occurred_at, AuditEvent.actor, AuditEvent.event_type,
               AuditEvent.outcome, AuditEvent.study_uid, AuditEvent.sop_instance_uid,
               AuditEvent.calling_ae, AuditEvent.detail)
        .where(*conditions).order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
    )
    return _rows(session, query, limit)


def deliveries(session: Session, filters: Filters, *, limit: int | None = None) -> list[Row]:
    """Deliveries created in the window; ``--ae`` is the destination, ``--outcome success``
    the delivered ones, ``failure`` the others."""
    filters.refuse("deliveries", "state")
    conditions = _matching(filters, Delivery.created_at, study=Study.study_uid,
                           ae=Delivery.destination_ae)
    if filters.outcome == Outcome.SUCCESS:
        conditions.append(Delivery.delivered_at.is_not(None))
    elif filters.outcome is not None:
        conditions.append(Delivery.delivered_at.is_(None))
    query = (
        select(Study.study_uid, Result.revision, Delivery.object, Delivery.destination_ae,
               Delivery.destination_host, Delivery.destination_port, Delivery.attempts,
               Delivery.last_status, Delivery.created_at, Delivery.next_retry_at,
               Delivery.delivered_at)
        .join(Result, Delivery.result_id == Result.id)
        .join(Study, Result.study_id == Study.id)
        .where(*conditions).order_by(Delivery.created_at.desc(), Delivery.id.desc())
    )
    return _rows(session, query, limit)


def associations(session: Session, filters: Filters, *, limit: int | None = None) -> list[Row]:
    """Associations started in the window; ``--outcome failure``: aborted or with refusals;
    ``--study``: those that carried an instance of the study."""
    filters.refuse("associations", "state")
    conditions = _matching(filters, Association.started_at, ae=Association.calling_ae)
    failed = or_(Association.aborted.is_(True), Association.refused > 0)
    if filters.outcome == Outcome.SUCCESS:
        conditions.append(~failed)
    elif filters.outcome is not None:
        conditions.append(failed)
    if filters.study_uid:
        conditions.append(exists().where(
            Instance.association_id == Association.id, Instance.study_id == Study.id,
            Study.study_uid == filters.study_uid,
        ))
    query = (
        select(Association.id, Association.calling_ae, Association.called_ae,
               Association.peer_host, Association.peer_port, Association.tls,
               Association.started_at, Association.ended_at, Association.accepted,
               Association.refused, Association.aborted)
        .where(*conditions).order_by(Association.started_at.desc(), Association.id.desc())
    )
    return _rows(session, query, limit)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` quantile by linear interpolation (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(session: Session, filters: Filters) -> list[Row]:
    """Studies changed in the window: counts per state, failures by reason, p50/p95
    seconds from COMPLETE to DONE; audit events by outcome. One row per figure."""
    filters.refuse("summary", "state", "outcome")
    conditions = _matching(filters, Study.updated_at, study=Study.study_uid, ae=Study.calling_ae)
    rows: list[Row] = []
    for state, count in session.execute(
        select(Study.state, func.count()).where(*conditions).group_by(Study.state)
        .order_by(Study.state)
    ):
        rows.append({"figure": "studies", "key": state, "value": count})
    failed = Study.state.in_([StudyState.FAILED, StudyState.NOT_ANALYZABLE])
    for state, reason, count in session.execute(
        select(Study.state, Study.reason, func.count()).where(*conditions, failed)
        .group_by(Study.state, Study.reason).order_by(func.count().desc())
    ):
        rows.append({"figure": f"{state} reason", "key": reason or "(none)", "value": count})
    spans = session.execute(
        select(Study.complete_at, Study.ended_at)
        .where(*conditions, Study.state == StudyState.DONE,
               and_(Study.complete_at.is_not(None), Study.ended_at.is_not(None)))
    )
    seconds = [(end - start).total_seconds() for start, end in spans if start and end]
    for name, fraction in (("p50", 0.5), ("p95", 0.95)):
        value = percentile(seconds, fraction)
        rows.append({"figure": "COMPLETE to DONE seconds", "key": name,
                     "value": None if value is None else round(value, 1)})
    event_conditions = _matching(filters, AuditEvent.occurred_at, study=AuditEvent.study_uid,
                                 ae=AuditEvent.calling_ae)
    for outcome, count in session.execute(
        select(AuditEvent.outcome, func.count()).where(*event_conditions)
        .group_by(AuditEvent.outcome).order_by(AuditEvent.outcome)
    ):
        rows.append({"figure": "audit events", "key": outcome, "value": count})
    return rows


QUERIES = {"studies": studies, "events": events, "deliveries": deliveries,
           "associations": associations}
