"""Every accepted transfer syntax is stored as received: the stored data set is byte-identical
to the one sent (pynetdicom sends a file's data set bytes as they are; dcmtk encodes JPEG
Lossless SV1, for which pydicom has no encoder)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom.dsutils import split_dataset

from db.engine import create_engine_for
from scp_node.contexts import TRANSFER_SYNTAXES
from tests.conftest import require_tool
from tests.scp_node.support import (
    CT,
    associate,
    ct_slice,
    instance_count,
    node_db,
    running_scp,
    scp_config,
    send_files_raw,
    sqlite_template,
)

__all__ = ["node_db", "send_files_raw", "sqlite_template"]

STUDY = "1.2.826.0.4.1"


def _source_file(folder: Path, syntax: str, index: int) -> Path:
    """One CT slice encoded in ``syntax``, as a file."""
    ds = ct_slice(STUDY, f"{STUDY}.{index}", index)
    path = folder / f"{index}.dcm"
    if syntax == JPEGLosslessSV1:
        plain = folder / f"{index}-plain.dcm"
        ds.save_as(plain, enforce_file_format=True)
        subprocess.run([require_tool("dcmcjpeg"), "+e1", str(plain), str(path)], check=True)
        return path
    if syntax in (RLELossless, JPEGLSLossless, JPEG2000Lossless):
        ds.compress(syntax)
    else:
        ds.file_meta.TransferSyntaxUID = syntax
    ds.save_as(path, enforce_file_format=True,
               implicit_vr=syntax == ImplicitVRLittleEndian,
               little_endian=syntax != ExplicitVRBigEndian)
    return path


def _data_set_bytes(path: Path) -> tuple[Dataset, bytes]:
    meta, offset = split_dataset(path)
    return meta, path.read_bytes()[offset:]


SYNTAXES = [ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
            ExplicitVRBigEndian, JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless, RLELossless]


def test_the_test_covers_every_accepted_syntax() -> None:
    assert set(SYNTAXES) == set(TRANSFER_SYNTAXES)


@pytest.mark.usefixtures("send_files_raw")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_each_transfer_syntax_is_stored_byte_identical(node_db: str, tmp_path: Path) -> None:
    sources = {syntax: _source_file(tmp_path, syntax, i) for i, syntax in enumerate(SYNTAXES)}
    store = tmp_path / "store"
    with running_scp(scp_config(node_db, store)) as scp:
        for syntax, path in sources.items():
            assoc = associate(scp.port, [(CT, [syntax])])
            assert assoc.is_established, syntax
            assert assoc.accepted_contexts[0].transfer_syntax[0] == syntax
            assert assoc.send_c_store(path).Status == 0x0000, syntax
            assoc.release()
    for index, (syntax, path) in enumerate(sources.items()):
        sent_meta, sent = _data_set_bytes(path)
        assert sent_meta.TransferSyntaxUID == syntax
        stored_path = (store / STUDY / f"{STUDY}.{index}" /
                       f"{sent_meta.MediaStorageSOPInstanceUID}.dcm")
        stored_meta, stored = _data_set_bytes(stored_path)
        assert stored_meta.TransferSyntaxUID == syntax
        assert stored == sent, syntax
        # and the stored file is a valid DICOM file in that syntax
        assert dcmread(stored_path).SOPInstanceUID == sent_meta.MediaStorageSOPInstanceUID
    assert instance_count(create_engine_for(node_db)) == len(SYNTAXES)
