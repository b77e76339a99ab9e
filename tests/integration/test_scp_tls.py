"""A TLS node accepts a SCU whose certificate its CA signed, and refuses plain or unknown ones.

Certificates (a CA, the node's, a client's, and a stranger's self-signed one) are made by
``tests.pki`` with ``cryptography``; nothing is read from the machine.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from db.engine import create_engine_for
from db.events import EventType
from tests.pki import pki
from tests.scp_node.support import (
    CT,
    associate,
    audit_events,
    ct_slice,
    instance_count,
    node_db,
    running_scp,
    scp_config,
    sqlite_template,
)

__all__ = ["node_db", "pki", "sqlite_template"]

def _client_context(pki: dict[str, Path], who: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki["ca"]))
    context.check_hostname = False
    if who is not None:
        context.load_cert_chain(str(pki[f"{who}_cert"]), str(pki[f"{who}_key"]))
    return context


def test_tls_node_accepts_a_trusted_client_and_refuses_others(
    node_db: str, tmp_path: Path, pki: dict[str, Path]
) -> None:
    config = scp_config(node_db, tmp_path / "store", tls_cert_file=pki["node_cert"],
                        tls_key_file=pki["node_key"], tls_ca_file=pki["ca"])
    contexts = [(Verification, [ExplicitVRLittleEndian]), (CT, [ExplicitVRLittleEndian])]
    with running_scp(config) as scp:
        trusted = associate(scp.port, contexts, tls=_client_context(pki, "client"))
        assert trusted.is_established
        assert trusted.send_c_echo().Status == 0x0000
        assert trusted.send_c_store(ct_slice("1.2.826.0.3.1", "1.2.826.0.3.1.1", 0)).Status == 0
        trusted.release()

        plain = associate(scp.port, contexts)
        assert not plain.is_established
        stranger = associate(scp.port, contexts, tls=_client_context(pki, "stranger"))
        assert not stranger.is_established
        anonymous = associate(scp.port, contexts, tls=_client_context(pki, None))
        assert not anonymous.is_established

        # the node keeps serving trusted peers after the refusals
        again = associate(scp.port, contexts, tls=_client_context(pki, "client"))
        assert again.is_established and again.send_c_echo().Status == 0
        again.release()
    engine = create_engine_for(node_db)
    assert instance_count(engine) == 1
    refused = audit_events(engine, EventType.ASSOCIATION_REFUSED)
    assert len(refused) == 3
    assert all(e.detail and "TLS handshake failed" in e.detail["reason"] for e in refused)
    (opened, _) = audit_events(engine, EventType.ASSOCIATION_OPENED)
    assert opened.detail is not None and opened.detail["tls"] is True
