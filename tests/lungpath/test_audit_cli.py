"""``lungpath audit``, ``purge`` and ``db upgrade`` against real, seeded databases."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import delete, func, select
from sqlalchemy.exc import DBAPIError

from db.engine import create_engine_for, transaction
from db.models import Association, AuditEvent, Instance, Study
from db.states import lock_study
from lungpath.cli import main
from tests.db import databases
from tests.db.databases import BACKENDS, fresh_url
from tests.db.seed import Seeded, seed

# the database fixtures of tests/db, registered in this module
backend = databases.backend
db_url = databases.db_url
postgres_schemas = databases.postgres_schemas
sqlite_template = databases.sqlite_template

NOW = datetime.now(UTC)


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Seeded]]:
    """One seeded database per back end for the read-only commands of this module."""
    folder = tmp_path_factory.mktemp("seeded")
    url = fresh_url(request, str(request.param), folder)
    engine = create_engine_for(url)
    history = seed(engine, folder / "store", NOW)
    engine.dispose()
    yield url, history


def run(url: str, *args: str, tmp: Path | None = None, **env: str) -> Result:
    env["LUNGPATH_DATABASE_URL"] = url
    if tmp is not None:
        env["LUNGPATH_VAR_DIR"] = str(tmp)
    return CliRunner().invoke(main, list(args), env=env)


def rows(url: str, *args: str) -> list[dict[str, object]]:
    result = run(url, *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return list(json.loads(result.output))


@pytest.fixture(autouse=True)
def _env(clean_env: Path) -> None:
    """No LUNGPATH_* variables from the shell; cwd (and so ./var) in a fresh folder."""


COLUMNS = {
    "studies": "study_uid", "events": "event_type", "deliveries": "destination_ae",
    "associations": "calling_ae", "summary": "figure",
}


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
@pytest.mark.parametrize("command", list(COLUMNS))
def test_every_command_in_every_format(seeded: tuple[str, Seeded], command: str,
                                       fmt: str) -> None:
    url, _ = seeded
    result = run(url, "audit", command, "--format", fmt)
    assert result.exit_code == 0, result.output
    column = COLUMNS[command]
    if fmt == "json":
        parsed = json.loads(result.output)
        assert parsed and all(column in row for row in parsed)
        count = len(parsed)
    elif fmt == "csv":
        parsed = list(csv.DictReader(io.StringIO(result.output)))
        assert parsed and all(column in row for row in parsed)
        count = len(parsed)
    else:
        lines = result.output.splitlines()
        assert column in lines[0].split() and set(lines[1]) <= {"-", " "}
        count = len(lines) - 2
    assert count == len(rows(url, "audit", command))


def test_studies_filters(seeded: tuple[str, Seeded]) -> None:
    url, _ = seeded
    uids = lambda *a: sorted(str(r["study_uid"]) for r in rows(url, "audit", "studies", *a))  # noqa: E731
    assert uids() == ["1.1", "1.2", "1.3", "1.4"]
    assert uids("--since", "1d") == ["1.2", "1.3", "1.4"]
    assert uids("--until", "1d") == ["1.1"]
    assert uids("--ae", "CT1") == ["1.1", "1.4"]
    assert uids("--state", "done") == ["1.1", "1.3"]
    assert uids("--study", "1.2") == ["1.2"]
    (failed,) = rows(url, "audit", "studies", "--state", "FAILED")
    assert failed["reason"] == "decoding failed" and failed["calling_ae"] == "CT2"


def test_events_filters(seeded: tuple[str, Seeded]) -> None:
    url, _ = seeded
    events = rows(url, "audit", "events", "--study", "1.1")
    assert {e["study_uid"] for e in events} == {"1.1"}
    types = [e["event_type"] for e in reversed(events)]
    assert types[:4] == ["study.receiving", "instance.received", "instance.received",
                         "instance.received"]
    assert "study.done" in types and "delivery.sent" in types
    failures = rows(url, "audit", "events", "--outcome", "failure")
    assert failures and all(e["outcome"] != "success" for e in failures)
    assert {e["event_type"] for e in failures} >= {"study.failed", "delivery.failed"}
    recent_ct1 = rows(url, "audit", "events", "--ae", "CT1", "--since", "1h")
    assert recent_ct1 and {e["study_uid"] for e in recent_ct1 if e["study_uid"]} == {"1.4"}
    assert len(rows(url, "audit", "events", "--limit", "3")) == 3


def test_deliveries_and_associations_filters(seeded: tuple[str, Seeded]) -> None:
    url, _ = seeded
    (pending,) = rows(url, "audit", "deliveries", "--outcome", "failure")
    assert (pending["destination_ae"], pending["attempts"], pending["study_uid"]) == (
        "PACS2", 2, "1.3")
    (done,) = rows(url, "audit", "deliveries", "--ae", "PACS1")
    assert done["delivered_at"] is not None
    associations = rows(url, "audit", "associations", "--ae", "CT2")
    assert len(associations) == 2
    (refused,) = rows(url, "audit", "associations", "--outcome", "failure")
    assert refused["refused"] == 1
    assert len(rows(url, "audit", "associations", "--study", "1.4")) == 1


def test_summary(seeded: tuple[str, Seeded]) -> None:
    url, _ = seeded
    figures = {(r["figure"], r["key"]): r["value"] for r in rows(url, "audit", "summary")}
    assert figures[("studies", "DONE")] == 2 and figures[("studies", "FAILED")] == 1
    assert figures[("studies", "RECEIVING")] == 1
    assert figures[("FAILED reason", "decoding failed")] == 1
    assert figures[("COMPLETE to DONE seconds", "p50")] == 90.0
    assert figures[("COMPLETE to DONE seconds", "p95")] == 117.0
    recent = {(r["figure"], r["key"]): r["value"]
              for r in rows(url, "audit", "summary", "--since", "1d")}
    assert recent[("COMPLETE to DONE seconds", "p50")] == 60.0
    assert ("studies", "DONE") in recent and recent[("studies", "DONE")] == 1


@pytest.mark.parametrize(("args", "message"), [
    (["studies", "--outcome", "success"], "--outcome does not apply"),
    (["events", "--state", "DONE"], "--state does not apply"),
    (["studies", "--state", "FINISHED"], "not one of"),
    (["events", "--outcome", "meh"], "not one of"),
    (["events", "--since", "1h", "--until", "2h"], "since must not be after until"),
])
def test_bad_filters_exit_2(seeded: tuple[str, Seeded], args: list[str], message: str) -> None:
    url, _ = seeded
    result = run(url, "audit", *args)
    assert result.exit_code == 2 and message in result.output


def test_audit_connections_are_read_only(seeded: tuple[str, Seeded]) -> None:
    url, _ = seeded
    engine = create_engine_for(url, read_only=True)
    try:
        with pytest.raises(DBAPIError, match=r"(?i)read.?only"), transaction(engine) as session:
            session.execute(delete(Study))
    finally:
        engine.dispose()


def test_missing_or_unmigrated_database_is_a_clear_error(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    result = run(f"sqlite:///{tmp_path / 'none.db'}", "audit", "events")
    assert result.exit_code == 1 and "lungpath db upgrade" in result.output
    empty = fresh_url(request, backend, tmp_path, migrated=False)
    result = run(empty, "audit", "studies")
    assert result.exit_code == 1 and "no lungpath schema" in result.output
    result = run(empty, "db", "upgrade")
    assert result.exit_code == 0 and "(was empty)" in result.output
    assert run(empty, "audit", "studies").exit_code == 0
    upgraded = rows(empty, "audit", "events")
    assert [e["event_type"] for e in upgraded] == ["application.schema_upgraded"]
    again = run(empty, "db", "upgrade")
    assert again.exit_code == 0 and len(rows(empty, "audit", "events")) == 1


def _counts(url: str) -> tuple[int, int, int, int]:
    engine = create_engine_for(url)
    try:
        with transaction(engine) as session:
            return tuple(  # type: ignore[return-value]
                session.scalar(select(func.count()).select_from(model)) or 0
                for model in (Study, Instance, Association, AuditEvent))
    finally:
        engine.dispose()


def test_purge(db_url: str, tmp_path: Path) -> None:
    engine = create_engine_for(db_url)
    history = seed(engine, tmp_path / "store", NOW)
    with transaction(engine) as session:  # an old study still being analysed is kept
        study = lock_study(session, "1.4")
        assert study is not None
        study.state, study.updated_at = "QUEUED", NOW - timedelta(days=30)
    engine.dispose()
    before = _counts(db_url)

    dry = run(db_url, "purge", "--older-than", "1d", "--dry-run", tmp=tmp_path)
    assert dry.exit_code == 0, dry.output
    assert "would delete 1 studies (3 instances, 1 results, 6 files)" in dry.output
    assert _counts(db_url) == before
    assert all(p.exists() for paths in history.files.values() for p in paths)

    done = run(db_url, "purge", "--older-than", "1d", tmp=tmp_path)
    assert done.exit_code == 0, done.output
    assert "deleted 1 studies (3 instances, 1 results, 6 files), 1 associations" in done.output
    assert not any(p.exists() for p in history.files["1.1"])  # every summary image too
    store = tmp_path / "store"  # and the study's folders, not the others' nor the store's
    assert not (store / "1.1").exists() and not (store / "results" / "1.1").exists()
    assert (store / "1.2").is_dir() and (store / "results" / "1.3").is_dir()
    assert all(p.exists() for uid in ("1.2", "1.3", "1.4") for p in history.files[uid])
    studies, instances, associations, events = _counts(db_url)
    assert (studies, instances, associations) == (before[0] - 1, before[1] - 3, before[2] - 1)
    assert events == before[3] + 1  # every event kept, one added
    (purged,) = rows(db_url, "audit", "events", "--study", "1.1", "--outcome", "success",
                     "--limit", "1")
    assert purged["event_type"] == "data.purged"
    assert len(rows(db_url, "audit", "events", "--study", "1.1")) > 5  # history kept


def test_purge_refuses_a_future_window(db_url: str, tmp_path: Path) -> None:
    future = (NOW + timedelta(days=1)).isoformat()
    result = run(db_url, "purge", "--older-than", future, tmp=tmp_path)
    assert result.exit_code == 2 and "in the past" in result.output


def test_purge_applies_the_audit_retention(db_url: str, tmp_path: Path) -> None:
    engine = create_engine_for(db_url)
    seed(engine, tmp_path / "store", NOW)
    engine.dispose()
    old = len(rows(db_url, "audit", "events", "--until", "1d", "--limit", "0"))
    assert old > 0
    result = run(db_url, "purge", "--older-than", "30d", tmp=tmp_path,
                 LUNGPATH_AUDIT_RETENTION_DAYS="1")
    assert result.exit_code == 0, result.output
    assert f"0 studies (0 instances, 0 results, 0 files), 0 associations, {old} audit" \
        in result.output
    assert rows(db_url, "audit", "events", "--until", "1d") == []
    (purged,) = rows(db_url, "audit", "events", "--limit", "1")
    assert purged["event_type"] == "audit.purged"
