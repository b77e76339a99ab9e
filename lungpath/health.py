"""Health and metrics endpoints of the node and the worker.

``/healthz`` answers 200 while the process serves requests (liveness). ``/readyz`` runs the
readiness checks — database, broker, store — and answers 200 only when all pass, 503 with the
failing check and its reason otherwise, so an orchestrator stops routing work to a node that
cannot store it. ``/metrics`` is the Prometheus text format of the process's registry.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine, text

from lungpath.settings import Settings

logger = logging.getLogger(__name__)

#: A readiness check raises (any exception) when its dependency is not usable.
Check = Callable[[], None]


def database_check(engine: Engine) -> Check:
    """The audit database answers a trivial query."""

    def check() -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    return check


def broker_check(broker_url: str, timeout: float = 2.0) -> Check:
    """The Celery broker accepts a connection (kombu, so every supported transport works)."""

    def check() -> None:
        from kombu import Connection

        with Connection(broker_url, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)

    return check


def store_check(store: Path, min_free_mb: int) -> Check:
    """The store folder exists, is writable and has the free space the node requires."""

    def check() -> None:
        if not os.access(store, os.W_OK | os.X_OK):
            raise OSError(f"store {str(store)!r} is not writable")
        free_mb = shutil.disk_usage(store).free // (1024 * 1024)
        if free_mb < min_free_mb:
            raise OSError(f"{free_mb} MB free in the store, below min_free_disk_mb={min_free_mb}")

    return check


@dataclass(frozen=True)
class Readiness:
    """The outcome of the readiness checks: ``failures`` maps a check's name to its reason."""

    failures: dict[str, str]

    @property
    def ready(self) -> bool:
        return not self.failures


def run_checks(checks: Mapping[str, Check]) -> Readiness:
    """Run every check; a failing one is reported by name with its exception text."""
    failures: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
        except Exception as e:  # a readiness probe reports any failure, it never raises
            failures[name] = f"{type(e).__name__}: {e}".strip()
    return Readiness(failures)


class HealthServer:
    """A small HTTP server in a daemon thread serving /healthz, /readyz and /metrics."""

    def __init__(
        self,
        host: str,
        port: int,
        checks: Mapping[str, Check],
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self._checks = dict(checks)
        self._registry = registry
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="lungpath-health", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked for)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        logger.info("health and metrics endpoints on port %d", self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    self._send(200, "application/json", b'{"status": "ok"}\n')
                elif self.path == "/readyz":
                    readiness = run_checks(server._checks)
                    body = {"ready": readiness.ready, "failures": readiness.failures}
                    self._send(200 if readiness.ready else 503, "application/json",
                               (json.dumps(body) + "\n").encode())
                elif self.path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(server._registry))
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                logger.debug("health endpoint: " + format, *args)

        return Handler


def start_health_server(settings: Settings, engine: Engine) -> HealthServer | None:
    """Start the endpoints on ``settings.metrics_port`` (None: not configured) for a node
    or a worker: readiness needs the database, the broker and the store."""
    if settings.metrics_port is None:
        return None
    from lungpath.metrics import database_registry

    server = HealthServer(
        settings.host,
        settings.metrics_port,
        {"database": database_check(engine), "broker": broker_check(settings.broker),
         "store": store_check(settings.store_path, settings.min_free_disk_mb)},
        registry=database_registry(engine),
    )
    server.start()
    return server
