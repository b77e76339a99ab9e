"""Real peers for the end-to-end tests: one lungpath node, a dcmtk storescp and an Orthanc.

- ``node``: ``lungpath serve`` with its embedded worker (a real child process, the server-less
  broker, a tiny untrained checkpoint: the analysis path is the one of the shipped weights),
  started once per session. Its ``destinations`` setting sends results back to whichever peer
  sent the study: studies from ``STORESCU`` to the storescp, studies from ``ORTHANC`` to
  Orthanc (``for_calling_ae``). A peer that is not running yet is just retried.
- ``storescp``: dcmtk's Storage SCP acting as the PACS on its own port, ``TCP_NODELAY=1``.
- ``orthanc``: the Debian Orthanc with its own JSON configuration on free loopback ports, its
  storage and index in a temporary folder, no remote access, no authentication. The node is
  registered in it by the quick start's script (docs/quickstart/), as an administrator does.
Orthanc and storescp cannot bind their DICOM port to one address (MEASURED.md): they listen
on every interface of the test host for the length of the session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset

from tests.conftest import REPO_ROOT, free_port, require_tool
from tests.db.conftest import sqlite_template
from tests.integration.orchestration import (
    Stack,
    _answers,
    make_stack,
    relabelled,
    study_template,
    tiny_checkpoint,
    wait_for,
)

__all__ = ["sqlite_template", "study_template", "tiny_checkpoint"]

STORESCP_AE = "STORESCP"
STORESCU_AE = "STORESCU"
ORTHANC_AE = "ORTHANC"
MODALITY = "lungpath"  #: the node's name in Orthanc's list of modalities
QUICKSTART = REPO_ROOT / "docs" / "quickstart"
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"
SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclass(frozen=True)
class Ports:
    """The PACS ports, chosen before the node starts so that its settings can name them."""

    storescp: int
    orthanc_dicom: int
    orthanc_http: int


@pytest.fixture(scope="session")
def ports() -> Ports:
    return Ports(storescp=free_port(), orthanc_dicom=free_port(), orthanc_http=free_port())


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path,
         tiny_checkpoint: Path, ports: Ports) -> Iterator[Stack]:
    """``lungpath serve`` and its worker child, for the whole session."""
    root = tmp_path_factory.mktemp("node")
    destinations = [
        {"ae_title": STORESCP_AE, "host": "127.0.0.1", "port": ports.storescp,
         "for_calling_ae": STORESCU_AE},
        {"ae_title": ORTHANC_AE, "host": "127.0.0.1", "port": ports.orthanc_dicom,
         "for_calling_ae": ORTHANC_AE},
    ]
    stack = make_stack(root, sqlite_template, f"sqla+sqlite:///{(root / 'broker.db').resolve()}",
                       tiny_checkpoint, None, embedded_worker=True, destinations=destinations)
    try:
        stack.node()
        yield stack
    finally:
        stack.stop_all()


def write_copy(template: list[Dataset], folder: Path) -> str:
    """Write ``template`` into ``folder`` under new study, series and instance UIDs."""
    folder.mkdir(parents=True)
    study_uid, copies = relabelled(template)
    for index, copy in enumerate(copies):
        copy.save_as(folder / f"{index:04d}.dcm", enforce_file_format=True)
    return study_uid


def dcmtk_env() -> dict[str, str]:
    """DCMTK leaves Nagle on unless told (MEASURED.md): every C-STORE would stall ~40 ms."""
    return {**os.environ, "TCP_NODELAY": "1"}


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass(frozen=True)
class StoreScp:
    """dcmtk storescp writing every received object into ``folder``."""

    folder: Path
    port: int

    def objects(self, study_uid: str) -> dict[str, list[Path]]:
        """Received files of ``study_uid`` by SOP Class UID."""
        found: dict[str, list[Path]] = {}
        for path in sorted(self.folder.iterdir()):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if ds.StudyInstanceUID == study_uid:
                found.setdefault(str(ds.SOPClassUID), []).append(path)
        return found


@pytest.fixture(scope="session")
def storescp(tmp_path_factory: pytest.TempPathFactory, ports: Ports) -> Iterator[StoreScp]:
    program = require_tool("storescp")
    folder = tmp_path_factory.mktemp("storescp")
    log = (folder.parent / "storescp.log").open("wb")
    process = subprocess.Popen([program, "-aet", STORESCP_AE, "-od", str(folder), "+xa",
                                str(ports.storescp)], env=dcmtk_env(), stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(ports.storescp) or process.poll() is not None, "storescp")
        assert process.poll() is None, f"storescp ended with {process.returncode}"
        yield StoreScp(folder, ports.storescp)
    finally:
        _stop(process)


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc and its REST API."""

    url: str
    dicom_port: int
    log: Path

    def request(self, method: str, path: str, body: bytes | None = None) -> Any:
        """Call the REST API; the JSON answer."""
        request = urllib.request.Request(self.url + path, data=body, method=method)
        with urllib.request.urlopen(request, timeout=120) as answer:
            return json.loads(answer.read() or b"null")

    def upload(self, folder: Path) -> str:
        """POST every file of ``folder`` to /instances; Orthanc's id of their study."""
        studies = {self.request("POST", "/instances", path.read_bytes())["ParentStudy"]
                   for path in sorted(folder.iterdir())}
        (study,) = studies
        return str(study)

    def series_modalities(self, study_id: str) -> list[str]:
        return sorted(str(s["MainDicomTags"].get("Modality", ""))
                      for s in self.request("GET", f"/studies/{study_id}/series"))


def orthanc_config(folder: Path, ports: Ports) -> dict[str, Any]:
    """Orthanc's configuration for the test: loopback HTTP, nothing shared with the host."""
    return {
        "Name": "lungpath-e2e",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpPort": ports.orthanc_http,
        "DicomPort": ports.orthanc_dicom,
        "DicomAet": ORTHANC_AE,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomModalities": {},
        "DicomModalitiesInDatabase": True,
        "Plugins": [],
        "StorageCompression": False,
        "DicomScuTimeout": 30,
    }


@pytest.fixture(scope="session")
def orthanc_server(tmp_path_factory: pytest.TempPathFactory, ports: Ports) -> Iterator[Orthanc]:
    """Orthanc started with its own configuration file, stopped at the end of the session."""
    program = require_tool("Orthanc")
    folder = tmp_path_factory.mktemp("orthanc")
    config = folder / "orthanc.json"
    config.write_text(json.dumps(orthanc_config(folder, ports), indent=2))
    log = folder / "orthanc.log"
    process = subprocess.Popen([program, str(config)], env=dcmtk_env(),
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = Orthanc(f"http://127.0.0.1:{ports.orthanc_http}", ports.orthanc_dicom, log)
    try:
        wait_for(lambda: _answers(ports.orthanc_http) or process.poll() is not None, "Orthanc")
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        yield server
    finally:
        _stop(process)


def run_script(name: str, env: dict[str, str], *args: str,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a quick-start script with ``lungpath`` being this checkout's CLI."""
    require_tool("curl")
    full_env = {**os.environ, **env, "LUNGPATH": f"{sys.executable} -m lungpath",
                "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(["sh", str(QUICKSTART / name), *args], env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def quickstart_env(orthanc: Orthanc, node: Stack) -> dict[str, str]:
    """The variables the quick-start scripts read, for this session's Orthanc and node."""
    return {"ORTHANC_URL": orthanc.url, "ORTHANC_AE": ORTHANC_AE,
            "ORTHANC_DICOM_HOST": "127.0.0.1", "ORTHANC_DICOM_PORT": str(orthanc.dicom_port),
            "LUNGPATH_MODALITY": MODALITY, "LUNGPATH_AE": "LUNGPATH",
            "LUNGPATH_HOST": "127.0.0.1", "LUNGPATH_PORT": str(node.node_port),
            "WAIT_SECONDS": "200"}


@pytest.fixture(scope="session")
def registration(orthanc_server: Orthanc, node: Stack) -> subprocess.CompletedProcess[str]:
    """The quick start's first step: lungpath registered in Orthanc, C-ECHO both ways."""
    result = run_script("orthanc-register-lungpath.sh", quickstart_env(orthanc_server, node))
    assert result.returncode == 0, result.stdout + result.stderr + node.logs()
    return result


@pytest.fixture
def orthanc(orthanc_server: Orthanc, registration: subprocess.CompletedProcess[str]) -> Orthanc:
    """Orthanc with the node registered as a modality."""
    return orthanc_server

