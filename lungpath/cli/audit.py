"""Administrator commands on the audit database: queries, retention, migrations, re-runs."""

from __future__ import annotations

from datetime import datetime

import click

from lungpath.cli import Context, main, not_available, pass_context
from lungpath.cli.params import INSTANT

_FORMATS = click.Choice(["table", "json", "csv"])


def _query_options(f: click.decorators.FC) -> click.decorators.FC:
    for option in reversed([
        click.option("--since", type=INSTANT, help="ISO-8601 time, or 30m / 12h / 7d ago."),
        click.option("--until", type=INSTANT, help="ISO-8601 time, or 30m / 12h / 7d ago."),
        click.option("--study", "study_uid", help="Study Instance UID."),
        click.option("--ae", help="Calling or destination AE title."),
        click.option("--state", help="Study state (RECEIVING, COMPLETE, ..., FAILED)."),
        click.option("--outcome", help="Event outcome (success, failure, ...)."),
        click.option("--format", "fmt", type=_FORMATS, default="table", show_default=True),
    ]):
        f = option(f)
    return f


@main.group()
def audit() -> None:
    """Query the audit log: studies, events, deliveries, associations, summary."""


def _audit_command(name: str, doc: str) -> None:
    @audit.command(name=name, help=doc)
    @_query_options
    @pass_context
    def command(ctx: Context, since: datetime | None, until: datetime | None,
                study_uid: str | None, ae: str | None, state: str | None,
                outcome: str | None, fmt: str) -> None:
        ctx.settings()
        not_available(f"audit {name}", "the audit database")


for _name, _doc in [
    ("studies", "Studies with their state, revision and times."),
    ("events", "Audit events (append-only)."),
    ("deliveries", "Result deliveries and their attempts."),
    ("associations", "DICOM associations: who connected, when, what was accepted."),
    ("summary", "Counts per state, failures by reason, p50/p95 time from COMPLETE to DONE."),
]:
    _audit_command(_name, _doc)


@main.command()
@click.option("--older-than", "older_than", type=INSTANT, required=True,
              help="ISO-8601 time, or an age such as 90d.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; change nothing.")
@pass_context
def purge(ctx: Context, older_than: datetime, dry_run: bool) -> None:
    """Delete stored files and rows of studies older than the window (audit events stay)."""
    ctx.settings()
    not_available("purge", "the audit database")


@main.group()
def db() -> None:
    """Manage the database schema."""


@db.command()
@pass_context
def upgrade(ctx: Context) -> None:
    """Migrate the database to the newest schema this version knows."""
    ctx.settings()
    not_available("db upgrade", "the audit database")


@main.command()
@click.argument("study_uid")
@pass_context
def reanalyze(ctx: Context, study_uid: str) -> None:
    """Analyse STUDY_UID again as a new revision (audited)."""
    ctx.settings()
    not_available("reanalyze", "the Celery orchestration")


@main.command()
@click.argument("study_uid")
@pass_context
def resend(ctx: Context, study_uid: str) -> None:
    """Deliver the latest result of STUDY_UID again (audited)."""
    ctx.settings()
    not_available("resend", "the Celery orchestration")
