"""Certificates made for a test with ``cryptography``: a CA, a server's ("node", for the name
localhost), a client's, and a stranger's signed by another CA. Nothing is read from the
machine. Used by the TLS tests of the node and of the ATNA export.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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
