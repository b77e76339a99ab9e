"""pipeline.scu: a requestor association with TCP_NODELAY and the reactor-race guard, over a
real socket to a pynetdicom Verification SCP."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from pipeline.scu import prepare_requestor
from tests.conftest import free_port

ANSWER = (1, "a C-STORE answer waiting on the queue")


@pytest.fixture
def association() -> Iterator[Association]:
    scp = AE(ae_title="ECHOSCP")
    scp.add_supported_context(Verification)
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False)
    scu = AE(ae_title="SCU")
    scu.acse_timeout = scu.dimse_timeout = scu.network_timeout = 30
    scu.add_requested_context(Verification)
    assoc = scu.associate("127.0.0.1", port, ae_title="ECHOSCP")
    assert assoc.is_established
    try:
        yield assoc
    finally:
        assoc._reactor_checkpoint.set()
        if assoc.is_established:
            assoc.release()
        server.shutdown()


def _pause_reactor(assoc: Association) -> None:
    """Where ``send_*`` stands once it has sent its request: the checkpoint cleared."""
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused:
        time.sleep(0.001)


def test_the_reactor_cannot_take_an_answer_while_a_send_owns_the_association(
        association: Association) -> None:
    prepare_requestor(association)
    _pause_reactor(association)
    association.dimse.msg_queue.put(ANSWER)
    # the reactor's read, had it passed its checkpoint just before it was cleared
    assert association.dimse.get_msg(block=False) == (None, None)
    assert association.dimse.get_msg(block=True) == ANSWER  # the send_* call's read


def test_without_the_guard_the_reactor_read_takes_the_answer(association: Association) -> None:
    """The race the guard closes, shown on an unprepared association."""
    _pause_reactor(association)
    association.dimse.msg_queue.put(ANSWER)
    assert association.dimse.get_msg(block=False) == ANSWER


def test_a_prepared_association_still_works_and_has_nagle_off(association: Association) -> None:
    sock = association.dul.socket.socket  # type: ignore[union-attr]
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    prepare_requestor(association)
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    for _ in range(20):
        assert association.send_c_echo().Status == 0x0000
