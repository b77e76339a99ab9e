"""The node process: the DICOM receivers and the study-completion sweep, composed from Settings.

``Node`` is the composition function of DESIGN.md's node process. It checks the database
schema (refusing to start on a mismatch), clears temporary files a crash left in the store,
starts the Storage SCP (in this process, or ``receivers`` child processes sharing the port
with SO_REUSEPORT) and the sweep that marks stable studies COMPLETE. ``stop()`` undoes it
in reverse order: receivers stop accepting and finish their in-flight stores first.
The node never imports torch.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from multiprocessing.process import BaseProcess
from types import FrameType

from sqlalchemy import Engine

from db.engine import create_engine_for
from db.migrations import SchemaError, check_schema
from lungpath.atna import AtnaExporter, Source, sender_for
from lungpath.dispatch import Orchestration
from lungpath.health import HealthServer, start_health_server
from lungpath.settings import Settings
from scp_node.completion import CompletionSweeper
from scp_node.config import ScpConfig
from scp_node.process import serve_until_signalled
from scp_node.server import StorageSCP
from scp_node.storage import InstanceStore

logger = logging.getLogger(__name__)

#: How long the node waits for each receiving process to bind the port.
CHILD_START_TIMEOUT_S = 60.0


class NodeError(RuntimeError):
    """The node cannot start; the message says why in one line."""


def scp_config(settings: Settings, *, reuse_port: bool = False) -> ScpConfig:
    """The Storage SCP's configuration, taken from the settings."""
    return ScpConfig(
        ae_title=settings.ae_title,
        host=settings.host,
        port=settings.port,
        store_dir=settings.store_path,
        database_url=settings.database,
        allowed_calling_aes=tuple(settings.allowed_calling_aes),
        min_free_bytes=settings.min_free_disk_mb * 1024 * 1024,
        max_associations=settings.max_associations,
        max_pdu=settings.max_pdu,
        acse_timeout=settings.acse_timeout,
        dimse_timeout=settings.dimse_timeout,
        network_timeout=settings.network_timeout,
        max_instances_per_association=settings.max_instances_per_association,
        max_study_bytes=settings.max_study_bytes,
        tls_cert_file=settings.tls_cert_file,
        tls_key_file=settings.tls_key_file,
        tls_ca_file=settings.tls_ca_file,
        reuse_port=reuse_port,
        shutdown_grace=settings.shutdown_grace_seconds,
    )


class Node:
    """The running node: receivers plus the completion sweep."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine: Engine | None = None
        self.scp: StorageSCP | None = None
        self.sweeper: CompletionSweeper | None = None
        self.children: list[BaseProcess] = []
        self.orchestration: Orchestration | None = None
        self.atna: AtnaExporter | None = None
        self.health: HealthServer | None = None

    def start(self) -> None:
        """Start everything; raise ``NodeError`` if the database or the store is not ready."""
        settings = self.settings
        engine = create_engine_for(settings.database)
        self.engine = engine
        try:
            check_schema(engine)
        except SchemaError as e:
            raise NodeError(str(e)) from None
        except Exception as e:
            raise NodeError(f"the database {settings.database} is not reachable: {e}") from None
        removed = InstanceStore(settings.store_path).remove_stale_temporaries()
        if removed:
            logger.warning("removed %d temporary files left by an earlier crash", removed)
        if settings.receivers == 1:
            self.scp = StorageSCP(scp_config(settings), engine)
            self.scp.start()
        else:
            self._start_children(settings)
        self.sweeper = CompletionSweeper(engine, stable_seconds=settings.stable_seconds)
        self.sweeper.start()
        self.orchestration = Orchestration.start(settings, engine)
        if settings.atna_syslog_url is not None:
            self.atna = AtnaExporter(engine, sender_for(settings.atna_syslog_url,
                                                        settings.atna_ca_file),
                                     Source(settings.ae_title, socket.gethostname()))
            self.atna.start()
        self.health = start_health_server(settings, engine)
        logger.info("node started ae_title=%s port=%d receivers=%d stable_seconds=%s",
                    settings.ae_title, self.port, settings.receivers, settings.stable_seconds)

    def _start_children(self, settings: Settings) -> None:
        if settings.port == 0:
            raise NodeError("receivers > 1 needs a fixed port (setting: port)")
        config = scp_config(settings, reuse_port=True)
        spawn = multiprocessing.get_context("spawn")
        readies = []
        for index in range(settings.receivers):
            ready = spawn.Event()
            child = spawn.Process(target=serve_until_signalled,
                                  args=(config, settings.log_level, ready),
                                  name=f"lungpath-receiver-{index}", daemon=False)
            child.start()
            self.children.append(child)
            readies.append(ready)
        deadline = time.monotonic() + CHILD_START_TIMEOUT_S
        for started, ready in zip(self.children, readies, strict=True):
            while not ready.wait(0.1):
                if not started.is_alive() or time.monotonic() > deadline:
                    self.stop()
                    raise NodeError(f"receiving process {started.name} did not start "
                                    f"(exit code {started.exitcode}); see its log")

    @property
    def port(self) -> int:
        """The DICOM port the node listens on."""
        return self.scp.port if self.scp is not None else self.settings.port

    def stop(self) -> None:
        """Stop accepting, finish in-flight stores, stop the sweep."""
        if self.health is not None:
            self.health.stop()
            self.health = None
        if self.scp is not None:
            self.scp.stop()
            self.scp = None
        for child in self.children:
            if child.pid is not None and child.is_alive():
                child.terminate()  # SIGTERM: the child stops gracefully
        for child in self.children:
            child.join()
        self.children = []
        if self.orchestration is not None:
            self.orchestration.stop()
            self.orchestration = None
        if self.sweeper is not None:
            self.sweeper.stop()
            self.sweeper = None
        if self.atna is not None:
            self.atna.stop()  # last: it sends the events the parts above recorded
            self.atna = None
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None
        logger.info("node stopped")


def run_node(settings: Settings) -> None:
    """Run the node until SIGTERM or SIGINT (``lungpath serve``); raise ``NodeError``."""
    stopping = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    node = Node(settings)
    try:
        node.start()
        stopping.wait()
    finally:
        node.stop()
