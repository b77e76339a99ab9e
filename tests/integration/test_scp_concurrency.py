"""Concurrent associations lose nothing: the database counts match the files on disk.

Eight associations of 100 instances each into two studies at once (SQLite: one writer at a
time; PostgreSQL: row locks on the study), and two receiving processes sharing one port
through SO_REUSEPORT.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from db.engine import create_engine_for
from db.events import EventType
from tests.conftest import free_port
from tests.scp_node.support import (
    CT,
    associate,
    audit_events,
    ct_slice,
    instance_count,
    node_db,
    node_process,
    postgres_db,
    postgres_schemas,
    running_scp,
    scp_config,
    sqlite_template,
    stored_files,
)

__all__ = ["node_db", "postgres_db", "postgres_schemas", "sqlite_template"]

STUDIES = ("1.2.826.0.6.1", "1.2.826.0.6.2")


def _send_series(port: int, index: int, count: int) -> list[int]:
    """One association sending ``count`` slices of its own series; the statuses."""
    study = STUDIES[index % len(STUDIES)]
    assoc = associate(port, [(CT, [ExplicitVRLittleEndian])])
    assert assoc.is_established
    statuses = [int(assoc.send_c_store(ct_slice(study, f"{study}.{index}", i)).Status)
                for i in range(count)]
    assoc.release()
    return statuses


def _send_concurrently(port: int, associations: int, count: int) -> list[int]:
    with ThreadPoolExecutor(associations) as pool:
        results = pool.map(_send_series, [port] * associations, range(associations),
                           [count] * associations)
        return [status for statuses in results for status in statuses]


def _check_counts(db_url: str, store: Path, associations: int, count: int) -> None:
    engine = create_engine_for(db_url)
    total = associations * count
    assert instance_count(engine) == total == len(stored_files(store))
    per_study = {s: instance_count(engine, s) for s in STUDIES}
    assert sum(per_study.values()) == total and min(per_study.values()) > 0
    closed = audit_events(engine, EventType.ASSOCIATION_CLOSED)
    stores = [e.detail["accepted"] for e in closed if e.detail and e.detail["accepted"]]
    assert stores == [count] * associations  # the others are the readiness C-ECHOs
    engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize(("database", "associations", "count"),
                         [("node_db", 8, 100), ("postgres_db", 4, 25)])
def test_concurrent_associations_lose_nothing(request: pytest.FixtureRequest, tmp_path: Path,
                                              database: str, associations: int,
                                              count: int) -> None:
    db_url = request.getfixturevalue(database)
    store = tmp_path / "store"
    with running_scp(scp_config(db_url, store, max_associations=associations)) as scp:
        statuses = _send_concurrently(scp.port, associations, count)
    assert statuses == [0x0000] * (associations * count)
    _check_counts(db_url, store, associations, count)


def _listeners(port: int) -> int:
    """How many sockets listen on 127.0.0.1:``port`` (``/proc/net/tcp``, state 0A)."""
    local = f"0100007F:{port:04X}"
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(1 for line in lines if line.split()[1] == local and line.split()[3] == "0A")


@pytest.mark.slow
def test_two_receiving_processes_share_the_port(node_db: str, tmp_path: Path) -> None:
    port = free_port()
    with node_process(tmp_path / "var", node_db, port, receivers="2"):
        # the first receiver answers the readiness C-ECHO; the second may still be starting
        deadline = time.monotonic() + 60
        while _listeners(port) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _listeners(port) == 2
        statuses = _send_concurrently(port, 4, 25)
    assert statuses == [0x0000] * 100
    _check_counts(node_db, tmp_path / "var" / "store", 4, 25)
