"""The listening Storage SCP: one pynetdicom AE, its server socket and a graceful stop.

pynetdicom owns the protocol; this module adds what it lacks on the socket side: TCP_NODELAY
on every accepted connection (without it each C-STORE response waits ~40 ms on Nagle and
delayed ACK), SO_REUSEPORT so that several receiving processes can share one port, and the
TLS handshake moved from the accept loop into the connection's own thread, with a timeout,
so a silent or plain-text peer neither blocks other connections nor escapes the audit log.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from pynetdicom import AE, _config
from pynetdicom.transport import ThreadedAssociationServer
from sqlalchemy import Engine

from scp_node.config import ScpConfig
from scp_node.contexts import supported_contexts
from scp_node.prompt import PromptRequestHandler
from scp_node.receiver import Receiver
from scp_node.storage import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, InstanceStore
from scp_node.tls import server_context

logger = logging.getLogger(__name__)


class _Server(ThreadedAssociationServer):
    """pynetdicom's threaded server with the socket options and TLS handling above."""

    daemon_threads = True

    def __init__(self, *args: Any, reuse_port: bool, handshake_timeout: float,
                 network_timeout: float, tls_context: ssl.SSLContext | None,
                 on_handshake_failure: Callable[[tuple[str, int], OSError], None],
                 **kwargs: Any) -> None:
        self.reuse_port = reuse_port
        self.handshake_timeout = handshake_timeout
        self.network_timeout = network_timeout
        self.tls_context = tls_context
        self.on_handshake_failure = on_handshake_failure
        super().__init__(*args, **kwargs)

    def server_bind(self) -> None:
        if self.reuse_port:
            assert self.socket is not None
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client, address = self.socket.accept()
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # a peer that stops in the middle of a PDU must not hold its thread past the network
        # timeout: pynetdicom waits for PDUs with select(), then reads each one whole
        client.settimeout(self.network_timeout)
        return client, address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        if self.tls_context is not None:
            try:
                request.settimeout(self.handshake_timeout)
                request = self.tls_context.wrap_socket(request, server_side=True)
                request.settimeout(self.network_timeout)
            except OSError as e:  # ssl.SSLError, a timeout or a reset
                self.shutdown_request(request)
                self.on_handshake_failure(client_address, e)
                return
        super().process_request_thread(request, client_address)


class StorageSCP:
    """One receiving process's DICOM listener.

    ``start()`` binds and serves in a background thread; ``stop()`` stops accepting, lets the
    peers finish (up to ``shutdown_grace`` seconds), then aborts what is left once no
    C-STORE is in flight.
    """

    def __init__(self, config: ScpConfig, engine: Engine) -> None:
        self.config = config
        self.store = InstanceStore(config.store_dir, min_free_bytes=config.min_free_bytes)
        self.receiver = Receiver(config, engine, self.store)
        self.tls_context = (
            server_context(config.tls_cert_file, config.tls_key_file, config.tls_ca_file)
            if config.tls_cert_file is not None and config.tls_key_file is not None else None
        )
        self.ae = self._make_ae()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def _make_ae(self) -> AE:
        # pynetdicom's default handlers log every PDU and DIMSE message: CPU on the hot path.
        _config.LOG_HANDLER_LEVEL = "none"
        ae = AE(ae_title=self.config.ae_title)
        ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
        ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
        # the receiver refuses beyond the limit itself (and audits it); pynetdicom's own
        # check, which counts the same way, stays one above as a backstop
        ae.maximum_associations = self.config.max_associations + 1
        ae.maximum_pdu_size = self.config.max_pdu
        ae.acse_timeout = self.config.acse_timeout
        ae.dimse_timeout = self.config.dimse_timeout
        ae.network_timeout = self.config.network_timeout
        ae.supported_contexts = supported_contexts()
        return ae

    @property
    def port(self) -> int:
        """The port the server listens on (the OS's pick when configured as 0)."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Bind the port and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError("the server is already started")
        server = cast(_Server, self.ae.make_server(
            (self.config.host, self.config.port),
            evt_handlers=self.receiver.handlers(),
            server_class=_Server,
            request_handler=PromptRequestHandler,
            reuse_port=self.config.reuse_port,
            handshake_timeout=self.config.acse_timeout,
            network_timeout=self.config.network_timeout,
            tls_context=self.tls_context,
            on_handshake_failure=self.receiver.refuse_handshake,
        ))
        self._server = server
        self.ae._servers.append(server)
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="scp-accept", daemon=True)
        self._thread.start()
        logger.info("listening ae_title=%s address=%s:%d tls=%s", self.config.ae_title,
                    self.config.host, self.port, self.config.tls)

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting; wait up to ``grace`` s for associations to end, then abort them."""
        server = self._server
        if server is None:
            return
        grace = self.config.shutdown_grace if grace is None else grace
        server.shutdown()  # stops serve_forever and closes the listening socket
        deadline = time.monotonic() + grace
        while server.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        left = server.active_associations
        if left:
            self.receiver.wait_idle(max(self.config.dimse_timeout, 1.0))
            for assoc in left:
                assoc.abort()
        self._server = None
        self.receiver.close()
        logger.info("stopped ae_title=%s aborted=%d", self.config.ae_title, len(left))
