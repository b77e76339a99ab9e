"""The Celery app of lungpath and the names of its tasks; imports no torch.

The node process (dispatcher, reconciler) and the administrator's commands only *send* tasks,
by name, so they import this module and never the task bodies (``pipeline.tasks``), which
load the model. Tasks take ids only (a study's database id and revision, a result's id): the
database holds every state, and there is no result backend.

Settings that matter for reliability, set here once for every broker:
- ``acks_late`` with ``task_reject_on_worker_lost``: a message is acknowledged when its task
  ends, so a broker that redelivers (Redis after ``visibility_timeout``, RabbitMQ when the
  consumer's channel closes) redelivers the work of a worker that died. The server-less broker
  never redelivers; the node's reconciler re-sends from the database in every case.
- prefetch 1: a worker holds one analysis at a time, the others stay with the broker for
  other workers.
- soft and hard time limits, which need the prefork pool; Redis' ``visibility_timeout`` is
  set above the hard limit so that a running analysis is never handed to a second worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from celery import Celery
from kombu import Queue
from sqlalchemy.exc import IntegrityError, OperationalError

ANALYSIS_QUEUE = "analysis"
DELIVERY_QUEUE = "delivery"
ANALYZE_TASK = "lungpath.analyze_study"
DELIVER_TASK = "lungpath.deliver_result"

#: Seconds Redis waits, beyond the hard time limit, before redelivering an unacknowledged
#: message.
VISIBILITY_MARGIN_S = 300.0
#: SQLite's busy timeout for the server-less broker's database, in seconds.
SQLITE_BROKER_TIMEOUT_S = 30.0

_PREFIX = re.compile(r"^[A-Za-z0-9_.-]*$")


class BrokerUnavailable(RuntimeError):
    """A task could not be handed to the broker; ``str(error)`` says why."""


@dataclass(frozen=True)
class QueueConfig:
    """How to reach the broker and how tasks run.

    Attributes:
        broker_url: ``sqla+sqlite:////abs/path/broker.db`` (server-less), ``redis://...`` or
            ``amqp://...``.
        queue_prefix: prepended to the queue names (several nodes or test runs on one broker).
        soft_time_limit / time_limit: seconds before an analysis is told to stop / is killed.
        polling_interval: seconds between two polls of the server-less broker.
        connect_timeout: seconds a send waits for the broker before giving up.
    """

    broker_url: str
    queue_prefix: str = ""
    soft_time_limit: float = 900.0
    time_limit: float = 1200.0
    polling_interval: float = 1.0
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        if "://" not in self.broker_url:
            raise ValueError(f'Argument "broker_url" must be a URL, got {self.broker_url!r}.')
        if not _PREFIX.match(self.queue_prefix):
            raise ValueError('Argument "queue_prefix" may hold letters, digits, "_", "." and '
                             f'"-" only, got {self.queue_prefix!r}.')
        if not 0 < self.soft_time_limit < self.time_limit:
            raise ValueError('Arguments "soft_time_limit" and "time_limit" must satisfy '
                             f"0 < soft < hard, got {self.soft_time_limit}, {self.time_limit}.")
        for name in ("polling_interval", "connect_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f'Argument "{name}" must be > 0, got {getattr(self, name)}.')

    @property
    def analysis_queue(self) -> str:
        return self.queue_prefix + ANALYSIS_QUEUE

    @property
    def delivery_queue(self) -> str:
        return self.queue_prefix + DELIVERY_QUEUE

    @property
    def server_less(self) -> bool:
        """Whether the broker is kombu's SQLAlchemy transport."""
        return self.broker_url.startswith("sqla+")


def _transport_options(config: QueueConfig) -> dict[str, Any]:
    scheme = config.broker_url.split("://", 1)[0]
    if config.server_less:
        # passed to SQLAlchemy's create_engine: wait for SQLite's write lock instead of failing
        return {"connect_args": {"timeout": SQLITE_BROKER_TIMEOUT_S}} if "sqlite" in scheme else {}
    if scheme.startswith("redis"):
        return {"visibility_timeout": int(config.time_limit + VISIBILITY_MARGIN_S),
                "socket_connect_timeout": config.connect_timeout,
                "socket_timeout": config.connect_timeout}
    return {}


#: How often a worker retries declaring the server-less broker's queues after a collision.
DECLARE_ATTEMPTS = 5


def declare_queues(app: Celery, config: QueueConfig) -> None:
    """Create the server-less broker's tables and queues before a worker consumes.

    kombu's SQLAlchemy transport creates its tables and a queue's row the first time a
    process touches them, unguarded across processes: two workers starting at the same
    moment collide ("table already exists", or the queue's unique name) and the loser exits.
    A collision means another process created the object, so a fresh connection finds it.
    Other brokers declare their queues atomically; nothing to do for them.
    """
    if not config.server_less:
        return
    for attempt in range(1, DECLARE_ATTEMPTS + 1):
        try:
            with app.connection_for_write() as connection:
                channel = connection.default_channel
                for name in (config.analysis_queue, config.delivery_queue):
                    channel.queue_declare(queue=name)
            return
        except (IntegrityError, OperationalError):
            if attempt == DECLARE_ATTEMPTS:
                raise


def create_app(config: QueueConfig) -> Celery:
    """The Celery app for ``config``: queues, acknowledgement, prefetch, time limits.

    Task bodies are not registered here: ``pipeline.tasks.register`` adds them in a worker.
    """
    app = Celery("lungpath", broker=config.broker_url, set_as_current=False)
    app.conf.update(
        task_queues=(Queue(config.analysis_queue), Queue(config.delivery_queue)),
        task_default_queue=config.analysis_queue,
        task_routes={ANALYZE_TASK: {"queue": config.analysis_queue},
                     DELIVER_TASK: {"queue": config.delivery_queue}},
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        result_backend=None,
        task_soft_time_limit=config.soft_time_limit,
        task_time_limit=config.time_limit,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        broker_polling_interval=config.polling_interval,
        broker_transport_options=_transport_options(config),
        broker_connection_timeout=config.connect_timeout,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


def send_analysis(app: Celery, config: QueueConfig, *, study_id: int, revision: int,
                  task_id: str) -> None:
    """Hand the analysis of (study, revision) to the broker; ``BrokerUnavailable`` if not."""
    _send(app, ANALYZE_TASK, [study_id, revision], config.analysis_queue, task_id, None)


def send_delivery(app: Celery, config: QueueConfig, *, result_id: int, task_id: str,
                  countdown: float | None = None) -> None:
    """Hand the delivery of a result to the broker, now or after ``countdown`` seconds."""
    _send(app, DELIVER_TASK, [result_id], config.delivery_queue, task_id, countdown)


def _send(app: Celery, name: str, args: list[int], queue: str, task_id: str,
          countdown: float | None) -> None:
    try:
        app.send_task(name, args=args, queue=queue, task_id=task_id, countdown=countdown,
                      retry=False)
    except Exception as e:  # kombu raises its own, redis' and amqp's exception types
        raise BrokerUnavailable(f"cannot send {name} to queue {queue}: {e}") from e
