"""The node's TLS server context (PS3.15 Annex B.1: the secure transport connection profile).

The node presents its certificate and key; with a CA file it also requires and verifies a
client certificate signed by that CA (mutual TLS). TLS 1.2 is the floor.
"""

from __future__ import annotations

import ssl
from pathlib import Path


def server_context(cert_file: Path, key_file: Path, ca_file: Path | None = None) -> ssl.SSLContext:
    """An ``SSLContext`` for the listening side; raises ``ssl.SSLError``/``OSError`` early.

    Loading happens here, at start, so a wrong key or an unreadable file stops the node with
    a clear message instead of failing the first handshake.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(cert_file), keyfile=str(key_file))
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
        context.verify_mode = ssl.CERT_REQUIRED
    return context
