"""Shared fixtures: free ports, and the rule for tests that need a service or a tool.

Locally a missing PostgreSQL, Redis, RabbitMQ, dcmtk, dicom3tools or Orthanc skips the test
with the reason; in CI (``LUNGPATH_TEST_REQUIRE_SERVICES=1``) it fails, so a missing piece is
never hidden behind a skip.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

REQUIRE_SERVICES = os.environ.get("LUNGPATH_TEST_REQUIRE_SERVICES") == "1"
REPO_ROOT = Path(__file__).resolve().parent.parent

POSTGRES_URL = os.environ.get(
    "LUNGPATH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("LUNGPATH_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
RABBITMQ_URL = os.environ.get("LUNGPATH_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


def unavailable(reason: str) -> None:
    """Skip locally, fail in CI: the missing service or tool is named either way."""
    if REQUIRE_SERVICES:
        pytest.fail(f"required by LUNGPATH_TEST_REQUIRE_SERVICES=1: {reason}")
    pytest.skip(reason)


def require_tool(name: str) -> str:
    """The path of the external program ``name`` (dcmtk, dicom3tools, Orthanc)."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed (apt-get install dcmtk dicom3tools orthanc)")
    assert path is not None
    return path


def require_port(host: str, port: int, what: str) -> None:
    """Check that a service answers on host:port."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as e:
        unavailable(f"{what} does not answer on {host}:{port} ({e})")


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No LUNGPATH_* variables from the caller's shell; cwd in a fresh folder."""
    for key in list(os.environ):
        if key.startswith("LUNGPATH_") and not key.startswith("LUNGPATH_TEST_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
