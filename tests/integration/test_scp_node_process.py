"""``lungpath serve``: refuses to start on an unmigrated database, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian

from db.engine import create_engine_for
from tests.conftest import free_port
from tests.scp_node.support import (
    CT,
    associate,
    ct_slice,
    instance_count,
    node_db,
    node_process,
    sqlite_template,
)

__all__ = ["node_db", "sqlite_template"]


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUNGPATH_")}
    env |= {"LUNGPATH_VAR_DIR": str(tmp_path), "LUNGPATH_PORT": str(free_port()),
            "LUNGPATH_EMBEDDED_WORKER": "false"}
    done = subprocess.run([sys.executable, "-m", "lungpath", "serve"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    assert "has no lungpath schema; run `lungpath db upgrade` first" in done.stderr


def test_sigterm_stops_the_node_cleanly(node_db: str, tmp_path: Path) -> None:
    port = free_port()
    with node_process(tmp_path / "var", node_db, port) as node:
        assoc = associate(port, [(CT, [ExplicitVRLittleEndian])])
        assert assoc.send_c_store(ct_slice("1.2.826.0.9.1", "1.2.826.0.9.1.1", 0)).Status == 0
        assoc.release()
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=60) == 0
    assert instance_count(create_engine_for(node_db)) == 1
