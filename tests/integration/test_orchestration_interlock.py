"""The research interlock, ``lungpath resend`` and ``lungpath reanalyze`` with real processes.

The test checkpoint's intended use is research-synthetic: with ``research_mode`` off its
results are stored, audited and held, also after ``resend``; ``reanalyze`` makes a new
revision whose result names the first one as its predecessor, held as well. (``resend``
delivering in research mode: test_orchestration_embedded.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pipeline.delivery import HELD
from tests.integration.orchestration import (
    Pacs,
    make_stack,
    send_study,
    wait_for,
)
from tests.integration.test_orchestration_embedded import embedded_broker

pytestmark = pytest.mark.slow


def test_held_without_research_mode_then_resend_and_reanalyze(
        tmp_path: Path, sqlite_template: Path, tiny_checkpoint: Path,
        study_template: list[Dataset], pacs: Pacs) -> None:
    stack = make_stack(tmp_path, sqlite_template, embedded_broker(tmp_path), tiny_checkpoint,
                       pacs, research_mode=False)
    try:
        stack.node()
        stack.worker()
        study_uid = send_study(stack.node_port, study_template)
        assert stack.wait_state(study_uid, "DONE", "FAILED").state == "DONE"
        wait_for(lambda: len(stack.deliveries(study_uid)) == 3
                 and all(d.last_status == HELD for d in stack.deliveries(study_uid)),
                 "deliveries held", stack)
        held = [e for e in stack.audit_cli("events", "--study", study_uid)
                if e["event_type"] == "delivery.failed"]
        assert len(held) == 3 and all(e["detail"]["held"] for e in held)
        assert pacs.count(study_uid) == 0

        # resend re-arms the deliveries, and the interlock holds them again
        answer = stack.cli("resend", study_uid)
        assert answer.returncode == 0, answer.stderr
        assert stack.count_events(study_uid, "delivery.resend") == 1
        wait_for(lambda: stack.count_events(study_uid, "delivery.failed") == 6,
                 "the re-armed deliveries held again", stack)
        assert pacs.count(study_uid) == 0

        answer = stack.cli("reanalyze", study_uid)
        assert answer.returncode == 0, answer.stderr
        assert "revision 2" in answer.stdout
        wait_for(lambda: len(stack.results(study_uid)) == 2, "a second result", stack)
        first, second = sorted(stack.results(study_uid), key=lambda r: r.revision)
        assert (second.revision, second.predecessor_id) == (2, first.id)
        wait_for(lambda: sum(d.result_id == second.id and d.last_status == HELD
                             for d in stack.deliveries(study_uid)) == 3, "revision 2 held",
                 stack)
        assert pacs.count(study_uid) == 0
        assert stack.count_events(study_uid, "study.reanalysis") == 1
        refused = stack.cli("reanalyze", "1.2.3.4.5")
        assert refused.returncode == 1 and "no such study" in refused.stderr
    finally:
        stack.stop_all()
