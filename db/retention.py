"""Retention: delete studies older than a window (rows and stored files), and audit events
older than their own, separate retention.

Study rows go in one transaction with one ``data.purged`` audit event per study; the files go
after the commit (every instance, and every object of every result: the SR, each nodule's
summary image, the SEG), then the study's folders they leave empty. A crash in between leaves
unreferenced files, never rows that point at deleted files. Studies QUEUED or PROCESSING are never
purged: an analysis is reading them.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, delete, exists, func, select, update
from sqlalchemy.orm import Session

from db.engine import transaction
from db.events import EventType, Outcome, audit
from db.models import Association, AuditEvent, AuditRetention, Instance, Result, Study, StudyState

log = logging.getLogger(__name__)

#: Margin between our clock and the database's when deleting old audit events, so that the
#: database's trigger (which uses its own clock) never refuses an event we selected.
CLOCK_MARGIN = timedelta(minutes=5)


@dataclass
class PurgeReport:
    """What a purge deleted (or, in a dry run, would delete)."""

    studies: list[str] = field(default_factory=list)
    instances: int = 0
    results: int = 0
    associations: int = 0
    files: list[str] = field(default_factory=list)
    files_missing: int = 0
    files_failed: list[str] = field(default_factory=list)
    audit_events: int = 0


def _files_of(session: Session, study_ids: list[int]) -> list[str]:
    paths = list(session.scalars(select(Instance.path).where(Instance.study_id.in_(study_ids))))
    for result in session.scalars(select(Result).where(Result.study_id.in_(study_ids))):
        paths += [str(p) for files in result.object_files().values() for p in files]
    return paths


def _count(session: Session, model: type[Instance] | type[Result], study_ids: list[int]) -> int:
    return session.scalar(
        select(func.count()).select_from(model).where(model.study_id.in_(study_ids))
    ) or 0


def purge_studies(engine: Engine, *, older_than: datetime, dry_run: bool, actor: str,
                  now: datetime, batch: int = 500) -> PurgeReport:
    """Delete studies not changed since ``older_than`` (not QUEUED/PROCESSING): their rows
    (instances, jobs, results, deliveries by cascade), their files, and associations that
    ended before ``older_than`` and carried nothing that remains. Audit events stay."""
    report = PurgeReport()
    with transaction(engine) as session:
        old = [(row.id, row.study_uid) for row in session.execute(
            select(Study.id, Study.study_uid).where(
                Study.updated_at < older_than,
                Study.state.not_in([StudyState.QUEUED, StudyState.PROCESSING]),
            ).order_by(Study.id)
        )]
    for start in range(0, len(old), batch):
        chunk = old[start:start + batch]
        ids = [study_id for study_id, _ in chunk]
        with transaction(engine) as session:
            files = _files_of(session, ids)
            instances, results = _count(session, Instance, ids), _count(session, Result, ids)
            if not dry_run:
                for _, uid in chunk:
                    audit(session, actor=actor, event_type=EventType.DATA_PURGED,
                          outcome=Outcome.SUCCESS, study_uid=uid, at=now,
                          detail={"older_than": older_than.isoformat()})
                session.execute(delete(Study).where(Study.id.in_(ids)))
        report.studies += [uid for _, uid in chunk]
        report.instances += instances
        report.results += results
        report.files += files
        if not dry_run:
            _remove_files(files, report)
            _remove_empty_study_folders(files, {uid for _, uid in chunk})
    report.associations = _purge_associations(engine, older_than, dry_run)
    return report


def _purge_associations(engine: Engine, older_than: datetime, dry_run: bool) -> int:
    unused = (Association.ended_at < older_than) & ~exists().where(
        Instance.association_id == Association.id
    )
    with transaction(engine) as session:
        if dry_run:
            return session.scalar(select(func.count()).select_from(Association).where(unused)) or 0
        return session.execute(delete(Association).where(unused)).rowcount  # type: ignore[attr-defined]


def _remove_files(paths: list[str], report: PurgeReport) -> None:
    for path in paths:
        try:
            Path(path).unlink()
        except FileNotFoundError:
            report.files_missing += 1
        except OSError as e:
            log.error("purge: cannot delete %s: %s", path, e)
            report.files_failed.append(path)


def _remove_empty_study_folders(paths: list[str], study_uids: set[str]) -> None:
    """Remove the folders of the purged files that are now empty and belong to a purged
    study: ``<store>/<study>/<series>/`` and ``<store>/results/<study>/<revision>/`` and the
    study folders above them, never a folder not named by the study (the store itself)."""
    folders = {Path(p).parent for p in paths}
    folders |= {f.parent for f in folders}
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
        if folder.name in study_uids or folder.parent.name in study_uids:
            # not empty (other files, another revision) or already gone: left as it is
            with contextlib.suppress(OSError):
                folder.rmdir()


def purge_audit_events(engine: Engine, *, retention_days: int, dry_run: bool, actor: str,
                       now: datetime) -> int:
    """Delete audit events older than ``retention_days`` (and record that retention in the
    database, where the append-only trigger enforces it). Returns how many."""
    if retention_days < 1:
        raise ValueError(f"retention_days must be >= 1, got {retention_days}")
    cutoff = now - timedelta(days=retention_days) - CLOCK_MARGIN
    old = AuditEvent.occurred_at < cutoff
    with transaction(engine) as session:
        if dry_run:
            return session.scalar(select(func.count()).select_from(AuditEvent).where(old)) or 0
        session.execute(update(AuditRetention).where(AuditRetention.id == 1)
                        .values(days=retention_days))
        deleted: int = session.execute(delete(AuditEvent).where(old)).rowcount  # type: ignore[attr-defined]
        audit(session, actor=actor, event_type=EventType.AUDIT_PURGED, outcome=Outcome.SUCCESS,
              at=now, detail={"retention_days": retention_days, "deleted": deleted,
                              "before": cutoff.isoformat()})
    return deleted
