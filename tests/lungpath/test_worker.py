"""The worker's composition from the settings: TLS destinations and their files."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungpath.dispatch import WorkerError
from lungpath.settings import load_settings
from lungpath.worker import run_worker, worker_runtime
from tests.pki import pki

__all__ = ["pki"]


def _settings(pki: dict[str, Path], key: str) -> dict[str, object]:
    return {"destinations": [{"ae_title": "PACS", "host": "pacs.example.org", "port": 2762,
                              "tls": True},
                             {"ae_title": "VIEWER", "host": "viewer", "port": 104}],
            "tls_ca_file": pki["ca"], "tls_cert_file": pki["client_cert"],
            "tls_key_file": pki[key]}


@pytest.mark.usefixtures("clean_env")
def test_tls_destinations_and_files_reach_the_delivery(pki: dict[str, Path]) -> None:
    delivery = worker_runtime(load_settings(overrides=_settings(pki, "client_key"))).delivery
    assert [d.tls for d in delivery.destinations] == [True, False]
    assert (delivery.tls_ca_file, delivery.tls_cert_file, delivery.tls_key_file) == (
        pki["ca"], pki["client_cert"], pki["client_key"])
    assert delivery.tls_context().minimum_version.name == "TLSv1_2"


@pytest.mark.usefixtures("clean_env")
def test_a_key_that_does_not_fit_the_certificate_stops_the_worker(
        pki: dict[str, Path]) -> None:
    with pytest.raises(WorkerError, match="cannot set up TLS for the destinations"):
        run_worker(load_settings(overrides=_settings(pki, "stranger_key")), health=False)
