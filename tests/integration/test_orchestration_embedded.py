"""The embedded mode end to end: ``lungpath serve`` with the server-less broker starts its own
worker; a study sent over C-STORE comes back to the PACS as SR, summary image and SEG.

The node never imports torch: torch's shared library is mapped into every process that
imported it (and cannot be unmapped), so /proc/<pid>/maps of the running node tells, and
the worker child, which ran the model, is the control that the check can fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from tests.integration.orchestration import (
    ALL_KINDS,
    Pacs,
    child_pids,
    make_stack,
    mapped_files,
    send_study,
    wait_for,
)

pytestmark = pytest.mark.slow


def embedded_broker(root: Path) -> str:
    return f"sqla+sqlite:///{(root / 'broker.db').resolve()}"


def test_serve_with_its_worker_child_delivers_sr_sc_and_seg(
        tmp_path: Path, sqlite_template: Path, tiny_checkpoint: Path,
        study_template: list[Dataset], pacs: Pacs) -> None:
    stack = make_stack(tmp_path, sqlite_template, embedded_broker(tmp_path), tiny_checkpoint,
                       pacs, embedded_worker=True)
    try:
        node = stack.node()
        study_uid = send_study(stack.node_port, study_template)
        study = stack.wait_state(study_uid, "DONE", "NOT_ANALYZABLE", "FAILED")
        assert study.state == "DONE", (study.reason, stack.logs())
        stack.wait_delivered(study_uid, pacs, ALL_KINDS)
        (result,) = stack.results(study_uid)
        assert result.findings is not None and result.findings["status"] == "COMPLETED"
        (job,) = stack.jobs()
        assert job.host and job.device == "cpu"
        assert job.checkpoint_sha256 == result.checkpoint_sha256
        assert job.timings is not None and {"read", "volume", "lung_mask", "nodules", "crop",
                                            "predict", "write", "total"} <= set(job.timings)
        sent = stack.audit_cli("events", "--study", study_uid)
        kinds = [row["event_type"] for row in sent]
        assert kinds.count("delivery.sent") == 3, kinds
        assert {"study.queued", "study.processing", "study.done"} <= set(kinds)
        # resend: the latest result goes to the PACS again, audited
        sent = pacs.count(study_uid)
        answer = stack.cli("resend", study_uid)
        assert answer.returncode == 0, answer.stderr
        wait_for(lambda: pacs.count(study_uid) == 2 * sent, "the result sent again", stack)
        assert stack.count_events(study_uid, "delivery.resend") == 1
        # torch is in the worker child (it ran the model) and never in the node itself
        assert any("libtorch" in mapped_files(child) for child in child_pids(node.pid))
        assert "libtorch" not in mapped_files(node.pid)
    finally:
        stack.stop_all()
