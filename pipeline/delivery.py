"""Delivery of a result's SR, summary images and SEG to the PACS, with retries.

One ``Delivery`` row per (result, object, destination) holds the state: delivered
(``delivered_at`` set), pending (``next_retry_at`` set: due at that time) or stopped (both
unset: held, refused or given up; ``last_status`` says which). Every attempt updates the row
and writes one audit event in the same transaction.

Policy (docs/orchestration.md):
- association failures (peer unreachable, association rejected or aborted, no answer) and
  "out of resources" (0xA7xx) are transient: retried with exponential back-off, starting at
  ``initial_backoff_s`` and doubling up to ``max_backoff_s``, until ``window_s`` after the
  delivery was armed; then it is given up (audited as a serious failure);
- any other failure status (0xA9xx data set does not match, 0xCxxx cannot understand,
  SOP class not supported, no accepted presentation context) is a refusal: retrying would
  get the same answer, so the delivery stops at once and is audited; ``lungpath resend``
  re-arms it after the PACS is fixed;
- warning statuses (0xB000, 0xB006, 0xB007) count as delivered, with the status recorded;
- a pending row whose destination has left the settings is stopped as refused ("destination
  no longer configured"), never sent: its TLS setting is no longer known.
Research interlock: results of a checkpoint trained on synthetic data are delivered only in
research mode; otherwise the rows are created stopped ("held") and audited.

A destination marked ``tls`` is reached over TLS with ``pipeline.scu.client_context``: the
peer's certificate is verified against the node's CA file and host name, and the node shows
its own certificate to a peer that asks for one. A failed handshake is an association failure
(retried): the peer may be mid-way through a certificate change.

The association is prepared by ``pipeline.scu.prepare_requestor``: TCP_NODELAY (pynetdicom
leaves Nagle on, and each C-STORE then waits for the peer's delayed ACK: 90 ms instead of 4 ms
for one SR, MEASURED.md), and the guard on pynetdicom's reactor race that can drop an answer.
"""

from __future__ import annotations

import enum
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pydicom
from pynetdicom import AE
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from db.deliveries import arm_deliveries, lock_delivery, record_attempt
from db.engine import transaction
from db.events import EventType, Outcome, audit
from db.models import Delivery, Result, Study
from pipeline.scu import client_context, prepare_requestor

logger = logging.getLogger(__name__)

OBJECTS = ("SR", "SC", "SEG")
RESEARCH_SYNTHETIC = "research-synthetic"
HELD = "held: research interlock (results of a synthetic-data checkpoint need research_mode)"
_WARNINGS = (0xB000, 0xB006, 0xB007)


@dataclass(frozen=True)
class Destination:
    """A peer that receives results; ``for_calling_ae`` None: for any sender without its own;
    ``tls``: reached over TLS."""

    ae_title: str
    host: str
    port: int
    for_calling_ae: str | None = None
    tls: bool = False

    def __post_init__(self) -> None:
        if not self.ae_title.strip() or len(self.ae_title) > 16:
            raise ValueError(f'Argument "ae_title" must be 1-16 characters, got {self.ae_title!r}.')
        if not 1 <= self.port <= 65535:
            raise ValueError(f'Argument "port" must be 1..65535, got {self.port}.')


@dataclass(frozen=True)
class DeliveryConfig:
    """Who we are, where results go, the retry policy (seconds), and for TLS destinations the
    CA file their certificates must chain to (None: the system's CAs) and the node's own
    certificate and key (None: none shown)."""

    calling_ae: str
    destinations: tuple[Destination, ...]
    research_mode: bool = False
    initial_backoff_s: float = 30.0
    max_backoff_s: float = 3600.0
    window_s: float = 86400.0
    timeout_s: float = 30.0
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None

    def __post_init__(self) -> None:
        if not 0 < self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError('Arguments "initial_backoff_s" and "max_backoff_s" must satisfy '
                             f"0 < initial <= max, got {self.initial_backoff_s}, "
                             f"{self.max_backoff_s}.")
        for name in ("window_s", "timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f'Argument "{name}" must be > 0, got {getattr(self, name)}.')

    @property
    def claim_s(self) -> float:
        """How long a pass owns the rows it is sending (another pass leaves them alone)."""
        return 4 * self.timeout_s + 60.0

    def tls_context(self) -> ssl.SSLContext:
        """The client TLS context of the TLS destinations (``ssl.SSLError`` or ``OSError``
        for an unreadable or mismatched file)."""
        return client_context(self.tls_ca_file, self.tls_cert_file, self.tls_key_file)


def destinations_for(calling_ae: str | None, destinations: Sequence[Destination]
                     ) -> list[Destination]:
    """The destinations of a study sent by ``calling_ae``: its own ones, else the defaults."""
    own = [d for d in destinations
           if d.for_calling_ae is not None and calling_ae is not None
           and d.for_calling_ae.strip() == calling_ae.strip()]
    return own or [d for d in destinations if d.for_calling_ae is None]


def backoff_s(attempts: int, initial_s: float, max_s: float) -> float:
    """Delay after the ``attempts``-th failed attempt: initial, doubling, capped at max."""
    if attempts < 1:
        raise ValueError(f'Argument "attempts" must be >= 1, got {attempts}.')
    return min(max_s, initial_s * 2.0 ** min(attempts - 1, 60))


class Verdict(enum.StrEnum):
    """What one attempt means for its delivery."""

    DELIVERED = "delivered"
    RETRY = "retry"
    REFUSED = "refused"


def judge_status(status: int | None) -> Verdict:
    """The policy of the module docstring for a C-STORE status (None: no answer)."""
    if status is None:
        return Verdict.RETRY
    if status == 0x0000 or status in _WARNINGS:
        return Verdict.DELIVERED
    if status & 0xFF00 == 0xA700:
        return Verdict.RETRY
    return Verdict.REFUSED


@dataclass(frozen=True)
class Attempt:
    """The outcome of sending one object's files to one destination."""

    verdict: Verdict
    status: str


def send_files(destination: Destination, config: DeliveryConfig,
               objects: dict[str, list[Path]]) -> dict[str, Attempt]:
    """C-STORE every file of ``objects`` to ``destination`` over one association."""
    datasets = {kind: [pydicom.dcmread(p) for p in paths] for kind, paths in objects.items()}
    ae = AE(ae_title=config.calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = config.timeout_s
    for ds in (d for items in datasets.values() for d in items):
        ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    tls_args = None
    if destination.tls:
        try:
            tls_args = (config.tls_context(), destination.host)
        except (ssl.SSLError, OSError, ValueError) as e:
            return dict.fromkeys(objects, Attempt(Verdict.RETRY, f"TLS set-up failed: {e}"))
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title,
                         tls_args=tls_args)
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else \
            "unreachable or no answer"
        if destination.tls and not assoc.is_rejected:
            why += " (or the TLS handshake failed: certificates, TLS version)"
        failed = Attempt(Verdict.RETRY, f"association {why}")
        return dict.fromkeys(objects, failed)
    prepare_requestor(assoc)
    try:
        return {kind: _store_all(assoc, items) for kind, items in datasets.items()}
    finally:
        if assoc.is_established:
            assoc.release()


def _store_all(assoc: object, datasets: Sequence[pydicom.Dataset]) -> Attempt:
    last = Attempt(Verdict.DELIVERED, "0x0000")
    for ds in datasets:
        if not getattr(assoc, "is_established", False):
            return Attempt(Verdict.RETRY, "association aborted")
        try:
            answer = assoc.send_c_store(ds)  # type: ignore[attr-defined]
        except ValueError as e:  # no accepted presentation context for the SOP class
            return Attempt(Verdict.REFUSED, f"not accepted by the peer: {e}")
        code = int(answer.Status) if answer and "Status" in answer else None
        text = f"0x{code:04X}" if code is not None else "no answer (timeout or abort)"
        last = Attempt(judge_status(code), text)
        if last.verdict is not Verdict.DELIVERED:
            return last
    return last


Sender = Callable[[Destination, DeliveryConfig, dict[str, list[Path]]], dict[str, Attempt]]


def deliver_result(engine: Engine, config: DeliveryConfig, result_id: int, *, actor: str,
                   sender: Sender = send_files) -> float | None:
    """One pass over the result's deliveries: send what is due, record every attempt.

    Returns the seconds until the next pending retry is due, or None when nothing is pending
    (all delivered, held, refused or given up). The caller schedules the next pass.
    """
    now = datetime.now(UTC)
    with transaction(engine) as session:
        result, study = _result_and_study(session, result_id)
        targets = destinations_for(study.calling_ae, config.destinations)
        held = (result.findings or {}).get("intended_use") == RESEARCH_SYNTHETIC \
            and not config.research_mode
        _arm(session, result, targets, now)
        if held:
            _hold(session, result, study, now, actor)
            return None
        due = _claim(session, result_id, now, config.claim_s)
        files = result.object_files()
    by_destination: dict[tuple[str, str, int], list[Delivery]] = {}
    for row in due:
        key = (row.destination_ae, row.destination_host, row.destination_port)
        by_destination.setdefault(key, []).append(row)
    configured = {(d.ae_title, d.host, d.port): d for d in config.destinations}
    for key, rows in by_destination.items():
        destination = configured.get(key)
        wanted = {row.object: files[row.object] for row in rows if row.object in files}
        if destination is None:  # removed from the settings since the row was armed
            attempts = dict.fromkeys(wanted, Attempt(Verdict.REFUSED,
                                                     "destination no longer configured"))
        else:
            attempts = sender(destination, config, wanted)
        with transaction(engine) as session:
            for row in rows:
                outcome = attempts.get(row.object, Attempt(Verdict.REFUSED, "no such file"))
                _record(session, row.id, result, outcome, config, actor)
    return _next_due(engine, result_id)


def _result_and_study(session: Session, result_id: int) -> tuple[Result, Study]:
    row = session.execute(
        select(Result, Study).join(Study, Result.study_id == Study.id)
        .where(Result.id == result_id)
    ).one_or_none()
    if row is None:
        raise LookupError(f"result_id: no result {result_id}")
    return row[0], row[1]


def _arm(session: Session, result: Result, targets: list[Destination], now: datetime) -> None:
    """Create the rows of destinations that have none yet, due now."""
    present = [kind for kind, path in (("SR", result.sr_path), ("SC", result.sc_path),
                                       ("SEG", result.seg_path)) if path]
    arm_deliveries(session, result_id=result.id, objects=present,
                   destinations=[(t.ae_title, t.host, t.port) for t in targets], now=now)


def _hold(session: Session, result: Result, study: Study, now: datetime, actor: str) -> None:
    """The research interlock: stop every due row, each audited as held."""
    for row in _due(session, result.id, now):
        row.next_retry_at = None
        row.last_status = HELD
        audit(session, actor=actor, event_type=EventType.DELIVERY_FAILED,
              outcome=Outcome.MINOR_FAILURE, study_uid=study.study_uid,
              calling_ae=study.calling_ae, at=now,
              detail={"object": row.object, "result_id": result.id, "held": True,
                      "destination": f"{row.destination_ae}@{row.destination_host}:"
                                     f"{row.destination_port}", "reason": HELD})


def _due(session: Session, result_id: int, now: datetime) -> list[Delivery]:
    return list(session.scalars(
        select(Delivery).where(Delivery.result_id == result_id, Delivery.delivered_at.is_(None),
                               Delivery.next_retry_at <= now)
        .order_by(Delivery.id).with_for_update()
    ))


def _claim(session: Session, result_id: int, now: datetime, claim_s: float) -> list[Delivery]:
    rows = _due(session, result_id, now)
    for row in rows:
        row.next_retry_at = now + timedelta(seconds=claim_s)
    return rows


def _record(session: Session, delivery_id: int, result: Result, attempt: Attempt,
            config: DeliveryConfig, actor: str) -> None:
    """What the peer's answer means for the row: delivered, retried with back-off inside the
    window, or given up (refused, or the window is over)."""
    now = datetime.now(UTC)
    row = lock_delivery(session, delivery_id)
    delivered = attempt.verdict is Verdict.DELIVERED
    next_retry_at, final, extra = None, None, {}
    if attempt.verdict is Verdict.RETRY and \
            now < row.created_at + timedelta(seconds=config.window_s):
        delay = backoff_s(row.attempts + 1, config.initial_backoff_s, config.max_backoff_s)
        next_retry_at, extra = now + timedelta(seconds=delay), {"retry_in_s": delay}
    elif attempt.verdict is Verdict.RETRY:
        final = f"gave up after {config.window_s:.0f} s: {attempt.status}"
    elif not delivered:
        final = f"refused: {attempt.status}"
    record_attempt(session, row, status=attempt.status, delivered=delivered,
                   next_retry_at=next_retry_at, now=now, actor=actor, final_status=final,
                   detail=extra)
    logger.info("delivery %s of result %d to %s@%s:%d: %s", row.object, result.id,
                row.destination_ae, row.destination_host, row.destination_port, attempt.status)


def _next_due(engine: Engine, result_id: int) -> float | None:
    with transaction(engine) as session:
        due = session.scalars(
            select(Delivery.next_retry_at).where(Delivery.result_id == result_id,
                                                 Delivery.delivered_at.is_(None),
                                                 Delivery.next_retry_at.is_not(None))
            .order_by(Delivery.next_retry_at).limit(1)
        ).first()
    if due is None:
        return None
    return max(0.0, (due - datetime.now(UTC)).total_seconds())


def rearm(session: Session, result_id: int, *, now: datetime) -> int:
    """Make every delivery of a result due again, with a fresh window (``lungpath resend``);
    returns how many rows were re-armed. Rows still to be created are created by the pass."""
    rows = list(session.scalars(select(Delivery).where(Delivery.result_id == result_id)
                                .with_for_update()))
    for row in rows:
        row.delivered_at = None
        row.next_retry_at = row.created_at = now
        row.attempts = 0
        row.last_status = None
    return len(rows)
