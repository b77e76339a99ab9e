"""What the node accepts at negotiation: SOP classes and transfer syntaxes (PS3.4, PS3.5).

These tables are the source of docs/conformance.md's tables; a test compares the two. Any
SOP class not listed here is refused at association negotiation (abstract syntax not
supported), so a C-STORE of it never reaches a handler.
"""

from __future__ import annotations

from types import MappingProxyType

from pynetdicom.presentation import PresentationContext, build_context

from scp_node.header import Encoding

VERIFICATION = "1.2.840.10008.1.1"

#: Storage SOP classes accepted as SCP: UID -> name as PS3.4 names it.
STORAGE_SOP_CLASSES: MappingProxyType[str, str] = MappingProxyType({
    "1.2.840.10008.5.1.4.1.1.2": "CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image Storage",
    "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation Storage",
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR Storage",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR Storage",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR Storage",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR Storage",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image Storage",
})

#: The storage classes whose IOD requires pixel data; an instance without it is refused.
IMAGE_SOP_CLASSES = frozenset({
    "1.2.840.10008.5.1.4.1.1.2",
    "1.2.840.10008.5.1.4.1.1.2.1",
    "1.2.840.10008.5.1.4.1.1.66.4",
    "1.2.840.10008.5.1.4.1.1.7",
})

#: Transfer syntaxes accepted for every storage class: UID -> name as PS3.5 names it.
TRANSFER_SYNTAXES: MappingProxyType[str, str] = MappingProxyType({
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian (retired)",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless, First-Order Prediction (Process 14 SV1)",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Image Compression (Lossless Only)",
    "1.2.840.10008.1.2.5": "RLE Lossless",
})

#: Transfer syntaxes accepted for Verification.
VERIFICATION_TRANSFER_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")


def encoding_of(transfer_syntax_uid: str) -> Encoding:
    """How the data set is encoded under an accepted transfer syntax.

    Encapsulated (compressed) syntaxes encode the data set in explicit VR little endian;
    only the pixel data is compressed, and the node never decodes it.
    """
    if transfer_syntax_uid not in TRANSFER_SYNTAXES:
        raise ValueError(f"transfer_syntax_uid {transfer_syntax_uid!r} is not accepted")
    if transfer_syntax_uid == "1.2.840.10008.1.2":
        return Encoding(implicit_vr=True, little_endian=True)
    if transfer_syntax_uid == "1.2.840.10008.1.2.2":
        return Encoding(implicit_vr=False, little_endian=False)
    return Encoding(implicit_vr=False, little_endian=True,
                    deflated=transfer_syntax_uid == "1.2.840.10008.1.2.1.99")


def supported_contexts() -> list[PresentationContext]:
    """The presentation contexts the node supports as SCP (Verification and storage)."""
    contexts = [build_context(VERIFICATION, list(VERIFICATION_TRANSFER_SYNTAXES))]
    contexts += [build_context(uid, list(TRANSFER_SYNTAXES)) for uid in STORAGE_SOP_CLASSES]
    return contexts
