"""Orthanc as the PACS: it holds a study, sends it to lungpath with the quick start's script,
and lungpath's SR, SC and SEG land in the same study. Forwarding the whole study again, SR
included, must not start a second analysis (no feedback loop, DESIGN.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from sqlalchemy import func, select

from db.engine import transaction
from db.models import Instance, Job, Study
from tests.e2e.conftest import Orthanc, quickstart_env, run_script, write_copy
from tests.integration.orchestration import Stack, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.tools]

RESULT_MODALITIES = {"SR", "OT", "SEG"}  #: the SC summary image is Modality OT


def jobs_of(node: Stack, study_uid: str) -> int:
    with transaction(node.engine) as session:
        return int(session.scalar(select(func.count(Job.id)).join(Study, Job.study_id == Study.id)
                                  .where(Study.study_uid == study_uid)) or 0)


def own_outputs(node: Stack, study_uid: str) -> int:
    with transaction(node.engine) as session:
        return int(session.scalar(
            select(func.count(Instance.id)).join(Study, Instance.study_id == Study.id)
            .where(Study.study_uid == study_uid, Instance.own_output.is_(True))) or 0)


def test_orthanc_study_gets_sr_sc_seg_and_a_resend_is_no_new_analysis(
        tmp_path: Path, node: Stack, orthanc: Orthanc, study_template: list[Dataset]) -> None:
    study_uid = write_copy(study_template, tmp_path / "study")
    study_id = orthanc.upload(tmp_path / "study")
    assert orthanc.series_modalities(study_id) == ["CT"]
    env = quickstart_env(orthanc, node)

    sent = run_script("orthanc-send-to-lungpath.sh", env, study_id)
    assert sent.returncode == 0, sent.stdout + sent.stderr + node.logs()
    wait_for(lambda: set(orthanc.series_modalities(study_id)) >= RESULT_MODALITIES,
             "SR, SC and SEG in Orthanc's study", node)
    assert sorted(orthanc.series_modalities(study_id)) == ["CT", "OT", "SEG", "SR"]
    study = node.study(study_uid)
    assert study is not None and study.state == "DONE" and study.revision == 1
    assert {d.destination_ae for d in node.deliveries(study_uid)} == {"ORTHANC"}
    assert jobs_of(node, study_uid) == 1

    # Orthanc forwards the whole study, lungpath's own objects included.
    count = len(study_template)
    again = run_script("orthanc-send-to-lungpath.sh", env, study_id)
    assert again.returncode == 0, again.stdout + again.stderr
    assert node.count_events(study_uid, "instance.duplicate") == count
    results = orthanc.request("GET", f"/studies/{study_id}/statistics")["CountInstances"] - count
    assert own_outputs(node, study_uid) == results >= 3
    assert node.count_events(study_uid, "instance.own_output") == results
    # The node acknowledges an instance only after its row and its study's transition are
    # committed, and Orthanc's store returned after the last acknowledgement: a new revision
    # would already show here, and no analysis starts without one.
    study = node.study(study_uid)
    assert study is not None and study.state == "DONE" and study.revision == 1
    assert jobs_of(node, study_uid) == 1
    assert node.count_events(study_uid, "study.receiving") == 1
