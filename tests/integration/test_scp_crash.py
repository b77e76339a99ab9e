"""Crash safety: SIGKILL the node in the middle of a 200-instance transfer, restart it.

Every instance acknowledged before the kill is on disk and in the database, the temporary
file of the interrupted one is gone after the restart, and sending the whole series again
completes the study without a duplicate row or file.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy import select

from db.engine import create_engine_for, transaction
from db.models import Instance
from scp_node.storage import INCOMING
from tests.conftest import free_port
from tests.scp_node.support import (
    CT,
    associate,
    ct_slice,
    instance_count,
    node_db,
    node_process,
    sqlite_template,
    stored_files,
)

__all__ = ["node_db", "sqlite_template"]

STUDY, SERIES = "1.2.826.0.5.1", "1.2.826.0.5.1.1"
KILL_AFTER = 80


def _send_until_failure(port: int, slices: list, acknowledged: list[str],  # type: ignore[type-arg]
                        on_ack: threading.Event) -> None:
    assoc = associate(port, [(CT, [ExplicitVRLittleEndian])])
    assert assoc.is_established
    for ds in slices:
        status = assoc.send_c_store(ds)
        if "Status" not in status or status.Status != 0x0000:
            break
        acknowledged.append(ds.SOPInstanceUID)
        if len(acknowledged) >= KILL_AFTER:
            on_ack.set()
    assoc.release()


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_instance(node_db: str, tmp_path: Path) -> None:
    var, port = tmp_path / "var", free_port()
    slices = [ct_slice(STUDY, SERIES, i) for i in range(200)]
    acknowledged: list[str] = []
    reached = threading.Event()
    with node_process(var, node_db, port) as node:
        sender = threading.Thread(target=_send_until_failure,
                                  args=(port, slices, acknowledged, reached))
        sender.start()
        assert reached.wait(120), "the node never acknowledged enough instances"
        os.kill(node.pid, signal.SIGKILL)  # while the next C-STORE is on its way
        node.wait()
        sender.join(60)
    assert KILL_AFTER <= len(acknowledged) < len(slices)

    store = var / "store"
    engine = create_engine_for(node_db)
    with transaction(engine) as session:
        in_db = set(session.scalars(select(Instance.sop_instance_uid)))
    on_disk = {p.stem for p in stored_files(store)}
    assert set(acknowledged) <= in_db
    assert set(acknowledged) <= on_disk

    with node_process(var, node_db, port):
        assert list((store / INCOMING).iterdir()) == []  # the restart removed temporaries
        assoc = associate(port, [(CT, [ExplicitVRLittleEndian])])
        statuses = {assoc.send_c_store(ds).Status for ds in slices}
        assoc.release()
    assert statuses == {0x0000}
    assert instance_count(engine, STUDY) == len(slices)
    files = stored_files(store)
    assert len(files) == len(slices)
    assert {p.stem for p in files} == {ds.SOPInstanceUID for ds in slices}
