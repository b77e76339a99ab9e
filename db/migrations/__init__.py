"""Schema migrations (Alembic, inside the package) and the start-up schema check.

Migration files are named ``YYYY_MM_DD_HHMM_<rev>_<slug>.py`` so they sort by date. The node
and the worker call ``check_schema`` at start: a database that was never migrated, or one
migrated by a newer lungpath, stops them with one clear line instead of failing later on a
missing column.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from db.engine import create_engine_for

SCRIPT_LOCATION = Path(__file__).resolve().parent
# Alembic logs each context it opens at INFO; the start-up check would print that every time.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)

FILE_TEMPLATE = "%(year)d_%(month).2d_%(day).2d_%(hour).2d%(minute).2d_%(rev)s_%(slug)s"


class SchemaError(RuntimeError):
    """The database schema is not the one this version of lungpath needs."""


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for this package; ``connection`` is what env.py migrates."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.set_main_option("file_template", FILE_TEMPLATE.replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this code knows (there is exactly one head)."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise SchemaError(f"the migrations have {len(heads)} heads {heads}; expected one")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at; ``None`` for a database never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision`` (the newest by default)."""
    _run(url, lambda config: command.upgrade(config, revision))


def downgrade(url: str, revision: str) -> None:
    """Migrate the database at ``url`` down to ``revision`` (``base``: drop everything)."""
    _run(url, lambda config: command.downgrade(config, revision))


def _run(url: str, step: Callable[[Config], None]) -> None:
    engine = create_engine_for(url)
    try:
        with engine.begin() as connection:
            step(alembic_config(connection))
    finally:
        engine.dispose()


def check_schema(engine: Engine) -> None:
    """Raise ``SchemaError`` unless the database is at this code's head revision."""
    head = head_revision()
    where = engine.url.render_as_string(hide_password=True)
    current = current_revision(engine)
    if current == head:
        return
    if current is None:
        raise SchemaError(
            f"the database {where} has no lungpath schema; run `lungpath db upgrade` first"
        )
    script = ScriptDirectory.from_config(alembic_config())
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        raise SchemaError(
            f"the database {where} is at schema revision {current}, newer than this version"
            f" of lungpath knows (newest: {head}); upgrade lungpath"
        )
    raise SchemaError(
        f"the database {where} is at schema revision {current}, this version needs {head};"
        " run `lungpath db upgrade`"
    )
