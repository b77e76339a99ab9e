"""The quick start for PACS administrators (docs/quickstart.md): its Orthanc steps are the
scripts in docs/quickstart/, run here against a real Orthanc and a real node."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import REPO_ROOT
from tests.e2e.conftest import MODALITY, ORTHANC_AE, QUICKSTART, Orthanc
from tests.integration.orchestration import Stack

pytestmark = [pytest.mark.slow, pytest.mark.tools]


def test_registration_script_registers_the_node_and_echoes_both_ways(
        registration: subprocess.CompletedProcess[str], orthanc: Orthanc, node: Stack) -> None:
    assert f"registered {MODALITY}: LUNGPATH at 127.0.0.1:{node.node_port}" in registration.stdout
    assert "C-ECHO from Orthanc to LUNGPATH: success" in registration.stdout
    assert f"C-ECHO to {ORTHANC_AE} at 127.0.0.1:{orthanc.dicom_port}: success" \
        in registration.stdout
    entry = orthanc.request("GET", "/modalities?expand")[MODALITY]
    assert (entry["AET"], entry["Host"], entry["Port"]) == ("LUNGPATH", "127.0.0.1",
                                                            node.node_port)
    # the node logged Orthanc's C-ECHO association
    assert [row for row in _associations(node) if row["calling_ae"] == ORTHANC_AE]


def _associations(node: Stack) -> list[dict[str, object]]:
    return node.audit_cli("associations")


def test_every_script_of_the_quick_start_exists_and_is_run_by_the_tests() -> None:
    guide = (REPO_ROOT / "docs" / "quickstart.md").read_text()
    named = set(re.findall(r"docs/quickstart/([\w.-]+\.sh)", guide))
    assert named == {p.name for p in QUICKSTART.glob("*.sh")}
    tests = "".join(p.read_text() for p in (REPO_ROOT / "tests" / "e2e").glob("*.py"))
    assert all(f'"{name}"' in tests for name in named), named
