"""Fixtures of the hardening tests: the Storage SCP tests' databases and raw sending, and the
recorder whose results ``python -m tests.hardening.report`` turns into docs/reliability.md.

Each scenario that passed calls ``reliability.record(...)`` after its assertions; at the end
of the session the records are merged (by scenario) into ``var/reliability/hardening.json``
(or the file named by ``LUNGPATH_TEST_RELIABILITY_JSON``), so a partial run updates only the
scenarios it ran.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.scp_node.support import (  # noqa: F401
    node_db,
    postgres_db,
    postgres_schemas,
    send_files_raw,
    sqlite_template,
)

RESULTS = Path(os.environ.get("LUNGPATH_TEST_RELIABILITY_JSON",
                              REPO_ROOT / "var" / "reliability" / "hardening.json"))


@dataclass(frozen=True)
class Scenario:
    """One scenario's result: what was tried, what happened, acknowledged instances lost."""

    scenario: str
    group: str
    test: str
    inputs: int
    outcome: str
    acknowledged_lost: int
    counts: dict[str, int] = field(default_factory=dict)


class Recorder:
    """Collects the scenarios of a session."""

    def __init__(self) -> None:
        self.scenarios: list[Scenario] = []

    def record(self, request: pytest.FixtureRequest, scenario: str, *, group: str,
               inputs: int, outcome: str, acknowledged_lost: int = 0,
               counts: dict[str, int] | None = None) -> None:
        """Record a scenario that passed its assertions."""
        self.scenarios.append(Scenario(scenario, group, request.node.nodeid, inputs, outcome,
                                       acknowledged_lost, dict(counts or {})))

    def save(self, path: Path) -> None:
        """Merge this session's scenarios into ``path``."""
        if not self.scenarios:
            return
        known: dict[str, dict[str, object]] = {}
        if path.is_file():
            known = {s["scenario"]: s for s in json.loads(path.read_text())["scenarios"]}
        when = datetime.now(UTC).isoformat(timespec="seconds")
        for s in self.scenarios:
            known[s.scenario] = asdict(s) | {"recorded_at": when}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"scenarios": list(known.values())}, indent=2) + "\n")


_RECORDER = Recorder()


@pytest.fixture(scope="session")
def recorder() -> Iterator[Recorder]:
    yield _RECORDER
    _RECORDER.save(RESULTS)


@dataclass
class Reliability:
    """``record`` bound to the running test."""

    recorder: Recorder
    request: pytest.FixtureRequest

    def record(self, scenario: str, *, group: str, inputs: int, outcome: str,
               acknowledged_lost: int = 0, counts: dict[str, int] | None = None) -> None:
        self.recorder.record(self.request, scenario, group=group, inputs=inputs,
                             outcome=outcome, acknowledged_lost=acknowledged_lost,
                             counts=counts)


@pytest.fixture
def reliability(recorder: Recorder, request: pytest.FixtureRequest) -> Reliability:
    return Reliability(recorder, request)
