"""The DICOM UID grammar (PS3.5 section 9.1), checked before a UID becomes a path.

A UID is at most 64 characters of digit components separated by single dots, and a
component never has a leading zero unless it is ``0`` itself. Anything else (``..``, ``/``,
letters, spaces, an empty string) is refused, so a received UID can never name a folder
outside the store.
"""

from __future__ import annotations

import re

MAX_UID_LENGTH = 64

_UID = re.compile(r"(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))*")


def is_valid_uid(value: str) -> bool:
    """Whether ``value`` follows the UID grammar of PS3.5 section 9.1."""
    return 0 < len(value) <= MAX_UID_LENGTH and _UID.fullmatch(value) is not None
