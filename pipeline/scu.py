"""The requesting side of an association (result delivery, the demo's sender, the tests'
senders): the TLS context of a secure destination, and two settings pynetdicom does not make
by itself.

- TLS (PS3.15 Annex B.1, as on the node's listening side): TLS 1.2 or later; the peer's
  certificate must chain to the node's CA file (else to the system's CAs) and name the host
  the node connects to; the node presents its own certificate when it has one, for a peer
  that requires mutual authentication.

- TCP_NODELAY on the socket, so the last PDU of a request and its answer are not held back by
  Nagle's algorithm.
- A guard on a race in pynetdicom's requestor (seen with 3.0.4). ``send_c_store`` and the other
  ``send_*`` methods pause the association's reactor thread by clearing
  ``Association._reactor_checkpoint`` and waiting until ``_is_paused`` is true. The reactor sets
  ``_is_paused`` just before it waits on the checkpoint, so it can pass the wait a moment before
  the checkpoint is cleared while ``send_*`` already sees it paused. It then takes the answer
  off the message queue with its non-blocking ``dimse.get_msg``, logs "Received unexpected
  C-STORE service message" and drops it; ``send_c_store`` waits out the DIMSE timeout and
  aborts although the peer answered. It shows under CPU load, as a C-STORE that is stored by
  the peer but never acknowledged. The guard makes the non-blocking read return nothing while
  the checkpoint is cleared, that is while a ``send_*`` call owns the association's messages;
  the reactor is the only caller of the non-blocking read.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from typing import Any

from pynetdicom.association import Association


def client_context(ca_file: Path | None = None, cert_file: Path | None = None,
                   key_file: Path | None = None) -> ssl.SSLContext:
    """An ``SSLContext`` for associations the node requests; raises ``ssl.SSLError`` or
    ``OSError`` on an unreadable or mismatched file, before any connection is tried."""
    if (cert_file is None) != (key_file is None):
        raise ValueError('Arguments "cert_file" and "key_file" must be given together.')
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                         cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None and key_file is not None:
        context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    return context


def no_delay(assoc: Association) -> None:
    """TCP_NODELAY on the association's socket (either side; nothing if it has none yet)."""
    sock = getattr(getattr(assoc.dul, "socket", None), "socket", None)
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def prepare_requestor(assoc: Association) -> None:
    """TCP_NODELAY, and the guard on the reactor race, on an established association."""
    no_delay(assoc)
    dimse = assoc.dimse
    read = dimse.get_msg
    checkpoint = assoc._reactor_checkpoint  # the flag send_* clears

    def guarded_read(block: bool = False) -> Any:
        if not block and not checkpoint.is_set():
            return None, None
        return read(block)

    dimse.get_msg = guarded_read  # type: ignore[method-assign]
