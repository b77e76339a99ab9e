"""The fault matrix beyond the Storage SCP's and the orchestration's own tests: a full disk, the
database cut in the middle of a study, aborts and half-sent PDUs, silent peers, 32 concurrent
associations and a node restarted during a transfer. In each, an instance is acknowledged only
when it is on disk and in the database, and the node recovers when the fault goes away.

Already covered elsewhere (docs/reliability.md lists them): the free-space threshold and an
unreachable database at start (tests/scp_node/test_server.py), SIGKILL of the node
(tests/integration/test_scp_crash.py) and of a worker (test_orchestration_faults.py).
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from sqlalchemy.engine import make_url

from db.engine import create_engine_for
from db.events import EventType
from scp_node.storage import INCOMING
from tests.conftest import free_port
from tests.hardening.conftest import Reliability
from tests.hardening.corpus import Case, valid
from tests.hardening.sending import Sent, lost_instances, send_cases
from tests.integration.test_scp_concurrency import _check_counts, _send_concurrently
from tests.scp_node.support import (
    CT,
    associate,
    audit_events,
    ct_slice,
    node_process,
    running_scp,
    scp_config,
)

pytestmark = pytest.mark.usefixtures("send_files_raw")


def _slices(count: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    return [valid(rng) for _ in range(count)]


def _statuses(sent: list[Sent]) -> list[int | None]:
    return [s.status for s in sent]


# -- disk full ------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path | None]:
    """A 1 MiB tmpfs mounted for the test, or None where mounting is not permitted."""
    folder = tmp_path / "tmpfs"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs",
                              str(folder)], capture_output=True).returncode == 0
    yield folder if mounted else None
    if mounted:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_disk_full_refuses_with_a700_and_recovers(node_db: str, tmp_path: Path,
                                                  small_disk: Path | None,
                                                  reliability: Reliability) -> None:
    store = (small_disk or tmp_path) / "store"
    store.mkdir()
    filler = (small_disk or tmp_path) / "filler"
    with running_scp(scp_config(node_db, store)) as scp:
        if small_disk is not None:  # leave room for a few files, then fill the rest
            free = _free(store)
            with filler.open("wb") as f, contextlib.suppress(OSError):
                f.write(b"\0" * max(free - 40_000, 0))
        else:  # the free-space threshold stands in for the full disk
            scp.store.min_free_bytes = _free(store) + 10**12
        full = send_cases(scp.port, _slices(12, 1), tmp_path / "work")
        filler.unlink(missing_ok=True)
        scp.store.min_free_bytes = 0
        recovered = send_cases(scp.port, _slices(5, 2), tmp_path / "work")
    statuses = _statuses(full)
    assert 0xA700 in statuses and set(statuses) <= {0x0000, 0xA700}
    assert _statuses(recovered) == [0x0000] * 5
    engine = create_engine_for(node_db)
    assert lost_instances(engine, store, full + recovered) == []
    assert not list((store / INCOMING).iterdir())  # no temporary file left behind
    rejected = audit_events(engine, EventType.INSTANCE_REJECTED)
    assert rejected and all(e.detail and e.detail["status"] == "0xA700" for e in rejected)
    engine.dispose()
    how = "1 MiB tmpfs" if small_disk is not None else "free-space threshold"
    reliability.record(f"disk full ({how})", group="fault matrix",
                       inputs=len(full) + len(recovered),
                       outcome=f"0xA700 x{statuses.count(0xA700)} while full, 0x0000 once "
                       "space returned")


def _free(folder: Path) -> int:
    stat = os.statvfs(folder)
    return stat.f_bavail * stat.f_frsize


# -- the database cut in the middle of a study -------------------------------------------

class Proxy:
    """A TCP proxy the test owns in front of PostgreSQL; ``cut()`` drops every connection
    and refuses new ones until ``restore()``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for s in (source, target):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open = False
        with self.lock:
            for s in self.sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self.sockets.clear()

    def restore(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_database_cut_mid_study_is_never_acknowledged_then_recovers(
        postgres_db: str, tmp_path: Path, reliability: Reliability) -> None:
    url = make_url(postgres_db)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    store = tmp_path / "store"
    try:
        with running_scp(scp_config(proxied, store)) as scp:
            before = send_cases(scp.port, _slices(5, 3), tmp_path / "work")
            proxy.cut()
            during = send_cases(scp.port, _slices(5, 4), tmp_path / "work")
            proxy.restore()
            after = send_cases(scp.port, _slices(5, 5), tmp_path / "work")
    finally:
        proxy.close()
    assert _statuses(before) == [0x0000] * 5
    assert _statuses(during) == [0xA700] * 5
    assert _statuses(after) == [0x0000] * 5
    engine = create_engine_for(postgres_db)
    assert lost_instances(engine, store, before + during + after) == []
    engine.dispose()
    reliability.record("PostgreSQL connection cut mid-study (TCP proxy)", group="fault matrix",
                       inputs=15, outcome="0x0000 before, 0xA700 x5 while cut, 0x0000 after; "
                       "no ack without a row")


# -- aborts, half-sent PDUs, silent peers ---------------------------------------------------

def test_abort_mid_association_keeps_what_was_acknowledged(node_db: str, tmp_path: Path,
                                                           reliability: Reliability) -> None:
    store = tmp_path / "store"
    with running_scp(scp_config(node_db, store)) as scp:
        assoc = associate(scp.port, [(CT, [ExplicitVRLittleEndian])])
        statuses = [int(assoc.send_c_store(ct_slice("1.2.826.0.13.60", "1.2.826.0.13.60.1",
                                                    i)).Status) for i in range(5)]
        assoc.abort()
        # a P-DATA-TF announcing 100,000 bytes, 100 of them sent, then the socket closed
        half = associate(scp.port, [(CT, [ExplicitVRLittleEndian])])
        sock = half.dul.socket.socket  # type: ignore[union-attr]
        sock.sendall(b"\x04\x00" + (100_000).to_bytes(4, "big") + b"\0" * 100)
        sock.close()
        half.kill()
        assert _serving(scp.port)
    engine = create_engine_for(node_db)
    closed = audit_events(engine, EventType.ASSOCIATION_CLOSED)
    assert statuses == [0] * 5
    assert any(e.detail and e.detail["aborted"] and e.detail["accepted"] == 5 for e in closed)
    assert len(list(store.rglob("*.dcm"))) == 6  # five, and the serving check's
    engine.dispose()
    reliability.record("abort mid-association; PDU cut half-way", group="fault matrix",
                       inputs=6, outcome="the 5 acknowledged kept, association recorded "
                       "aborted, node serving")


def _serving(port: int) -> bool:
    assoc = associate(port, [(CT, [ExplicitVRLittleEndian])])
    status = assoc.send_c_store(ct_slice("1.2.826.0.13.61", "1.2.826.0.13.61.1", 0))
    assoc.release()
    assert status.Status == 0, status
    return True


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the node closed ``sock``; a socket still open after 30 s (fifteen times the
    node's timeouts here) raises ``TimeoutError``: the node held on to it."""
    sock.settimeout(30)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


def test_silent_and_stalled_peers_are_timed_out(node_db: str, tmp_path: Path,
                                                reliability: Reliability) -> None:
    config = scp_config(node_db, tmp_path / "store", acse_timeout=2, network_timeout=2,
                        dimse_timeout=2)
    with running_scp(config) as scp:
        silent = socket.create_connection(("127.0.0.1", scp.port))
        # an A-ASSOCIATE-RQ PDU announcing 5,000 bytes, of which 10 come
        stalled = socket.create_connection(("127.0.0.1", scp.port))
        stalled.sendall(b"\x01\x00" + (5_000).to_bytes(4, "big") + b"\0" * 10)
        assert _serving(scp.port)  # others are served while the two hang on
        assert _closed_by_peer(silent) and _closed_by_peer(stalled)
        assert _serving(scp.port)
    reliability.record("silent peer (TCP open, nothing sent); peer stalled mid-PDU",
                       group="fault matrix", inputs=2,
                       outcome="both closed by the node's timeouts; other peers served")


# -- load and restarts ------------------------------------------------------------------------

@pytest.mark.slow
def test_32_concurrent_associations(node_db: str, tmp_path: Path,
                                    reliability: Reliability) -> None:
    store = tmp_path / "store"
    with running_scp(scp_config(node_db, store, max_associations=32)) as scp:
        statuses = _send_concurrently(scp.port, 32, 5)
    assert statuses == [0x0000] * 160
    _check_counts(node_db, store, 32, 5)
    reliability.record("32 concurrent associations", group="fault matrix", inputs=160,
                       outcome="160 x 0x0000, rows = files")


@pytest.mark.slow
def test_node_restarted_during_a_transfer(node_db: str, tmp_path: Path,
                                          reliability: Reliability) -> None:
    var, port = tmp_path / "var", free_port()
    cases = _slices(120, 6)
    sent: list[Sent] = []
    with node_process(var, node_db, port, shutdown_grace_seconds="1") as node:
        sender = threading.Thread(target=lambda: sent.extend(
            _send_until_refused(port, cases, tmp_path / "work")))
        sender.start()
        while len(sent) < 1 and sender.is_alive():
            sender.join(0.2)
        node.terminate()
        assert node.wait(timeout=120) == 0
        sender.join()
    acked_first = {s.case.sop_instance_uid for s in sent if s.status == 0x0000}
    with node_process(var, node_db, port):
        resent = send_cases(port, [c for c in cases if c.sop_instance_uid not in acked_first],
                            tmp_path / "work")
    assert _statuses(resent) == [0x0000] * len(resent)
    engine = create_engine_for(node_db)
    assert lost_instances(engine, var / "store", sent + resent) == []
    assert len(list((var / "store").rglob("*.dcm"))) == len(cases)
    engine.dispose()
    reliability.record("node stopped (SIGTERM) and restarted during a transfer",
                       group="fault matrix", inputs=len(cases),
                       outcome=f"{len(acked_first)} acknowledged before the stop kept; the "
                       "rest sent again after the restart; no duplicate")


def _send_until_refused(port: int, cases: list[Case], folder: Path) -> list[Sent]:
    """Send one case per association call until the node stops answering."""
    sent: list[Sent] = []
    for case in cases:
        try:
            result = send_cases(port, [case], folder)
        except RuntimeError:  # the association could not be established: the node stopped
            break
        sent += result
        if result[0].status is None:
            break
    return sent
