"""Security checks of docs/security.md: the store is not readable by other users, and the
node's logs name instances by UID, never by the patient's name (every level, DEBUG included).
TLS and the AE allow-list are tested with the Storage SCP (tests/integration/test_scp_tls.py,
tests/scp_node/test_server.py); the read-only audit role with the database
(tests/db/test_engine.py, docs/operations.md)."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from tests.hardening.conftest import Reliability
from tests.scp_node.support import CT, associate, ct_slice, running_scp, scp_config

PATIENT = "Confidential^Jane^Q"
STUDY = "1.2.826.0.13.70"


def test_store_files_and_folders_are_not_world_accessible(node_db: str, tmp_path: Path,
                                                          reliability: Reliability) -> None:
    store = tmp_path / "store"
    with running_scp(scp_config(node_db, store)) as scp:
        assoc = associate(scp.port, [(CT, [ExplicitVRLittleEndian])])
        assert assoc.send_c_store(ct_slice(STUDY, f"{STUDY}.1", 0)).Status == 0
        assoc.release()
    paths = [store, *store.rglob("*")]
    assert any(p.suffix == ".dcm" for p in paths)
    loose = {str(p.relative_to(store)): oct(stat.S_IMODE(p.stat().st_mode)) for p in paths
             if p.stat().st_mode & stat.S_IRWXO}
    assert loose == {}
    reliability.record("store files and folders not world-accessible", group="security",
                       inputs=len(paths), outcome="no permission bit for others")


def test_logs_name_uids_never_the_patient(node_db: str, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture,
                                          reliability: Reliability) -> None:
    accepted = ct_slice(STUDY, f"{STUDY}.1", 0)
    refused = ct_slice(STUDY, "1.2.../..", 1)  # refused: its Series UID is invalid
    for ds in (accepted, refused):
        ds.PatientName = PATIENT
        ds.PatientID = "MRN-SECRET-42"
    caplog.set_level(logging.DEBUG)
    with running_scp(scp_config(node_db, tmp_path / "store")) as scp:
        assoc = associate(scp.port, [(CT, [ExplicitVRLittleEndian])])
        statuses = [assoc.send_c_store(ds).Status for ds in (accepted, refused)]
        assoc.release()
    assert statuses == [0x0000, 0xA900]
    node_log = "\n".join(r.getMessage() for r in caplog.records
                         if r.name.startswith(("scp_node", "db", "lungpath")))
    assert STUDY in node_log and refused.SOPInstanceUID in node_log
    for secret in ("Confidential", "Jane", "MRN-SECRET-42"):
        assert secret not in caplog.text
    reliability.record("logs carry UIDs, not patient names (DEBUG level)", group="security",
                       inputs=2, outcome="UIDs logged; name and patient ID absent")
