"""Deliveries of result objects to DICOM destinations: armed once, every attempt audited.

The delivery task decides what a peer's answer means (deliver, retry later, give up); this
module owns what that does to the rows and the audit log, so every writer of Delivery rows
goes through the same two functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.events import EventType, Outcome, audit
from db.models import Delivery, Result, Study

OBJECTS = ("SR", "SC", "SEG")


def arm_deliveries(session: Session, *, result_id: int, objects: Sequence[str],
                   destinations: Sequence[tuple[str, str, int]], now: datetime) -> None:
    """A row, due now, for each (object, destination) of a result that has none yet.

    ``destinations`` are (AE title, host, port). Arming twice adds nothing: a repeated
    delivery task does not send twice as many objects.
    """
    unknown = sorted(set(objects) - set(OBJECTS))
    if unknown:
        raise ValueError(f"objects must be among {', '.join(OBJECTS)}, got {unknown}")
    for _, _, port in destinations:
        if not 1 <= port <= 65535:
            raise ValueError(f"destination port must be 1..65535, got {port}")
    existing = {tuple(row) for row in session.execute(
        select(Delivery.object, Delivery.destination_ae, Delivery.destination_host,
               Delivery.destination_port).where(Delivery.result_id == result_id)
    )}
    for ae_title, host, port in destinations:
        for obj in objects:
            if (obj, ae_title, host, port) not in existing:
                session.add(Delivery(
                    result_id=result_id, object=obj, destination_ae=ae_title,
                    destination_host=host, destination_port=port, attempts=0,
                    created_at=now, next_retry_at=now))
    session.flush()


def lock_delivery(session: Session, delivery_id: int) -> Delivery:
    """The delivery row, locked for this transaction (its attempt is recorded next)."""
    row = session.get(Delivery, delivery_id, with_for_update=True)
    if row is None:
        raise ValueError(f"delivery_id: no delivery {delivery_id}")
    return row


def record_attempt(session: Session, row: Delivery, *, status: str, delivered: bool,
                   next_retry_at: datetime | None, now: datetime, actor: str,
                   final_status: str | None = None,
                   detail: dict[str, Any] | None = None) -> None:
    """One C-STORE attempt of ``row`` (locked by ``lock_delivery``) and the peer's status
    (``0x0000``, ``timeout``, ...).

    Delivered: done. Not delivered with ``next_retry_at``: a minor failure, retried then.
    Not delivered without it: given up, a serious failure whose ``final_status`` becomes the
    row's last status. ``detail`` adds to the audit event's detail.
    """
    result = session.get_one(Result, row.result_id)
    study = session.get_one(Study, result.study_id)
    row.attempts += 1
    row.last_status = status[:255]
    info: dict[str, Any] = {
        "object": row.object, "attempt": row.attempts, "status": status,
        "destination": f"{row.destination_ae}@{row.destination_host}:{row.destination_port}",
        "result_id": result.id, **(detail or {})}
    if delivered:
        row.delivered_at, row.next_retry_at = now, None
        event, outcome = EventType.DELIVERY_SENT, Outcome.SUCCESS
    elif next_retry_at is not None:
        row.next_retry_at = next_retry_at
        event, outcome = EventType.DELIVERY_FAILED, Outcome.MINOR_FAILURE
    else:
        row.next_retry_at = None
        row.last_status = (final_status or status)[:255]
        event, outcome = EventType.DELIVERY_FAILED, Outcome.SERIOUS_FAILURE
        info["final"] = row.last_status
    sop = {"SR": result.sr_sop_instance_uid, "SC": result.sc_sop_instance_uid,
           "SEG": result.seg_sop_instance_uid}[row.object]
    audit(session, actor=actor, event_type=event, outcome=outcome, study_uid=study.study_uid,
          sop_instance_uid=sop, calling_ae=study.calling_ae, at=now, detail=info)
