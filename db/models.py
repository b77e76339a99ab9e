"""The tables of the audit database, as typed SQLAlchemy 2 models.

Every relationship is ``lazy="raise"``: a query happens only where the code asks for one,
never by touching an attribute. Times are stored in UTC (``UTCDateTime``) on both back ends.
Constraint names follow one convention so that migrations and models cannot drift apart
unnoticed.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

UID = String(64)  # DICOM UI value representation: at most 64 characters
AE = String(16)  # DICOM AE value representation: at most 16 characters
SHA256 = String(64)  # hex digest


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC.

    PostgreSQL keeps ``timestamptz``; SQLite has no time zones, so the value is stored as naive
    UTC and made aware again when read. Naive values are refused: a local time mistaken for
    UTC would silently shift every audit record.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware time (UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BIGINT primary keys autoincrement on PostgreSQL; SQLite's rowid alias must be INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class StudyState(enum.StrEnum):
    """The states of DESIGN.md "Study states"."""

    RECEIVING = "RECEIVING"
    """Instances are arriving; the study is not yet stable."""
    COMPLETE = "COMPLETE"
    """No instance for ``stable_seconds``: ready to be dispatched."""
    QUEUED = "QUEUED"
    """The analysis task was sent to the queue."""
    PROCESSING = "PROCESSING"
    """A worker runs the analysis."""
    DONE = "DONE"
    """The analysis produced a result."""
    NOT_ANALYZABLE = "NOT_ANALYZABLE"
    """The study holds nothing the model can analyse (no chest CT series, no lung...)."""
    FAILED = "FAILED"
    """The analysis failed, or the reconciler ran out of attempts."""


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(), dict[str, Any]: JSON(),
    }


def _state_check(column: str) -> CheckConstraint:
    values = ", ".join(f"'{s.value}'" for s in StudyState)
    return CheckConstraint(f"{column} IN ({values})", name="state")


class Association(Base):
    """One DICOM association a peer opened with the node."""

    __tablename__ = "associations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    calling_ae: Mapped[str] = mapped_column(AE, index=True)
    called_ae: Mapped[str] = mapped_column(AE)
    peer_host: Mapped[str] = mapped_column(String(255))
    peer_port: Mapped[int] = mapped_column(Integer)
    tls: Mapped[bool] = mapped_column(Boolean)
    started_at: Mapped[datetime] = mapped_column(index=True)
    ended_at: Mapped[datetime | None]
    accepted: Mapped[int] = mapped_column(Integer, default=0)
    refused: Mapped[int] = mapped_column(Integer, default=0)
    aborted: Mapped[bool] = mapped_column(Boolean, default=False)


class Study(Base):
    """A study's state, its data revision and the time it entered each state.

    ``revision`` counts the bursts of new data; ``analysis_revision`` is the revision the
    current (or last) analysis covers. While QUEUED or PROCESSING, ``revision >
    analysis_revision`` means newer data is pending: when the analysis ends the study goes
    back to RECEIVING instead of staying in its end state (db/states.py).
    """

    __tablename__ = "studies"
    __table_args__ = (_state_check("state"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    study_uid: Mapped[str] = mapped_column(UID, unique=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    analysis_revision: Mapped[int | None] = mapped_column(Integer)
    calling_ae: Mapped[str | None] = mapped_column(AE, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(index=True)
    last_instance_at: Mapped[datetime]
    receiving_at: Mapped[datetime]
    complete_at: Mapped[datetime | None]
    queued_at: Mapped[datetime | None]
    processing_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]

    instances: Mapped[list[Instance]] = relationship(back_populates="study", lazy="raise")


Index("ix_studies_state_last_instance_at", Study.state, Study.last_instance_at)


class Instance(Base):
    """One stored DICOM instance (the latest bytes the sender sent for its SOP UID)."""

    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"),
                                          index=True)
    association_id: Mapped[int | None] = mapped_column(
        ForeignKey("associations.id", ondelete="SET NULL"), index=True
    )
    sop_class_uid: Mapped[str] = mapped_column(UID)
    sop_instance_uid: Mapped[str] = mapped_column(UID, unique=True)
    series_uid: Mapped[str] = mapped_column(UID, index=True)
    transfer_syntax_uid: Mapped[str] = mapped_column(UID)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(SHA256)
    path: Mapped[str] = mapped_column(String(1024))
    received_at: Mapped[datetime]
    own_output: Mapped[bool] = mapped_column(Boolean, default=False)

    study: Mapped[Study] = relationship(back_populates="instances", lazy="raise")


class Job(Base):
    """The analysis of one study revision: its task, attempts, where it ran and how long.

    One row per (study, revision); a re-sent task increments ``attempt`` on the same row, and
    every attempt is also an audit event.
    """

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("study_id", "revision", name="uq_jobs_study_revision"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)
    celery_task_id: Mapped[str | None] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    host: Mapped[str | None] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(64))
    model_version: Mapped[str | None] = mapped_column(String(64))
    checkpoint_sha256: Mapped[str | None] = mapped_column(SHA256)
    timings: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    queued_at: Mapped[datetime]
    deadline_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]


class Result(Base):
    """The objects one analysis produced; unique per (study, revision, checkpoint SHA-256).

    That key is the idempotency key of the analysis: a repeated task finds the row and does
    not analyse again. The series UIDs recognise lungpath's own objects sent back to it.
    """

    __tablename__ = "results"
    __table_args__ = (
        UniqueConstraint("study_id", "revision", "checkpoint_sha256",
                         name="uq_results_analysis_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)
    checkpoint_sha256: Mapped[str] = mapped_column(SHA256)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    predecessor_id: Mapped[int | None] = mapped_column(
        ForeignKey("results.id", ondelete="SET NULL")
    )
    sr_sop_instance_uid: Mapped[str] = mapped_column(UID)
    sr_series_uid: Mapped[str] = mapped_column(UID, index=True)
    sr_path: Mapped[str] = mapped_column(String(1024))
    sc_sop_instance_uid: Mapped[str | None] = mapped_column(UID)
    sc_series_uid: Mapped[str | None] = mapped_column(UID, index=True)
    sc_path: Mapped[str | None] = mapped_column(String(1024))
    seg_sop_instance_uid: Mapped[str | None] = mapped_column(UID)
    seg_series_uid: Mapped[str | None] = mapped_column(UID, index=True)
    seg_path: Mapped[str | None] = mapped_column(String(1024))
    findings: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]

    def object_files(self) -> dict[str, list[Path]]:
        """The files of each object (SR, SC, SEG). ``sc_path`` names the first summary image;
        one per nodule lies beside it as ``SC-<n>.dcm`` in the result's own folder."""
        files: dict[str, list[Path]] = {"SR": [Path(self.sr_path)]}
        if self.sc_path:
            first = Path(self.sc_path)
            files["SC"] = sorted(first.parent.glob("SC-*.dcm")) or [first]
        if self.seg_path:
            files["SEG"] = [Path(self.seg_path)]
        return files


class Delivery(Base):
    """Sending one result object to one destination, with its retries."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("result_id", "object", "destination_ae", "destination_host",
                         "destination_port", name="uq_deliveries_target"),
        CheckConstraint("object IN ('SR', 'SC', 'SEG')", name="object"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("results.id", ondelete="CASCADE"))
    object: Mapped[str] = mapped_column(String(8))
    destination_ae: Mapped[str] = mapped_column(AE, index=True)
    destination_host: Mapped[str] = mapped_column(String(255))
    destination_port: Mapped[int] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(index=True)
    next_retry_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]


class AuditEvent(Base):
    """One audit record. Append-only: database triggers refuse UPDATE, and DELETE of any
    event younger than the retention recorded in ``audit_retention`` (db/migrations)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(48))
    outcome: Mapped[str] = mapped_column(String(16))
    study_uid: Mapped[str | None] = mapped_column(UID)
    sop_instance_uid: Mapped[str | None] = mapped_column(UID)
    calling_ae: Mapped[str | None] = mapped_column(AE)
    detail: Mapped[dict[str, Any] | None]


Index("ix_audit_events_calling_ae_occurred_at", AuditEvent.calling_ae, AuditEvent.occurred_at)
Index("ix_audit_events_study_uid_occurred_at", AuditEvent.study_uid, AuditEvent.occurred_at)


class AuditRetention(Base):
    """The one row that says how old an audit event must be before it may be deleted.

    ``days`` NULL keeps every event forever (the default). The DELETE trigger on
    ``audit_events`` reads this row, so the rule holds for any client, not just lungpath.
    """

    __tablename__ = "audit_retention"
    __table_args__ = (
        CheckConstraint("id = 1", name="single_row"),
        CheckConstraint("days IS NULL OR days >= 1", name="days_positive"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    days: Mapped[int | None] = mapped_column(Integer)
