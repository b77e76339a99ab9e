"""Redis as the broker, with a real worker: a study comes back as SR, SC and SEG although the
broker was unreachable when it completed and the PACS was down when its result was ready.

The broker is cut by a TCP proxy the test owns (the node reaches Redis only through it); the
shared Redis is never stopped. The test's queues have their own prefix on their own database
number and are deleted at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from tests.conftest import REDIS_URL, require_port
from tests.integration.orchestration import (
    ALL_KINDS,
    Pacs,
    TcpProxy,
    make_stack,
    send_study,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.services]

#: this suite's own database number on the shared Redis
REDIS_DB = 12


@pytest.fixture
def redis_address() -> Iterator[tuple[str, int]]:
    from redis import Redis
    from sqlalchemy.engine import make_url

    url = make_url(REDIS_URL.replace("redis://", "postgresql://", 1))
    host, port = url.host or "127.0.0.1", url.port or 6379
    require_port(host, port, "Redis")
    yield host, port
    client = Redis(host=host, port=port, db=REDIS_DB)
    for key in client.scan_iter("*lp-test-*"):
        client.delete(key)
    client.close()


def test_broker_and_pacs_outages_delay_but_never_lose_a_study(
        tmp_path: Path, sqlite_template: Path, tiny_checkpoint: Path,
        study_template: list[Dataset], pacs: Pacs, redis_address: tuple[str, int]) -> None:
    host, port = redis_address
    proxy = TcpProxy(host, port)
    stack = make_stack(tmp_path, sqlite_template, f"redis://127.0.0.1:{proxy.port}/{REDIS_DB}",
                       tiny_checkpoint, pacs)
    try:
        stack.node()
        stack.worker(LUNGPATH_BROKER_URL=f"redis://{host}:{port}/{REDIS_DB}")
        pacs.stop()
        study_uid = send_study(stack.node_port, study_template)
        # the node cannot send the task: the study waits in COMPLETE, pass after pass
        wait_for(lambda: stack.node_log().count("broker unavailable") >= 2,
                 "two dispatcher passes without the broker", stack)
        (row,) = stack.audit_cli("studies", "--study", study_uid)
        assert row["state"] == "COMPLETE"
        proxy.start()
        study = stack.wait_state(study_uid, "DONE", "FAILED", "NOT_ANALYZABLE")
        assert study.state == "DONE", study.reason
        # the PACS is down: attempts fail and are retried with back-off, each one audited
        wait_for(lambda: stack.count_events(study_uid, "delivery.failed") >= 3,
                 "failed delivery attempts", stack)
        pacs.start()
        stack.wait_delivered(study_uid, pacs, ALL_KINDS)
        events = stack.audit_cli("events", "--study", study_uid)
        failed = [e for e in events if e["event_type"] == "delivery.failed"]
        assert failed and all(e["outcome"] == "minor_failure" for e in failed)
        assert [e["event_type"] for e in events].count("delivery.sent") == 3
        assert len(stack.results(study_uid)) == 1
    finally:
        stack.stop_all()
        proxy.stop()
