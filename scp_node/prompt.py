"""pynetdicom's acceptor threads, woken by the data itself instead of by 1 ms polling.

pynetdicom 3.0 runs two threads per association that poll: the DUL thread checks the socket
and its outgoing queue and sleeps 1 ms whenever a pass found nothing, and the association
thread sleeps 1 ms before every look at the DIMSE queue. A C-STORE crosses both threads
three times (request in, handler, response out), and on a busy machine each of those sleeps
becomes a scheduler time slice, so the round trip grows by several milliseconds that do no
work. These subclasses keep pynetdicom's state machine and service code unchanged and only
replace the waiting: the DUL thread blocks in ``select`` on its socket and on a wake-up pipe
written whenever a primitive is queued for sending; the association thread blocks on the
DIMSE queue. Both still wake at least every ``IDLE_WAKE_S`` to check timers and kill flags.

They are installed by ``PromptRequestHandler`` on each accepted association before it starts.
"""

from __future__ import annotations

import contextlib
import os
import queue
import select
import ssl
from typing import Any, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.transport import RequestHandler

#: The longest either thread waits without a reason (timers, kill flags, ARTIM).
IDLE_WAKE_S = 0.01


class PromptDUL(DULServiceProvider):
    """The DUL thread, blocking in ``select`` until data or an outgoing primitive arrives."""

    def prepare(self) -> None:
        """Open the wake-up pipe and turn pynetdicom's idle sleep into a mere yield."""
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._run_loop_delay = 0

    def send_pdu(self, primitive: Any) -> None:
        super().send_pdu(primitive)
        self._wake()

    def kill_dul(self) -> None:
        super().kill_dul()
        self._wake()

    def _wake(self) -> None:
        # a full pipe means a wake-up is pending anyway; a closed one, that the thread ended
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"\0")

    def _is_transport_event(self) -> bool:
        if self.event_queue.empty() and self.to_provider_queue.empty():
            self._wait_for_work()
        return super()._is_transport_event()

    def _wait_for_work(self) -> None:
        sock = self.socket.socket if self.socket is not None else None
        if sock is None or self.state_machine.current_state == "Sta13":
            return
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return
        # nothing to drain, or a closed socket: the next pass of the loop finds out
        with contextlib.suppress(OSError, ValueError):
            select.select([sock.fileno(), self._wake_read], [], [], IDLE_WAKE_S)
            os.read(self._wake_read, 4096)

    def run_reactor(self) -> None:
        try:
            super().run_reactor()
        finally:
            os.close(self._wake_read)
            os.close(self._wake_write)


class PromptAssociation(Association):
    """The acceptor's reactor loop of pynetdicom 3.0 (``Association._run_reactor``), waiting
    on the DIMSE queue instead of sleeping 1 ms before each look at it."""

    def _run_reactor(self) -> None:
        self._is_paused = False
        while not self._kill:
            self._is_paused = True
            self._reactor_checkpoint.wait()
            self._is_paused = False
            try:
                context_id, msg = self.dimse.msg_queue.get(timeout=IDLE_WAKE_S)
            except queue.Empty:
                context_id, msg = None, None
            if msg:
                self._serve_request(msg, cast(int, context_id))
            if self._ended():
                return

    def _ended(self) -> bool:
        """pynetdicom's end-of-association checks, in its order; True once it has ended."""
        if self.is_established and self.acse.is_release_requested():
            self.acse.send_release(is_response=True)
            self.is_released = True
            self.is_established = False
            evt.trigger(self, evt.EVT_RELEASED, {})
            self.kill()
            return True
        if self.acse.is_aborted():
            self.dul.receive_pdu(wait=False)  # lets EVT_ACSE_RECV fire for subscribers
            self.is_aborted = True
            self.is_established = False
            evt.trigger(self, evt.EVT_ABORTED, {})
            self.kill()
            return True
        if not self.dul.is_alive():
            self.kill()
            return True
        if self.dul.idle_timer_expired():
            self.abort()
            self.kill()
            return True
        return False


class PromptRequestHandler(RequestHandler):
    """pynetdicom's request handler, giving each association the prompt threads above."""

    def _create_association(self) -> Association:
        assoc = super()._create_association()
        assoc.__class__ = PromptAssociation
        assoc.dul.__class__ = PromptDUL
        cast(PromptDUL, assoc.dul).prepare()
        return assoc
