"""``lungpath worker``, ``reanalyze`` and ``resend``: their refusals, each one line and exit 1.
Their work with real processes is in tests/integration/test_orchestration_*.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from db.engine import create_engine_for, transaction
from db.states import complete_stable, start_study
from lungpath.cli import main
from tests.conftest import free_port
from tests.db.conftest import sqlite_template
from tests.integration.orchestration import tiny_checkpoint

__all__ = ["sqlite_template", "tiny_checkpoint"]

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def env(tmp_path: Path, sqlite_template: Path) -> dict[str, str]:
    db = tmp_path / "lungpath.db"
    db.write_bytes(sqlite_template.read_bytes())
    return {"LUNGPATH_VAR_DIR": str(tmp_path / "var"), "LUNGPATH_DATABASE_URL": f"sqlite:///{db}"}


def test_worker_refuses_a_damaged_checkpoint(tmp_path: Path, env: dict[str, str]) -> None:
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"not a checkpoint")
    result = CliRunner().invoke(main, ["worker"], env={**env, "LUNGPATH_CHECKPOINT": str(damaged)})
    assert result.exit_code == 1
    assert "truncated, corrupt or not a torch file" in result.output


def test_worker_refuses_an_unknown_queue(tmp_path: Path, env: dict[str, str],
                                         tiny_checkpoint: Path) -> None:
    result = CliRunner().invoke(main, ["worker", "--queues", "analysis,bogus"],
                                env={**env, "LUNGPATH_CHECKPOINT": str(tiny_checkpoint)})
    assert result.exit_code == 1 and "unknown queue bogus" in result.output


def test_reanalyze_only_a_finished_study(env: dict[str, str]) -> None:
    then = datetime.now(UTC) - timedelta(minutes=1)
    engine = create_engine_for(env["LUNGPATH_DATABASE_URL"])
    with transaction(engine) as session:
        study = start_study(session, study_uid="1.2.3", calling_ae="CT", now=then, actor="t")
        complete_stable(session, study_id=study.id, revision=1, cutoff=then, now=then, actor="t")
    engine.dispose()
    result = CliRunner().invoke(main, ["reanalyze", "1.2.3"], env=env)
    assert result.exit_code == 1
    assert "not allowed in state COMPLETE" in result.output


def test_resend_needs_a_result(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["resend", "1.2.3.4"], env=env)
    assert result.exit_code == 1 and "no result to send" in result.output


def test_serve_refuses_an_embedded_worker_without_checkpoint(
        tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    import lungpath.dispatch

    monkeypatch.setattr(lungpath.dispatch, "WEIGHTS_DIR", tmp_path / "no-weights")
    result = CliRunner().invoke(main, ["serve"], env={**env, "LUNGPATH_PORT": str(free_port())})
    assert result.exit_code == 1 and "no checkpoint" in result.output
