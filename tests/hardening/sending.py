"""Send corpus cases over real associations, and check that nothing acknowledged was lost.

The bytes of a case go to the node exactly as generated: each is written as a file whose
meta names the context, and pynetdicom sends a file's data set undecoded
(``STORE_SEND_CHUNKED_DATASET``, set by the caller: tests through the ``send_files_raw``
fixture, the bench for its whole process).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, select

from db.engine import transaction
from db.models import Instance
from scp_node.contexts import TRANSFER_SYNTAXES
from tests.hardening.corpus import SECONDARY_CAPTURE, Case
from tests.scp_node.support import CT, associate, part10_file

#: Every case is sent under one of these SOP classes, in any accepted syntax: one context
#: per pair, as an SCP accepts one syntax per context.
CONTEXTS = [(sop_class, [syntax]) for sop_class in (CT, SECONDARY_CAPTURE)
            for syntax in TRANSFER_SYNTAXES]


@dataclass(frozen=True)
class Sent:
    """A case, the status the node answered (``None``: no answer, the association died) and
    the seconds the answer took."""

    case: Case
    status: int | None
    seconds: float


def send_cases(port: int, cases: Sequence[Case], folder: Path, *,
               dimse_timeout: float = 20.0) -> list[Sent]:
    """Send ``cases`` on one association, in order; a lost association is opened again.
    No answer within ``dimse_timeout`` seconds gives a ``None`` status."""
    folder.mkdir(parents=True, exist_ok=True)
    sent: list[Sent] = []
    assoc = associate(port, CONTEXTS)
    assoc.dimse_timeout = dimse_timeout
    try:
        for index, case in enumerate(cases):
            if not assoc.is_established:
                assoc = associate(port, CONTEXTS)
                assoc.dimse_timeout = dimse_timeout
            path = part10_file(folder / f"{index}.dcm", sop_class_uid=case.sop_class_uid,
                               sop_instance_uid=case.sop_instance_uid,
                               transfer_syntax_uid=case.transfer_syntax_uid,
                               data_set=case.data_set)
            start = time.perf_counter()
            rsp = assoc.send_c_store(path)
            sent.append(Sent(case, int(rsp.Status) if "Status" in rsp else None,
                             time.perf_counter() - start))
            path.unlink()
    finally:
        if assoc.is_established:
            assoc.release()
    return sent


def unexpected(sent: Iterable[Sent]) -> list[str]:
    """One line per answer outside its case's expected statuses (no answer included)."""
    return [f"{s.case.category}: status {s.status} not in "
            f"{sorted(f'0x{x:04X}' for x in s.case.expected)}"
            for s in sent if s.status not in s.case.expected]


def lost_instances(engine: Engine, store: Path, sent: Iterable[Sent]) -> list[str]:
    """Acknowledged (0x0000) instances without their row, or whose file is missing or is
    not the data set the peer sent: the SOP Instance UIDs, empty when nothing was lost."""
    acked = {s.case.sop_instance_uid: s.case for s in sent if s.status == 0x0000}
    with transaction(engine) as session:
        rows = dict(session.execute(
            select(Instance.sop_instance_uid, Instance.path)).tuples().all())
    return [uid for uid, case in acked.items()
            if uid not in rows or not _holds(Path(rows[uid]), store, case.data_set)]


def _holds(path: Path, store: Path, data_set: bytes) -> bool:
    """Whether ``path`` is a file of the store that ends with exactly ``data_set``."""
    return (path.is_relative_to(store) and path.is_file()
            and path.read_bytes().endswith(data_set))
