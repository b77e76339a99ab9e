"""Deliveries of result objects to DICOM destinations: planned once, every attempt audited."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.events import EventType, Outcome, audit
from db.models import Delivery, Result, Study

OBJECTS = ("SR", "SC", "SEG")


def plan_delivery(session: Session, *, result_id: int, obj: str, destination_ae: str,
                  destination_host: str, destination_port: int, now: datetime) -> int:
    """A delivery row for one object of a result to one destination; returns its id.

    Planning the same (result, object, destination) twice returns the existing row: a
    repeated delivery task does not send twice as many objects.
    """
    if obj not in OBJECTS:
        raise ValueError(f"obj must be one of {', '.join(OBJECTS)}, got {obj!r}")
    if not 1 <= destination_port <= 65535:
        raise ValueError(f"destination_port must be 1..65535, got {destination_port}")
    existing = session.scalars(select(Delivery.id).where(
        Delivery.result_id == result_id, Delivery.object == obj,
        Delivery.destination_ae == destination_ae, Delivery.destination_host == destination_host,
        Delivery.destination_port == destination_port,
    )).first()
    if existing is not None:
        return existing
    delivery = Delivery(result_id=result_id, object=obj, destination_ae=destination_ae,
                        destination_host=destination_host, destination_port=destination_port,
                        attempts=0, created_at=now)
    session.add(delivery)
    session.flush()
    return delivery.id


def record_attempt(session: Session, delivery_id: int, *, status: str, delivered: bool,
                   next_retry_at: datetime | None, now: datetime, actor: str) -> None:
    """One C-STORE attempt of a delivery and its DICOM status (``0x0000``, ``timeout``, ...)."""
    delivery = session.get(Delivery, delivery_id, with_for_update=True)
    if delivery is None:
        raise ValueError(f"delivery_id: no delivery {delivery_id}")
    delivery.attempts += 1
    delivery.last_status = status[:255]
    delivery.next_retry_at = None if delivered else next_retry_at
    if delivered:
        delivery.delivered_at = now
    study_uid = session.scalar(
        select(Study.study_uid).join(Result, Result.study_id == Study.id)
        .where(Result.id == delivery.result_id)
    )
    audit(session, actor=actor,
          event_type=EventType.DELIVERY_SENT if delivered else EventType.DELIVERY_FAILED,
          outcome=Outcome.SUCCESS if delivered else Outcome.MINOR_FAILURE,
          study_uid=study_uid, at=now,
          detail={"delivery_id": delivery_id, "object": delivery.object,
                  "destination_ae": delivery.destination_ae, "status": status,
                  "attempt": delivery.attempts})
