"""Faults with the server-less broker: a worker killed during an analysis.

That broker never redelivers a message whose consumer died, so this is the reconciler's
case: the study is PROCESSING past its deadline, is sent again (audited as requeued) and
analysed by another worker, with exactly one Result for the revision.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from tests.integration.orchestration import (
    ALL_KINDS,
    Pacs,
    make_stack,
    send_study,
)
from tests.integration.test_orchestration_embedded import embedded_broker

pytestmark = pytest.mark.slow


def test_sigkill_of_the_worker_during_analysis_is_recovered_once(
        tmp_path: Path, sqlite_template: Path, tiny_checkpoint: Path,
        study_template: list[Dataset], pacs: Pacs) -> None:
    # a hard limit well above an analysis on a busy machine; the deadline is limit + grace
    stack = make_stack(tmp_path, sqlite_template, embedded_broker(tmp_path), tiny_checkpoint,
                       pacs, analysis_soft_time_limit=55.0, analysis_time_limit=60.0)
    try:
        stack.node()
        first = stack.worker()
        study_uid = send_study(stack.node_port, study_template)
        stack.wait_state(study_uid, "PROCESSING")
        stack.kill(first)
        stack.worker()
        study = stack.wait_state(study_uid, "DONE", "FAILED", "NOT_ANALYZABLE")
        assert study.state == "DONE", study.reason
        assert study.attempts == 2
        assert len(stack.results(study_uid)) == 1
        stack.wait_delivered(study_uid, pacs, ALL_KINDS)
        events = [row["event_type"] for row in stack.audit_cli("events", "--study", study_uid)]
        assert events.count("study.processing") == 2
        assert events.count("study.requeued") == 1
        assert events.count("study.done") == 1
    finally:
        stack.stop_all()
