"""A SQLite database held by another process while eight associations store: every C-STORE is
answered before the association's timeouts, 0x0000 with its row or 0xA700 "database busy"
without one (scp_node/config.py ``database_wait``, db/engine.py)."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy import select
from sqlalchemy.engine import make_url

from db.engine import create_engine_for, transaction
from db.models import Instance
from tests.hardening.conftest import Reliability
from tests.scp_node.support import CT, associate, ct_slice, running_scp, scp_config

ASSOCIATIONS = 8
PER_ASSOCIATION = 3
#: The node's network and DIMSE timeouts here (database_wait: 3 s); the peers wait no longer.
TIMEOUT_S = 12.0


@dataclass(frozen=True)
class Answer:
    sop_instance_uid: str
    status: int | None
    comment: str


def test_every_store_is_answered_while_another_process_holds_the_database(
        node_db: str, tmp_path: Path, reliability: Reliability) -> None:
    config = scp_config(node_db, tmp_path / "store", network_timeout=TIMEOUT_S,
                        dimse_timeout=TIMEOUT_S, max_associations=ASSOCIATIONS)
    answers: list[Answer] = []
    answered = threading.Event()

    def send(assoc_index: int) -> None:
        assoc = associations[assoc_index]
        assoc.dimse_timeout = TIMEOUT_S  # an answer later than the node's own timeout is lost
        study = f"1.2.826.0.13.70.{assoc_index}"
        for i in range(PER_ASSOCIATION):
            ds = ct_slice(study, f"{study}.1", i)
            # an association the peer aborted (no answer in time) answers nothing more
            rsp = assoc.send_c_store(ds) if assoc.is_established else Dataset()
            answers.append(Answer(str(ds.SOPInstanceUID), rsp.get("Status"),
                                  str(rsp.get("ErrorComment", ""))))
            answered.set()
        if assoc.is_established:
            assoc.release()

    with running_scp(config) as scp:
        # established first: the association rows are written before the database is taken
        associations = [associate(scp.port, [(CT, [ExplicitVRLittleEndian])])
                        for _ in range(ASSOCIATIONS)]
        other = sqlite3.connect(str(make_url(node_db).database), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        senders = [threading.Thread(target=send, args=(i,)) for i in range(ASSOCIATIONS)]
        for sender in senders:
            sender.start()
        # held until the node answered someone: without a bound on its wait, never in time
        answered.wait(2 * TIMEOUT_S)
        other.execute("ROLLBACK")
        other.close()
        for sender in senders:
            sender.join()

    engine = create_engine_for(node_db)
    with transaction(engine) as session:
        rows = set(session.scalars(select(Instance.sop_instance_uid)))
    engine.dispose()
    busy = [a for a in answers if a.status == 0xA700]
    stored = [a for a in answers if a.status == 0x0000]
    assert len(answers) == ASSOCIATIONS * PER_ASSOCIATION
    assert sorted({a.status for a in answers}, key=str) == [0x0000, 0xA700], [
        (a.status, a.comment) for a in answers]
    assert {a.comment for a in busy} == {"database busy"}
    assert {a.sop_instance_uid for a in stored} == rows  # no ack without its row, no row lost
    assert not {a.sop_instance_uid for a in busy} & rows
    reliability.record("SQLite database held by another process while 8 associations store",
                       group="fault matrix", inputs=len(answers),
                       outcome=f"0xA700 'database busy' x{len(busy)} while held, 0x0000 "
                       f"x{len(stored)} (each with its row); every request answered")
