"""Results over TLS to a third-party peer: dcmtk's storescp with TLS, requiring a client
certificate (its default), receives an SR from the node's delivery sender; without the node's
certificate, or with an untrusted CA, nothing arrives. Certificates come from ``tests.pki``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.uid import generate_uid

from pipeline.delivery import DeliveryConfig, Destination, Verdict, send_files
from tests.conftest import free_port, require_tool
from tests.e2e.conftest import _stop, dcmtk_env
from tests.integration.orchestration import _answers, wait_for
from tests.pipeline.dicom_factory import sr_file
from tests.pki import pki

__all__ = ["pki"]

PACS_AE = "TLS_PACS"


@pytest.fixture
def tls_storescp(tmp_path: Path, pki: dict[str, Path]) -> Iterator[tuple[int, Path]]:
    program = require_tool("storescp")
    port, folder = free_port(), tmp_path / "received"
    folder.mkdir()
    log = (tmp_path / "storescp.log").open("wb")
    process = subprocess.Popen(
        [program, "-aet", PACS_AE, "-od", str(folder), "+tls", str(pki["node_key"]),
         str(pki["node_cert"]), "+cf", str(pki["ca"]), str(port)],
        env=dcmtk_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers(port) or process.poll() is not None, "storescp with TLS")
        assert process.poll() is None, f"storescp ended with {process.returncode}"
        yield port, folder
    finally:
        _stop(process)


def _send(port: int, tmp_path: Path, **tls: Path) -> Verdict:
    sr = tmp_path / "SR.dcm"
    sr_file(sr, generate_uid())
    config = DeliveryConfig(calling_ae="LUNGPATH", destinations=(), timeout_s=10.0, **tls)
    attempts = send_files(Destination(PACS_AE, "localhost", port, tls=True), config,
                          {"SR": [sr]})
    return attempts["SR"].verdict


def test_storescp_with_tls_receives_from_a_certified_node(
        tmp_path: Path, tls_storescp: tuple[int, Path], pki: dict[str, Path]) -> None:
    port, folder = tls_storescp
    verdict = _send(port, tmp_path, tls_ca_file=pki["ca"], tls_cert_file=pki["client_cert"],
                    tls_key_file=pki["client_key"])
    assert verdict is Verdict.DELIVERED
    assert len(list(folder.iterdir())) == 1


@pytest.mark.parametrize("case", ["no client certificate", "untrusted peer"])
def test_storescp_with_tls_receives_nothing_otherwise(
        tmp_path: Path, tls_storescp: tuple[int, Path], pki: dict[str, Path], case: str) -> None:
    port, folder = tls_storescp
    tls = {"tls_ca_file": pki["ca"]} if case == "no client certificate" else {
        "tls_ca_file": pki["stranger_cert"], "tls_cert_file": pki["client_cert"],
        "tls_key_file": pki["client_key"]}
    assert _send(port, tmp_path, **tls) is Verdict.RETRY
    assert not list(folder.iterdir())
