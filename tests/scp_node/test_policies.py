"""The pure parts of the node: UID grammar, allow-list entries, configuration, durable store."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from scp_node.access import REJECT_CALLED_AE, REJECT_CALLING_AE, AccessPolicy, AllowEntry
from scp_node.config import ScpConfig
from scp_node.storage import INCOMING, TEMP_SUFFIX, InstanceKey, InstanceStore, file_meta
from scp_node.uids import is_valid_uid


@pytest.mark.parametrize("uid", ["1.2.3", "0", "1.0.2", "2.25." + "9" * 59])
def test_valid_uids(uid: str) -> None:
    assert is_valid_uid(uid)


@pytest.mark.parametrize("uid", ["", "1..2", "../1", "1.2/3", "1.02", ".1", "1.", "1.2 ",
                                 "a.b", "2.25." + "9" * 60, "1.2\x00"])
def test_invalid_uids(uid: str) -> None:
    assert not is_valid_uid(uid)


def test_instance_key_refuses_a_path_traversal() -> None:
    with pytest.raises(ValueError, match=re.escape("series_uid '../..' is not a valid DICOM UID")):
        InstanceKey("1.2", "../..", "1.2.3")


def test_allow_entries() -> None:
    assert AllowEntry.parse("CT1").admits("CT1", "10.1.2.3")
    bound = AllowEntry.parse("CT1@10.1.0.0/16")
    assert bound.admits("CT1", "10.1.2.3") and not bound.admits("CT1", "10.2.0.1")
    assert not bound.admits("CT2", "10.1.2.3")
    with pytest.raises(ValueError, match="not an IP address"):
        AllowEntry.parse("CT1@somewhere")


def test_policy_checks_called_then_calling() -> None:
    policy = AccessPolicy("NODE", ["CT1", "PACS@127.0.0.1"])
    assert policy.check(calling_ae="CT1", called_ae="NODE", peer_host="1.2.3.4") is None
    refusal = policy.check(calling_ae="CT1", called_ae="OTHER", peer_host="1.2.3.4")
    assert refusal is not None and (refusal.result, refusal.source,
                                    refusal.diagnostic) == REJECT_CALLED_AE
    refusal = policy.check(calling_ae="PACS", called_ae="NODE", peer_host="10.0.0.1")
    assert refusal is not None and "not allowed from 10.0.0.1" in refusal.reason
    assert (refusal.result, refusal.source, refusal.diagnostic) == REJECT_CALLING_AE
    assert AccessPolicy("NODE").check(calling_ae="ANY", called_ae="NODE",
                                      peer_host="::1") is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"port": 70000}, "port must be"), ({"max_associations": 0}, "max_associations"),
     ({"dimse_timeout": 0}, "dimse_timeout"), ({"min_free_bytes": -1}, "min_free_bytes"),
     ({"tls_cert_file": Path("c.pem")}, "together"),
     ({"allowed_calling_aes": ("X@nowhere",)}, "not an IP address")],
)
def test_config_names_the_bad_argument(tmp_path: Path, overrides: dict[str, object],
                                       message: str) -> None:
    arguments: dict[str, object] = {"ae_title": "NODE", "host": "127.0.0.1", "port": 104,
                                    "store_dir": tmp_path, "database_url": "sqlite://"}
    with pytest.raises(ValueError, match=message):
        ScpConfig(**(arguments | overrides))  # type: ignore[arg-type]


def test_store_writes_durably_and_replaces_atomically(tmp_path: Path) -> None:
    store = InstanceStore(tmp_path)
    key = InstanceKey("1.2", "1.2.3", "1.2.3.4")
    meta = file_meta(sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid="1.2.3.4",
                     transfer_syntax_uid="1.2.840.10008.1.2.1", source_ae_title="CT1")
    assert meta[128:132] == b"DICM" and len(meta) % 2 == 0
    store.write(key, meta, b"first")
    store.write(key, meta, b"second")
    described = store.describe(key, meta, b"second")
    assert described.path == tmp_path / "1.2" / "1.2.3" / "1.2.3.4.dcm"
    assert described.path.read_bytes() == meta + b"second"
    assert described.size == len(meta) + 6
    assert list((tmp_path / INCOMING).iterdir()) == []


def test_stale_temporaries_are_removed_at_start(tmp_path: Path) -> None:
    store = InstanceStore(tmp_path)
    (tmp_path / INCOMING / f"left{TEMP_SUFFIX}").write_bytes(b"half a file")
    assert store.remove_stale_temporaries() == 1
    assert list((tmp_path / INCOMING).iterdir()) == []


def test_free_space_threshold(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    assert InstanceStore(tmp_path, min_free_bytes=0).has_room(1)
    assert not InstanceStore(tmp_path, min_free_bytes=free + 10**12).has_room(1)
