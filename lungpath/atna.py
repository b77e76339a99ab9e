"""ATNA export: audit events sent to an Audit Record Repository as DICOM audit messages.

Each new row of the audit table whose type has a DICOM audit event (``db.events.ATNA``)
becomes an ``AuditMessage`` (DICOM PS3.15 A.5: Event Identification, the Active Participants,
the Audit Source, the study as Participant Object) inside an RFC 5424 syslog message, sent
over UDP (RFC 5426, one message per datagram) or TLS (RFC 5425, octet-counting framing).
The table stays the source of truth: the exporter reads it from the node process, starting
after the newest event present when it starts, and retries a TLS send that failed on its
next pass; a repository that is down does not slow the C-STORE path.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from sqlalchemy import Engine, func, select

from db.engine import transaction
from db.events import ATNA, EventType, Outcome
from db.models import AuditEvent
from pipeline.scu import client_context

logger = logging.getLogger(__name__)

#: ATNA Event Outcome Indicator per outcome (PS3.15 A.5.1).
OUTCOME_INDICATOR = {Outcome.SUCCESS: "0", Outcome.MINOR_FAILURE: "4",
                     Outcome.SERIOUS_FAILURE: "8", Outcome.MAJOR_FAILURE: "12"}
#: RFC 5424 PRI: facility 10 (security/authorization), severity 5 (notice), as IHE ITI-20.
PRIORITY = 10 * 8 + 5
MSGID = "IHE+RFC-3881"
APP_NAME = "lungpath"
#: Events read from the table per pass.
BATCH = 500
_RECEIVED_FROM_PEER = frozenset({
    EventType.INSTANCE_RECEIVED, EventType.INSTANCE_DUPLICATE, EventType.INSTANCE_REPLACED,
    EventType.INSTANCE_OWN_OUTPUT, EventType.INSTANCE_REJECTED, EventType.ASSOCIATION_OPENED,
    EventType.ASSOCIATION_CLOSED, EventType.ASSOCIATION_REFUSED,
})


@dataclass(frozen=True)
class SyslogTarget:
    """Where messages go: ``udp://host:port`` or ``tls://host:port``."""

    transport: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> SyslogTarget:
        transport, _, address = url.partition("://")
        host, _, port = address.rpartition(":")
        if transport not in ("udp", "tls") or not host or not port.isdigit():
            raise ValueError(f"url must be udp://host:port or tls://host:port, got {url!r}")
        return cls(transport, host.strip("[]"), int(port))


@dataclass(frozen=True)
class Source:
    """Who reports: the node's AE title and host (the Audit Source and a participant)."""

    ae_title: str
    host: str

    @property
    def audit_source_id(self) -> str:
        return f"{self.ae_title}@{self.host}"


def _code(parent: ET.Element, tag: str, code: str, meaning: str,
          scheme: str = "DCM") -> ET.Element:
    return ET.SubElement(parent, tag, {"csd-code": code, "codeSystemName": scheme,
                                       "originalText": meaning})


def audit_message(event: AuditEvent, source: Source) -> bytes | None:
    """The DICOM audit message XML of ``event``; ``None`` for a workflow step with no DICOM
    audit event (``db.events.ATNA``)."""
    kind = EventType(event.event_type)
    atna = ATNA[kind]
    if atna is None:
        return None
    root = ET.Element("AuditMessage")
    when = event.occurred_at if event.occurred_at.tzinfo else event.occurred_at.replace(tzinfo=UTC)
    identification = ET.SubElement(root, "EventIdentification", {
        "EventActionCode": atna.action,
        "EventDateTime": when.isoformat(timespec="milliseconds"),
        "EventOutcomeIndicator": OUTCOME_INDICATOR[Outcome(event.outcome)],
    })
    _code(identification, "EventID", atna.event_id, atna.event_name)
    if atna.type_code is not None and atna.type_name is not None:
        _code(identification, "EventTypeCode", atna.type_code, atna.type_name)
    reason = (event.detail or {}).get("reason")
    if reason:
        ET.SubElement(identification, "EventOutcomeDescription").text = str(reason)
    _participants(root, event, kind, source)
    audit_source = ET.SubElement(root, "AuditSourceIdentification",
                                 {"AuditSourceID": source.audit_source_id})
    _code(audit_source, "AuditSourceTypeCode", "4", "Application Server")
    if event.study_uid:
        study = ET.SubElement(root, "ParticipantObjectIdentification", {
            "ParticipantObjectID": event.study_uid, "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "3"})
        _code(study, "ParticipantObjectIDTypeCode", "110180", "Study Instance UID")
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _participants(root: ET.Element, event: AuditEvent, kind: EventType, source: Source) -> None:
    """The peer that sent data (requestor, source role) and the node (destination role) for
    network events; otherwise the actor that acted."""
    detail = event.detail or {}
    if kind in _RECEIVED_FROM_PEER and (event.calling_ae or detail.get("peer_host")):
        peer = ET.SubElement(root, "ActiveParticipant", {
            "UserID": event.calling_ae or str(detail.get("peer_host")),
            "UserIsRequestor": "true"})
        if detail.get("peer_host"):
            peer.set("NetworkAccessPointID", str(detail["peer_host"]))
            peer.set("NetworkAccessPointTypeCode", "2")
        _code(peer, "RoleIDCode", "110153", "Source Role ID")
        node = ET.SubElement(root, "ActiveParticipant", {
            "UserID": source.ae_title, "UserIsRequestor": "false",
            "NetworkAccessPointID": source.host, "NetworkAccessPointTypeCode": "1"})
        _code(node, "RoleIDCode", "110152", "Destination Role ID")
        return
    actor = ET.SubElement(root, "ActiveParticipant", {"UserID": event.actor,
                                                      "UserIsRequestor": "true"})
    _code(actor, "RoleIDCode", "110150", "Application")


def syslog_message(xml: bytes, *, host: str, at: datetime) -> bytes:
    """One RFC 5424 message carrying ``xml`` (UTF-8, with the BOM the RFC asks for)."""
    stamp = at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    header = f"<{PRIORITY}>1 {stamp} {_field(host, 255)} {APP_NAME} {os.getpid()} {MSGID} - "
    return header.encode("ascii") + b"\xef\xbb\xbf" + xml


def _field(value: str, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII without spaces, ``-`` when empty."""
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


class Sender(Protocol):
    """Sends one syslog message; raises ``OSError`` when the collector cannot be reached."""

    def send(self, message: bytes) -> None: ...

    def close(self) -> None: ...


class UdpSender:
    """RFC 5426: one message per datagram, nothing acknowledged."""

    def __init__(self, target: SyslogTarget) -> None:
        self.address = (target.host, target.port)
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send(self, message: bytes) -> None:
        self.socket.sendto(message, self.address)

    def close(self) -> None:
        self.socket.close()


class TlsSender:
    """RFC 5425: ``LEN SP MSG`` frames on one TLS connection, opened again after a failure."""

    def __init__(self, target: SyslogTarget, ca_file: Path | None, timeout: float = 10.0) -> None:
        self.target = target
        self.timeout = timeout
        self.context = client_context(ca_file)
        self._socket: ssl.SSLSocket | None = None

    def send(self, message: bytes) -> None:
        if self._socket is None:
            raw = socket.create_connection((self.target.host, self.target.port), self.timeout)
            try:
                self._socket = self.context.wrap_socket(raw, server_hostname=self.target.host)
            except OSError:
                raw.close()
                raise
        try:
            self._socket.sendall(str(len(message)).encode("ascii") + b" " + message)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        """Close with a TLS close_notify, waiting (up to the timeout) for the collector's:
        a bare close while the server's session tickets sit unread makes the kernel reset
        the connection, and the collector may lose the last messages."""
        if self._socket is not None:
            try:
                self._socket.unwrap().close()
            except OSError:
                self._socket.close()
            self._socket = None


def sender_for(url: str, ca_file: Path | None) -> Sender:
    """The sender for ``atna_syslog_url``."""
    target = SyslogTarget.parse(url)
    if target.transport == "udp":
        return UdpSender(target)
    return TlsSender(target, ca_file)


class AtnaExporter:
    """A thread of the node process that sends new audit events every ``interval`` s."""

    def __init__(self, engine: Engine, sender: Sender, source: Source, *,
                 interval: float = 1.0) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval}")
        self.engine = engine
        self.sender = sender
        self.source = source
        self.interval = interval
        self.cursor = 0
        self.sent = 0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Export the events recorded from now on."""
        with transaction(self.engine) as session:
            self.cursor = int(session.scalar(select(func.max(AuditEvent.id))) or 0)
        self._thread = threading.Thread(target=self._run, name="atna-export", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Send what is left, then stop."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.export_pending()
        self.sender.close()

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            self.export_pending()

    def export_pending(self) -> int:
        """Send the events after the cursor; stop at the first send that fails (it is
        tried again on the next pass). Returns how many were sent."""
        try:
            with transaction(self.engine) as session:
                events = list(session.scalars(select(AuditEvent)
                                              .where(AuditEvent.id > self.cursor)
                                              .order_by(AuditEvent.id).limit(BATCH)))
                session.expunge_all()
        except Exception:
            logger.exception("ATNA export: cannot read the audit table")
            return 0
        sent = 0
        for event in events:
            xml = audit_message(event, self.source)
            if xml is not None:
                try:
                    self.sender.send(syslog_message(xml, host=self.source.host,
                                                    at=event.occurred_at))
                except OSError as e:
                    logger.warning("ATNA export: collector unreachable (%s); event %d and "
                                   "later are sent again on the next pass", e, event.id)
                    return sent
                sent += 1
            self.cursor = event.id
        self.sent += sent
        return sent
