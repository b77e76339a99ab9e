from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy
from prometheus_client import CollectorRegistry, Counter

from lungpath.health import HealthServer, broker_check, database_check, store_check
from tests.conftest import free_port


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def database(tmp_path: Path) -> sqlalchemy.Engine:
    return sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")


@pytest.fixture
def server(tmp_path: Path, database: sqlalchemy.Engine) -> Iterator[HealthServer]:
    registry = CollectorRegistry()
    Counter("lungpath_test_instances", "instances", registry=registry).inc(3)
    health = HealthServer(
        "127.0.0.1", 0,
        {"database": database_check(database), "store": store_check(tmp_path, 0),
         "broker": broker_check(f"sqla+sqlite:///{tmp_path / 'broker.db'}")},
        registry=registry,
    )
    health.start()
    yield health
    health.stop()


def test_liveness_readiness_and_metrics(server: HealthServer) -> None:
    assert _get(server.port, "/healthz") == (200, '{"status": "ok"}\n')
    status, body = _get(server.port, "/readyz")
    assert status == 200 and json.loads(body) == {"ready": True, "failures": {}}
    status, body = _get(server.port, "/metrics")
    assert status == 200 and "lungpath_test_instances_total 3.0" in body
    assert _get(server.port, "/nope")[0] == 404


def test_not_ready_when_the_database_is_unreachable(tmp_path: Path) -> None:
    # a PostgreSQL URL on a port where nothing listens
    engine = sqlalchemy.create_engine(
        f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
        connect_args={"connect_timeout": 2},
    )
    health = HealthServer("127.0.0.1", 0, {"database": database_check(engine),
                                           "store": store_check(tmp_path, 0)})
    health.start()
    try:
        status, body = _get(health.port, "/readyz")
    finally:
        health.stop()
    answer = json.loads(body)
    assert status == 503 and answer["ready"] is False
    assert set(answer["failures"]) == {"database"}
    assert "OperationalError" in answer["failures"]["database"]


def test_not_ready_when_the_broker_is_unreachable(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as probe:  # nothing listens on port
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    health = HealthServer("127.0.0.1", 0,
                          {"broker": broker_check(f"redis://127.0.0.1:{port}/0", timeout=1)})
    health.start()
    try:
        status, body = _get(health.port, "/readyz")
    finally:
        health.stop()
    assert status == 503 and "broker" in json.loads(body)["failures"]


def test_store_check_reports_low_disk(tmp_path: Path) -> None:
    with pytest.raises(OSError, match="below min_free_disk_mb"):
        store_check(tmp_path, 10**12)()
