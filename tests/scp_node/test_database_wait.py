"""How long a C-STORE waits for the database: derived from the node's timeouts (config.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.scp_node.support import scp_config


@pytest.mark.parametrize(("network", "dimse", "wait"), [(60, 60, 15), (60, 20, 5), (8, 30, 2)])
def test_the_database_wait_is_a_quarter_of_the_shorter_timeout(
        tmp_path: Path, network: float, dimse: float, wait: float) -> None:
    config = replace(scp_config("sqlite:///x.db", tmp_path), network_timeout=network,
                     dimse_timeout=dimse)
    # three waits (association row, instance row, refusal's audit) still leave a quarter
    assert config.database_wait == wait
    assert 3 * config.database_wait < min(network, dimse)
