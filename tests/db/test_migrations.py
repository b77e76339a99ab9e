"""Migrations: one head, dated files, upgrade from empty, full downgrade and upgrade with data
present, no drift between models and migrations, and the start-up schema check."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, select, text

from db.engine import create_engine_for, transaction
from db.ingest import record_instance
from db.migrations import (
    SCRIPT_LOCATION,
    SchemaError,
    alembic_config,
    check_schema,
    downgrade,
    head_revision,
    upgrade,
)
from db.models import AuditEvent, Base, Study
from db.states import add_result
from tests.db.databases import fresh_url

TABLES = {"associations", "instances", "studies", "jobs", "results", "deliveries",
          "audit_events", "audit_retention"}


def test_one_head_and_dated_file_names() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    files = sorted(p.name for p in (SCRIPT_LOCATION / "versions").glob("*.py")
                   if p.name != "__init__.py")
    assert files and all(re.match(r"^\d{4}_\d{2}_\d{2}_\d{4}_[0-9a-f]+_\w+\.py$", f)
                         for f in files), files


@pytest.fixture
def empty_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    return fresh_url(request, backend, tmp_path, migrated=False)


def _tables(url: str) -> set[str]:
    engine = create_engine_for(url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def _seed(engine: Engine) -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    with transaction(engine) as session:
        record_instance(session, association_id=None, sop_class_uid="1.2", sop_instance_uid="1.1",
                        study_uid="1.0", series_uid="1.0.1", transfer_syntax_uid="1.2.840",
                        size=1, sha256="a" * 64, path="/x", received_at=now)
        add_result(session, study_uid="1.0", revision=1, checkpoint_sha256="b" * 64,
                   objects={"SR": ("2.1", "2.0", "/sr")}, findings={"n": 1}, now=now)


def test_upgrade_from_empty_then_down_and_up_with_data(empty_url: str) -> None:
    engine = create_engine_for(empty_url)
    try:
        with pytest.raises(SchemaError, match="no lungpath schema"):
            check_schema(engine)
        upgrade(empty_url)
        check_schema(engine)
        assert _tables(empty_url) == TABLES
        _seed(engine)
        downgrade(empty_url, "base")
        assert _tables(empty_url) == set()
        upgrade(empty_url)
        check_schema(engine)
        _seed(engine)  # the schema works again, constraints and triggers included
        with transaction(engine) as session:
            assert session.scalars(select(Study.study_uid)).all() == ["1.0"]
            assert len(session.scalars(select(AuditEvent.id)).all()) == 2
    finally:
        engine.dispose()


def test_models_and_migrations_do_not_drift(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_a_schema_newer_than_the_code_is_refused(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'ffffffffffff'"))
    with pytest.raises(SchemaError, match="newer than this version"):
        check_schema(engine)


def test_head_revision_is_what_upgrade_reaches(engine: Engine) -> None:
    with engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == head_revision()
