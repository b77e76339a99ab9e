"""The bad-input corpus: one generator per category of malformed or hostile C-STORE request.

``make_case(category, rng)`` builds one request (data set bytes, the presentation context's
SOP class and transfer syntax, the Affected SOP Instance UID) and the statuses the node may
answer it with. The hypothesis tests draw ``rng`` from a strategy; ``bench/fuzz.py`` runs the
same generators with seeded generators for its long run. Data sets are small (at most 16 x 16
pixels) so that thousands cost little.

Whatever the category, 0xA700 (out of resources) is never an expected answer: the node gives
it only when its disk or database fails, which these inputs do not cause.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from dataclasses import dataclass

from pydicom.dataset import Dataset

from tests.scp_node.support import CT, ct_slice, encode_data_set

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
JPEG_2000 = "1.2.840.10008.1.2.4.90"
JPEG_LS = "1.2.840.10008.1.2.4.80"
RLE = "1.2.840.10008.1.2.5"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
STORED = 0x0000
DOES_NOT_MATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
SIZE = 16

#: Path characters and separators an attacker may try in a UID that names a folder.
PATH_PIECES = ("..", "/", "\\", "../..", "./", "\x00", "~", "%2e%2e", "1.2/../..", " ", "*")


@dataclass(frozen=True)
class Case:
    """One C-STORE request of the corpus and the statuses it may get."""

    category: str
    data_set: bytes
    sop_instance_uid: str
    expected: frozenset[int]
    sop_class_uid: str = CT
    transfer_syntax_uid: str = EXPLICIT_LE
    study_uid: str = ""


def _uid(rng: random.Random) -> str:
    return f"2.25.{rng.getrandbits(120)}"


def _slice(rng: random.Random, study_uid: str | None = None) -> Dataset:
    study = study_uid or _uid(rng)
    return ct_slice(study, f"{study}.1", rng.randrange(200), size=SIZE,
                    sop_instance_uid=_uid(rng))


def _case(category: str, ds: Dataset, expected: set[int], *, data_set: bytes | None = None,
          sop_instance_uid: str | None = None, **kwargs: str) -> Case:
    body = encode_data_set(ds) if data_set is None else data_set
    uid = sop_instance_uid if sop_instance_uid is not None else str(ds.get("SOPInstanceUID", ""))
    return Case(category, body, uid or "1.2.3", frozenset(expected),
                study_uid=str(ds.get("StudyInstanceUID", "")), **kwargs)


def valid(rng: random.Random) -> Case:
    """A well-formed CT slice: the control, stored with 0x0000."""
    return _case("valid", _slice(rng), {STORED})


def missing_uid(rng: random.Random) -> Case:
    ds = _slice(rng)
    uid = ds.SOPInstanceUID
    keyword = rng.choice(["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                          "SOPClassUID"])
    delattr(ds, keyword)
    return _case("missing_uid", ds, {DOES_NOT_MATCH}, sop_instance_uid=uid)


def _bad_uid(rng: random.Random) -> str:
    forms: list[Callable[[], str]] = [
        lambda: "1.2.0" + str(rng.randrange(1, 9)) + ".3",          # leading zero
        lambda: "1.2." + "9" * rng.randrange(61, 120),               # longer than 64
        lambda: "1.2.3.",                                            # trailing dot
        lambda: "1..2",                                              # empty component
        lambda: "1.2.a" + str(rng.randrange(100)),                   # letters
        lambda: "".join(rng.choice("0123456789.-+ eE") for _ in range(rng.randrange(1, 40))),
    ]
    value = rng.choice(forms)()
    return value if value.strip("\x00 ") and not _looks_valid(value) else "1..2"


def _looks_valid(value: str) -> bool:
    from scp_node.uids import is_valid_uid
    return is_valid_uid(value.rstrip("\x00 "))


def malformed_uid(rng: random.Random) -> Case:
    ds = _slice(rng)
    keyword = rng.choice(["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
    uid = ds.SOPInstanceUID
    setattr(ds, keyword, _bad_uid(rng))
    return _case("malformed_uid", ds, {DOES_NOT_MATCH}, sop_instance_uid=_affected(uid))


def path_uid(rng: random.Random) -> Case:
    ds = _slice(rng)
    uid = ds.SOPInstanceUID
    keyword = rng.choice(["SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"])
    piece = rng.choice(PATH_PIECES)
    value = rng.choice([piece, f"1.2.{piece}.3", f"{piece}etc{piece}passwd", f"1.2{piece}"])
    setattr(ds, keyword, value[:64])
    # trailing spaces and NULs are padding: "1.2 " is the valid UID 1.2 (and as a SOP Instance
    # UID it then differs from the request's)
    padded_valid = keyword != "SOPInstanceUID" and _looks_valid(str(ds.get(keyword)))
    expected = STORED if padded_valid else DOES_NOT_MATCH
    return _case("path_uid", ds, {expected}, sop_instance_uid=_affected(uid))


def _affected(uid: str) -> str:
    """The request's Affected SOP Instance UID stays valid when the data set's is not:
    pynetdicom refuses to send an invalid one, and an SCP aborts on an empty one."""
    return uid


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element, as given (odd lengths and all)."""
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR", b"OF", b"OD", b"OL"):
        return struct.pack("<HH2sHL", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


def _splice(body: bytes, extra: bytes, tag: tuple[int, int]) -> bytes:
    """``body`` with ``extra`` inserted before the first element at or after ``tag``
    (so that elements stay in ascending order where the extra one has a new tag)."""
    wanted = tag[0] << 16 | tag[1]
    pos = 0
    while pos + 8 <= len(body):
        group, element = struct.unpack_from("<HH", body, pos)
        if (group << 16 | element) >= wanted:
            break
        vr = body[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR", b"OF", b"OD", b"OL"):
            pos += 12 + struct.unpack_from("<L", body, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", body, pos + 6)[0]
    return body[:pos] + extra + body[pos:]


def wrong_vr(rng: random.Random) -> Case:
    """An identifying or image element under a VR it does not have (explicit VR)."""
    ds = _slice(rng)
    target = rng.choice(["StudyInstanceUID", "SeriesInstanceUID", "Rows", "InstanceNumber"])
    tag = ds.data_element(target).tag  # type: ignore[union-attr]
    value = str(ds.get(target)).encode("ascii")
    delattr(ds, target)
    vr = rng.choice([b"US", b"SQ", b"OB", b"FD", b"AT", b"XX", b"UN", b"LO"])
    if len(value) % 2:
        value += b"\x00"
    element = _element(tag.group, tag.element, vr, value)
    if rng.random() < 0.5:  # a long-form VR with a short-form length, or the reverse
        element = struct.pack("<HH2sH", tag.group, tag.element, rng.choice([b"OB", b"SQ"]),
                              len(value)) + value
    body = _splice(encode_data_set(ds), element, (tag.group, tag.element))
    return _case("wrong_vr", ds, {STORED, DOES_NOT_MATCH, CANNOT_UNDERSTAND}, data_set=body)


def odd_length(rng: random.Random) -> Case:
    """Values of odd length (PS3.5 requires even): a private text element or a UID."""
    ds = _slice(rng)
    if rng.random() < 0.5:
        extra = _element(0x0009, 0x0010, b"LO", b"ODD")
        body = _splice(encode_data_set(ds), extra, (0x0009, 0x0010))
        return _case("odd_length", ds, {STORED}, data_set=body)
    uid = ds.SeriesInstanceUID
    del ds.SeriesInstanceUID
    odd = uid if len(uid) % 2 else uid + "1"
    body = _splice(encode_data_set(ds), _element(0x0020, 0x000E, b"UI", odd.encode()),
                   (0x0020, 0x000E))
    return _case("odd_length", ds, {STORED, CANNOT_UNDERSTAND}, data_set=body)


def truncated_file(rng: random.Random) -> Case:
    """The data set cut anywhere before its end."""
    ds = _slice(rng)
    body = encode_data_set(ds)
    cut = body[: rng.randrange(1, len(body))]
    return _case("truncated_file", ds, {DOES_NOT_MATCH, CANNOT_UNDERSTAND}, data_set=cut)


def truncated_pixels(rng: random.Random) -> Case:
    """A complete data set whose Pixel Data holds fewer bytes than Rows x Columns needs."""
    ds = _slice(rng)
    ds.PixelData = bytes(ds.PixelData)[: 2 * rng.randrange(1, SIZE * SIZE // 2)]
    return _case("truncated_pixels", ds, {STORED})


def bad_compression(rng: random.Random) -> Case:
    """Encapsulated pixel data under a compressed syntax whose fragments are not a codestream:
    stored as received (the node never decodes on the request path)."""
    from pydicom.encaps import encapsulate

    ds = _slice(rng)
    fragment = rng.randbytes(rng.randrange(2, 64) * 2)
    ds.PixelData = encapsulate([fragment])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    syntax = rng.choice([JPEG_2000, JPEG_LS, RLE])
    return _case("bad_compression", ds, {STORED}, transfer_syntax_uid=syntax)


def sop_mismatch(rng: random.Random) -> Case:
    """The data set's SOP class or instance contradicts the context or the request."""
    ds = _slice(rng)
    if rng.random() < 0.5:
        ds.SOPClassUID = SECONDARY_CAPTURE
        return _case("sop_mismatch", ds, {DOES_NOT_MATCH})
    return _case("sop_mismatch", ds, {DOES_NOT_MATCH}, sop_instance_uid=_uid(rng))


def non_ct(rng: random.Random) -> Case:
    """An image of another modality (or none) under the CT class: stored, never analysed."""
    ds = _slice(rng)
    modality = rng.choice(["MR", "PT", "US", "", "XA"])
    if modality:
        ds.Modality = modality
    else:
        del ds.Modality
    return _case("non_ct", ds, {STORED})


def huge_dimensions(rng: random.Random) -> Case:
    """Rows and Columns up to 65535 over a few bytes of pixel data."""
    ds = _slice(rng)
    ds.Rows = rng.choice([65535, 40000, 4096])
    ds.Columns = rng.choice([65535, 1, 30000])
    ds.NumberOfFrames = rng.choice([1, 65535])
    return _case("huge_dimensions", ds, {STORED})


def nested_sequences(rng: random.Random) -> Case:
    """Sequences nested up to thousands of levels deep (undefined lengths, a few bytes each)."""
    ds = _slice(rng)
    depth = rng.choice([rng.randrange(1, 64), rng.randrange(64, 4000)])
    item_start, item_end = b"\xfe\xff\x00\xe0\xff\xff\xff\xff", b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    seq_end = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    header = struct.pack("<HH2sHL", 0x0040, 0x0275, b"SQ", 0, 0xFFFFFFFF)
    nested = (header + item_start) * depth + (item_end + seq_end) * depth
    body = _splice(encode_data_set(ds), nested, (0x0040, 0x0275))
    return _case("nested_sequences", ds, {STORED, CANNOT_UNDERSTAND}, data_set=body)


def random_bytes(rng: random.Random) -> Case:
    """Bytes that are no data set at all."""
    body = rng.randbytes(rng.randrange(0, 512))
    return Case("random_bytes", body, _uid(rng), frozenset({DOES_NOT_MATCH, CANNOT_UNDERSTAND}))


GENERATORS: dict[str, Callable[[random.Random], Case]] = {
    "valid": valid,
    "missing_uid": missing_uid,
    "malformed_uid": malformed_uid,
    "path_uid": path_uid,
    "wrong_vr": wrong_vr,
    "odd_length": odd_length,
    "truncated_file": truncated_file,
    "truncated_pixels": truncated_pixels,
    "bad_compression": bad_compression,
    "sop_mismatch": sop_mismatch,
    "non_ct": non_ct,
    "huge_dimensions": huge_dimensions,
    "nested_sequences": nested_sequences,
    "random_bytes": random_bytes,
}
CATEGORIES = tuple(GENERATORS)


def make_case(category: str, rng: random.Random) -> Case:
    """One request of ``category`` (a key of ``GENERATORS``), drawn with ``rng``."""
    if category not in GENERATORS:
        raise ValueError(f"category must be one of {', '.join(CATEGORIES)}, got {category!r}")
    return GENERATORS[category](rng)

