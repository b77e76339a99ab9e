"""The header reader against data sets pydicom encodes in every uncompressed encoding."""

from __future__ import annotations

import contextlib
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from scp_node.contexts import encoding_of
from scp_node.header import MAX_SEQUENCE_DEPTH, Encoding, MalformedDataSet, read_header
from tests.scp_node.support import ct_slice, encode_data_set

ENCODINGS = {
    "implicit-le": ("1.2.840.10008.1.2", True, True),
    "explicit-le": ("1.2.840.10008.1.2.1", False, True),
    "explicit-be": ("1.2.840.10008.1.2.2", False, False),
}


def _encode(ds: Dataset, implicit: bool, little: bool) -> bytes:
    return encode_data_set(ds, implicit=implicit, little=little)


def _with_sequence(ds: Dataset) -> Dataset:
    item = Dataset()
    item.CodeValue = "123"
    item.CodingSchemeDesignator = "DCM"
    nested = Dataset()
    nested.CodeMeaning = "nested"
    item.ConceptNameCodeSequence = Sequence([nested])
    ds.ProcedureCodeSequence = Sequence([item, Dataset()])
    return ds


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_reads_the_uids_in_every_encoding(name: str) -> None:
    ts, implicit, little = ENCODINGS[name]
    ds = _with_sequence(ct_slice("1.2.3", "1.2.3.4", 0))
    header = read_header(_encode(ds, implicit, little), encoding_of(ts))
    assert header.sop_class_uid == ds.SOPClassUID
    assert header.sop_instance_uid == ds.SOPInstanceUID
    assert header.study_uid == "1.2.3" and header.series_uid == "1.2.3.4"
    assert header.has_pixel_data


def test_deflated_stream_is_inflated_first() -> None:
    raw = _encode(ct_slice("1.2.3", "1.2.3.4", 0), False, True)
    deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    stream = deflater.compress(raw) + deflater.flush()
    header = read_header(stream, encoding_of("1.2.840.10008.1.2.1.99"))
    assert header.study_uid == "1.2.3"
    with pytest.raises(MalformedDataSet, match="deflate"):
        read_header(stream[: len(stream) // 2], encoding_of("1.2.840.10008.1.2.1.99"))


def test_undefined_length_sequences_and_encapsulated_pixel_data() -> None:
    ds = _with_sequence(ct_slice("1.2.3", "1.2.3.4", 0))
    ds.PixelData = b"\xfe\xff\x00\xe0\x00\x00\x00\x00" + b"\xfe\xff\x00\xe0\x04\x00\x00\x00abcd"
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds["ProcedureCodeSequence"].is_undefined_length = True
    for item in ds.ProcedureCodeSequence:
        item.is_undefined_length_sequence_item = True
    raw = _encode(ds, False, True)
    # the encapsulated pixel data needs its Sequence Delimitation Item
    assert raw.endswith(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")
    header = read_header(raw, Encoding(implicit_vr=False, little_endian=True))
    assert header.has_pixel_data and header.sop_instance_uid == ds.SOPInstanceUID
    with pytest.raises(MalformedDataSet, match="no delimiter"):
        read_header(raw[:-8], Encoding(implicit_vr=False, little_endian=True))


def test_missing_elements_are_none() -> None:
    ds = ct_slice("1.2.3", "1.2.3.4", 0)
    del ds.SOPInstanceUID, ds.PixelData
    header = read_header(_encode(ds, True, True), Encoding(True, True))
    assert header.sop_instance_uid is None and not header.has_pixel_data


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_every_truncation_is_detected(name: str) -> None:
    ts, implicit, little = ENCODINGS[name]
    raw = _encode(_with_sequence(ct_slice("1.2.3", "1.2.3.4", 0, size=4)), implicit, little)
    for cut in range(1, len(raw)):
        try:
            header = read_header(raw[:cut], encoding_of(ts))
        except MalformedDataSet:
            continue
        # a cut that falls exactly between two elements is a shorter, valid data set
        assert header.sop_class_uid is not None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    for implicit in (True, False):
        with contextlib.suppress(MalformedDataSet):
            read_header(data, Encoding(implicit, True))


def _nested(depth: int) -> bytes:
    """A CT slice with ``depth`` undefined-length sequences nested in each other."""
    opening = b"\x40\x00\x75\x02SQ\x00\x00\xff\xff\xff\xff" + b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    closing = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00" + b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    nested = opening * depth + closing * depth
    return nested + _encode(ct_slice("1.2.3", "1.2.3.4", 0, size=4), False, True)


def test_deep_nesting_is_malformed_not_a_recursion_error() -> None:
    encoding = Encoding(implicit_vr=False, little_endian=True)
    assert read_header(_nested(MAX_SEQUENCE_DEPTH), encoding).study_uid == "1.2.3"
    for depth in (MAX_SEQUENCE_DEPTH + 1, 5000):
        with pytest.raises(MalformedDataSet, match="nested deeper"):
            read_header(_nested(depth), encoding)
