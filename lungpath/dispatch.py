"""Dispatcher and reconciler: the node's side of the queue, driven by the database.

Every ``dispatch_interval`` seconds one pass, in the node process (which never imports torch):
1. dispatch: each COMPLETE study is marked QUEUED and its task sent in one transaction; if
   the broker refuses the send the transaction rolls back and the study stays COMPLETE for
   the next pass (a broker outage delays analyses, it never loses one);
2. reconcile: a QUEUED or PROCESSING study past its deadline (queued: ``queued_deadline_s``
   after the send; processing: the worker's hard time limit plus a grace) is sent again with
   its attempt counted, or FAILED with the reason once ``max_attempts`` sends were used. This
   is what recovers a study whose message was lost: the server-less broker never redelivers,
   Redis redelivers only after its visibility timeout, RabbitMQ when the consumer's channel
   closes — and a redelivered message for a study still marked PROCESSING is skipped;
3. deliveries: a delivery due for longer than ``delivery_grace_s`` (its scheduled pass was
   lost with a worker or a broker) gets a new delivery task.
The database decides everything, so the reconciler may run while workers run, and repeated
messages are harmless (the worker's QUEUED -> PROCESSING transition admits one).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path

from celery import Celery
from sqlalchemy import Engine, select

import model
from db.engine import transaction
from db.events import EventType, Outcome, audit
from db.models import Delivery, Result, Study, StudyState
from db.states import give_up, lock_study, mark_queued, overdue, requeue
from lungpath.settings import Settings
from pipeline.delivery import rearm
from pipeline.queue import (
    BrokerUnavailable,
    QueueConfig,
    create_app,
    send_analysis,
    send_delivery,
)

logger = logging.getLogger(__name__)

ACTOR = "dispatcher"

#: Where shipped weights live; the one ``*.pt`` there is the default checkpoint.
WEIGHTS_DIR = Path(model.__file__).resolve().parent / "weights"


class WorkerError(RuntimeError):
    """A worker cannot start; the message says why in one line."""


def checkpoint_path(settings: Settings) -> Path:
    """The checkpoint a worker serves: the setting, else the shipped weights."""
    if settings.checkpoint is not None:
        return settings.checkpoint
    shipped = sorted(WEIGHTS_DIR.glob("*.pt"))
    if not shipped:
        raise WorkerError(f"no checkpoint: set checkpoint (LUNGPATH_CHECKPOINT); {WEIGHTS_DIR} "
                          "holds no shipped weights")
    return shipped[0]


def queue_config(settings: Settings) -> QueueConfig:
    """The queue configuration of the settings (node, worker and CLI share it)."""
    return QueueConfig(
        broker_url=settings.broker, queue_prefix=settings.queue_prefix,
        soft_time_limit=settings.analysis_soft_time_limit,
        time_limit=settings.analysis_time_limit,
        polling_interval=settings.broker_polling_interval,
    )


def processing_deadline_s(settings: Settings) -> float:
    """How long a study may stay PROCESSING: the hard time limit plus the grace."""
    return settings.analysis_time_limit + settings.reconcile_grace_seconds


@dataclass
class PassReport:
    """What one pass did (UIDs of studies, ids of results)."""

    dispatched: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    deliveries: list[int] = field(default_factory=list)
    broker_error: str | None = None


class Dispatcher:
    """The dispatcher and reconciler thread of the node."""

    def __init__(self, engine: Engine, app: Celery, config: QueueConfig, *, interval: float,
                 queued_deadline_s: float, processing_deadline_s: float, max_attempts: int,
                 delivery_grace_s: float) -> None:
        for name, value in (("interval", interval), ("queued_deadline_s", queued_deadline_s),
                            ("processing_deadline_s", processing_deadline_s)):
            if not value > 0:
                raise ValueError(f'Argument "{name}" must be > 0, got {value}.')
        if max_attempts < 1:
            raise ValueError(f'Argument "max_attempts" must be >= 1, got {max_attempts}.')
        self.engine, self.app, self.config = engine, app, config
        self.interval = interval
        self.queued_deadline = timedelta(seconds=queued_deadline_s)
        self.processing_deadline_s = processing_deadline_s
        self.max_attempts = max_attempts
        self.delivery_grace = timedelta(seconds=delivery_grace_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)

    @classmethod
    def from_settings(cls, engine: Engine, app: Celery, settings: Settings) -> Dispatcher:
        return cls(engine, app, queue_config(settings), interval=settings.dispatch_interval,
                   queued_deadline_s=settings.queued_deadline_seconds,
                   processing_deadline_s=processing_deadline_s(settings),
                   max_attempts=settings.max_analysis_attempts,
                   delivery_grace_s=settings.reconcile_grace_seconds)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.run_once()
            except Exception:
                logger.exception("dispatcher pass failed; retrying in %.1f s", self.interval)

    def run_once(self) -> PassReport:
        """One pass: dispatch, reconcile, re-send lost delivery passes."""
        report = PassReport()
        try:
            self._dispatch(report)
            self._reconcile(report)
            self._deliveries(report)
        except BrokerUnavailable as e:
            report.broker_error = str(e)
            logger.warning("broker unavailable, retrying in %.1f s: %s", self.interval, e)
        return report

    def _dispatch(self, report: PassReport) -> None:
        with transaction(self.engine) as session:
            complete = session.execute(
                select(Study.id, Study.study_uid).where(Study.state == StudyState.COMPLETE)
                .order_by(Study.complete_at)
            ).all()
        for study_id, study_uid in complete:
            now = datetime.now(UTC)
            task_id = str(uuid.uuid4())
            with transaction(self.engine) as session:
                study = lock_study(session, study_uid)
                if study is None or study.state != StudyState.COMPLETE:
                    continue  # changed since the list was read
                mark_queued(session, study_uid=study_uid, revision=study.revision,
                            task_id=task_id, deadline_at=now + self.queued_deadline, now=now,
                            actor=ACTOR)
                send_analysis(self.app, self.config, study_id=study_id,
                              revision=study.revision, task_id=task_id)
            report.dispatched.append(study_uid)
            logger.info("study %s revision %d queued task=%s", study_uid, study.revision,
                        task_id)

    def _reconcile(self, report: PassReport) -> None:
        with transaction(self.engine) as session:
            late = overdue(session, now=datetime.now(UTC))
        for study_uid, _revision, attempts in late:
            now = datetime.now(UTC)
            if attempts >= self.max_attempts:
                with transaction(self.engine) as session:
                    give_up(session, study_uid=study_uid, max_attempts=self.max_attempts,
                            now=now, actor=ACTOR)
                report.failed.append(study_uid)
                logger.warning("study %s FAILED: no result after %d attempts", study_uid,
                               attempts)
                continue
            task_id = str(uuid.uuid4())
            with transaction(self.engine) as session:
                job = requeue(session, study_uid=study_uid, task_id=task_id,
                              deadline_at=now + self.queued_deadline,
                              max_attempts=self.max_attempts, now=now, actor=ACTOR)
                send_analysis(self.app, self.config, study_id=job.study_id,
                              revision=job.revision, task_id=task_id)
            report.requeued.append(study_uid)
            logger.warning("study %s past its deadline: sent again (attempt %d) task=%s",
                           study_uid, job.attempt, task_id)

    def _deliveries(self, report: PassReport) -> None:
        now = datetime.now(UTC)
        with transaction(self.engine) as session:
            rows = list(session.scalars(
                select(Delivery).where(Delivery.delivered_at.is_(None),
                                       Delivery.next_retry_at <= now - self.delivery_grace)
                .with_for_update()
            ))
            for row in rows:
                row.next_retry_at = now  # still due; lost again, it is re-sent after the grace
            for result_id in sorted({row.result_id for row in rows}):
                send_delivery(self.app, self.config, result_id=result_id,
                              task_id=str(uuid.uuid4()))
                report.deliveries.append(result_id)


def start_embedded_worker(settings: Settings) -> BaseProcess:
    """``lungpath worker`` as a child process of the node (embedded mode).

    The child is spawned (a fresh interpreter), so the model and torch load there and never
    in the node.
    """
    child = multiprocessing.get_context("spawn").Process(
        target=_embedded_worker_main, args=(settings,), name="lungpath-worker", daemon=False)
    child.start()
    return child


def _embedded_worker_main(settings: Settings) -> None:
    from lungpath.worker import run_worker  # imported in the child only: it loads torch

    run_worker(settings, health=False)  # the node serves the endpoints for both


class ResendError(RuntimeError):
    """``lungpath resend`` cannot proceed; the message says why."""


def resend_latest(engine: Engine, settings: Settings, study_uid: str, *, actor: str) -> int:
    """Re-arm the deliveries of the study's latest result, audit it, send a delivery task.

    Returns the result's id; ``ResendError`` when the study has no result or the broker is
    unreachable (then nothing changed).
    """
    config = queue_config(settings)
    app = create_app(config)
    now = datetime.now(UTC)
    with transaction(engine) as session:
        row = session.execute(
            select(Result.id, Study.calling_ae).join(Study, Result.study_id == Study.id)
            .where(Study.study_uid == study_uid)
            .order_by(Result.revision.desc(), Result.id.desc()).limit(1)
        ).first()
        if row is None:
            raise ResendError(f"study {study_uid}: no result to send")
        result_id, calling_ae = row
        rearmed = rearm(session, result_id, now=now)
        audit(session, actor=actor, event_type=EventType.DELIVERY_RESEND,
              outcome=Outcome.SUCCESS, study_uid=study_uid, calling_ae=calling_ae, at=now,
              detail={"result_id": result_id, "deliveries_rearmed": rearmed})
        try:
            send_delivery(app, config, result_id=result_id, task_id=str(uuid.uuid4()))
        except BrokerUnavailable as e:
            raise ResendError(str(e)) from None
    return int(result_id)


class Orchestration:
    """The node's part of the orchestration: the dispatcher thread and, in embedded mode, the
    worker child process."""

    def __init__(self, dispatcher: Dispatcher, worker: BaseProcess | None,
                 stop_grace_s: float) -> None:
        self.dispatcher = dispatcher
        self.worker = worker
        self.stop_grace_s = stop_grace_s

    @classmethod
    def start(cls, settings: Settings, engine: Engine) -> Orchestration:
        """Start the dispatcher, and the worker child when the broker is the embedded one;
        ``WorkerError`` before anything starts when that worker would have no checkpoint."""
        embedded = settings.embedded_broker and settings.embedded_worker
        if embedded:
            checkpoint_path(settings)
        dispatcher = Dispatcher.from_settings(engine, create_app(queue_config(settings)),
                                              settings)
        dispatcher.start()
        worker = None
        if embedded:
            worker = start_embedded_worker(settings)
            logger.info("embedded worker started pid=%s", worker.pid)
        return cls(dispatcher, worker, settings.shutdown_grace_seconds)

    def stop(self) -> None:
        """Stop dispatching; let the worker finish its task (SIGTERM), kill it after the grace."""
        self.dispatcher.stop()
        if self.worker is not None and self.worker.is_alive():
            self.worker.terminate()
            self.worker.join(self.stop_grace_s)
            if self.worker.is_alive():
                logger.warning("worker did not stop within %.0f s; killing it",
                               self.stop_grace_s)
                self.worker.kill()
                self.worker.join()
        self.worker = None
