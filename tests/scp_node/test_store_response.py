"""The node's own encoding of C-STORE responses: byte for byte what pynetdicom sends."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE

from scp_node import server
from scp_node.server import encode_store_response
from tests.scp_node.support import (
    CT,
    associate,
    ct_slice,
    node_db,
    running_scp,
    scp_config,
    sqlite_template,
)

__all__ = ["node_db", "sqlite_template"]

SR = "1.2.840.10008.5.1.4.1.1.88.33"


def response(message_id: int, status: int, sop_class: str | None,
             sop_instance: str | None) -> C_STORE:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = message_id
    rsp.Status = status
    rsp.AffectedSOPClassUID = sop_class
    rsp.AffectedSOPInstanceUID = sop_instance
    return rsp


def pynetdicom_command_set(rsp: C_STORE) -> bytes:
    """The command set pynetdicom's own encoder puts in the response's P-DATA."""
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    (pdata,) = message.encode_msg(1, 0)
    ((_context, pdv),) = pdata.presentation_data_value_list
    assert pdv[:1] == b"\x03"  # the whole command set in its last fragment
    return bytes(pdv[1:])


@pytest.mark.parametrize(("message_id", "status", "sop_class", "sop_instance"), [
    (1, 0x0000, CT, "1.2.3.4"),  # even-length instance UID
    (65535, 0x0000, CT, "1.2.3.45"),  # odd length: NUL padding
    (7, 0xB000, SR, "2.25.123456789012345678901234567890123456"),  # a warning status
    (3, 0x0000, None, None),  # the optional UIDs left out
])
def test_same_bytes_as_pynetdicom(message_id: int, status: int, sop_class: str | None,
                                  sop_instance: str | None) -> None:
    rsp = response(message_id, status, sop_class, sop_instance)
    assert encode_store_response(rsp) == pynetdicom_command_set(rsp)


def test_failures_and_requests_are_left_to_pynetdicom() -> None:
    failure = response(1, 0xA700, CT, "1.2.3.4")
    failure.ErrorComment = "database busy"
    assert encode_store_response(failure) is None
    request = C_STORE()
    request.MessageID = 1
    request.AffectedSOPClassUID = CT
    assert encode_store_response(request) is None


def test_the_node_answers_through_its_encoder(node_db: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    encoded: list[bytes | None] = []

    def spy(rsp: C_STORE) -> bytes | None:
        encoded.append(encode_store_response(rsp))
        return encoded[-1]

    monkeypatch.setattr(server, "encode_store_response", spy)
    good = ct_slice("1.2.826.0.1.2", "1.2.826.0.1.2.1", 0)
    bad = ct_slice("1.2.826.0.1.2", "1.2.826.0.1.2.1", 1)
    del bad.PixelData  # a CT image without pixel data: 0xA900 with an Error Comment
    with running_scp(scp_config(node_db, tmp_path / "store")) as scp:
        assoc = associate(scp.port, [(CT, [ExplicitVRLittleEndian])])
        ok = assoc.send_c_store(good)
        refused = assoc.send_c_store(bad)
        assoc.release()
    assert ok.Status == 0x0000
    assert refused.Status == 0xA900 and "Pixel Data" in refused.ErrorComment
    assert [command is not None for command in encoded] == [True, False]
