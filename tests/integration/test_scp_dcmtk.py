"""dcmtk's echoscu and storescu against the node: another implementation's view of it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from db.engine import create_engine_for
from tests.conftest import require_tool
from tests.scp_node.support import (
    NODE_AE,
    ct_slice,
    instance_count,
    node_db,
    running_scp,
    scp_config,
    sqlite_template,
    stored_files,
)

__all__ = ["node_db", "sqlite_template"]

STUDY = "1.2.826.0.8.1"


def _run(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool(tool), *args], capture_output=True, text=True,
                          env={**os.environ, "TCP_NODELAY": "1"}, timeout=120, check=False)


@pytest.mark.tools
def test_echoscu_and_storescu_succeed(node_db: str, tmp_path: Path) -> None:
    folder = tmp_path / "series"
    folder.mkdir()
    for i in range(5):
        ct_slice(STUDY, f"{STUDY}.1", i).save_as(folder / f"{i}.dcm", enforce_file_format=True)
    store = tmp_path / "store"
    with running_scp(scp_config(node_db, store)) as scp:
        echo = _run("echoscu", "-aet", "DCMTK", "-aec", NODE_AE, "127.0.0.1", str(scp.port))
        assert echo.returncode == 0, echo.stderr
        sent = _run("storescu", "+sd", "+r", "-aet", "DCMTK", "-aec", NODE_AE, "127.0.0.1",
                    str(scp.port), str(folder))
        assert sent.returncode == 0, sent.stderr
        refused = _run("echoscu", "-aet", "DCMTK", "-aec", "NOT_THE_NODE", "127.0.0.1",
                       str(scp.port))
        assert refused.returncode != 0 and "Called AE Title Not Recognized" in refused.stderr
    assert instance_count(create_engine_for(node_db), STUDY) == 5
    assert len(stored_files(store)) == 5
