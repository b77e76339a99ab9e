"""dcmtk on both sides: ``storescu`` sends a synthetic study to the node, the node's SR, SC
and SEG arrive at a ``storescp`` acting as the PACS, and dcmtk and dicom3tools read them."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from tests.conftest import require_tool
from tests.e2e.conftest import (
    SC_CLASS,
    SEG_CLASS,
    SR_CLASS,
    STORESCP_AE,
    STORESCU_AE,
    StoreScp,
    dcmtk_env,
    write_copy,
)
from tests.integration.orchestration import NODE_AE, Stack, wait_for
from tests.pipeline.results.conftest import assert_valid

pytestmark = [pytest.mark.slow, pytest.mark.tools]

#: What the result contract (SR_CONTENT.md) promises, as ``dsrdump +Pc`` prints it.
CONTRACT_ITEMS = ("99LUNGPATH", "CONTRACT_VERSION", "ANALYSIS_STATUS", "COMPLETED",
                  '"nodule-1"', "P_AIS", "P_MIA", "P_IAC", "PROP_LEPIDIC", "PROP_SOLID",
                  "UNCERTAINTY", "INVASIVENESS", "PREDOMINANT_PATTERN", "IASLC_GRADE",
                  "SOLID_DIAMETER", "CTR", "SD-MdaNet", "Research use only")


def storescu(port: int, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("storescu"), "-aet", STORESCU_AE, "-aec", NODE_AE, "+sd", "+r",
         "127.0.0.1", str(port), str(folder)],
        env=dcmtk_env(), capture_output=True, text=True, timeout=300)


def delivered(node: Stack, study_uid: str) -> bool:
    rows = node.deliveries(study_uid)
    return bool(rows) and all(r.delivered_at is not None for r in rows)


def test_storescu_to_node_results_at_storescp(tmp_path: Path, node: Stack, storescp: StoreScp,
                                              study_template: list[Dataset]) -> None:
    study_uid = write_copy(study_template, tmp_path / "study")
    sent = storescu(node.node_port, tmp_path / "study")
    assert sent.returncode == 0, sent.stdout + sent.stderr

    study = node.wait_state(study_uid, "DONE", "NOT_ANALYZABLE", "FAILED")
    assert study.state == "DONE", (study.reason, node.logs())
    wait_for(lambda: delivered(node, study_uid), "results delivered to storescp", node)
    assert {(d.object, d.destination_ae) for d in node.deliveries(study_uid)} == {
        ("SR", STORESCP_AE), ("SC", STORESCP_AE), ("SEG", STORESCP_AE)}

    objects = storescp.objects(study_uid)
    assert {SR_CLASS, SC_CLASS, SEG_CLASS} <= set(objects), objects
    (sr,) = objects[SR_CLASS]
    dump = subprocess.run([require_tool("dsrdump"), "+Pc", str(sr)], capture_output=True,
                          text=True, timeout=60)
    assert dump.returncode == 0, dump.stderr
    missing = [item for item in CONTRACT_ITEMS if item not in dump.stdout]
    assert not missing, f"dsrdump lacks {missing}:\n{dump.stdout}"

    for path in [sr, *objects[SC_CLASS], *objects[SEG_CLASS]]:
        assert_valid(path)  # no dciodvfy error, only the documented warning
