"""The listening Storage SCP: one pynetdicom AE, its server socket and a graceful stop.

pynetdicom owns the protocol; this module adds what it lacks on the socket side: TCP_NODELAY
on every accepted connection (without it each C-STORE response waits ~40 ms on Nagle and
delayed ACK), SO_REUSEPORT so that several receiving processes can share one port, and the
TLS handshake moved from the accept loop into the connection's own thread, with a timeout,
so a silent or plain-text peer neither blocks other connections nor escapes the audit log.

Per association it also replaces two costly steps of pynetdicom's, the two largest of
its per-instance CPU: the socket reads each PDU whole (``WholeReadSocket``; pynetdicom reads
4 KiB per call, some 270 system calls for a 512 x 512 CT slice), and the command set of each
plain C-STORE response is encoded directly (``encode_store_response``; pynetdicom builds a
pydicom data set for it and encodes it twice, about a fifth of the node's CPU per instance).
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, cast

from pynetdicom import AE, _config, evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.transport import AssociationSocket, ThreadedAssociationServer
from sqlalchemy import Engine

from scp_node.config import ScpConfig
from scp_node.contexts import supported_contexts
from scp_node.prompt import PromptRequestHandler
from scp_node.receiver import Receiver
from scp_node.storage import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, InstanceStore
from scp_node.tls import server_context

logger = logging.getLogger(__name__)

#: Command Field of a C-STORE response (PS3.7 Table E.1-1).
C_STORE_RSP = 0x8001
#: Command Data Set Type: no data set follows (PS3.7 Table E.1-1).
NO_DATA_SET = 0x0101
#: Message Control Header of a PDV holding a whole command set (PS3.8 E.2).
LAST_COMMAND_FRAGMENT = b"\x03"


def encode_store_response(response: C_STORE) -> bytes | None:
    """The command set of a C-STORE response (PS3.7 9.3.1.2) as pynetdicom encodes it
    (Implicit VR Little Endian, group length first, UIDs padded with NUL); ``None`` for a
    request, or a response with an Error Comment or Offending Element, which pynetdicom
    encodes itself (failures are rare: only successes need to be cheap)."""
    if (response.MessageIDBeingRespondedTo is None or response.Status is None
            or response.ErrorComment is not None or response.OffendingElement is not None):
        return None
    elements = [
        _command_element(0x0002, _uid_value(response.AffectedSOPClassUID)),
        _command_element(0x0100, struct.pack("<H", C_STORE_RSP)),
        _command_element(0x0120, struct.pack("<H", response.MessageIDBeingRespondedTo)),
        _command_element(0x0800, struct.pack("<H", NO_DATA_SET)),
        _command_element(0x0900, struct.pack("<H", response.Status)),
        _command_element(0x1000, _uid_value(response.AffectedSOPInstanceUID)),
    ]
    body = b"".join(elements)
    return _command_element(0x0000, struct.pack("<L", len(body))) + body


def _command_element(element: int, value: bytes | None) -> bytes:
    """One element of group 0000, Implicit VR Little Endian; empty when ``value`` is None
    (pynetdicom leaves out the optional elements a response does not set)."""
    if value is None:
        return b""
    return struct.pack("<HHL", 0x0000, element, len(value)) + value


def _uid_value(uid: str | None) -> bytes | None:
    if uid is None:
        return None
    value = uid.encode("ascii")
    return value + b"\x00" if len(value) % 2 else value


class _StoreResponses(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider, sending plain C-STORE responses encoded by
    ``encode_store_response``; everything else, and everything while a handler watches the
    messages sent (``EVT_DIMSE_SENT`` wants pynetdicom's message object), as before."""

    def send_msg(self, primitive: Any, context_id: int) -> None:
        command = (encode_store_response(primitive) if isinstance(primitive, C_STORE)
                   and not self.assoc.get_handlers(evt.EVT_DIMSE_SENT) else None)
        limit = self.maximum_pdu_size
        if command is None or (limit and len(command) > limit - 6):
            super().send_msg(primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list.append(
            (context_id, LAST_COMMAND_FRAGMENT + command))
        self.dul.send_pdu(pdata)


class WholeReadSocket(AssociationSocket):
    """pynetdicom's association socket, reading a PDU into one buffer with as few calls as
    the network allows, instead of 4 KiB at a time appended to a growing buffer.

    The buffer grows with what arrives (at most twice the bytes received, beyond
    ``FIRST_BUFFER``), never with the length a PDU header announces: a peer announcing a
    4 GiB PDU and sending ten bytes costs ten bytes, not 4 GiB.
    """

    #: bytes allocated up front for one PDU: a 512 x 512 CT slice in one PDU fits
    FIRST_BUFFER = 1 << 20

    def recv(self, nr_bytes: int) -> bytearray:
        sock = cast(socket.socket, self.socket)
        data = bytearray(min(nr_bytes, self.FIRST_BUFFER))
        read = 0
        while read < nr_bytes:
            if read == len(data):
                data.extend(bytes(min(len(data), nr_bytes - read)))
            with memoryview(data) as view:
                count = sock.recv_into(view[read:])
            if not count:  # the peer closed the connection: what came so far
                break
            read += count
        del data[read:]
        return data


class _RequestHandler(PromptRequestHandler):
    """The prompt request handler (``scp_node.prompt``) whose associations read through
    ``WholeReadSocket`` and send C-STORE responses through ``_StoreResponses``."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        assoc.dul.socket.__class__ = WholeReadSocket
        assoc.dimse.__class__ = _StoreResponses
        return assoc


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
            request_handler=_RequestHandler,
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
