"""Fixtures of the orchestration tests (tests/integration/orchestration.py), for this folder."""

from tests.db.conftest import postgres_schemas, sqlite_template  # noqa: F401
from tests.integration.orchestration import pacs, study_template, tiny_checkpoint  # noqa: F401
