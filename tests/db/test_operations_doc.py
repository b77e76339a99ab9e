"""The read-only audit role of docs/operations.md, run as written on PostgreSQL."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from db.engine import create_engine_for
from lungpath.cli import main
from tests.conftest import REPO_ROOT
from tests.db.seed import seed

DOC = REPO_ROOT / "docs" / "operations.md"


def _role_block() -> list[str]:
    text_ = DOC.read_text()
    match = re.search(r"```sql\n-- read-only audit role\n(.*?)```", text_, re.S)
    assert match, "docs/operations.md lost its read-only audit role block"
    return [s.strip() for s in match.group(1).split(";") if s.strip()]


@pytest.fixture
def audit_role(db_url: str) -> Iterator[tuple[str, str]]:
    """The doc's role, under a throw-away name, in this test's database and schema; yields
    (role, URL to connect as it)."""
    url = make_url(db_url)
    schema = re.search(r"search_path=(\w+)", str(url.query.get("options")))
    assert schema is not None
    role = f"lungpath_audit_{uuid.uuid4().hex[:8]}"
    dsn = url.set(drivername="postgresql", query={}).render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in _role_block():
            statement = (statement.replace("lungpath_audit", role)
                         .replace("DATABASE lungpath", f"DATABASE {url.database}")
                         .replace("SCHEMA public", f"SCHEMA {schema.group(1)}")
                         .replace("lungpath_owner", str(url.username)))
            conn.execute(statement)
    try:
        yield role, url.set(username=role).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("backend", ["postgresql"])
def test_the_documented_audit_role_reads_everything_and_writes_nothing(
    db_url: str, audit_role: tuple[str, str], tmp_path: Path, clean_env: Path
) -> None:
    engine = create_engine_for(db_url)
    seed(engine, tmp_path / "store", datetime.now(UTC))
    engine.dispose()
    _, role_url = audit_role
    for command in ("studies", "events", "deliveries", "associations", "summary"):
        result = CliRunner().invoke(main, ["audit", command],
                                    env={"LUNGPATH_DATABASE_URL": role_url})
        assert result.exit_code == 0, (command, result.output)
    writer = create_engine_for(role_url)  # not opened read-only: the role itself refuses
    try:
        with pytest.raises(DBAPIError, match="read-only transaction"), writer.begin() as conn:
            conn.execute(text("UPDATE studies SET attempts = 0"))
        with pytest.raises(DBAPIError, match="permission denied"), writer.begin() as conn:
            conn.execute(text("SET TRANSACTION READ WRITE"))
            conn.execute(text("UPDATE studies SET attempts = 0"))
    finally:
        writer.dispose()
