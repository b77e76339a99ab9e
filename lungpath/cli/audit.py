"""Administrator commands on the audit database: queries, retention, migrations, re-runs."""

from __future__ import annotations

import csv
import getpass
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from db import migrations, queries
from db.engine import create_engine_for, transaction
from db.events import EventType, Outcome
from db.events import audit as audit_event
from db.migrations import SchemaError, check_schema, current_revision
from db.queries import Filters
from db.retention import purge_audit_events, purge_studies
from lungpath.cli import Context, fail, main, pass_context
from lungpath.cli.params import INSTANT
from lungpath.settings import Settings

EXIT_USAGE = 2

_FORMATS = click.Choice(["table", "json", "csv"])
_QUERIES = [
    ("studies", "Studies with their state, revision and times (changed in the window)."),
    ("events", "Audit events (append-only); --ae: calling AE; --outcome failure: any failure."),
    ("deliveries", "Result deliveries and their attempts; --ae is the destination."),
    ("associations", "DICOM associations: who connected, when, what was accepted."),
]


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


def _actor() -> str:
    """Who runs an administrative command, for the audit trail."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"[:64]


def _engine(settings: Settings, *, read_only: bool) -> Engine:
    """An engine on the settings' database with a schema this version knows; exit 1 if not."""
    url = settings.database
    if read_only and url.startswith("sqlite"):
        path = make_url(url).database
        if not path or not Path(path).is_file():
            fail(f"no database at {path}; run `lungpath db upgrade` first")
    engine = create_engine_for(url, read_only=read_only)
    try:
        check_schema(engine)
    except SchemaError as e:
        engine.dispose()
        fail(str(e))
    except OperationalError as e:
        engine.dispose()
        fail(f"cannot open the database: {e.orig or e}")
    return engine


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def render(rows: list[dict[str, Any]], fmt: str) -> str:
    """Rows as an aligned text table, a JSON array or CSV with a header line."""
    if fmt == "json":
        return json.dumps(rows, default=_cell, indent=2)
    columns = list(rows[0]) if rows else []
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(row[c]) for c in columns] for row in rows)
        return out.getvalue().rstrip("\n")
    if not rows:
        return "(no rows)"
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _filters(since: datetime | None, until: datetime | None, study_uid: str | None,
             ae: str | None, state: str | None, outcome: str | None) -> Filters:
    try:
        return Filters(since=since, until=until, study_uid=study_uid, ae=ae,
                       state=state.upper() if state else None, outcome=outcome)
    except ValueError as e:
        fail(str(e), EXIT_USAGE)


def _answer(ctx: Context, filters: Filters, ask: Callable[[Session], list[dict[str, Any]]],
            fmt: str) -> None:
    engine = _engine(ctx.settings(), read_only=True)
    try:
        with transaction(engine) as session:
            rows = ask(session)
    except ValueError as e:
        fail(str(e), EXIT_USAGE)
    finally:
        engine.dispose()
    click.echo(render(rows, fmt))


@main.group()
def audit() -> None:
    """Query the audit log (read-only): studies, events, deliveries, associations, summary."""


def _audit_command(name: str, doc: str) -> None:
    @audit.command(name=name, help=doc)
    @_query_options
    @click.option("--limit", type=click.IntRange(min=0), default=1000, show_default=True,
                  help="At most this many rows, newest first (0: all).")
    @pass_context
    def command(ctx: Context, since: datetime | None, until: datetime | None,
                study_uid: str | None, ae: str | None, state: str | None,
                outcome: str | None, fmt: str, limit: int) -> None:
        filters = _filters(since, until, study_uid, ae, state, outcome)
        query = queries.QUERIES[name]
        _answer(ctx, filters, lambda session: query(session, filters, limit=limit or None), fmt)


for _name, _doc in _QUERIES:
    _audit_command(_name, _doc)


@audit.command()
@_query_options
@pass_context
def summary(ctx: Context, since: datetime | None, until: datetime | None, study_uid: str | None,
            ae: str | None, state: str | None, outcome: str | None, fmt: str) -> None:
    """Counts per state, failures by reason, p50/p95 time from COMPLETE to DONE."""
    filters = _filters(since, until, study_uid, ae, state, outcome)
    _answer(ctx, filters, lambda session: queries.summary(session, filters), fmt)


@main.command()
@click.option("--older-than", "older_than", type=INSTANT, required=True,
              help="ISO-8601 time, or an age such as 90d.")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; change nothing.")
@pass_context
def purge(ctx: Context, older_than: datetime, dry_run: bool) -> None:
    """Delete stored files and rows of studies older than the window (audit events stay).

    Audit events older than the audit_retention_days setting (if set) are deleted too.
    Studies being analysed are never deleted. What was deleted is audited.
    """
    settings = ctx.settings()
    now = datetime.now(UTC)
    if older_than > now:
        fail("--older-than must be in the past", EXIT_USAGE)
    engine = _engine(settings, read_only=False)
    try:
        report = purge_studies(engine, older_than=older_than, dry_run=dry_run,
                               actor=_actor(), now=now)
        events = 0
        if settings.audit_retention_days is not None:
            events = purge_audit_events(engine, retention_days=settings.audit_retention_days,
                                        dry_run=dry_run, actor=_actor(), now=now)
    finally:
        engine.dispose()
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {len(report.studies)} studies ({report.instances} instances, "
               f"{report.results} results, {len(report.files)} files), "
               f"{report.associations} associations, {events} audit events")
    if dry_run:
        for uid in report.studies:
            click.echo(f"  {uid}")
    if report.files_failed:
        fail(f"{len(report.files_failed)} files could not be deleted (see the log)")


@main.group()
def db() -> None:
    """Manage the database schema."""


@db.command()
@pass_context
def upgrade(ctx: Context) -> None:
    """Migrate the database to the newest schema this version knows."""
    settings = ctx.settings()
    url = settings.database
    if url.startswith("sqlite"):
        Path(make_url(url).database or ".").parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine_for(url)
    try:
        before = current_revision(engine)
        migrations.upgrade(url)
        after = current_revision(engine)
        if after != before:
            with transaction(engine) as session:
                audit_event(session, actor=_actor(), event_type=EventType.SCHEMA_UPGRADED,
                            outcome=Outcome.SUCCESS, detail={"from": before, "to": after})
    except OperationalError as e:
        fail(f"cannot migrate the database: {e.orig or e}")
    finally:
        engine.dispose()
    click.echo(f"database schema at {after} (was {before or 'empty'})")


@main.command()
@click.argument("study_uid")
@pass_context
def reanalyze(ctx: Context, study_uid: str) -> None:
    """Analyse STUDY_UID again as a new revision (audited).

    The study goes to COMPLETE at revision + 1; the node's dispatcher queues it.
    """
    from db.states import TransitionError, request_reanalysis

    engine = _engine(ctx.settings(), read_only=False)
    try:
        with transaction(engine) as session:
            revision = request_reanalysis(session, study_uid=study_uid,
                                          now=datetime.now(UTC), actor=_actor())
    except TransitionError as e:
        fail(str(e))
    finally:
        engine.dispose()
    click.echo(f"study {study_uid}: revision {revision} will be analysed")


@main.command()
@click.argument("study_uid")
@pass_context
def resend(ctx: Context, study_uid: str) -> None:
    """Deliver the latest result of STUDY_UID again (audited).

    Every delivery of that result is made due again with a fresh retry window, and a
    delivery task is sent; the research interlock still applies.
    """
    from lungpath.dispatch import ResendError, resend_latest

    settings = ctx.settings()
    engine = _engine(settings, read_only=False)
    try:
        result_id = resend_latest(engine, settings, study_uid, actor=_actor())
    except ResendError as e:
        fail(str(e))
    finally:
        engine.dispose()
    click.echo(f"study {study_uid}: result {result_id} will be delivered again")
