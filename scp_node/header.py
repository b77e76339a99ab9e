"""Read the few header elements the node needs from a received data set, fast.

The node stores the bytes it received and never decodes the data set on the request path:
it only needs the SOP Class, SOP Instance, Study and Series UIDs and whether pixel data is
present. This module walks the top-level elements by their tags and lengths (skipping the
values, descending into undefined-length sequences only to find their end) in any of the
uncompressed encodings: implicit or explicit VR, little or big endian, and the deflated
explicit little endian stream inflated first. Walking to the end also proves the data set
is complete: a truncated or inconsistent stream raises ``MalformedDataSet``.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

#: Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 Table 7.1-1).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR",
                       b"UT", b"SV", b"UV"})
_UNDEFINED = 0xFFFFFFFF
_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD

SOP_CLASS_UID = 0x00080016
SOP_INSTANCE_UID = 0x00080018
STUDY_INSTANCE_UID = 0x0020000D
SERIES_INSTANCE_UID = 0x0020000E
#: Pixel Data, Float Pixel Data, Double Float Pixel Data.
PIXEL_DATA_TAGS = frozenset({0x7FE00010, 0x7FE00008, 0x7FE00009})
_WANTED = frozenset({SOP_CLASS_UID, SOP_INSTANCE_UID, STUDY_INSTANCE_UID, SERIES_INSTANCE_UID})
#: Deepest nesting of undefined-length sequences the walk follows; a deeper data set is
#: refused as malformed (each level costs a few bytes to send and two frames of recursion).
MAX_SEQUENCE_DEPTH = 64


class MalformedDataSet(ValueError):
    """The received bytes are not a complete data set in the negotiated encoding."""


@dataclass(frozen=True)
class Encoding:
    """How a transfer syntax encodes the data set (PS3.5 section 10)."""

    implicit_vr: bool
    little_endian: bool
    deflated: bool = False


@dataclass(frozen=True)
class Header:
    """The identifying elements of one data set; ``None`` where the element is absent."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_uid: str | None
    series_uid: str | None
    has_pixel_data: bool


def read_header(stream: bytes, encoding: Encoding) -> Header:
    """Return the identifying elements of ``stream`` (a data set without file meta).

    Raises ``MalformedDataSet`` when the bytes end inside an element, a sequence or a deflate
    stream, or a length points past the end.
    """
    if encoding.deflated:
        stream = _inflate(stream)
        encoding = Encoding(implicit_vr=False, little_endian=True)
    found: dict[int, bytes] = {}
    pixel_data: list[int] = []

    def visit(tag: int, start: int, length: int) -> None:
        if tag in _WANTED:
            found[tag] = stream[start : start + length]
        elif tag in PIXEL_DATA_TAGS:
            pixel_data.append(tag)

    _Walker(stream, encoding, visit).walk(0, len(stream))
    return Header(
        sop_class_uid=_text(found.get(SOP_CLASS_UID)),
        sop_instance_uid=_text(found.get(SOP_INSTANCE_UID)),
        study_uid=_text(found.get(STUDY_INSTANCE_UID)),
        series_uid=_text(found.get(SERIES_INSTANCE_UID)),
        has_pixel_data=bool(pixel_data),
    )


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    try:
        return value.decode("ascii").rstrip("\x00 ")
    except UnicodeDecodeError:
        raise MalformedDataSet("a UID element holds non-ASCII bytes") from None


def _inflate(stream: bytes) -> bytes:
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        data = inflater.decompress(stream)
    except zlib.error as e:
        raise MalformedDataSet(f"the deflated data set cannot be inflated: {e}") from None
    if not inflater.eof:
        raise MalformedDataSet("the deflated data set ends before its deflate stream does")
    return data


class _Walker:
    """Walks the elements of a data set, checking every length against the end."""

    def __init__(self, data: bytes, encoding: Encoding,
                 visit: Callable[[int, int, int], None] | None = None, depth: int = 0) -> None:
        if depth > MAX_SEQUENCE_DEPTH:
            raise MalformedDataSet(f"sequences nested deeper than {MAX_SEQUENCE_DEPTH} levels")
        self.data = data
        self.encoding = encoding
        self.visit = visit
        self.depth = depth
        order = "<" if encoding.little_endian else ">"
        self.tag_format = struct.Struct(order + "HH")
        self.u16 = struct.Struct(order + "H")
        self.u32 = struct.Struct(order + "L")

    def walk(self, pos: int, end: int, *, in_item: bool = False) -> int:
        """Walk the elements from ``pos``; return where they end.

        ``visit(tag, value_start, value_length)`` is called for each element of this level
        (undefined-length values with the length they turned out to have). Inside an item of
        undefined length (``in_item``) the walk ends after the Item Delimitation Item.
        """
        data = self.data
        implicit = self.encoding.implicit_vr
        while pos < end:
            if pos + 8 > end:
                raise MalformedDataSet(f"the data set ends inside an element header at {pos}")
            group, element = self.tag_format.unpack_from(data, pos)
            tag = group << 16 | element
            if tag == _ITEM_END and in_item:
                return pos + 8
            vr = b""
            if implicit or group == 0xFFFE:
                length = self.u32.unpack_from(data, pos + 4)[0]
                pos += 8
            else:
                vr = data[pos + 4 : pos + 6]
                if vr in _LONG_VRS:
                    if pos + 12 > end:
                        raise MalformedDataSet(f"the data set ends inside an element header "
                                               f"at {pos}")
                    length = self.u32.unpack_from(data, pos + 8)[0]
                    pos += 12
                else:
                    length = self.u16.unpack_from(data, pos + 6)[0]
                    pos += 8
            start = pos
            if length == _UNDEFINED:
                pos = self._skip_sequence(pos, end, un_vr=vr == b"UN")
            elif pos + length > end:
                raise MalformedDataSet(
                    f"element ({group:04X},{element:04X}) of {length} bytes runs past the end "
                    "of the data set"
                )
            else:
                pos += length
            if self.visit is not None:
                self.visit(tag, start, pos - start)
        if in_item:
            raise MalformedDataSet("an item of undefined length has no delimiter")
        return pos

    def _skip_sequence(self, pos: int, end: int, *, un_vr: bool) -> int:
        """Return the position after the Sequence Delimitation Item that closes ``pos``.

        The items of an undefined-length UN element are implicit VR little endian
        (PS3.5 section 6.2.2); other items use the data set's own encoding.
        """
        encoding = Encoding(True, True) if un_vr else self.encoding
        items = _Walker(self.data, encoding, depth=self.depth + 1)
        while True:
            if pos + 8 > end:
                raise MalformedDataSet("a sequence of undefined length has no delimiter")
            group, element = self.tag_format.unpack_from(self.data, pos)
            tag = group << 16 | element
            length = self.u32.unpack_from(self.data, pos + 4)[0]
            pos += 8
            if tag == _SEQUENCE_END:
                return pos
            if tag != _ITEM:
                raise MalformedDataSet(f"expected an item, found tag {tag:08X} at {pos - 8}")
            if length == _UNDEFINED:
                pos = items.walk(pos, end, in_item=True)
            elif pos + length > end:
                raise MalformedDataSet("an item runs past the end of the data set")
            else:
                pos += length
