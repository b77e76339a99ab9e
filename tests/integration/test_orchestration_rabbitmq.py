"""RabbitMQ as the broker, two real workers, ten studies: every study is analysed exactly once,
the two workers run analyses at the same time, and every result reaches the PACS.

The production set-up: PostgreSQL (a schema of the test's own) and RabbitMQ (queues with the
test's own prefix, deleted at the end).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from tests.conftest import RABBITMQ_URL, require_port
from tests.db.databases import PostgresSchemas
from tests.integration.orchestration import (
    ALL_KINDS,
    Pacs,
    Stack,
    make_stack,
    send_study,
)

pytestmark = [pytest.mark.slow, pytest.mark.services]

STUDIES = 10


@pytest.fixture
def rabbitmq(tmp_path: Path, sqlite_template: Path, tiny_checkpoint: Path, pacs: Pacs,
             postgres_schemas: PostgresSchemas) -> Iterator[Stack]:
    from kombu import Connection
    from sqlalchemy.engine import make_url

    url = make_url(RABBITMQ_URL.replace("amqp://", "postgresql://", 1))
    require_port(url.host or "127.0.0.1", url.port or 5672, "RabbitMQ")
    stack = make_stack(tmp_path, sqlite_template, RABBITMQ_URL, tiny_checkpoint, pacs,
                       queued_deadline_seconds=600.0, database_url=postgres_schemas.create())
    yield stack
    stack.stop_all()
    prefix = stack.env["LUNGPATH_QUEUE_PREFIX"]
    with Connection(RABBITMQ_URL) as connection:
        channel = connection.channel()
        for name in ("analysis", "delivery"):
            channel.queue_delete(prefix + name)


def test_two_workers_analyse_ten_studies_once_each_in_parallel(
        rabbitmq: Stack, study_template: list[Dataset], pacs: Pacs) -> None:
    stack = rabbitmq
    stack.node()
    stack.worker()
    stack.worker()
    studies = [send_study(stack.node_port, study_template) for _ in range(STUDIES)]
    for study_uid in studies:
        study = stack.wait_state(study_uid, "DONE", "FAILED", "NOT_ANALYZABLE")
        assert study.state == "DONE", study.reason
        assert study.attempts == 1
        assert len(stack.results(study_uid)) == 1
        assert stack.count_events(study_uid, "study.processing") == 1
    for study_uid in studies:
        stack.wait_delivered(study_uid, pacs, ALL_KINDS)
    jobs = stack.jobs()
    assert len(jobs) == STUDIES
    spans = [(j.started_at, j.ended_at) for j in jobs]
    assert all(start is not None and end is not None for start, end in spans)
    overlapping = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:]
                   if a[0] < b[1] and b[0] < a[1]]  # type: ignore[operator]
    assert overlapping, "no two analyses ran at the same time"
