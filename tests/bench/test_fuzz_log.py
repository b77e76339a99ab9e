"""The fuzz bench's reading of the node's log: a traceback is a crash unless it ends in
``DatabaseBusy`` (a defined answer, 0xA700, whose audit could not be written meanwhile)."""

from __future__ import annotations

import io
import logging
import sqlite3
from pathlib import Path

import pytest

from bench.fuzz import logged_failures
from db.engine import DatabaseBusy, bounded_wait, create_engine_for, transaction
from db.migrations import upgrade


def _log_of(*failures: BaseException) -> str:
    """What ``logger.exception`` writes for each failure, in the node's format."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger = logging.getLogger("test_fuzz_log")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for failure in failures:
            try:
                raise failure
            except BaseException:
                logger.exception("could not audit a refused instance")
            logger.warning("instance refused status=0xA700 reason='database busy'")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def _database_busy(tmp_path: Path) -> DatabaseBusy:
    """The real thing: a bounded transaction on a database another connection holds."""
    url = f"sqlite:///{tmp_path / 'lungpath.db'}"
    upgrade(url)
    engine = create_engine_for(url)
    other = sqlite3.connect(tmp_path / "lungpath.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseBusy) as raised, \
                transaction(bounded_wait(engine, 0.1)) as session:
            session.connection()
    finally:
        other.close()
        engine.dispose()
    return raised.value


def test_database_busy_tracebacks_are_counted_apart_from_crashes(tmp_path: Path) -> None:
    busy = _database_busy(tmp_path)
    log = _log_of(busy, KeyError("x"), busy)
    assert log.count("Traceback") >= 3  # the busy ones chain SQLite's error
    assert logged_failures(log) == {"database busy": 2, "other": 1}


def test_a_log_without_tracebacks_has_no_failures() -> None:
    assert logged_failures("2026-01-01 00:00:00,000 WARNING x abort\n") == {}
