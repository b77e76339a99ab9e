"""Delivery of result objects to a real pynetdicom SCP: statuses, retries, refusals, the
research interlock, TLS, and the audit record of every attempt."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydicom.uid import generate_uid
from pynetdicom import AE, AllStoragePresentationContexts, evt
from sqlalchemy import Engine, select

from db.engine import transaction
from db.models import AuditEvent, Delivery, Result, Study
from pipeline.delivery import (
    HELD,
    DeliveryConfig,
    Destination,
    Verdict,
    backoff_s,
    deliver_result,
    destinations_for,
    judge_status,
    rearm,
)
from scp_node.tls import server_context
from tests.conftest import free_port
from tests.db.conftest import backend, db_url, engine, postgres_schemas, sqlite_template
from tests.pipeline.dicom_factory import sr_file
from tests.pki import pki

__all__ = ["backend", "db_url", "engine", "pki", "postgres_schemas", "sqlite_template"]

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_s(n, 30, 3600) for n in (1, 2, 3, 8, 100)] == [30, 60, 120, 3600, 3600]
    with pytest.raises(ValueError, match="attempts"):
        backoff_s(0, 30, 3600)


@pytest.mark.parametrize(("status", "verdict"), [
    (0x0000, Verdict.DELIVERED), (0xB000, Verdict.DELIVERED), (0xB007, Verdict.DELIVERED),
    (0xA700, Verdict.RETRY), (0xA7FF, Verdict.RETRY), (None, Verdict.RETRY),
    (0xA900, Verdict.REFUSED), (0xC000, Verdict.REFUSED), (0x0122, Verdict.REFUSED),
])
def test_status_policy(status: int | None, verdict: Verdict) -> None:
    assert judge_status(status) is verdict


def test_destinations_per_calling_ae_else_default() -> None:
    default = Destination("PACS", "h", 104)
    own = Destination("OTHER", "h", 105, for_calling_ae="CT1")
    assert destinations_for("CT1", [default, own]) == [own]
    assert destinations_for("CT2", [default, own]) == [default]
    assert destinations_for(None, [default, own]) == [default]


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"initial_backoff_s": 10.0, "max_backoff_s": 5.0}, "initial_backoff_s"),
    ({"window_s": 0.0}, "window_s"),
])
def test_config_checks(kwargs: dict[str, Any], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        DeliveryConfig(calling_ae="LUNGPATH", destinations=(), **kwargs)


class Peer:
    """A Storage SCP answering every C-STORE with ``status``; over TLS with ``tls``."""

    def __init__(self, status: int = 0x0000, tls: ssl.SSLContext | None = None) -> None:
        self.status = status
        self.tls = tls
        self.port = free_port()
        self.received: list[str] = []
        self.server: Any = None

    def start(self) -> None:
        ae = AE(ae_title="PEER")
        ae.supported_contexts = AllStoragePresentationContexts
        self.server = ae.start_server(("127.0.0.1", self.port), block=False,
                                      ssl_context=self.tls,
                                      evt_handlers=[(evt.EVT_C_STORE, self._store)])

    def _store(self, event: Any) -> int:
        self.received.append(str(event.request.AffectedSOPInstanceUID))
        return self.status

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None


@pytest.fixture
def peer() -> Iterator[Peer]:
    server = Peer()
    server.start()
    yield server
    server.stop()


def _result(engine: Engine, tmp_path: Path, intended_use: str = "research") -> int:
    study_uid = generate_uid()
    sop = sr_file(tmp_path / "SR.dcm", study_uid)
    with transaction(engine) as session:
        study = Study(study_uid=study_uid, state="DONE", revision=1, analysis_revision=1,
                      calling_ae="CT1", attempts=1, created_at=NOW, updated_at=NOW,
                      last_instance_at=NOW, receiving_at=NOW)
        session.add(study)
        session.flush()
        result = Result(study_id=study.id, revision=1, checkpoint_sha256="0" * 64,
                        sr_sop_instance_uid=sop, sr_series_uid=generate_uid(),
                        sr_path=str(tmp_path / "SR.dcm"), created_at=NOW,
                        findings={"intended_use": intended_use})
        session.add(result)
        session.flush()
        return result.id


def _config(peer: Peer, host: str = "127.0.0.1", tls: bool = False,
            **kwargs: Any) -> DeliveryConfig:
    values: dict[str, Any] = {"initial_backoff_s": 5.0, "max_backoff_s": 20.0,
                              "timeout_s": 5.0}
    values.update(kwargs)
    return DeliveryConfig(calling_ae="LUNGPATH",
                          destinations=(Destination("PEER", host, peer.port, tls=tls),),
                          **values)


def _row(engine: Engine) -> Delivery:
    with transaction(engine) as session:
        return session.scalars(select(Delivery)).one()


def _events(engine: Engine) -> list[AuditEvent]:
    with transaction(engine) as session:
        return list(session.scalars(select(AuditEvent).where(
            AuditEvent.event_type.like("delivery.%")).order_by(AuditEvent.id)))


def test_delivered_and_audited(engine: Engine, tmp_path: Path, peer: Peer) -> None:
    result_id = _result(engine, tmp_path)
    assert deliver_result(engine, _config(peer), result_id, actor="test") is None
    row = _row(engine)
    assert row.delivered_at is not None and row.attempts == 1 and row.last_status == "0x0000"
    assert len(peer.received) == 1
    (event,) = _events(engine)
    assert (event.event_type, event.outcome) == ("delivery.sent", "success")
    # nothing is due: a second pass sends nothing
    assert deliver_result(engine, _config(peer), result_id, actor="test") is None
    assert len(peer.received) == 1


def test_out_of_resources_is_retried_with_back_off(engine: Engine, tmp_path: Path,
                                                   peer: Peer) -> None:
    peer.status = 0xA700
    result_id = _result(engine, tmp_path)
    delay = deliver_result(engine, _config(peer), result_id, actor="test")
    assert delay is not None and 0 < delay <= 5.0
    row = _row(engine)
    assert row.delivered_at is None and row.next_retry_at is not None
    (event,) = _events(engine)
    assert (event.event_type, event.outcome) == ("delivery.failed", "minor_failure")
    assert event.detail is not None and event.detail["retry_in_s"] == 5.0


def test_refusal_stops_at_once(engine: Engine, tmp_path: Path, peer: Peer) -> None:
    peer.status = 0xC000
    result_id = _result(engine, tmp_path)
    assert deliver_result(engine, _config(peer), result_id, actor="test") is None
    row = _row(engine)
    assert row.next_retry_at is None and row.last_status == "refused: 0xC000"
    (event,) = _events(engine)
    assert event.outcome == "serious_failure"


def test_peer_down_is_retried_then_given_up_after_the_window(engine: Engine, tmp_path: Path,
                                                             peer: Peer) -> None:
    peer.stop()
    result_id = _result(engine, tmp_path)
    config = _config(peer, initial_backoff_s=0.01, max_backoff_s=0.01, window_s=3600.0)
    assert deliver_result(engine, config, result_id, actor="test") is not None
    assert str(_row(engine).last_status).startswith("association ")
    with transaction(engine) as session:  # the window has passed
        row = session.scalars(select(Delivery)).one()
        row.created_at = row.next_retry_at = datetime.now(UTC) - timedelta(hours=2)
    assert deliver_result(engine, config, result_id, actor="test") is None
    row = _row(engine)
    assert row.next_retry_at is None and row.last_status is not None
    assert row.last_status.startswith("gave up after 3600 s")
    assert [e.outcome for e in _events(engine)] == ["minor_failure", "serious_failure"]


def test_research_interlock_holds_then_resend_delivers(engine: Engine, tmp_path: Path,
                                                       peer: Peer) -> None:
    result_id = _result(engine, tmp_path, intended_use="research-synthetic")
    assert deliver_result(engine, _config(peer), result_id, actor="test") is None
    assert _row(engine).last_status == HELD and not peer.received
    (event,) = _events(engine)
    assert event.detail is not None and event.detail["held"] is True
    with transaction(engine) as session:  # re-armed, still held without research mode
        assert rearm(session, result_id, now=datetime.now(UTC)) == 1
    deliver_result(engine, _config(peer), result_id, actor="test")
    assert _row(engine).last_status == HELD and not peer.received
    with transaction(engine) as session:
        rearm(session, result_id, now=datetime.now(UTC))
    deliver_result(engine, _config(peer, research_mode=True), result_id, actor="test")
    assert _row(engine).delivered_at is not None and len(peer.received) == 1


def test_a_removed_destination_is_refused_not_sent(engine: Engine, tmp_path: Path,
                                                   peer: Peer) -> None:
    result_id = _result(engine, tmp_path)
    peer.status = 0xA700  # armed and pending
    deliver_result(engine, _config(peer), result_id, actor="test")
    peer.status = 0x0000
    with transaction(engine) as session:
        session.scalars(select(Delivery)).one().next_retry_at = datetime.now(UTC)
    elsewhere = DeliveryConfig(calling_ae="LUNGPATH", timeout_s=5.0,
                               destinations=(Destination("OTHER", "127.0.0.1", free_port()),))
    deliver_result(engine, elsewhere, result_id, actor="test")
    by_destination = {r.destination_ae: r for r in _rows(engine)}
    assert by_destination["PEER"].last_status == "refused: destination no longer configured"
    assert by_destination["PEER"].next_retry_at is None
    assert len(peer.received) == 1  # only the first attempt reached the peer


def _rows(engine: Engine) -> list[Delivery]:
    with transaction(engine) as session:
        return list(session.scalars(select(Delivery)))


@pytest.fixture
def tls_peer(pki: dict[str, Path]) -> Iterator[Peer]:
    """A PACS over TLS that requires a client certificate signed by the CA."""
    server = Peer(tls=server_context(pki["node_cert"], pki["node_key"], pki["ca"]))
    server.start()
    yield server
    server.stop()


def _tls(pki: dict[str, Path], who: str = "client") -> dict[str, Path]:
    return {"tls_ca_file": pki["ca"], "tls_cert_file": pki[f"{who}_cert"],
            "tls_key_file": pki[f"{who}_key"]}


def test_tls_destination_delivers_with_mutual_authentication(
        engine: Engine, tmp_path: Path, tls_peer: Peer, pki: dict[str, Path]) -> None:
    result_id = _result(engine, tmp_path)
    config = _config(tls_peer, host="localhost", tls=True, **_tls(pki))
    assert deliver_result(engine, config, result_id, actor="test") is None
    row = _row(engine)
    assert row.delivered_at is not None and row.last_status == "0x0000"
    assert len(tls_peer.received) == 1


@pytest.mark.parametrize("case", ["plain", "untrusted peer", "wrong host name",
                                  "no client certificate"])
def test_tls_failures_are_retried_and_nothing_is_sent(
        engine: Engine, tmp_path: Path, tls_peer: Peer, pki: dict[str, Path], case: str) -> None:
    result_id = _result(engine, tmp_path)
    config = {
        "plain": _config(tls_peer, host="localhost"),
        # our CA file does not hold the CA that signed the peer's certificate
        "untrusted peer": _config(tls_peer, host="localhost", tls=True,
                                  tls_ca_file=pki["stranger_cert"],
                                  tls_cert_file=pki["client_cert"],
                                  tls_key_file=pki["client_key"]),
        # the peer's certificate names localhost, not 127.0.0.1
        "wrong host name": _config(tls_peer, tls=True, **_tls(pki)),
        "no client certificate": _config(tls_peer, host="localhost", tls=True,
                                         tls_ca_file=pki["ca"]),
    }[case]
    assert deliver_result(engine, config, result_id, actor="test") is not None
    row = _row(engine)
    assert row.delivered_at is None and row.next_retry_at is not None
    assert str(row.last_status).startswith("association ")
    if case != "plain":
        assert "TLS handshake" in str(row.last_status)
    assert not tls_peer.received
    (event,) = _events(engine)
    assert (event.event_type, event.outcome) == ("delivery.failed", "minor_failure")


def test_unreadable_tls_files_are_a_retried_failure(engine: Engine, tmp_path: Path,
                                                    tls_peer: Peer, pki: dict[str, Path]
                                                    ) -> None:
    result_id = _result(engine, tmp_path)
    config = _config(tls_peer, host="localhost", tls=True, tls_ca_file=pki["ca"],
                     tls_cert_file=pki["client_cert"], tls_key_file=pki["stranger_key"])
    assert deliver_result(engine, config, result_id, actor="test") is not None
    assert str(_row(engine).last_status).startswith("TLS set-up failed")
    assert not tls_peer.received
