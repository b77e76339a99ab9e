"""The event handlers of the Storage SCP and the per-association state they share.

Handlers are thin (STYLE.md): each returns a DICOM status, logs failures with
``logger.exception`` and never raises into pynetdicom. The C-STORE path does only what an
acknowledgement needs: read the identifying header elements, check them, write the file
durably, commit the Instance row; then 0x0000. Everything else (analysis, decoding) happens
elsewhere, later.
"""

from __future__ import annotations

import logging
import ssl
import threading
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from typing import cast

from pydicom.dataset import Dataset
from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event, EventHandlerType
from pynetdicom.pdu_primitives import A_ASSOCIATE
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from db.engine import DatabaseBusy, bounded_wait, transaction
from db.events import EventType, Outcome
from db.ingest import (
    ACTOR,
    InstanceOutcome,
    audit,
    close_association,
    open_association,
    record_instance,
)
from scp_node.access import REJECT_LIMIT, AccessPolicy, Refusal
from scp_node.checks import (
    CANNOT_UNDERSTAND,
    OUT_OF_RESOURCES,
    Problem,
    check_instance,
)
from scp_node.config import ScpConfig
from scp_node.contexts import encoding_of
from scp_node.header import Header, MalformedDataSet, read_header
from scp_node.storage import InstanceKey, InstanceStore, file_meta

logger = logging.getLogger(__name__)

SUCCESS = 0x0000


@dataclass
class AssociationState:
    """What the node tracks for one accepted association."""

    association_id: int | None
    calling_ae: str
    peer: str
    accepted: int = 0
    refused: int = 0
    aborted: bool = False
    study_bytes: dict[str, int] = field(default_factory=dict)


class Receiver:
    """Binds the node's policy, store and database to pynetdicom events."""

    def __init__(self, config: ScpConfig, engine: Engine, store: InstanceStore) -> None:
        self.config = config
        # every wait of an association thread for the database ends in time for its answer
        self.engine = bounded_wait(engine, config.database_wait)
        self.store = store
        self.policy = AccessPolicy(config.ae_title, config.allowed_calling_aes)
        self._states: dict[int, AssociationState] = {}
        self._lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Condition(self._lock)
        self._writer = futures.ThreadPoolExecutor(max_workers=config.max_associations,
                                                  thread_name_prefix="store-write")

    def handlers(self) -> list[EventHandlerType]:
        """The ``evt_handlers`` list for ``AE.make_server``."""
        return [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_ESTABLISHED, self.on_established),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_ABORTED, self.on_aborted),
            (evt.EVT_CONN_CLOSE, self.on_conn_close),
        ]

    # -- association life cycle --------------------------------------------------------

    def on_requested(self, event: Event) -> None:
        """Refuse the association here if the access policy or the limit says so."""
        try:
            assoc = event.assoc
            request = cast(A_ASSOCIATE, assoc.requestor.primitive)
            calling = str(request.calling_ae_title).strip()
            called = str(request.called_ae_title).strip()
            peer = assoc.requestor.address
            refusal = self.policy.check(calling_ae=calling, called_ae=called, peer_host=peer)
            if refusal is None and self._too_many(assoc):
                refusal = Refusal(f"limit of {self.config.max_associations} associations "
                                  "reached", *REJECT_LIMIT)
            if refusal is not None:
                self.refuse_connection(peer, assoc.requestor.port, refusal.reason,
                                       calling_ae=calling, called_ae=called)
                # as pynetdicom's own refusals do: the kill waits until the A-ASSOCIATE-RJ
                # has left, before the server closes the socket
                assoc.acse.send_reject(refusal.result, refusal.source, refusal.diagnostic)
                assoc.kill()
        except Exception:
            logger.exception("association request could not be checked; refusing it")
            event.assoc.abort()

    def _too_many(self, assoc: Association) -> bool:
        acceptors = [a for a in assoc.ae.active_associations if a.is_acceptor]
        return len(acceptors) > self.config.max_associations

    def refuse_connection(self, peer_host: str, peer_port: int, reason: str, *,
                          calling_ae: str | None = None, called_ae: str | None = None) -> None:
        """Audit a refused association or TLS handshake as a security event."""
        logger.warning("association refused peer=%s:%s calling_ae=%s called_ae=%s reason=%r",
                       peer_host, peer_port, calling_ae, called_ae, reason)
        detail = {"peer_host": peer_host, "peer_port": peer_port, "called_ae": called_ae,
                  "reason": reason}
        try:
            with transaction(self.engine) as session:
                audit(session, actor=ACTOR, event_type=EventType.ASSOCIATION_REFUSED,
                      outcome=Outcome.MINOR_FAILURE, calling_ae=_ae_column(calling_ae),
                      detail=detail)
        except (SQLAlchemyError, ValueError):
            logger.exception("could not audit a refused association peer=%s", peer_host)

    def refuse_handshake(self, address: tuple[str, int], error: ssl.SSLError | OSError) -> None:
        """Audit a TLS handshake that failed (a plain or untrusted peer on the TLS port)."""
        self.refuse_connection(address[0], address[1], f"TLS handshake failed: {error}")

    def on_established(self, event: Event) -> None:
        """Record the accepted association; its id tags every instance it carries."""
        assoc = event.assoc
        calling = str(assoc.requestor.ae_title).strip()
        peer = f"{assoc.requestor.address}:{assoc.requestor.port}"
        association_id = None
        try:
            with transaction(self.engine) as session:
                association_id = open_association(
                    session, calling_ae=calling, called_ae=str(assoc.acceptor.ae_title).strip(),
                    peer_host=assoc.requestor.address, peer_port=assoc.requestor.port,
                    tls=self.config.tls)
        except Exception:
            logger.exception("could not record association calling_ae=%s peer=%s",
                             calling, peer)
        with self._lock:
            self._states[id(assoc)] = AssociationState(association_id, calling, peer)
        logger.info("association accepted id=%s calling_ae=%s peer=%s tls=%s",
                    association_id, calling, peer, self.config.tls)

    def on_aborted(self, event: Event) -> None:
        """Remember that the association ended with an abort."""
        with self._lock:
            state = self._states.get(id(event.assoc))
            if state is not None:
                state.aborted = True

    def on_conn_close(self, event: Event) -> None:
        """Record the end of an accepted association with its counts."""
        with self._lock:
            state = self._states.pop(id(event.assoc), None)
        if state is None or state.association_id is None:
            return
        # the DUL closes the connection on an A-ABORT before the association's own thread
        # fires EVT_ABORTED: the abort may still be waiting in the DUL's queue here
        state.aborted = state.aborted or _abort_pending(event.assoc)
        logger.info("association closed id=%s calling_ae=%s peer=%s accepted=%d refused=%d "
                    "aborted=%s", state.association_id, state.calling_ae, state.peer,
                    state.accepted, state.refused, state.aborted)
        try:
            with transaction(self.engine) as session:
                close_association(session, state.association_id, accepted=state.accepted,
                                  refused=state.refused, aborted=state.aborted)
        except Exception:
            logger.exception("could not record the end of association id=%s",
                             state.association_id)

    # -- DIMSE services ------------------------------------------------------------------

    def on_echo(self, event: Event) -> int:
        """C-ECHO: the node is up."""
        return SUCCESS

    def on_store(self, event: Event) -> int | Dataset:
        """C-STORE: acknowledge only what is on disk and in the database."""
        with self._lock:
            self._in_flight += 1
            state = self._states.get(id(event.assoc))
        try:
            if state is None:  # no EVT_ESTABLISHED seen: cannot happen in pynetdicom 3
                return _status(OUT_OF_RESOURCES, "association not registered")
            return self._store(event, state)
        except Exception:
            logger.exception("C-STORE failed assoc=%s", state.association_id if state else None)
            return _status(OUT_OF_RESOURCES, "internal error while storing")
        finally:
            with self._lock:
                self._in_flight -= 1
                self._idle.notify_all()

    def close(self) -> None:
        """Release the writer threads (after the server stopped)."""
        self._writer.shutdown(wait=True)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no C-STORE is being handled; False if ``timeout`` passed first."""
        with self._lock:
            return self._idle.wait_for(lambda: self._in_flight == 0, timeout)

    def _store(self, event: Event, state: AssociationState) -> int | Dataset:
        request = cast(C_STORE, event.request)
        context = event.context
        data_set = cast(BytesIO, request.DataSet).getvalue()
        limit = self.config.max_instances_per_association
        if limit and state.accepted >= limit:
            return self._refuse(state, Problem(OUT_OF_RESOURCES, f"limit of {limit} instances "
                                               "per association reached"), None)
        if not self.store.has_room(len(data_set)):
            return self._refuse(state, Problem(OUT_OF_RESOURCES, "free disk space below the "
                                               "node's threshold"), None)
        try:
            header = read_header(data_set, encoding_of(context.transfer_syntax))
        except MalformedDataSet as e:
            return self._refuse(state, Problem(CANNOT_UNDERSTAND, str(e)), None)
        problem = check_instance(
            header, context_sop_class=context.abstract_syntax,
            affected_sop_class=str(request.AffectedSOPClassUID),
            affected_sop_instance=str(request.AffectedSOPInstanceUID))
        if problem is not None:
            return self._refuse(state, problem, header)
        key = InstanceKey(str(header.study_uid), str(header.series_uid),
                          str(header.sop_instance_uid))
        problem = self._study_limit(state, key.study_uid, len(data_set))
        if problem is not None:
            return self._refuse(state, problem, header)
        meta = file_meta(sop_class_uid=str(header.sop_class_uid),
                         sop_instance_uid=key.sop_instance_uid,
                         transfer_syntax_uid=context.transfer_syntax,
                         source_ae_title=state.calling_ae)
        # the file is written and fsynced in another thread while this one hashes it; the
        # transaction starts once the file is durable (file first, row second,
        # acknowledgement last), so no association holds the database's write lock while a
        # disk write of its own completes
        writing = self._writer.submit(self.store.write, key, meta, data_set)
        stored = self.store.describe(key, meta, data_set)
        try:
            writing.result()
            with transaction(self.engine) as session:
                outcome = record_instance(
                    session, association_id=state.association_id,
                    sop_class_uid=str(header.sop_class_uid),
                    sop_instance_uid=key.sop_instance_uid, study_uid=key.study_uid,
                    series_uid=key.series_uid, transfer_syntax_uid=context.transfer_syntax,
                    size=stored.size, sha256=stored.sha256, path=str(stored.path),
                    received_at=datetime.now(UTC), calling_ae=state.calling_ae)
        except OSError as e:
            logger.exception("could not write sop=%s", key.sop_instance_uid)
            return self._refuse(state, Problem(OUT_OF_RESOURCES, f"cannot write to the store: "
                                               f"{e.strerror}"), header)
        except DatabaseBusy:
            return self._refuse(state, Problem(OUT_OF_RESOURCES, "database busy"), header)
        except SQLAlchemyError:
            logger.exception("database unavailable; not acknowledging sop=%s",
                             key.sop_instance_uid)
            state.refused += 1
            return _status(OUT_OF_RESOURCES, "database unavailable")
        if outcome.outcome is InstanceOutcome.REPLACED:
            self.store.discard_replaced(outcome.previous_path, stored.path)
        state.accepted += 1
        state.study_bytes[key.study_uid] = state.study_bytes.get(key.study_uid, 0) + stored.size
        logger.debug("stored assoc=%s study=%s series=%s sop=%s outcome=%s revision=%d",
                     state.association_id, key.study_uid, key.series_uid,
                     key.sop_instance_uid, outcome.outcome.value, outcome.revision)
        return SUCCESS

    def _study_limit(self, state: AssociationState, study_uid: str, size: int) -> Problem | None:
        """The bytes-per-study limit, counted over what this association stored."""
        limit = self.config.max_study_bytes
        if limit and state.study_bytes.get(study_uid, 0) + size > limit:
            return Problem(OUT_OF_RESOURCES, f"study exceeds the limit of {limit} bytes")
        return None

    def _refuse(self, state: AssociationState, problem: Problem,
                header: Header | None) -> Dataset:
        """Count, log and audit a refused instance; return its failure status."""
        state.refused += 1
        study = header.study_uid if header else None
        sop = header.sop_instance_uid if header else None
        logger.warning("instance refused assoc=%s calling_ae=%s study=%s sop=%s status=0x%04X "
                       "reason=%r", state.association_id, state.calling_ae, _uid_column(study),
                       _uid_column(sop), problem.status, problem.reason)
        detail = {"status": f"0x{problem.status:04X}", "reason": problem.reason,
                  "association_id": state.association_id}
        try:
            with transaction(self.engine) as session:
                audit(session, actor=ACTOR, event_type=EventType.INSTANCE_REJECTED,
                      outcome=Outcome.MINOR_FAILURE, study_uid=_uid_column(study),
                      sop_instance_uid=_uid_column(sop), calling_ae=state.calling_ae,
                      detail=detail)
        except (SQLAlchemyError, ValueError):
            logger.exception("could not audit a refused instance assoc=%s",
                             state.association_id)
        return _status(problem.status, problem.reason)


def _abort_pending(assoc: Association) -> bool:
    """Whether an A-ABORT or A-P-ABORT ended ``assoc`` (seen or still queued)."""
    try:
        return bool(assoc.is_aborted or assoc.acse.is_aborted())
    except Exception:  # the DUL may already be torn down; then nothing is pending
        logger.exception("could not tell whether association ended with an abort")
        return False


def _status(code: int, comment: str) -> Dataset:
    """A C-STORE response status with its Error Comment (LO: at most 64 characters)."""
    status = Dataset()
    status.Status = code
    status.ErrorComment = comment[:64]
    return status


def _uid_column(value: str | None) -> str | None:
    """A received UID fit for the audit table's UID column (the raw value may be anything)."""
    if value is None:
        return None
    return value if len(value) <= 64 else None


def _ae_column(value: str | None) -> str | None:
    return value[:16] if value else None
