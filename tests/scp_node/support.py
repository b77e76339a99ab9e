"""What the Storage SCP tests share: synthetic instances, a node on a free port, a SCU, queries.

Instances are small (64 x 64 CT slices) so that hundreds of them cost little. The node runs
on a migrated database of the test's own (SQLite copied from a template; on PostgreSQL
a schema of its own, through tests/db/databases.py) and a store under the test's tmp_path.
"""

from __future__ import annotations

import os
import ssl
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from subprocess import STDOUT, Popen
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import Engine, func, select

from db.engine import create_engine_for, transaction
from db.models import AuditEvent, Instance, Study
from pipeline.scu import prepare_requestor
from scp_node.config import ScpConfig
from scp_node.server import StorageSCP
from scp_node.storage import file_meta
from tests.db.databases import fresh_url, postgres_schemas, sqlite_template

__all__ = ["postgres_schemas", "sqlite_template"]

CT = "1.2.840.10008.5.1.4.1.1.2"
COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
NODE_AE = "LUNGPATH"


def ct_slice(study_uid: str, series_uid: str, index: int, *, size: int = 64,
             sop_instance_uid: str | None = None) -> Dataset:
    """A minimal CT Image (enough for the node: it checks UIDs and pixel data)."""
    ds = Dataset()
    ds.SOPClassUID = CT
    ds.SOPInstanceUID = sop_instance_uid or generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.PatientName = "Synthetic^Patient"
    ds.PatientID = "SYN-0001"
    ds.Modality = "CT"
    ds.InstanceNumber = index + 1
    ds.ImagePositionPatient = [0.0, 0.0, float(index)]
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    pixels = (np.arange(size * size, dtype=np.int16).reshape(size, size) + index) % 2000
    ds.PixelData = pixels.astype(np.int16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def sr_document(study_uid: str, series_uid: str) -> Dataset:
    """A minimal Comprehensive SR data set (no pixel data, as SR classes have none)."""
    ds = Dataset()
    ds.SOPClassUID = COMPREHENSIVE_SR
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = "SR"
    ds.ValueType = "CONTAINER"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


@pytest.fixture
def node_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated SQLite database of this test's own."""
    return fresh_url(request, "sqlite", tmp_path)


@pytest.fixture
def postgres_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated PostgreSQL schema of this test's own (dropped at the end of the run)."""
    return fresh_url(request, "postgresql", tmp_path)


def scp_config(db_url: str, store: Path, **overrides: Any) -> ScpConfig:
    """A configuration on a free port (0), a short shutdown grace for tests."""
    config = ScpConfig(ae_title=NODE_AE, host="127.0.0.1", port=0, store_dir=store,
                       database_url=db_url, acse_timeout=30, dimse_timeout=60,
                       network_timeout=60, shutdown_grace=2)
    return replace(config, **overrides)


@contextmanager
def running_scp(config: ScpConfig) -> Iterator[StorageSCP]:
    """A Storage SCP serving in this process; stopped (gracefully) at the end."""
    engine = create_engine_for(config.database_url)
    scp = StorageSCP(config, engine)
    scp.start()
    try:
        yield scp
    finally:
        scp.stop()
        engine.dispose()


def associate(port: int, contexts: Sequence[tuple[str, Sequence[str]]], *, calling_ae: str = "SCU",
              called_ae: str = NODE_AE, tls: ssl.SSLContext | None = None) -> Association:
    """An association from a pynetdicom SCU, prepared like the node's own senders
    (``pipeline.scu.prepare_requestor``)."""
    ae = AE(ae_title=calling_ae)
    # generous: a shared, loaded test machine must not turn a slow answer into a failure
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    for sop_class, syntaxes in contexts:
        ae.add_requested_context(sop_class, list(syntaxes))
    tls_args = (tls, "localhost") if tls is not None else None
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae, tls_args=tls_args)
    if assoc.is_established:
        prepare_requestor(assoc)
    return assoc


def instance_count(engine: Engine, study_uid: str | None = None) -> int:
    with transaction(engine) as session:
        query = select(func.count(Instance.id))
        if study_uid is not None:
            query = query.join(Study).where(Study.study_uid == study_uid)
        return int(session.scalar(query) or 0)


def audit_events(engine: Engine, event_type: str) -> list[AuditEvent]:
    with transaction(engine) as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.event_type == event_type)
                                    .order_by(AuditEvent.id)))


def study_row(engine: Engine, study_uid: str) -> Study:
    with transaction(engine) as session:
        return session.scalars(select(Study).where(Study.study_uid == study_uid)).one()


def stored_files(store: Path) -> list[Path]:
    """The instance files in the store (temporary files excluded)."""
    return sorted(p for p in store.rglob("*.dcm") if ".incoming" not in p.parts)


def encode_data_set(ds: Dataset, *, implicit: bool = False, little: bool = True) -> bytes:
    """``ds`` encoded without file meta (what a C-STORE carries)."""
    buffer = DicomBytesIO()
    buffer.is_implicit_VR = implicit
    buffer.is_little_endian = little
    body = ds.copy()
    if hasattr(body, "file_meta"):
        del body.file_meta
    write_dataset(buffer, body)
    return buffer.getvalue()


def part10_file(path: Path, *, sop_class_uid: str, sop_instance_uid: str,
                transfer_syntax_uid: str, data_set: bytes) -> Path:
    """A DICOM file whose meta names these UIDs and whose data set is exactly ``data_set``.

    pynetdicom, with STORE_SEND_CHUNKED_DATASET, sends such a file's data set bytes as they
    are: the way to send a malformed or inconsistent instance on purpose.
    """
    path.write_bytes(file_meta(sop_class_uid=sop_class_uid, sop_instance_uid=sop_instance_uid,
                               transfer_syntax_uid=transfer_syntax_uid,
                               source_ae_title="TEST") + data_set)
    return path


@pytest.fixture
def send_files_raw(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make pynetdicom send a file's data set bytes without decoding them."""
    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


@contextmanager
def node_process(var_dir: Path, db_url: str, port: int, **settings: str) -> Iterator[Popen[bytes]]:
    """``lungpath serve`` in a child process, ready to answer a C-ECHO; stopped at the end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNGPATH_")}
    env |= {"LUNGPATH_VAR_DIR": str(var_dir), "LUNGPATH_DATABASE_URL": db_url,
            "LUNGPATH_PORT": str(port), "LUNGPATH_MIN_FREE_DISK_MB": "0",
            "LUNGPATH_LOG_LEVEL": "WARNING", "LUNGPATH_EMBEDDED_WORKER": "false"}
    env |= {f"LUNGPATH_{k.upper()}": v for k, v in settings.items()}
    var_dir.mkdir(parents=True, exist_ok=True)
    with (var_dir / "node.log").open("ab") as log:
        process = Popen([sys.executable, "-m", "lungpath", "serve"], env=env, stdout=log,
                        stderr=STDOUT, cwd=var_dir)
    try:
        _wait_for_echo(port, process, var_dir / "node.log")
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)


def _wait_for_echo(port: int, process: Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the node exited ({process.returncode}): {log.read_text()}")
        assoc = associate(port, [(Verification, [ExplicitVRLittleEndian])])
        if assoc.is_established:
            assoc.release()
            return
        time.sleep(0.2)
    raise AssertionError(f"the node does not answer on port {port}: {log.read_text()}")
