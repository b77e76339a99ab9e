"""The checks an instance passes before the node acknowledges it (PS3.4 Annex B.2.3 statuses).

``0xA900`` (data set does not match SOP class) when the data set contradicts the
presentation context or the C-STORE request, a required UID is missing or breaks the UID
grammar, or an image class has no pixel data. ``0xC000`` (cannot understand) is for bytes
that are not a complete data set at all (``scp_node.header.MalformedDataSet``).
"""

from __future__ import annotations

from dataclasses import dataclass

from scp_node.contexts import IMAGE_SOP_CLASSES
from scp_node.header import Header
from scp_node.uids import is_valid_uid

DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
OUT_OF_RESOURCES = 0xA700


@dataclass(frozen=True)
class Problem:
    """Why an instance is refused: the DICOM status and a reason for the peer and the log.

    Reasons fit the response's Error Comment (LO, 64 characters) so the peer sees all of it.
    """

    status: int
    reason: str


def check_instance(header: Header, *, context_sop_class: str, affected_sop_class: str,
                   affected_sop_instance: str) -> Problem | None:
    """``None`` if the instance may be stored, else the first problem found."""
    sop_class = header.sop_class_uid
    if not sop_class:
        return _mismatch("SOP Class UID (0008,0016) is missing")
    if sop_class != context_sop_class or sop_class != affected_sop_class:
        return _mismatch("SOP Class UID does not match the presentation context")
    for label, value in (("SOP Instance UID (0008,0018)", header.sop_instance_uid),
                         ("Study Instance UID (0020,000D)", header.study_uid),
                         ("Series Instance UID (0020,000E)", header.series_uid)):
        if not value:
            return _mismatch(f"{label} is missing")
        if not is_valid_uid(value):
            return _mismatch(f"{label} is not a valid UID")
    if header.sop_instance_uid != affected_sop_instance:
        return _mismatch("SOP Instance UID differs from the request's Affected SOP Instance UID")
    if sop_class in IMAGE_SOP_CLASSES and not header.has_pixel_data:
        return _mismatch("an image SOP class without Pixel Data (7FE0,0010)")
    return None


def _mismatch(reason: str) -> Problem:
    return Problem(DOES_NOT_MATCH_SOP_CLASS, reason)
