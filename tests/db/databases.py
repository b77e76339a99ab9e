"""Every database test runs on SQLite and on PostgreSQL (``backend`` parameter).

Each test gets an empty, migrated database of its own: on SQLite a copy of a migrated file,
on PostgreSQL ``CREATE DATABASE ... TEMPLATE`` of a migrated database made once per run
(``lungpath_test_<random>``), dropped at the end. PostgreSQL down: skipped locally, failed
in CI (tests.conftest.unavailable).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from db.engine import create_engine_for
from db.migrations import upgrade
from tests.conftest import POSTGRES_URL, require_port

BACKENDS = ["sqlite", "postgresql"]


def _admin_dsn() -> str:
    url = make_url(POSTGRES_URL)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


class PostgresDatabases:
    """Creates throw-away databases on the test server and drops them all at the end."""

    def __init__(self) -> None:
        self.prefix = f"lungpath_test_{uuid.uuid4().hex[:10]}"
        self.created: list[str] = []
        self.template: str | None = None

    def _execute(self, sql: str) -> None:
        with psycopg.connect(_admin_dsn(), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def url(self, name: str) -> str:
        return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

    def create(self, *, migrated: bool = True) -> str:
        """A new database: a copy of the migrated template, or empty."""
        if migrated and self.template is None:
            self.template = self.create(migrated=False)
            upgrade(self.url(self.template))
        name = f"{self.prefix}_{len(self.created)}"
        template = f" TEMPLATE {self.template}" if migrated else " TEMPLATE template0"
        self._execute(f"CREATE DATABASE {name}{template}")
        self.created.append(name)
        return name

    def drop_all(self) -> None:
        for name in reversed(self.created):
            self._execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    url = make_url(POSTGRES_URL)
    require_port(url.host or "127.0.0.1", url.port or 5432, "PostgreSQL")
    databases = PostgresDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "lungpath.db"
    upgrade(f"sqlite:///{path}")
    return path


def fresh_url(request: pytest.FixtureRequest, backend: str, folder: Path,
              *, migrated: bool = True) -> str:
    """The URL of a new database in ``folder`` (SQLite) or on the server, on ``backend``."""
    if backend == "sqlite":
        path = folder / "lungpath.db"
        if migrated:
            shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    return databases.url(databases.create(migrated=migrated))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """A migrated, empty database of this test's own."""
    return fresh_url(request, backend, tmp_path)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = create_engine_for(db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def shared_engine(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One migrated database for a whole module, for tests that keep to their own study UIDs
    (creating a PostgreSQL database per test would dominate the run time)."""
    url = fresh_url(request, str(request.param), tmp_path_factory.mktemp("shared"))
    engine = create_engine_for(url)
    yield engine
    engine.dispose()
