"""The Celery task bodies: thin wrappers that call ``analyze_study`` and ``deliver_result``.

Only a worker imports this module (it loads torch through ``model.predictor``). The worker's
composition root builds one ``WorkerRuntime`` and calls ``register(app, runtime)`` before
starting Celery; each pool process then opens its own database engine and loads the model
once, on its first task (a forked process must not share the parent's connections).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy import Engine

from db.engine import create_engine_for
from model.predictor import Predictor
from pipeline.analysis import AnalysisConfig, analyze_study
from pipeline.delivery import DeliveryConfig, deliver_result
from pipeline.queue import (
    ANALYZE_TASK,
    DELIVER_TASK,
    BrokerUnavailable,
    QueueConfig,
    send_delivery,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerRuntime:
    """Everything a worker's tasks need, built from the settings by the composition root."""

    database_url: str
    checkpoint: Path
    device: str
    queue: QueueConfig
    analysis: AnalysisConfig
    delivery: DeliveryConfig
    host: str = field(default_factory=socket.gethostname)


class _Process:
    """What one pool process keeps between tasks: its engine and its model."""

    def __init__(self) -> None:
        self.pid = -1
        self.engine: Engine | None = None
        self.predictor: Predictor | None = None

    def engine_for(self, runtime: WorkerRuntime) -> Engine:
        self._reset_after_fork()
        if self.engine is None:
            self.engine = create_engine_for(runtime.database_url)
        return self.engine

    def predictor_for(self, runtime: WorkerRuntime) -> Predictor:
        self._reset_after_fork()
        if self.predictor is None:
            self.predictor = Predictor.from_checkpoint(runtime.checkpoint, device=runtime.device)
            logger.info("model %s (%s) loaded on %s in process %d", self.predictor.version,
                        self.predictor.sha256[:12], self.predictor.device, os.getpid())
        return self.predictor

    def _reset_after_fork(self) -> None:
        if self.pid != os.getpid():
            self.pid = os.getpid()
            self.engine = None
            self.predictor = None


_PROCESS = _Process()


def register(app: Celery, runtime: WorkerRuntime) -> None:
    """Add the analysis and delivery tasks to ``app`` (tasks take ids only)."""

    @app.task(name=ANALYZE_TASK, bind=True, acks_late=True)
    def analyze(task: Any, study_id: int, revision: int) -> None:
        outcome = analyze_study(
            _PROCESS.engine_for(runtime), runtime.analysis, _PROCESS.predictor_for(runtime),
            study_id=study_id, revision=revision, task_id=str(task.request.id),
            host=runtime.host)
        if outcome.state is None:
            logger.info("analysis message for study %d revision %d skipped: %s",
                        study_id, revision, outcome.reason)
        elif outcome.result_id is not None and runtime.delivery.destinations:
            _schedule_delivery(app, runtime, outcome.result_id, None)

    @app.task(name=DELIVER_TASK, bind=True, acks_late=True)
    def deliver(task: Any, result_id: int) -> None:
        delay = deliver_result(_PROCESS.engine_for(runtime), runtime.delivery, result_id,
                               actor=f"worker@{runtime.host}"[:64])
        if delay is not None:
            _schedule_delivery(app, runtime, result_id, delay)


def _schedule_delivery(app: Celery, runtime: WorkerRuntime, result_id: int,
                       countdown: float | None) -> None:
    """Send the next delivery pass. If the broker is away the rows stay due, and the node's
    reconciler sends the pass once it is back."""
    try:
        send_delivery(app, runtime.queue, result_id=result_id, task_id=str(uuid.uuid4()),
                      countdown=countdown)
    except BrokerUnavailable as e:
        logger.warning("%s; the reconciler will send it", e)
