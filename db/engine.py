"""Engines and transactions for SQLite (embedded) and PostgreSQL (production).

SQLite is tuned for several processes writing one file: WAL (readers never block the
writer), a busy timeout, foreign keys on, and every transaction opened with ``BEGIN
IMMEDIATE`` so that the write lock is taken up front. With SQLite's default deferred
transactions, two connections that both read and then write deadlock on the upgrade and one
fails at once with "database is locked", whatever the timeout; taken up front, writers wait
their turn on the busy timeout instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

#: How long a SQLite writer waits for the lock before giving up, in milliseconds.
SQLITE_BUSY_TIMEOUT_MS = 60_000


def normalise_url(url: str) -> str:
    """Map ``postgresql://`` to the psycopg 3 driver; refuse back ends lungpath does not support."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "sqlite":
        return url
    raise ValueError(f"url: unsupported database {backend!r}; use sqlite:// or postgresql://")


def create_engine_for(url: str, *, read_only: bool = False) -> Engine:
    """An engine for ``url`` set up as described in the module docstring.

    ``read_only`` opens SQLite files with ``mode=ro`` and makes every PostgreSQL transaction
    read-only (``default_transaction_read_only``): audit queries cannot change anything even
    by mistake.
    """
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url, read_only)
    if read_only:
        parsed = make_url(url)
        options = parsed.query.get("options", "")
        assert isinstance(options, str)
        options = f"{options} -c default_transaction_read_only=on".strip()
        url = parsed.update_query_dict({"options": options}).render_as_string(
            hide_password=False)
    return create_engine(url, pool_pre_ping=True)


def _sqlite_engine(url: str, read_only: bool) -> Engine:
    parsed = make_url(url)
    database = parsed.database or ""
    if read_only:
        if not database or database == ":memory:":
            raise ValueError("url: a read-only SQLite connection needs a database file")
        url = f"sqlite:///file:{database}?mode=ro&uri=true"
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below decide how a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not read_only:
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before it returns. The node acknowledges an instance
            # only after its row is committed (DESIGN.md); NORMAL could lose that row on a
            # power cut while the sender believes the instance stored.
            cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


@contextmanager
def transaction(engine_or_sessionmaker: Engine | sessionmaker[Session]) -> Iterator[Session]:
    """One session in one transaction: committed if the block ends normally, else rolled back."""
    session = (
        # a Session, not a new sessionmaker: each sessionmaker makes a Session subclass
        Session(engine_or_sessionmaker, expire_on_commit=False)
        if isinstance(engine_or_sessionmaker, Engine)
        else engine_or_sessionmaker()
    )
    with session, session.begin():
        yield session


def upsert_insert(session: Session) -> Any:
    """The dialect's ``insert`` (with ``on_conflict_do_nothing``) for ``session``'s back end."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
