"""What the orchestration tests share: real processes, a real PACS stand-in, small studies.

- ``tiny_checkpoint``: an untrained, tiny SD-MdaNet saved with the model package's own API (a
  test fixture: no shipped weights are needed, the analysis path is the same);
- ``study_template``: one small synthetic chest CT ("fast" acquisition, one nodule) generated
  once; ``send_study`` C-STOREs a copy of it under fresh UIDs, so each test gets new studies
  without generating them again;
- ``Pacs``: a pynetdicom Storage SCP on a free port that keeps what it receives, and can be
  stopped and started again on the same port;
- ``Stack``: settings as ``LUNGPATH_*`` variables, the node (``lungpath serve``) and workers
  (``lungpath worker``) as real child processes in their own process groups, and waits on
  the audit database.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import Engine, func, select

from db.engine import create_engine_for, transaction
from db.models import AuditEvent, Delivery, Job, Result, Study
from pipeline.scu import prepare_requestor
from tests.conftest import REPO_ROOT, free_port

NODE_AE = "LUNGPATH"
PACS_AE = "TESTPACS"
SENDER_AE = "CTSCANNER"
WAIT_S = 150.0  # a bound on every wait, never a speed assertion
ALL_KINDS = {"SR", "SC", "SEG"}
KINDS = {"1.2.840.10008.5.1.4.1.1.88.34": "SR", "1.2.840.10008.5.1.4.1.1.7": "SC",
         "1.2.840.10008.5.1.4.1.1.66.4": "SEG"}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny student network, intended use research-synthetic."""
    import torch

    from model.checkpoint import Checkpoint, IntendedUse, save_checkpoint
    from model.crop_spec import CropSpec
    from model.factory import create_model

    torch.manual_seed(0)
    config = {"stem_channels": 4, "block_layers": (1, 1), "growth": 4, "bottleneck": 2,
              "embedding_dim": 8}
    network = create_model("mdanet", **config)
    checkpoint = Checkpoint.of(network, "mdanet", crop_spec=CropSpec(size=16, spacing_mm=3.2),
                               version="0.0.0-test", intended_use=IntendedUse.RESEARCH_SYNTHETIC,
                               training_data="none: untrained test fixture")
    path = tmp_path_factory.mktemp("checkpoint") / "tiny.pt"
    save_checkpoint(checkpoint, path)
    return path


#: Slices kept around the nodule: a 90 mm slab (36 slices of 2.5 mm) still holds both lungs
#: and takes a third of the whole study's analysis time.
SLAB_HALF_MM = 45.0


@pytest.fixture(scope="session")
def study_template(tmp_path_factory: pytest.TempPathFactory) -> list[Dataset]:
    """One small synthetic study with a nodule (a slab around it), read into memory once."""
    from training.synthetic.study import generate_study

    folder = tmp_path_factory.mktemp("study")
    truth = generate_study(folder, seed=11, index=0, acquisition="fast", n_nodules=1)
    z = truth.nodules[0].centre_mm[2]
    datasets = [pydicom.dcmread(p) for p in sorted(folder.rglob("*.dcm"))]
    return [ds for ds in datasets if abs(float(ds.ImagePositionPatient[2]) - z) <= SLAB_HALF_MM]


def relabelled(template: list[Dataset]) -> tuple[str, list[Dataset]]:
    """Copies of ``template`` under a new study UID, one new series UID per series and new
    instance UIDs. Deep copies: pydicom's ``Dataset.copy`` is shallow, so setting a UID on it
    would set the template's, and a send that failed half-way would leave the shared template
    split into two series for every later test."""
    study_uid = generate_uid()
    series = {uid: generate_uid() for uid in {str(ds.SeriesInstanceUID) for ds in template}}
    copies = []
    for ds in template:
        copy = deepcopy(ds)
        copy.StudyInstanceUID = study_uid
        copy.SeriesInstanceUID = series[str(ds.SeriesInstanceUID)]
        copy.SOPInstanceUID = generate_uid()
        copy.file_meta.MediaStorageSOPInstanceUID = copy.SOPInstanceUID
        copies.append(copy)
    return study_uid, copies


def send_study(port: int, template: list[Dataset]) -> str:
    """C-STORE a copy of ``template`` under new study, series and instance UIDs, over an
    association prepared like the node's own senders (``pipeline.scu``)."""
    study_uid, copies = relabelled(template)
    ae = AE(ae_title=SENDER_AE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    for ds in template[:1]:
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    assert assoc.is_established, "the node refused the association"
    prepare_requestor(assoc)
    try:
        for copy in copies:
            status = assoc.send_c_store(copy)
            assert status and status.Status == 0x0000, status
    finally:
        assoc.release()
    return study_uid


class Pacs:
    """A Storage SCP that records the SOP classes of what it receives, per study."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[Dataset] = []
        self._lock = threading.Lock()
        self._server: Any = None

    def start(self) -> None:
        ae = AE(ae_title=PACS_AE)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        self._server = ae.start_server(("127.0.0.1", self.port), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._on_store)])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_store(self, event: Any) -> int:
        ds = event.dataset
        ds.file_meta = event.file_meta
        with self._lock:
            self.received.append(ds)
        return 0x0000

    def kinds(self, study_uid: str) -> set[str]:
        """"SR", "SC", "SEG" for each kind of object received for the study."""
        with self._lock:
            classes = {str(ds.SOPClassUID) for ds in self.received
                       if ds.StudyInstanceUID == study_uid}
        return {KINDS.get(uid, uid) for uid in classes}

    def count(self, study_uid: str) -> int:
        with self._lock:
            return sum(ds.StudyInstanceUID == study_uid for ds in self.received)


@dataclass
class Stack:
    """Settings, processes and database of one test."""

    root: Path
    db_url: str
    broker_url: str
    env: dict[str, str]
    node_port: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def engine(self) -> Engine:
        if not hasattr(self, "_engine"):
            self._engine = create_engine_for(self.db_url)
        return self._engine

    def _spawn(self, name: str, args: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "lungpath", *args],
                                   env={**self.env, **env},
                                   cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes.append(process)
        return process

    def node(self) -> subprocess.Popen[bytes]:
        """``lungpath serve``, once its DICOM port answers."""
        process = self._spawn("node", ["serve"])
        wait_for(lambda: _answers(self.node_port) or process.poll() is not None, "node port")
        assert process.poll() is None, self.logs()
        return process

    def worker(self, *extra: str, **env: str) -> subprocess.Popen[bytes]:
        """``lungpath worker``; ``env``: variables that differ from the node's."""
        return self._spawn("worker", ["worker", *extra], **env)

    def node_log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.root.glob("node-*.log"))

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL the process and every process of its group (its pool children)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill(process)
        if hasattr(self, "_engine"):
            self._engine.dispose()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
                         for p in sorted(self.root.glob("*.log")))

    # -- the database ------------------------------------------------------------------

    def study(self, study_uid: str) -> Study | None:
        with transaction(self.engine) as session:
            return session.scalars(select(Study).where(Study.study_uid == study_uid)).first()

    def results(self, study_uid: str) -> list[Result]:
        with transaction(self.engine) as session:
            return list(session.scalars(select(Result).join(Study, Result.study_id == Study.id)
                                        .where(Study.study_uid == study_uid)))

    def jobs(self) -> list[Job]:
        with transaction(self.engine) as session:
            return list(session.scalars(select(Job).order_by(Job.id)))

    def deliveries(self, study_uid: str) -> list[Delivery]:
        with transaction(self.engine) as session:
            return list(session.scalars(
                select(Delivery).join(Result, Delivery.result_id == Result.id)
                .join(Study, Result.study_id == Study.id).where(Study.study_uid == study_uid)
                .order_by(Delivery.id)))

    def count_events(self, study_uid: str, event_type: str) -> int:
        with transaction(self.engine) as session:
            return int(session.scalar(
                select(func.count(AuditEvent.id)).where(AuditEvent.study_uid == study_uid,
                                                        AuditEvent.event_type == event_type)
            ) or 0)

    def wait_state(self, study_uid: str, *states: str) -> Study:
        def reached() -> bool:
            study = self.study(study_uid)
            return study is not None and study.state in states

        wait_for(reached, f"study in {states}", self)
        study = self.study(study_uid)
        assert study is not None
        return study

    def wait_delivered(self, study_uid: str, pacs: Pacs, kinds: set[str]) -> None:
        """Until every delivery row of the study is delivered and the PACS has ``kinds``."""
        def done() -> bool:
            rows = self.deliveries(study_uid)
            return bool(rows) and all(r.delivered_at is not None for r in rows) \
                and pacs.kinds(study_uid) == kinds

        wait_for(done, f"{sorted(kinds)} delivered", self)

    def audit_cli(self, *args: str) -> list[dict[str, Any]]:
        """``lungpath audit ... --format json`` as an administrator runs it."""
        out = subprocess.run([sys.executable, "-m", "lungpath", "audit", *args, "--format",
                              "json"], env=self.env, cwd=self.root, capture_output=True,
                             check=True)
        rows: list[dict[str, Any]] = json.loads(out.stdout)
        return rows

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "lungpath", *args], env=self.env,
                              cwd=self.root, capture_output=True, text=True)


def _answers(port: int) -> bool:

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_for(condition: Callable[[], bool], what: str, stack: Stack | None = None,
             timeout: float = WAIT_S) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` (and the logs) at the bound."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}\n{stack.logs() if stack else ''}")
        time.sleep(0.25)


def make_stack(root: Path, sqlite_template: Path, broker_url: str, checkpoint: Path,
               pacs: Pacs | None, **settings: Any) -> Stack:
    """Settings for a fast test run: short stability, polling, deadlines and back-off."""
    db = root / "lungpath.db"
    shutil.copy(sqlite_template, db)
    db_url = f"sqlite:///{db}"
    port = free_port()
    values: dict[str, Any] = {
        "var_dir": root / "var", "database_url": db_url, "broker_url": broker_url,
        # long enough that a loaded machine's pause between two C-STOREs of one study does
        # not complete it early (a late instance then starts revision 2, a second Result)
        "port": port, "checkpoint": checkpoint, "stable_seconds": 4.0,
        "dispatch_interval": 0.5, "broker_polling_interval": 0.2,
        "queue_prefix": f"lp-test-{os.getpid()}-{port}.", "embedded_worker": False,
        "analysis_soft_time_limit": 100.0, "analysis_time_limit": 120.0,
        "reconcile_grace_seconds": 2.0, "queued_deadline_seconds": 120.0,
        "delivery_initial_backoff_seconds": 0.5, "delivery_max_backoff_seconds": 2.0,
        "network_timeout": 10.0, "acse_timeout": 10.0, "dimse_timeout": 20.0,
        "research_mode": True, "log_level": "INFO", "shutdown_grace_seconds": 5.0,
    }
    if pacs is not None:
        values["destinations"] = [{"ae_title": PACS_AE, "host": "127.0.0.1", "port": pacs.port}]
    values.update(settings)
    db_url = str(values["database_url"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNGPATH_")
           or k.startswith("LUNGPATH_TEST_")}
    for key, value in values.items():
        if value is None:
            continue
        text = json.dumps(value) if isinstance(value, list | dict) else \
            str(value).lower() if isinstance(value, bool) else str(value)
        env[f"LUNGPATH_{key.upper()}"] = text
    env["PYTHONPATH"] = str(REPO_ROOT)
    return Stack(root=root, db_url=db_url, broker_url=broker_url, env=env, node_port=port)


@pytest.fixture
def pacs() -> Iterator[Pacs]:
    server = Pacs()
    server.start()
    yield server
    server.stop()


def mapped_files(pid: int) -> str:
    """The files mapped into a process (its shared libraries among them), from /proc."""
    return Path(f"/proc/{pid}/maps").read_text()


def child_pids(pid: int) -> list[int]:
    """The direct children of a process, from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


class TcpProxy:
    """A TCP forwarder the test owns: ``stop()`` cuts every connection and refuses new ones,
    ``start()`` listens again on the same port. Stands between a process and a broker so that
    the broker looks unreachable without touching the shared service."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
            listener, self._listener = self._listener, None
        for sock in [*sockets, *([listener] if listener else [])]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_RDWR)
