"""The database fixtures of tests/db/databases.py, for every test in this folder."""

from tests.db.databases import (  # noqa: F401
    backend,
    db_url,
    engine,
    postgres_schemas,
    shared_engine,
    sqlite_template,
)
