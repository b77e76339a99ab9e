"""/healthz, /readyz and /metrics of a running node and a running worker (processes), and
readiness turning false while the database is unreachable (a TCP proxy the test owns stands
in front of PostgreSQL)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import free_port
from tests.db.databases import PostgresSchemas, postgres_schemas, sqlite_template
from tests.integration.orchestration import Stack, TcpProxy, make_stack, tiny_checkpoint, wait_for

__all__ = ["postgres_schemas", "sqlite_template", "tiny_checkpoint"]


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=15) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


@pytest.fixture
def proxy(postgres_schemas: PostgresSchemas) -> Iterator[tuple[TcpProxy, str]]:
    url = make_url(postgres_schemas.create(migrated=True))
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    proxy.start()
    yield proxy, url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    proxy.stop()


@pytest.fixture
def stack(tmp_path: Path, sqlite_template: Path, tiny_checkpoint: Path,
          proxy: tuple[TcpProxy, str]) -> Iterator[Stack]:
    stack = make_stack(tmp_path, sqlite_template, f"sqla+sqlite:///{tmp_path / 'broker.db'}",
                       tiny_checkpoint, None, database_url=proxy[1])
    yield stack
    stack.stop_all()


def _ready(port: int) -> tuple[int, dict[str, object]]:
    status, body = _get(port, "/readyz")
    return status, json.loads(body) if status else {}


def test_node_and_worker_endpoints_follow_the_database(
    stack: Stack, proxy: tuple[TcpProxy, str]
) -> None:
    node_port, worker_port = free_port(), free_port()
    stack.env["LUNGPATH_METRICS_PORT"] = str(node_port)
    stack.node()
    stack.worker(LUNGPATH_METRICS_PORT=str(worker_port))
    for port in (node_port, worker_port):
        wait_for(lambda port=port: _get(port, "/healthz")[0] == 200, f"/healthz on {port}", stack)
        assert _ready(port) == (200, {"ready": True, "failures": {}})
        status, metrics = _get(port, "/metrics")
        assert status == 200 and 'lungpath_studies{state="RECEIVING"} 0.0' in metrics

    proxy[0].stop()  # the database is now unreachable for both processes
    for port in (node_port, worker_port):
        status, answer = _ready(port)
        assert status == 503 and set(answer["failures"]) == {"database"}  # type: ignore[arg-type]
        assert _get(port, "/healthz")[0] == 200  # alive, just not ready

    proxy[0].start()
    for port in (node_port, worker_port):
        wait_for(lambda port=port: _ready(port)[0] == 200, f"ready again on {port}", stack)
