"""docs/audit-events.md lists every event type with the DICOM audit identity the code uses."""

from __future__ import annotations

import re

from db.events import ATNA, EventType, Outcome
from tests.conftest import REPO_ROOT

DOC = REPO_ROOT / "docs" / "audit-events.md"


def _rows() -> dict[str, list[str]]:
    rows = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"^\| `([a-z_.]+)` \|(.*)\|$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def test_every_event_type_is_documented_with_its_atna_identity() -> None:
    rows = _rows()
    assert set(rows) >= {t.value for t in EventType}
    for kind in EventType:
        _, event_id, type_code, action, _ = rows[kind.value]
        atna = ATNA[kind]
        if atna is None:
            assert (event_id, type_code, action) == ("—", "—", "—"), kind
            continue
        assert event_id == f"{atna.event_id} {atna.event_name}", kind
        expected_type = f"{atna.type_code} {atna.type_name}" if atna.type_code else "—"
        assert type_code == expected_type, kind
        assert action == atna.action, kind


def test_every_outcome_is_documented() -> None:
    rows = _rows()
    assert {o.value for o in Outcome} <= set(rows)
    assert set(ATNA) == set(EventType)
