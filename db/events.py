"""The audit event vocabulary, its DICOM / IHE ATNA mapping, and ``audit()`` to record one.

Event types are lungpath's own dotted names; where a DICOM audit event (PS3.15 A.5, codes
of the DCM scheme) fits, ``ATNA`` gives its Event ID, Event Type Code and Event Action Code
so that an export to an Audit Record Repository can be generated from the table alone.
docs/audit-events.md is the readable version of this module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from db.models import AuditEvent


class Outcome(enum.StrEnum):
    """ATNA Event Outcome Indicator (0, 4, 8, 12), by name."""

    SUCCESS = "success"
    """0: the action succeeded."""
    MINOR_FAILURE = "minor_failure"
    """4: the action was refused or failed, and the system is fine (a rejected instance)."""
    SERIOUS_FAILURE = "serious_failure"
    """8: the action failed and needs attention (an analysis that failed)."""
    MAJOR_FAILURE = "major_failure"
    """12: the action failed and the system is impaired (storage full, database down)."""


class EventType(enum.StrEnum):
    """What happened. The prefix groups events: application, association, instance, study,
    delivery, data, audit, security."""

    APPLICATION_START = "application.start"
    APPLICATION_STOP = "application.stop"
    SCHEMA_UPGRADED = "application.schema_upgraded"
    ASSOCIATION_OPENED = "association.opened"
    ASSOCIATION_CLOSED = "association.closed"
    ASSOCIATION_REFUSED = "association.refused"
    INSTANCE_RECEIVED = "instance.received"
    INSTANCE_DUPLICATE = "instance.duplicate"
    INSTANCE_REPLACED = "instance.replaced"
    INSTANCE_OWN_OUTPUT = "instance.own_output"
    INSTANCE_REJECTED = "instance.rejected"
    STUDY_RECEIVING = "study.receiving"
    STUDY_REVISION_PENDING = "study.revision_pending"
    STUDY_COMPLETE = "study.complete"
    STUDY_QUEUED = "study.queued"
    STUDY_REQUEUED = "study.requeued"
    STUDY_PROCESSING = "study.processing"
    STUDY_DONE = "study.done"
    STUDY_NOT_ANALYZABLE = "study.not_analyzable"
    STUDY_FAILED = "study.failed"
    STUDY_REANALYSIS = "study.reanalysis"
    DELIVERY_SENT = "delivery.sent"
    DELIVERY_FAILED = "delivery.failed"
    DELIVERY_RESEND = "delivery.resend"
    DATA_PURGED = "data.purged"
    AUDIT_PURGED = "audit.purged"
    SECURITY_ALERT = "security.alert"


@dataclass(frozen=True)
class AtnaEvent:
    """A DICOM audit message's identity: Event ID and optional Event Type (DCM codes), and
    the Event Action Code (C create, R read, U update, D delete, E execute)."""

    event_id: str
    event_name: str
    action: str
    type_code: str | None = None
    type_name: str | None = None


_APPLICATION = ("110100", "Application Activity")
_BEGIN = ("110102", "Begin Transferring DICOM Instances")
_ACCESSED = ("110103", "DICOM Instances Accessed")
_TRANSFERRED = ("110104", "DICOM Instances Transferred")
_DELETED = ("110105", "DICOM Study Deleted")
_AUDIT_USED = ("110101", "Audit Log Used")
_SECURITY = ("110113", "Security Alert")

#: The ATNA identity of each event type; ``None``: a lungpath workflow step with no DICOM
#: audit event of its own (its study's state changed, no instance moved or was read).
ATNA: dict[EventType, AtnaEvent | None] = {
    EventType.APPLICATION_START: AtnaEvent(*_APPLICATION, "E", "110120", "Application Start"),
    EventType.APPLICATION_STOP: AtnaEvent(*_APPLICATION, "E", "110121", "Application Stop"),
    EventType.SCHEMA_UPGRADED: AtnaEvent(*_SECURITY, "E", "110131", "Software Configuration"),
    EventType.ASSOCIATION_OPENED: AtnaEvent(*_BEGIN, "E"),
    EventType.ASSOCIATION_CLOSED: AtnaEvent(*_TRANSFERRED, "C"),
    EventType.ASSOCIATION_REFUSED: AtnaEvent(*_SECURITY, "E", "110126", "Node Authentication"),
    EventType.INSTANCE_RECEIVED: AtnaEvent(*_TRANSFERRED, "C"),
    EventType.INSTANCE_DUPLICATE: AtnaEvent(*_TRANSFERRED, "R"),
    EventType.INSTANCE_REPLACED: AtnaEvent(*_TRANSFERRED, "U"),
    EventType.INSTANCE_OWN_OUTPUT: AtnaEvent(*_TRANSFERRED, "C"),
    EventType.INSTANCE_REJECTED: AtnaEvent(*_TRANSFERRED, "C"),
    EventType.STUDY_RECEIVING: None,
    EventType.STUDY_REVISION_PENDING: None,
    EventType.STUDY_COMPLETE: None,
    EventType.STUDY_QUEUED: None,
    EventType.STUDY_REQUEUED: None,
    EventType.STUDY_PROCESSING: AtnaEvent(*_ACCESSED, "R"),
    EventType.STUDY_DONE: AtnaEvent(*_ACCESSED, "C"),
    EventType.STUDY_NOT_ANALYZABLE: AtnaEvent(*_ACCESSED, "R"),
    EventType.STUDY_FAILED: AtnaEvent(*_ACCESSED, "R"),
    EventType.STUDY_REANALYSIS: None,
    EventType.DELIVERY_SENT: AtnaEvent(*_TRANSFERRED, "R"),
    EventType.DELIVERY_FAILED: AtnaEvent(*_TRANSFERRED, "R"),
    EventType.DELIVERY_RESEND: None,
    EventType.DATA_PURGED: AtnaEvent(*_DELETED, "D"),
    EventType.AUDIT_PURGED: AtnaEvent(*_AUDIT_USED, "D"),
    EventType.SECURITY_ALERT: AtnaEvent(*_SECURITY, "E"),
}


_INSERT = insert(AuditEvent)


def _check_text(name: str, value: str | None, limit: int) -> None:
    if value is not None and (not isinstance(value, str) or len(value) > limit):
        raise ValueError(f"{name} must be a string of at most {limit} characters, got {value!r}")


def audit(
    session: Session,
    *,
    actor: str,
    event_type: EventType | str,
    outcome: Outcome | str,
    study_uid: str | None = None,
    sop_instance_uid: str | None = None,
    calling_ae: str | None = None,
    detail: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Add one audit event to ``session``'s transaction: it commits with the change it records.

    Raises ``ValueError`` naming the argument for an unknown event type or outcome or a value
    too long for its column, before anything is written.
    """
    try:
        kind = EventType(event_type)
    except ValueError:
        raise ValueError(f"event_type: unknown audit event type {event_type!r}") from None
    try:
        result = Outcome(outcome)
    except ValueError:
        choices = ", ".join(o.value for o in Outcome)
        raise ValueError(f"outcome: {outcome!r} is not one of {choices}") from None
    if not actor:
        raise ValueError("actor: must name who acted (a process, host or user)")
    _check_text("actor", actor, 64)
    _check_text("study_uid", study_uid, 64)
    _check_text("sop_instance_uid", sop_instance_uid, 64)
    _check_text("calling_ae", calling_ae, 16)
    if detail is not None and not isinstance(detail, dict):
        raise ValueError(f"detail must be a dict or None, got {type(detail).__name__}")
    # A Core INSERT, executed now: cheaper than a unit-of-work flush on the ingest path, and
    # events get their ids in the order they were recorded.
    session.connection().execute(_INSERT, dict(
        occurred_at=at or datetime.now(UTC), actor=actor, event_type=kind.value,
        outcome=result.value, study_uid=study_uid, sop_instance_uid=sop_instance_uid,
        calling_ae=calling_ae, detail=detail,
    ))
