"""The Storage SCP over real sockets: echo, store, duplicates, checks, limits, access control."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from db.engine import create_engine_for
from db.events import EventType
from scp_node.storage import INCOMING
from tests.conftest import free_port
from tests.scp_node.support import (
    CT,
    NODE_AE,
    associate,
    audit_events,
    ct_slice,
    encode_data_set,
    instance_count,
    node_db,
    part10_file,
    running_scp,
    scp_config,
    send_files_raw,
    sqlite_template,
    stored_files,
)

__all__ = ["node_db", "send_files_raw", "sqlite_template"]

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MR = "1.2.840.10008.5.1.4.1.1.4"
CT_CONTEXT = [(CT, [ExplicitVRLittleEndian])]


def test_echo_and_tcp_nodelay_on_the_accepted_socket(node_db: str, tmp_path: Path) -> None:
    with running_scp(scp_config(node_db, tmp_path / "store")) as scp:
        assoc = associate(scp.port, [(Verification, [ExplicitVRLittleEndian])])
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        (server_side,) = scp.ae.active_associations
        sock = server_side.dul.socket.socket
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assoc.release()


def test_store_writes_the_file_and_the_row(node_db: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    ds = ct_slice("1.2.826.0.1.1", "1.2.826.0.1.1.1", 0)
    with running_scp(scp_config(node_db, store)) as scp:
        assoc = associate(scp.port, CT_CONTEXT)
        assert assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
    path = store / "1.2.826.0.1.1" / "1.2.826.0.1.1.1" / f"{ds.SOPInstanceUID}.dcm"
    stored = dcmread(path)
    assert stored.file_meta.SourceApplicationEntityTitle == "SCU"
    assert stored.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert stored.PixelData == ds.PixelData
    assert not list((store / INCOMING).iterdir())
    engine = create_engine_for(node_db)
    assert instance_count(engine) == 1
    (closed,) = audit_events(engine, EventType.ASSOCIATION_CLOSED)
    assert closed.detail is not None and closed.detail["accepted"] == 1


def test_duplicates_identical_and_replaced(node_db: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    ds = ct_slice("1.2.826.0.1.2", "1.2.826.0.1.2.1", 0)
    with running_scp(scp_config(node_db, store)) as scp:
        assoc = associate(scp.port, CT_CONTEXT)
        assert assoc.send_c_store(ds).Status == 0x0000
        assert assoc.send_c_store(ds).Status == 0x0000
        ds.InstanceNumber = 99
        assert assoc.send_c_store(ds).Status == 0x0000
        assoc.release()
    engine = create_engine_for(node_db)
    assert instance_count(engine) == 1
    assert len(audit_events(engine, EventType.INSTANCE_DUPLICATE)) == 1
    (replaced,) = audit_events(engine, EventType.INSTANCE_REPLACED)
    assert replaced.sop_instance_uid == ds.SOPInstanceUID
    (path,) = stored_files(store)
    assert dcmread(path).InstanceNumber == 99


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, int, str]]:
    """name -> (file to send, expected status, words of the expected reason)."""
    study, series = "1.2.826.0.1.3", "1.2.826.0.1.3.1"

    def file(name: str, ds_bytes: bytes, sop_instance: str, sop_class: str = CT) -> Path:
        return part10_file(tmp_path / f"{name}.dcm", sop_class_uid=sop_class,
                           sop_instance_uid=sop_instance,
                           transfer_syntax_uid=ExplicitVRLittleEndian, data_set=ds_bytes)

    no_uid = ct_slice(study, series, 0)
    uid = no_uid.SOPInstanceUID
    del no_uid.SOPInstanceUID
    traversal = ct_slice(study, "../../../etc", 1)
    wrong_class = ct_slice(study, series, 2)
    wrong_class.SOPClassUID = SECONDARY_CAPTURE
    no_pixels = ct_slice(study, series, 3)
    del no_pixels.PixelData
    whole = ct_slice(study, series, 4)
    return {
        "missing SOP Instance UID": (file("a", encode_data_set(no_uid), uid), 0xA900,
                                     "SOP Instance UID (0008,0018) is missing"),
        "../ in a UID": (file("b", encode_data_set(traversal), traversal.SOPInstanceUID),
                         0xA900, "Series Instance UID (0020,000E) is not a valid UID"),
        "wrong SOP class": (file("c", encode_data_set(wrong_class), wrong_class.SOPInstanceUID),
                            0xA900, "does not match the presentation context"),
        "no pixel data": (file("d", encode_data_set(no_pixels), no_pixels.SOPInstanceUID),
                          0xA900, "without Pixel Data"),
        "truncated": (file("e", encode_data_set(whole)[:-1000], whole.SOPInstanceUID), 0xC000,
                      "runs past the end"),
    }


@pytest.mark.usefixtures("send_files_raw")
def test_bad_inputs_get_their_status_and_an_audited_reason(node_db: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    cases = _bad_inputs(tmp_path)
    with running_scp(scp_config(node_db, store)) as scp:
        for name, (path, status, reason) in cases.items():
            assoc = associate(scp.port, CT_CONTEXT)
            rsp = assoc.send_c_store(path)
            assert rsp.Status == status, name
            assert reason in rsp.ErrorComment, (name, rsp.ErrorComment)
            assoc.release()
        # the node goes on serving the next association
        assoc = associate(scp.port, CT_CONTEXT)
        assert assoc.send_c_store(ct_slice("1.2.826.0.1.4", "1.2.826.0.1.4.1", 0)).Status == 0
        assoc.release()
    engine = create_engine_for(node_db)
    rejected = audit_events(engine, EventType.INSTANCE_REJECTED)
    assert len(rejected) == len(cases)
    for event, (_, status, reason) in zip(rejected, cases.values(), strict=True):
        assert event.detail is not None
        assert event.detail["status"] == f"0x{status:04X}" and reason in event.detail["reason"]
    assert instance_count(engine) == 1
    assert not (tmp_path / "etc").exists() and len(stored_files(store)) == 1


def test_free_disk_threshold_refuses_with_a700(node_db: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    free = (lambda s: s.f_bavail * s.f_frsize)(__import__("os").statvfs(store))
    config = scp_config(node_db, store, min_free_bytes=free + 10**12)
    with running_scp(config) as scp:
        assoc = associate(scp.port, CT_CONTEXT)
        rsp = assoc.send_c_store(ct_slice("1.2.826.0.1.5", "1.2.826.0.1.5.1", 0))
        assoc.release()
    assert rsp.Status == 0xA700 and "free disk" in rsp.ErrorComment
    engine = create_engine_for(node_db)
    assert instance_count(engine) == 0 and not stored_files(store)
    (event,) = audit_events(engine, EventType.INSTANCE_REJECTED)
    assert event.detail is not None and event.detail["status"] == "0xA700"


def test_database_unreachable_is_never_acknowledged(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nowhere"
    with running_scp(scp_config(url, tmp_path / "store")) as scp:
        assoc = associate(scp.port, CT_CONTEXT)
        rsp = assoc.send_c_store(ct_slice("1.2.826.0.1.6", "1.2.826.0.1.6.1", 0))
        assoc.release()
    assert rsp.Status == 0xA700 and "database" in rsp.ErrorComment


def test_instances_per_association_limit(node_db: str, tmp_path: Path) -> None:
    config = scp_config(node_db, tmp_path / "store", max_instances_per_association=2)
    with running_scp(config) as scp:
        assoc = associate(scp.port, CT_CONTEXT)
        statuses = [assoc.send_c_store(ct_slice("1.2.826.0.1.7", "1.2.826.0.1.7.1", i)).Status
                    for i in range(3)]
        assoc.release()
    assert statuses == [0, 0, 0xA700]


def test_study_bytes_limit(node_db: str, tmp_path: Path) -> None:
    one = len(encode_data_set(ct_slice("1.2.826.0.1.8", "1.2.826.0.1.8.1", 0)))
    config = scp_config(node_db, tmp_path / "store", max_study_bytes=int(one * 2.5))
    with running_scp(config) as scp:
        assoc = associate(scp.port, CT_CONTEXT)
        statuses = [assoc.send_c_store(ct_slice("1.2.826.0.1.8", "1.2.826.0.1.8.1", i)).Status
                    for i in range(3)]
        assoc.release()
    assert statuses[:2] == [0, 0] and statuses[2] == 0xA700


def test_unsupported_sop_class_is_refused_at_negotiation(node_db: str, tmp_path: Path) -> None:
    with running_scp(scp_config(node_db, tmp_path / "store")) as scp:
        assoc = associate(scp.port, [(MR, [ExplicitVRLittleEndian]), *CT_CONTEXT])
        assert assoc.is_established
        accepted = {cx.abstract_syntax for cx in assoc.accepted_contexts}
        assoc.release()
    assert accepted == {CT}


@pytest.mark.parametrize(
    ("allowed", "calling", "called", "admitted", "reason"),
    [
        (("CT1",), "CT1", NODE_AE, True, None),
        (("CT1",), "INTRUDER", NODE_AE, False, "not on the allow-list"),
        (("CT1@127.0.0.1",), "CT1", NODE_AE, True, None),
        (("CT1@10.0.0.0/8",), "CT1", NODE_AE, False, "not allowed from 127.0.0.1"),
        ((), "ANYONE", "SOMEBODYELSE", False, "called AE title"),
    ],
)
def test_access_control_refusals_are_audited(
    node_db: str, tmp_path: Path, allowed: tuple[str, ...], calling: str, called: str,
    admitted: bool, reason: str | None,
) -> None:
    config = scp_config(node_db, tmp_path / "store", allowed_calling_aes=allowed)
    with running_scp(config) as scp:
        assoc = associate(scp.port, CT_CONTEXT, calling_ae=calling, called_ae=called)
        assert assoc.is_established is admitted
        assert assoc.is_rejected is not admitted
        if admitted:
            assoc.release()
    refused = audit_events(create_engine_for(node_db), EventType.ASSOCIATION_REFUSED)
    if admitted:
        assert refused == []
    else:
        (event,) = refused
        assert event.calling_ae == calling and event.outcome == "minor_failure"
        assert event.detail is not None and reason in event.detail["reason"]


def test_association_limit_is_refused_and_audited(node_db: str, tmp_path: Path) -> None:
    with running_scp(scp_config(node_db, tmp_path / "store", max_associations=1)) as scp:
        first = associate(scp.port, CT_CONTEXT)
        second = associate(scp.port, CT_CONTEXT)
        assert first.is_established and second.is_rejected
        first.release()
    (event,) = audit_events(create_engine_for(node_db), EventType.ASSOCIATION_REFUSED)
    assert event.detail is not None and "limit of 1 associations" in event.detail["reason"]


def test_stop_waits_for_the_peer_then_aborts(node_db: str, tmp_path: Path) -> None:
    with running_scp(scp_config(node_db, tmp_path / "store", shutdown_grace=0.5)) as scp:
        assoc = associate(scp.port, CT_CONTEXT)
        assert assoc.send_c_store(ct_slice("1.2.826.0.1.9", "1.2.826.0.1.9.1", 0)).Status == 0
        port = scp.port
        scp.stop()
        # nothing listens once stopping started
        assert not associate(port, CT_CONTEXT).is_established
        assoc.release()
    engine = create_engine_for(node_db)
    assert instance_count(engine) == 1
    (closed,) = audit_events(engine, EventType.ASSOCIATION_CLOSED)
    assert closed.detail is not None and closed.detail["aborted"] is True


def test_an_abort_is_recorded_as_such(node_db: str, tmp_path: Path) -> None:
    with running_scp(scp_config(node_db, tmp_path / "store")) as scp:
        for end in ("release", "abort"):
            assoc = associate(scp.port, CT_CONTEXT)
            assert assoc.send_c_store(ct_slice("1.2.826.0.1.9", "1.2.826.0.1.9.1", 0)).Status == 0
            getattr(assoc, end)()
    closed = audit_events(create_engine_for(node_db), EventType.ASSOCIATION_CLOSED)
    assert [e.detail["aborted"] for e in closed if e.detail] == [False, True]
