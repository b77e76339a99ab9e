"""docs/conformance.md says what the code does: its SOP class, transfer syntax and
implementation tables are compared with scp_node's."""

from __future__ import annotations

import re

from scp_node.contexts import (
    IMAGE_SOP_CLASSES,
    STORAGE_SOP_CLASSES,
    TRANSFER_SYNTAXES,
    VERIFICATION,
)
from scp_node.storage import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from tests.conftest import REPO_ROOT

DOC = REPO_ROOT / "docs" / "conformance.md"


def _table(section: str) -> list[list[str]]:
    """The body rows of the first table after the heading that starts with ``section``."""
    text = DOC.read_text()
    match = re.search(rf"^## {re.escape(section)}.*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"no section {section!r} in {DOC}"
    rows = [line for line in match.group(1).splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def test_sop_class_table_matches_the_code() -> None:
    rows = _table("3. SOP classes accepted as SCP")
    documented = {uid: (name, pixels) for name, uid, pixels in rows}
    expected = {uid: (name, "yes" if uid in IMAGE_SOP_CLASSES else "no")
                for uid, name in STORAGE_SOP_CLASSES.items()}
    expected[VERIFICATION] = ("Verification", "–")
    assert documented == expected


def test_transfer_syntax_table_matches_the_code() -> None:
    rows = _table("4. Transfer syntaxes")
    assert {uid: name for name, uid in rows} == dict(TRANSFER_SYNTAXES)


def test_implementation_identity_matches_the_code() -> None:
    rows = dict((item, value) for item, value in _table("1. Implementation"))
    assert rows["Implementation Class UID"] == IMPLEMENTATION_CLASS_UID
    assert rows["Implementation Version Name"] == IMPLEMENTATION_VERSION_NAME
