"""Database fixtures: every database test runs on SQLite and on PostgreSQL (``backend``).

Each test gets an empty, migrated database of its own: on SQLite a copy of a migrated file;
on PostgreSQL a schema of its own (``search_path`` in the URL) inside one database created
for the run (``lungpath_test_<random>``) and dropped at its end. One database and many
schemas, because every DROP DATABASE forces a checkpoint of the whole server. Test
connections set ``synchronous_commit=off``: a commit does not wait for the disk, which changes
durability after a server crash and nothing a test observes. PostgreSQL down: skipped
locally, failed in CI (tests.conftest.unavailable).

Imported by tests/db/conftest.py and by the CLI tests, which need the same databases.
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


def _dsn(database: str | None = None) -> str:
    url = make_url(POSTGRES_URL).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


class PostgresSchemas:
    """One throw-away database for the run; one schema in it per test."""

    def __init__(self) -> None:
        self.database = f"lungpath_test_{uuid.uuid4().hex[:10]}"
        self.count = 0
        with psycopg.connect(_dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {self.database}")

    def create(self, *, migrated: bool = True) -> str:
        """The URL of a new schema, migrated or empty."""
        self.count += 1
        schema = f"t{self.count}"
        with psycopg.connect(_dsn(self.database), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = make_url(POSTGRES_URL).set(database=self.database).update_query_dict(
            {"options": f"-csearch_path={schema} -csynchronous_commit=off"}
        ).render_as_string(hide_password=False)
        if migrated:
            upgrade(url)
        return url

    def drop(self) -> None:
        with psycopg.connect(_dsn(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")


@pytest.fixture(scope="session")
def postgres_schemas() -> Iterator[PostgresSchemas]:
    url = make_url(POSTGRES_URL)
    require_port(url.host or "127.0.0.1", url.port or 5432, "PostgreSQL")
    schemas = PostgresSchemas()
    yield schemas
    schemas.drop()


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
        else:
            path.touch()  # an empty database, as a fresh server's would be
        return f"sqlite:///{path}"
    schemas: PostgresSchemas = request.getfixturevalue("postgres_schemas")
    return schemas.create(migrated=migrated)


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
    """One migrated database for a whole module, for tests that keep to their own study UIDs."""
    url = fresh_url(request, str(request.param), tmp_path_factory.mktemp("shared"))
    engine = create_engine_for(url)
    yield engine
    engine.dispose()
