"""ATNA export: audit events reach a collector the test runs, over UDP and over TLS, as RFC 5424
syslog messages whose XML has every element and attribute PS3.15 A.5.1 requires.

``check_audit_message`` is written from the schema of PS3.15 A.5.1 (the DICOM audit message
schema): the required children in their order and cardinality, the required attributes and
their enumerations, and the three required attributes of every coded value.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from db.engine import create_engine_for
from db.events import ATNA, EventType
from lungpath.atna import AtnaExporter, Source, sender_for
from lungpath.settings import Settings
from tests.conftest import free_port
from tests.hardening.conftest import Reliability
from tests.pki import pki
from tests.scp_node.support import CT, associate, ct_slice, node_process, running_scp, scp_config

__all__ = ["pki"]

SYSLOG = re.compile(rb"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|\[.*?\]) \xef\xbb\xbf(.*)",
                    re.DOTALL)
CODED = ("csd-code", "codeSystemName", "originalText")


def _coded(element: ET.Element, where: str) -> None:
    for attribute in CODED:
        assert element.get(attribute), f"{where}/{element.tag} lacks @{attribute}"


def _one(parent: ET.Element, tag: str) -> ET.Element:
    found = parent.findall(tag)
    assert len(found) == 1, f"{parent.tag} needs exactly one {tag}, has {len(found)}"
    return found[0]


def check_audit_message(root: ET.Element) -> None:
    """Assert the required content of a DICOM audit message (PS3.15 A.5.1)."""
    assert root.tag == "AuditMessage"
    order = ["EventIdentification", "ActiveParticipant", "AuditSourceIdentification",
             "ParticipantObjectIdentification"]
    tags = [child.tag for child in root]
    assert tags == sorted(tags, key=order.index), f"children out of schema order: {tags}"
    event = _one(root, "EventIdentification")
    datetime.fromisoformat(event.get("EventDateTime", ""))  # xs:dateTime, required
    assert event.get("EventOutcomeIndicator") in ("0", "4", "8", "12")
    assert event.get("EventActionCode", "C") in ("C", "R", "U", "D", "E")
    _coded(_one(event, "EventID"), "EventIdentification")
    for code in event.findall("EventTypeCode"):
        _coded(code, "EventIdentification")
    participants = root.findall("ActiveParticipant")
    assert participants, "at least one ActiveParticipant is required"
    for participant in participants:
        assert participant.get("UserID"), "ActiveParticipant lacks @UserID"
        assert participant.get("UserIsRequestor") in ("true", "false")
        if participant.get("NetworkAccessPointTypeCode") is not None:
            assert participant.get("NetworkAccessPointTypeCode") in ("1", "2", "3", "4", "5")
            assert participant.get("NetworkAccessPointID")
        for role in participant.findall("RoleIDCode"):
            _coded(role, "ActiveParticipant")
    audit_source = _one(root, "AuditSourceIdentification")
    assert audit_source.get("AuditSourceID"), "AuditSourceIdentification lacks @AuditSourceID"
    for code in audit_source.findall("AuditSourceTypeCode"):
        _coded(code, "AuditSourceIdentification")
    for target in root.findall("ParticipantObjectIdentification"):
        assert target.get("ParticipantObjectID"), "lacks @ParticipantObjectID"
        assert target.get("ParticipantObjectTypeCode", "2") in ("1", "2", "3", "4")
        assert 1 <= int(target.get("ParticipantObjectTypeCodeRole", "3")) <= 24
        _coded(_one(target, "ParticipantObjectIDTypeCode"), "ParticipantObjectIdentification")


def parse_syslog(message: bytes) -> ET.Element:
    """The audit message inside one RFC 5424 message, after checking the syslog header."""
    match = SYSLOG.fullmatch(message)
    assert match is not None, message[:120]
    priority, stamp, host, app, _procid, msgid, _data, body = match.groups()
    assert int(priority) == 85 and app == b"lungpath" and msgid == b"IHE+RFC-3881"
    assert host != b"-" and stamp.endswith(b"Z")
    datetime.fromisoformat(stamp.decode().replace("Z", "+00:00"))
    return ET.fromstring(body)


class UdpCollector:
    """A syslog collector on a UDP port (RFC 5426): one message per datagram."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(30)
        self.port = self.socket.getsockname()[1]

    def receive_until(self, study_uid: str) -> list[ET.Element]:
        """Messages until one names ``study_uid``."""
        messages: list[ET.Element] = []
        while study_uid not in {_study(m) for m in messages}:
            data, _ = self.socket.recvfrom(65535)
            messages.append(parse_syslog(data))
        return messages


class TlsCollector:
    """A syslog collector over TLS (RFC 5425): octet-counted frames on each connection."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert), str(key))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(30)
        self.port = self.listener.getsockname()[1]
        self.frames: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        raw, _ = self.listener.accept()
        with self.context.wrap_socket(raw, server_side=True) as conn:
            buffer = b""
            while chunk := conn.recv(65536):
                buffer += chunk
                while b" " in buffer:
                    length, _, rest = buffer.partition(b" ")
                    assert length.isdigit(), buffer[:40]
                    if len(rest) < int(length):
                        break
                    self.frames.append(rest[: int(length)])
                    buffer = rest[int(length):]

    def close(self) -> None:
        self.listener.close()


def _study(message: ET.Element) -> str | None:
    target = message.find("ParticipantObjectIdentification")
    return None if target is None else target.get("ParticipantObjectID")


def _event_id(message: ET.Element) -> str:
    return message.find("EventIdentification/EventID").get("csd-code")  # type: ignore[union-attr]


@contextmanager
def _stored_study(node_db: str, store: Path) -> Iterator[str]:
    """A study of two slices stored through a Storage SCP: events to export."""
    study = "1.2.826.0.13.50"
    with running_scp(scp_config(node_db, store)) as scp:
        assoc = associate(scp.port, [(CT, [ExplicitVRLittleEndian])])
        for index in range(2):
            assert assoc.send_c_store(ct_slice(study, f"{study}.1", index)).Status == 0
        assoc.release()
        yield study


def test_udp_export_from_the_node_process(node_db: str, tmp_path: Path,
                                          reliability: Reliability) -> None:
    collector = UdpCollector()
    study = "1.2.826.0.13.51"
    port = free_port()
    with node_process(tmp_path / "var", node_db, port,
                      atna_syslog_url=f"udp://127.0.0.1:{collector.port}"):
        assoc = associate(port, [(CT, [ExplicitVRLittleEndian])])
        assert assoc.send_c_store(ct_slice(study, f"{study}.1", 0)).Status == 0
        assoc.release()
        messages = collector.receive_until(study)
    for message in messages:
        check_audit_message(message)
    assert {_event_id(m) for m in messages} >= {"110102", "110104"}
    (received,) = [m for m in messages if _study(m) == study]
    assert _event_id(received) == "110104"
    requestors = [p.get("UserID") for p in received.findall("ActiveParticipant")
                  if p.get("UserIsRequestor") == "true"]
    assert requestors == ["SCU"]
    reliability.record("ATNA export over UDP from `lungpath serve`", group="security",
                       inputs=len(messages), outcome="every message has the PS3.15 A.5.1 "
                       "required elements")


def test_tls_export_of_every_mapped_event(node_db: str, tmp_path: Path, pki: dict[str, Path],
                                          reliability: Reliability) -> None:
    collector = TlsCollector(pki["node_cert"], pki["node_key"])
    engine = create_engine_for(node_db)
    exporter = AtnaExporter(engine, sender_for(f"tls://localhost:{collector.port}", pki["ca"]),
                            Source("LUNGPATH", "node.example"))
    exporter.start()
    with _stored_study(node_db, tmp_path / "store"):
        pass
    exporter.stop()
    collector.thread.join(timeout=30)
    collector.close()
    mapped = {t.value for t, atna in ATNA.items() if atna is not None}
    assert exporter.sent == len(collector.frames) >= 4
    messages = [parse_syslog(frame) for frame in collector.frames]
    for message in messages:
        check_audit_message(message)
    assert {_event_id(m) for m in messages} == {"110102", "110104"}
    assert EventType.INSTANCE_RECEIVED.value in mapped
    engine.dispose()
    reliability.record("ATNA export over TLS (RFC 5425 framing)", group="security",
                       inputs=len(messages), outcome="every message has the PS3.15 A.5.1 "
                       "required elements")


def test_tls_export_refuses_an_untrusted_collector(node_db: str, pki: dict[str, Path]) -> None:
    collector = TlsCollector(pki["stranger_cert"], pki["stranger_key"])
    engine = create_engine_for(node_db)
    exporter = AtnaExporter(engine, sender_for(f"tls://localhost:{collector.port}", pki["ca"]),
                            Source("LUNGPATH", "node.example"))
    exporter.cursor = 0
    assert exporter.export_pending() == 0  # the migration's events stay pending
    assert exporter.cursor == 0
    collector.close()
    engine.dispose()


@pytest.mark.parametrize("url", ["udp://host", "http://h:1", "tls://h:0", "udp://h:99999"])
def test_the_url_setting_is_checked(url: str, clean_env: Path) -> None:
    with pytest.raises(ValueError, match="atna_syslog_url"):
        Settings(atna_syslog_url=url)
