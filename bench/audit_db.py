"""Audit database at scale: 1,000,000 audit events and 100,000 studies over 90 days.

    python -m bench.audit_db [--events 1000000] [--studies 100000] [--repeat 5]

For SQLite and PostgreSQL (127.0.0.1:5432 unless LUNGPATH_TEST_POSTGRES_URL says otherwise):
a fresh database, migrated, bulk-loaded (executemany on SQLite, COPY on PostgreSQL), then
``lungpath audit ...`` commands run in-process through the real CLI (settings, read-only
engine, schema check, query, formatting) and timed. Target: ``audit summary --since 1d`` and
``audit events --ae X --since 7d`` under 1 s on both back ends. Writes
bench/results/audit_db.json; ``python -m bench.report`` renders docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner
from sqlalchemy import Engine, insert, text
from sqlalchemy.engine import make_url

from bench.common import BenchResult, write_result
from db.engine import create_engine_for
from db.migrations import upgrade
from db.models import Study
from lungpath.cli import main as cli

POSTGRES_URL = os.environ.get(
    "LUNGPATH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DAYS = 90
AES = [f"CT{i:02d}" for i in range(1, 11)]
EVENT_TYPES = ["instance.received"] * 90 + ["study.complete", "study.queued",
                                            "study.processing", "study.done",
                                            "association.opened", "association.closed",
                                            "delivery.sent", "instance.duplicate",
                                            "instance.rejected", "study.failed"]
TARGET_S = 1.0
QUERIES = [
    ("audit summary --since 1d", ["audit", "summary", "--since", "1d"], True),
    ("audit events --ae CT03 --since 7d", ["audit", "events", "--ae", "CT03", "--since", "7d"],
     True),
    ("audit events --ae CT03 --since 7d --limit 0 --format csv",
     ["audit", "events", "--ae", "CT03", "--since", "7d", "--limit", "0", "--format", "csv"],
     False),
    ("audit studies --state FAILED --since 7d",
     ["audit", "studies", "--state", "FAILED", "--since", "7d"], False),
    ("audit summary --since 7d", ["audit", "summary", "--since", "7d"], False),
]


def _study_rows(n: int, now: datetime, rng: random.Random) -> Iterator[dict[str, Any]]:
    start = now - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / n
    for i in range(n):
        created = start + step * i
        complete = created + timedelta(seconds=60 + rng.random() * 60)
        ended = complete + timedelta(seconds=30 + rng.random() * 300)
        draw = rng.random()
        state = "DONE" if draw < 0.9 else "NOT_ANALYZABLE" if draw < 0.95 else "FAILED"
        reason = None if state == "DONE" else rng.choice(
            ["no chest CT series", "no lung found", "decoding failed", "worker lost"])
        yield {"study_uid": f"1.2.826.0.1.3680043.10.999.{i}", "state": state, "revision": 1,
               "analysis_revision": 1, "calling_ae": AES[i % len(AES)], "attempts": 1,
               "reason": reason, "created_at": created, "updated_at": ended,
               "last_instance_at": created, "receiving_at": created, "complete_at": complete,
               "queued_at": complete, "processing_at": complete, "ended_at": ended}


def _event_rows(n: int, studies: int, now: datetime,
                rng: random.Random) -> Iterator[tuple[Any, ...]]:
    start = now - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / n
    for i in range(n):
        study = i * studies // n
        kind = rng.choice(EVENT_TYPES)
        failed = kind in ("instance.rejected", "study.failed")
        outcome = "minor_failure" if failed else "success"
        yield (start + step * i, "scp_node", kind, outcome,
               f"1.2.826.0.1.3680043.10.999.{study}", f"1.2.826.0.1.3680043.10.998.{i}",
               AES[study % len(AES)], '{"size": 524288}')


def _load_sqlite(engine: Engine, studies: list[dict[str, Any]],
                 events: Iterator[tuple[Any, ...]]) -> None:
    columns = ["occurred_at", "actor", "event_type", "outcome", "study_uid",
               "sop_instance_uid", "calling_ae", "detail"]
    with engine.begin() as conn:
        conn.execute(insert(Study), studies)
        raw = conn.connection.dbapi_connection
        assert raw is not None
        cursor: Any = raw.cursor()  # sqlite3's executemany takes any iterable
        cursor.executemany(
            f"INSERT INTO audit_events ({', '.join(columns)}) VALUES ({', '.join('?' * 8)})",
            ((t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"), *rest)
             for t, *rest in events),
        )
        conn.exec_driver_sql("ANALYZE")


def _load_postgres(url: str, studies: list[dict[str, Any]],
                   events: Iterator[tuple[Any, ...]]) -> None:
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn) as conn:
        with conn.cursor() as cur:
            columns = list(studies[0])
            with cur.copy(f"COPY studies ({', '.join(columns)}) FROM STDIN") as copy:
                for row in studies:
                    copy.write_row([row[c] for c in columns])
            with cur.copy("COPY audit_events (occurred_at, actor, event_type, outcome, study_uid,"
                          " sop_instance_uid, calling_ae, detail) FROM STDIN") as copy:
                for event in events:
                    copy.write_row(event)
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")


def _time_queries(url: str, repeat: int, var_dir: Path) -> list[dict[str, Any]]:
    runner = CliRunner()
    env = {"LUNGPATH_DATABASE_URL": url, "LUNGPATH_VAR_DIR": str(var_dir)}
    rows = []
    for label, args, _ in QUERIES:
        seconds = []
        lines = 0
        for _ in range(repeat):
            started = time.perf_counter()
            result = runner.invoke(cli, args, env=env)
            seconds.append(time.perf_counter() - started)
            if result.exit_code != 0:
                raise RuntimeError(f"{label} failed: {result.output}")
            lines = len(result.output.splitlines())
        rows.append({"command": label, "median_s": round(statistics.median(seconds), 3),
                     "max_s": round(max(seconds), 3), "output_lines": lines})
    return rows


def _run_backend(backend: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    now = datetime.now(UTC)
    rng = random.Random(3)
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'bench.db'}"
        admin_dsn = None
    else:
        name = f"lungpath_bench_{uuid.uuid4().hex[:8]}"
        admin_dsn = make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(
            hide_password=False)
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade(url)
        studies = list(_study_rows(args.studies, now, rng))
        events = _event_rows(args.events, args.studies, now, rng)
        started = time.perf_counter()
        if backend == "sqlite":
            engine = create_engine_for(url)
            _load_sqlite(engine, studies, events)
            engine.dispose()
        else:
            _load_postgres(url, studies, events)
        load_s = time.perf_counter() - started
        timings = _time_queries(url, args.repeat, tmp / "var")
        engine = create_engine_for(url)
        with engine.connect() as conn:
            counted = conn.execute(text("SELECT count(*) FROM audit_events")).scalar()
        engine.dispose()
        return {"backend": backend, "load_s": round(load_s, 1),
                "rows_per_s": round((args.events + args.studies) / load_s), "events": counted,
                "queries": timings}
    finally:
        if admin_dsn is not None:
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="Print only; no result file.")
    args = parser.parse_args()
    result = BenchResult(name="audit_db", title="Audit database: 1,000,000 events, "
                         "100,000 studies over 90 days")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [_run_backend(b, args, Path(tmp)) for b in ("sqlite", "postgresql")]
    result.add_table("Bulk load", [
        {"back end": r["backend"], "audit events": r["events"], "studies": args.studies,
         "load s": r["load_s"], "rows/s": r["rows_per_s"]} for r in runs])
    for run in runs:
        result.add_table(f"`lungpath` commands on {run['backend']} (in-process CLI, "
                         f"{args.repeat} runs each)", run["queries"])
        for (label, _, target), row in zip(QUERIES, run["queries"], strict=True):
            if target:
                result.add_target(f"{label} ({run['backend']})", f"< {TARGET_S} s",
                                  f"{row['max_s']} s (max of {args.repeat})",
                                  row["max_s"] < TARGET_S)
    load = os.getloadavg()
    result.notes += [
        f"Load average of the machine at the end of the run (other work shares it): "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min).",
        "Times include the whole command: settings, a read-only engine, the schema check, "
        "the query and the output formatting. `audit events` shows the newest 1,000 rows by "
        "default; the `--limit 0` line prints every matching row.",
        "Events: 1 of 10 calling AEs each, evenly spread; 90 % instance.received. Studies: "
        "90 % DONE, 5 % NOT_ANALYZABLE, 5 % FAILED. ANALYZE runs after the bulk load.",
        "Indexes used: audit_events (occurred_at), (calling_ae, occurred_at); studies "
        "(updated_at).",
    ]
    for run in runs:
        for row in run["queries"]:
            print(run["backend"], row)
    if not args.no_write:
        print(f"wrote {write_result(result)}")


if __name__ == "__main__":
    main()
