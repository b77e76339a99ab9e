"""A TLS node accepts a SCU whose certificate its CA signed, and refuses plain or unknown ones.

Certificates (a CA, the node's, a client's, and a stranger's self-signed one) are made here
with ``cryptography``; nothing is read from the machine.
"""

from __future__ import annotations

import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from db.engine import create_engine_for
from db.events import EventType
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

__all__ = ["node_db", "sqlite_template"]

KeyAndCert = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


def _certificate(name: str, issuer: KeyAndCert | None, *, ca: bool = False) -> KeyAndCert:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_key, issuer_name = (issuer[0], issuer[1].subject) if issuer else (key, subject)
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
    return key, builder.sign(signer_key, hashes.SHA256())


def _write(folder: Path, name: str, pair: KeyAndCert) -> tuple[Path, Path]:
    key_path, cert_path = folder / f"{name}.key", folder / f"{name}.pem"
    key_path.write_bytes(pair[0].private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    cert_path.write_bytes(pair[1].public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca = _certificate("lungpath test CA", None, ca=True)
    files: dict[str, Path] = {}
    _, files["ca"] = _write(tmp_path, "ca", ca)
    files["node_key"], files["node_cert"] = _write(tmp_path, "node", _certificate("node", ca))
    files["client_key"], files["client_cert"] = _write(tmp_path, "client",
                                                       _certificate("ct-scanner", ca))
    files["stranger_key"], files["stranger_cert"] = _write(
        tmp_path, "stranger", _certificate("stranger", _certificate("other CA", None, ca=True)))
    return files


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
