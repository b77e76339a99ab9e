"""``lungpath demo``: the whole flow on one study, on this machine, with nothing else installed.

The demo plays the hospital around a real node: it writes a synthetic chest CT (or takes a
study folder), starts ``lungpath serve`` and ``lungpath worker`` as child processes in the
embedded mode (SQLite, the server-less broker) under a folder of its own, runs a small Storage
SCP as the PACS, sends the study with C-STORE, follows the study's states in the audit
database, and prints the findings parsed from the SR the PACS received next to the synthetic
truth, then the study's audit trail. The SR, SC and SEG stay in ``<out>/results``.

The node and the worker run as separate processes, as in production, so a worker that cannot
start (no checkpoint, say) ends the demo at once with its own message. Research mode is on:
the shipped weights were trained on synthetic data, and lungpath delivers such results only
in research mode (DESIGN.md, "Research interlock").
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from sqlalchemy import select

from db.engine import create_engine_for, transaction
from db.migrations import upgrade
from db.models import Delivery, Result, Study, StudyState
from db.queries import Filters, deliveries, events
from lungpath.cli.audit import render
from lungpath.cli.results import format_report
from lungpath.demo_truth import compare_with_truth
from lungpath.dispatch import WorkerError, checkpoint_path
from lungpath.settings import ENV_PREFIX, SettingsError, load_settings
from pipeline.scu import no_delay, prepare_requestor

NODE_AE = "LUNGPATH"
PACS_AE = "DEMOPACS"
SENDER_AE = "DEMOCT"
#: The synthetic study: the fast protocol (256 x 256, 2.5 mm slices) keeps the demo within
#: a minute on a 2-core machine; one nodule keeps the result objects quick to write.
ACQUISITION = "fast"
NODULES = 1
STABLE_SECONDS = 1.0
POLL_S = 0.25
WORKER_GRACE_S = 3.0
#: Objects by SOP Class UID: what the PACS receives back.
KINDS = {"1.2.840.10008.5.1.4.1.1.88.34": "SR", "1.2.840.10008.5.1.4.1.1.7": "SC",
         "1.2.840.10008.5.1.4.1.1.66.4": "SEG"}
DELIVERY_COLUMNS = ("object", "destination_ae", "attempts", "last_status", "delivered_at")
TERMINAL = {StudyState.DONE.value, StudyState.NOT_ANALYZABLE.value, StudyState.FAILED.value}
RESEARCH_NOTE = ("research mode is on: the shipped SD-MdaNet weights were trained on synthetic "
                 "data only, and lungpath delivers the results of a model trained on synthetic "
                 "data only in research mode; every such SR says so")


class DemoError(RuntimeError):
    """The demo cannot go on; the message says why in one line (plus a log tail)."""


@dataclass(frozen=True)
class DemoOptions:
    """What the command line chose. ``out`` must be empty or absent."""

    out: Path
    study: Path | None = None
    seed: int = 1
    timeout_s: float = 300.0
    checkpoint: Path | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise DemoError(f"--out {self.out}: choose a new or empty folder (the demo keeps "
                            "its database, logs and results there)")
        if not self.timeout_s > 0:
            raise DemoError(f"--timeout must be > 0, got {self.timeout_s}")


class Progress:
    """Progress lines with the seconds since the demo started."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:5.1f} s] {message}", file=self.stream,
              flush=True)

    def text(self, block: str) -> None:
        print(block, file=self.stream, flush=True)


class DemoPacs:
    """A Storage SCP standing in for the PACS: it writes what it receives into ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.received: dict[str, list[Path]] = {}
        self._lock = threading.Lock()
        self._server: Any = None
        self.port = 0

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        ae = AE(ae_title=PACS_AE)
        ae.supported_contexts = AllStoragePresentationContexts
        ae.add_supported_context(Verification)
        handlers: list[Any] = [
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_CONN_OPEN, lambda event: no_delay(event.assoc)),
        ]
        self._server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        self.port = int(self._server.server_address[1])

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def _on_store(self, event: Any) -> int:
        kind = KINDS.get(str(event.request.AffectedSOPClassUID), "OTHER")
        with self._lock:
            paths = self.received.setdefault(kind, [])
            path = self.folder / f"{kind}-{len(paths) + 1}.dcm"
            path.write_bytes(event.encoded_dataset())
            paths.append(path)
        return 0x0000

    def kinds(self) -> set[str]:
        with self._lock:
            return set(self.received)


def read_study(folder: Path) -> list[Dataset]:
    """Every DICOM instance under ``folder`` (other files, such as truth.json, are skipped)."""
    datasets: list[Dataset] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError, ValueError):
            continue
        if "SOPClassUID" in ds and "StudyInstanceUID" in ds and "file_meta" in dir(ds):
            datasets.append(ds)
    if not datasets:
        raise DemoError(f"--study {folder}: no DICOM instances found")
    uids = {str(ds.StudyInstanceUID) for ds in datasets}
    if len(uids) != 1:
        raise DemoError(f"--study {folder}: holds {len(uids)} studies; give one study's folder")
    return datasets


def send_study(datasets: list[Dataset], port: int) -> None:
    """C-STORE ``datasets`` to the node in one association (TCP_NODELAY on)."""
    ae = AE(ae_title=SENDER_AE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    pairs = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
                    for ds in datasets})
    if len(pairs) > 128:
        raise DemoError(f"the study needs {len(pairs)} presentation contexts (at most 128)")
    for sop_class, syntax in pairs:
        ae.add_requested_context(sop_class, syntax)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    if not assoc.is_established:
        raise DemoError(f"the node at 127.0.0.1:{port} refused the association")
    prepare_requestor(assoc)
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = int(status.Status) if status and "Status" in status else None
            if code != 0x0000:
                shown = f"0x{code:04X}" if code is not None else "none (timeout or abort)"
                raise DemoError(f"the node answered C-STORE of {ds.SOPInstanceUID} with {shown}")
    finally:
        if assoc.is_established:
            assoc.release()


@dataclass
class Children:
    """The node and the worker, each a ``lungpath`` child process in its own session."""

    folder: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        log = (self.folder / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "lungpath", *args], env=self.env, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)

    def check(self) -> None:
        """``DemoError`` with the log tail if a child has ended."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                tail = (self.folder / f"{name}.log").read_text(errors="replace").strip()
                lines = "\n".join(f"    {line}" for line in tail.splitlines()[-8:])
                raise DemoError(f"the {name} stopped (exit code {process.returncode}); "
                                f"the end of {self.folder / (name + '.log')}:\n{lines}")

    def stop(self, graces_s: dict[str, float] | None = None) -> None:
        """SIGTERM to each child, SIGKILL to its process group after its grace (20 s unless
        ``graces_s`` names another)."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for name, process in self.processes.items():
            try:
                process.wait(timeout=(graces_s or {}).get(name, 20.0))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def demo_values(options: DemoOptions, node_port: int, pacs_port: int) -> dict[str, Any]:
    """The demo's settings: embedded mode under ``<out>/var``, short waits, research mode."""
    var = (options.out / "var").resolve()
    values: dict[str, Any] = {
        "var_dir": var, "database_url": f"sqlite:///{var / 'lungpath.db'}",
        "broker_url": f"sqla+sqlite:///{var / 'broker.db'}", "ae_title": NODE_AE,
        "host": "127.0.0.1", "port": node_port, "stable_seconds": STABLE_SECONDS,
        "dispatch_interval": 0.5, "broker_polling_interval": 0.2, "embedded_worker": False,
        "research_mode": True, "device": options.device, "log_level": "INFO",
        "answer_not_analysed": True,  # a study the routing rules exclude gets an SR too
        "destinations": [{"ae_title": PACS_AE, "host": "127.0.0.1", "port": pacs_port}],
        "delivery_initial_backoff_seconds": 1.0, "delivery_max_backoff_seconds": 5.0,
        "shutdown_grace_seconds": 10.0,
    }
    if options.checkpoint is not None:
        values["checkpoint"] = options.checkpoint.resolve()
    return values


def child_env(values: dict[str, Any]) -> dict[str, str]:
    """This process's environment without the operator's ``LUNGPATH_*`` settings, plus
    ``values`` as ``LUNGPATH_*`` variables (lists as JSON)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(ENV_PREFIX) or k.startswith(ENV_PREFIX + "TEST_")}
    for key, value in values.items():
        text = (json.dumps(value) if isinstance(value, list | dict)
                else str(value).lower() if isinstance(value, bool) else str(value))
        env[f"{ENV_PREFIX}{key.upper()}"] = text
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(condition: Callable[[], bool], what: str, children: Children,
          deadline: float) -> None:
    while not condition():
        children.check()
        if time.monotonic() > deadline:
            raise DemoError(f"gave up waiting for {what}; see the logs in {children.folder}")
        time.sleep(POLL_S)


def _echoes(port: int) -> bool:
    """Whether the node answers a C-ECHO: a released association, where a bare TCP probe
    would leave the node an association to wait out at its stop."""
    ae = AE(ae_title=SENDER_AE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 5
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE)
    if not assoc.is_established:
        return False
    prepare_requestor(assoc)
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status) and int(status.Status) == 0x0000


def _synthetic_study(options: DemoOptions, progress: Progress) -> tuple[list[Dataset], Path]:
    from training.synthetic.study import generate_study

    folder = options.out / "study"
    progress(f"writing a synthetic chest CT ({ACQUISITION} protocol, {NODULES} nodule(s), "
             f"seed {options.seed}) to {folder}")
    generate_study(folder, seed=options.seed, acquisition=ACQUISITION, n_nodules=NODULES)
    return read_study(folder), folder


@contextmanager
def _running(children: Children, pacs: DemoPacs) -> Iterator[None]:
    """Stop the children and the PACS however the demo ends. The worker is idle by then (its
    results are delivered, or the demo failed): it gets a short grace, as Celery's prefork
    worker takes ~10 s to exit after the signal, and the demo's broker is its own."""
    try:
        yield
    finally:
        children.stop({"worker": WORKER_GRACE_S})
        pacs.stop()


def run_demo(options: DemoOptions, stream: TextIO = sys.stdout) -> Path:
    """Run the demo, print as it goes, return the SR's path; ``DemoError`` on failure."""
    progress = Progress(stream)
    # pynetdicom logs each C-STORE, and each refused try while the node starts; the demo
    # reports its own failures. alembic logs each migration.
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    options.out.mkdir(parents=True, exist_ok=True)
    progress(f"demo folder {options.out.resolve()}")
    progress(RESEARCH_NOTE)
    given = None
    if options.study is not None:  # read first: a wrong folder ends the demo before it starts
        progress(f"reading the study in {options.study}")
        given = read_study(options.study), options.study
    pacs = DemoPacs(options.out / "results")
    pacs.start()
    values = demo_values(options, _free_port(), pacs.port)
    try:
        settings = load_settings(None, values)
        checkpoint_path(settings)  # no checkpoint: say so now, not when the worker stops
    except (SettingsError, WorkerError) as e:
        pacs.stop()
        raise DemoError(str(e)) from None
    upgrade(settings.database)
    children = Children(options.out.resolve(), child_env(values))
    deadline = time.monotonic() + options.timeout_s
    with _running(children, pacs):
        progress(f"starting the node (lungpath serve, AE {NODE_AE} on 127.0.0.1:"
                 f"{settings.port}) and a worker (lungpath worker), embedded mode under "
                 f"{settings.var_dir}")
        children.start("node", "serve")
        children.start("worker", "worker")
        progress(f"PACS stand-in listening: AE {PACS_AE} on 127.0.0.1:{pacs.port}")
        datasets, folder = given or _synthetic_study(options, progress)
        study_uid = str(datasets[0].StudyInstanceUID)
        _wait(lambda: _echoes(settings.port), "the node's C-ECHO answer", children, deadline)
        progress(f"sending {len(datasets)} instances with C-STORE ({SENDER_AE} -> {NODE_AE})")
        send_study(datasets, settings.port)
        progress(f"sent study {study_uid}")
        # the SR reader (highdicom, matplotlib) loads while the node and the worker work
        threading.Thread(target=importlib.import_module, args=("pipeline.results",),
                         name="preload", daemon=True).start()
        engine = create_engine_for(settings.database)
        try:
            _follow(engine, study_uid, pacs, children, deadline, progress)
            sr_path = pacs.received["SR"][0]
            _report(engine, study_uid, sr_path, folder, datasets, progress)
        finally:
            engine.dispose()
        progress("stopping the node and the worker")
    _closing_lines(progress, options, study_uid, sr_path)
    return sr_path


def _closing_lines(progress: Progress, options: DemoOptions, study_uid: str,
                   sr_path: Path) -> None:
    results = sr_path.parent.resolve()
    progress(f"done: the SR, SC and SEG are in {results}: "
             f"{' '.join(sorted(p.name for p in results.iterdir()))}")
    progress.text(f"  read the SR again:  lungpath show-sr {sr_path.resolve()}\n"
                  f"  the audit trail:    LUNGPATH_VAR_DIR={(options.out / 'var').resolve()} "
                  f"lungpath audit events --study {study_uid}")


def _follow(engine: Any, study_uid: str, pacs: DemoPacs, children: Children, deadline: float,
            progress: Progress) -> None:
    """Print each state the study enters until it ends and its results reached the PACS."""
    seen: list[str] = []

    def finished() -> bool:
        with transaction(engine) as session:
            state, reason = session.execute(
                select(Study.state, Study.reason).where(Study.study_uid == study_uid)
            ).first() or (None, None)
            results = session.execute(
                select(Result.id, Delivery.delivered_at)
                .outerjoin(Delivery, Delivery.result_id == Result.id)
                .join(Study, Result.study_id == Study.id).where(Study.study_uid == study_uid)
            ).all()
        if state is not None and (not seen or seen[-1] != state):
            seen.append(state)
            progress(f"study {state}" + (f": {reason}" if reason else ""))
        if state == StudyState.FAILED.value:
            raise DemoError(f"the analysis failed; see {children.folder / 'worker.log'} and "
                            f"lungpath audit events --study {study_uid}")
        if state in TERMINAL and not results:
            raise DemoError(f"the study ended {state} without a result: {reason}")
        delivered = all(at is not None for _, at in results)
        return state in TERMINAL and delivered and "SR" in pacs.kinds()

    _wait(finished, "the SR at the PACS", children, deadline)
    progress(f"the PACS received {', '.join(sorted(pacs.kinds()))}")


def _report(engine: Any, study_uid: str, sr_path: Path, study_folder: Path,
            datasets: list[Dataset], progress: Progress) -> None:
    from pipeline.results import ReportError, read_findings  # preloaded after the send

    try:
        report = read_findings(pydicom.dcmread(sr_path))
    except (ReportError, InvalidDicomError) as e:
        raise DemoError(f"{sr_path}: the returned SR cannot be read: {e}") from None
    progress(f"findings of {sr_path.name}, parsed from the SR the PACS received:")
    progress.text("\n" + format_report(report) + "\n")
    truth = study_folder / "truth.json"
    if truth.is_file():
        progress("the SR next to the synthetic truth (truth.json):")
        progress.text("\n" + compare_with_truth(report, json.loads(truth.read_text()),
                                                datasets) + "\n")
    progress(f"audit trail of the study (lungpath audit events --study {study_uid}):")
    filters = Filters(study_uid=study_uid)
    with transaction(engine) as session:
        trail = audit_trail(events(session, filters))
        sent = [{k: row[k] for k in DELIVERY_COLUMNS} for row in deliveries(session, filters)]
    progress.text("\n" + render(trail, "table") + "\n")
    progress(f"deliveries (lungpath audit deliveries --study {study_uid}):")
    progress.text("\n" + render(sent, "table") + "\n")


def audit_trail(rows: list[dict[str, Any]], detail_width: int = 60) -> list[dict[str, Any]]:
    """Events oldest first, runs of the same event folded into one row with a count, the
    detail cut to ``detail_width`` characters: one screen instead of one row per slice."""
    folded: list[dict[str, Any]] = []
    for row in reversed(rows):
        key = (row["actor"], row["event_type"], row["outcome"])
        if folded and folded[-1]["_key"] == key:
            folded[-1]["count"] += 1
            continue
        detail = json.dumps(row["detail"], sort_keys=True) if row["detail"] else ""
        folded.append({"_key": key, "occurred_at": row["occurred_at"], "actor": row["actor"],
                       "event_type": row["event_type"], "outcome": row["outcome"], "count": 1,
                       "detail": detail if len(detail) <= detail_width
                       else detail[:detail_width - 3] + "..."})
    return [{k: v for k, v in row.items() if k != "_key"} for row in folded]
