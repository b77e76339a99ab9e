"""The node's association socket reads a PDU whole, however the bytes arrive."""

from __future__ import annotations

import contextlib
import socket
import threading
import tracemalloc
from collections.abc import Iterator

import pytest
from pynetdicom import AE
from pynetdicom.association import Association

from scp_node.server import WholeReadSocket


@pytest.fixture
def pair() -> Iterator[tuple[WholeReadSocket, socket.socket]]:
    """The node's end (a ``WholeReadSocket``) and the peer's end of one connection."""
    near, far = socket.socketpair()
    near.settimeout(30)
    try:
        yield WholeReadSocket(Association(AE(), "acceptor"), client_socket=near), far
    finally:
        near.close()
        far.close()


def test_a_pdu_sent_in_pieces_is_read_whole(pair: tuple[WholeReadSocket, socket.socket]) -> None:
    node, peer = pair
    payload = bytes(range(256)) * 2048  # 512 KiB: more than one socket buffer holds
    pieces = [payload[i:i + 65536 + 7] for i in range(0, len(payload), 65536 + 7)]
    sender = threading.Thread(target=_send, args=(peer, pieces))
    sender.start()
    try:
        assert node.recv(len(payload)) == payload
    finally:
        peer.shutdown(socket.SHUT_RDWR)  # a sender still blocked (the read fell short) ends
        sender.join()


def _send(peer: socket.socket, pieces: list[bytes]) -> None:
    with contextlib.suppress(OSError):  # shut down by the test when it failed
        for piece in pieces:
            peer.sendall(piece)


def test_a_closed_connection_returns_what_came(pair: tuple[WholeReadSocket, socket.socket]) -> None:
    node, peer = pair
    peer.sendall(b"\x04\x00\x00")
    peer.shutdown(socket.SHUT_WR)
    assert node.recv(6) == bytearray(b"\x04\x00\x00")


def test_an_announced_length_allocates_only_what_arrives(
        pair: tuple[WholeReadSocket, socket.socket]) -> None:
    """A PDU header may announce up to 4 GiB; the read buffer follows the bytes received."""
    node, peer = pair
    def send_then_close() -> None:
        _send(peer, [b"x" * (3 << 20)])  # 3 MiB, then the peer closes
        peer.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send_then_close)
    tracemalloc.start()
    try:
        sender.start()
        data = node.recv(0xFFFFFFFF)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        sender.join()
    assert len(data) == 3 << 20
    assert peak < 16 << 20
