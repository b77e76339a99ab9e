"""Engines and transactions for SQLite (embedded) and PostgreSQL (production).

SQLite is tuned for several processes writing one file: WAL (readers never block the
writer), a busy timeout, foreign keys on, and every transaction opened with ``BEGIN
IMMEDIATE`` so that the write lock is taken up front. With SQLite's default deferred
transactions, two connections that both read and then write deadlock on the upgrade and one
fails at once with "database is locked", whatever the timeout; taken up front, writers wait
their turn on the busy timeout instead.

SQLite's busy handler does not keep turns, though: a connection that finds the file locked
sleeps (1 ms, then longer, up to 100 ms) and tries again, and whoever tries while the lock is
free gets it. Threads of one process that commit and begin again at once keep winning, and
one writer can wait out the whole busy timeout while the others make progress (eight
associations of one node on a loaded machine showed it). So the writers of one process queue
for each SQLite file on a ``WriteQueue``, served in arrival order: a transaction takes its
place at ``BEGIN`` and leaves at ``COMMIT`` or ``ROLLBACK``. Only the head of the queue meets
the busy handler, and there it waits only for other processes (workers, the CLI).

Every transaction waits at most a set time for the lock, queue and busy handler together:
``SQLITE_BUSY_TIMEOUT_MS``, or less on an engine made by ``bounded_wait``; past it,
``DatabaseBusy``. On PostgreSQL, where writers lock rows and not the database, a bounded
wait is the transaction's ``lock_timeout``.
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

#: How long a transaction waits for the database's write lock before giving up, in
#: milliseconds, unless its engine says less (``bounded_wait``).
SQLITE_BUSY_TIMEOUT_MS = 60_000

#: The execution option that carries an engine's bounded wait, in seconds.
_WAIT_OPTION = "lungpath_wait_s"
#: PostgreSQL's SQLSTATE for a lock not obtained within ``lock_timeout``.
_LOCK_NOT_AVAILABLE = "55P03"


class DatabaseBusy(OperationalError):
    """A lock was not obtained within the transaction's wait: the database works, but others
    hold it. The caller answers "try again later" (the Storage SCP: 0xA700)."""


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
    return _postgresql_engine(url)


def bounded_wait(engine: Engine, seconds: float) -> Engine:
    """``engine`` (the same pool and connections) whose transactions wait at most ``seconds``
    for the database's locks, then raise ``DatabaseBusy``.

    For a caller that must answer someone in time whatever the database is doing: the
    Storage SCP answers each C-STORE before the association's timeouts.
    """
    if not seconds > 0:
        raise ValueError(f'Argument "seconds" must be > 0, got {seconds}.')
    return engine.execution_options(**{_WAIT_OPTION: seconds})


def _wait_s(connection: Connection) -> float:
    return float(connection.get_execution_options().get(_WAIT_OPTION,
                                                        SQLITE_BUSY_TIMEOUT_MS / 1000))


def _postgresql_engine(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True)

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if _WAIT_OPTION in connection.get_execution_options():
            wait_ms = math.ceil(_wait_s(connection) * 1000)
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = {wait_ms}")

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> DatabaseBusy | None:
        if getattr(context.original_exception, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
            return None
        return DatabaseBusy(context.statement, context.parameters,
                            context.original_exception)

    return engine


class WriteQueue:
    """A lock handed out in arrival order, with a timeout: the writers of one process on one
    SQLite file (see the module docstring)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._waiting: deque[object] = deque()
        self._held = False

    @property
    def waiting(self) -> int:
        """How many writers wait for their turn now."""
        with self._changed:
            return len(self._waiting)

    def acquire(self, timeout: float) -> bool:
        """Wait for this caller's turn; False if ``timeout`` seconds passed first."""
        ticket = object()
        with self._changed:
            self._waiting.append(ticket)
            try:
                granted = self._changed.wait_for(
                    lambda: not self._held and self._waiting[0] is ticket, timeout)
            finally:
                self._waiting.remove(ticket)
                self._changed.notify_all()  # whoever is first now may go
            if granted:
                self._held = True
            return granted

    def release(self) -> None:
        """End the holder's turn."""
        with self._changed:
            self._held = False
            self._changed.notify_all()


_queues: dict[str, WriteQueue] = {}
_queues_lock = threading.Lock()


def write_queue(database: str) -> WriteQueue:
    """This process's queue of writers for the SQLite file ``database``."""
    return _queue(os.path.realpath(database))


def _queue(real_path: str) -> WriteQueue:
    with _queues_lock:
        return _queues.setdefault(real_path, WriteQueue())


def _forget_queues() -> None:
    """In a forked child: no thread of the parent's holds or waits for a turn here."""
    global _queues_lock
    _queues_lock = threading.Lock()
    _queues.clear()


os.register_at_fork(after_in_child=_forget_queues)


class _QueuedConnection(sqlite3.Connection):
    """A SQLite connection that leaves its write queue when its transaction ends (commit,
    rollback or close, whichever SQLAlchemy or the pool calls)."""

    _turn: WriteQueue | None = None

    def hold(self, queue: WriteQueue) -> None:
        """Record that this connection's transaction holds ``queue``'s turn."""
        self._turn = queue

    def leave(self) -> None:
        """Give the turn back, if this connection holds one."""
        turn, self._turn = self._turn, None
        if turn is not None:
            turn.release()

    def commit(self) -> None:
        self._end(super().commit)

    def rollback(self) -> None:
        self._end(super().rollback)

    def close(self) -> None:
        self._end(super().close)

    def _end(self, how: Callable[[], None]) -> None:
        try:
            how()
        finally:
            # a COMMIT that failed leaves the transaction open: the turn goes with its ROLLBACK
            try:
                ended = not self.in_transaction
            except sqlite3.ProgrammingError:  # closed
                ended = True
            if ended:
                self.leave()


def _sqlite_engine(url: str, read_only: bool) -> Engine:
    parsed = make_url(url)
    database = parsed.database or ""
    if read_only:
        if not database or database == ":memory:":
            raise ValueError("url: a read-only SQLite connection needs a database file")
        url = f"sqlite:///file:{database}?mode=ro&uri=true"
    queued = not read_only and database not in ("", ":memory:")
    real_path = os.path.realpath(database)
    connect_args: dict[str, Any] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    options: dict[str, Any] = {}
    if queued:
        connect_args["factory"] = _QueuedConnection
        # threads wait for their turn in the queue, in order and bounded; waiting for a pool
        # connection first (QueuePool's 5 + 10, then 30 s) would be neither
        options["max_overflow"] = -1
    engine = create_engine(url, connect_args=connect_args, **options)

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
    def _on_begin(connection: Connection) -> None:
        if read_only:
            connection.exec_driver_sql("BEGIN")
        elif queued:
            _begin_queued(connection, real_path)
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _begin_queued(connection: Connection, real_path: str) -> None:
    """``BEGIN IMMEDIATE`` in this process's turn, within the connection's wait."""
    wait = _wait_s(connection)
    deadline = time.monotonic() + wait
    dbapi_connection = connection.connection.dbapi_connection
    assert isinstance(dbapi_connection, _QueuedConnection)
    queue = _queue(real_path)
    if not queue.acquire(wait):
        raise DatabaseBusy("BEGIN IMMEDIATE", None, sqlite3.OperationalError(
            f"database busy: no turn for the write lock within {wait:g} s "
            f"({queue.waiting} more writers of this process wait)"))
    dbapi_connection.hold(queue)
    try:
        # the busy handler (other processes) gets what is left of the wait
        remaining_ms = max(0, math.ceil((deadline - time.monotonic()) * 1000))
        dbapi_connection.execute(f"PRAGMA busy_timeout={remaining_ms}")
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    except OperationalError as e:
        dbapi_connection.leave()
        if getattr(e.orig, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
            raise DatabaseBusy("BEGIN IMMEDIATE", None, e.orig) from e
        raise
    except BaseException:
        dbapi_connection.leave()
        raise


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
