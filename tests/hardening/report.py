"""Render docs/reliability.md from the hardening tests' results and the fuzz bench's.

    .venv/bin/pytest tests/hardening        # writes var/reliability/hardening.json
    .venv/bin/python -m bench.fuzz          # writes bench/results/fuzz.json
    .venv/bin/python -m tests.hardening.report

Each scenario the tests recorded is a row: what was tried, how many inputs, the outcome and
the acknowledged instances lost (0 in every row, or the test would have failed). Scenarios
covered by the Storage SCP's and the orchestration's own tests are listed after them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tests.conftest import REPO_ROOT
from tests.hardening.conftest import RESULTS

DOC = REPO_ROOT / "docs" / "reliability.md"
FUZZ = REPO_ROOT / "bench" / "results" / "fuzz.json"
GROUPS = ("bad input at C-STORE", "bad input at analysis", "fuzzing", "fault matrix",
          "security")

#: Scenarios of the reliability rules that other test modules own: (scenario, test, outcome).
ELSEWHERE = (
    ("free-disk threshold", "tests/scp_node/test_server.py::test_free_disk_threshold_refuses_"
     "with_a700", "0xA700, nothing stored"),
    ("database unreachable", "tests/scp_node/test_server.py::test_database_unreachable_is_"
     "never_acknowledged", "0xA700"),
    ("bad inputs with their audited reason", "tests/scp_node/test_server.py::test_bad_inputs_"
     "get_their_status_and_an_audited_reason", "0xA900 / 0xC000, reason in the audit log"),
    ("association, instance and study limits", "tests/scp_node/test_server.py", "refused and "
     "audited"),
    ("AE allow-list and TLS", "tests/scp_node/test_server.py::test_access_control_refusals_are_"
     "audited, tests/integration/test_scp_tls.py", "refused and audited"),
    ("SIGKILL of the node mid-transfer", "tests/integration/test_scp_crash.py",
     "0 acknowledged instances lost"),
    ("8 and 4 concurrent associations, two receiving processes",
     "tests/integration/test_scp_concurrency.py", "rows = files"),
    ("SIGKILL of a worker during analysis", "tests/integration/test_orchestration_faults.py",
     "re-sent by the reconciler, analysed once"),
    ("header reader on every truncation and arbitrary bytes", "tests/scp_node/test_header.py",
     "MalformedDataSet, never another exception"),
)


#: What is known of requests the fuzz run saw go unanswered (shown only when there were some).
UNANSWERED = (
    "**Open: unanswered requests.** The peer saw the association end after 60 s, the length of "
    "both SQLite's busy timeout (db/engine.py) and the node's `network_timeout`. The likely "
    "cause: with eight writers on one SQLite file and a load average above the core count, a "
    "write can wait that long for the database lock, and an association whose handler outlasts "
    "`network_timeout` is aborted before its answer leaves. Nothing acknowledged was lost; the "
    "peer sends the instance again. PostgreSQL, the production database, has no database-wide "
    "write lock."
)


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def scenario_tables(scenarios: list[dict[str, Any]]) -> list[str]:
    """One table per group of recorded scenarios."""
    lines: list[str] = []
    for group in GROUPS:
        rows = [s for s in scenarios if s["group"] == group]
        if not rows:
            continue
        lines += ["", f"### {group[0].upper()}{group[1:]}", "",
                  "| scenario | inputs | outcome | acknowledged instances lost | test |",
                  "|---|---|---|---|---|"]
        for s in rows:
            test = s["test"].split("::")[-1].split("[")[0]
            lines.append(f"| {_cell(s['scenario'])} | {s['inputs']} | {_cell(s['outcome'])} | "
                         f"{s['acknowledged_lost']} | `{test}` |")
    return lines


def fuzz_section(fuzz: dict[str, Any] | None) -> list[str]:
    """The long fuzz run: its targets and its answers per category."""
    if fuzz is None:
        return ["", "No fuzz run recorded yet: run `python -m bench.fuzz`."]
    lines = ["", f"`{fuzz['command']}` on {fuzz['date']} (commit {fuzz['commit']}, "
             f"{fuzz['machine']['cpu']}, {fuzz['machine']['cores']} cores).", "",
             "| target | wanted | measured | met |", "|---|---|---|---|"]
    lines += [f"| {t['what']} | {t['target']} | {t['measured']} | "
              f"{'yes' if t['met'] else 'no'} |" for t in fuzz["targets"]]
    for table in fuzz["tables"]:
        keys = list(table["rows"][0])
        lines += ["", table["caption"] + ":", "", "| " + " | ".join(keys) + " |",
                  "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_cell(r[k]) for k in keys) + " |" for r in table["rows"]]
    lines += [""] + [f"- {_cell(note)}" for note in fuzz["notes"]]
    if any(not t["met"] and t["what"].startswith("hangs") for t in fuzz["targets"]):
        lines += ["", UNANSWERED]
    return lines


def render(scenarios: list[dict[str, Any]], fuzz: dict[str, Any] | None) -> str:
    """The whole document."""
    lost = sum(int(s["acknowledged_lost"]) for s in scenarios)
    lines = [
        "# Reliability",
        "",
        "Generated by `python -m tests.hardening.report` from the results the hardening tests",
        "(tests/hardening, part of `make test`) and `bench/fuzz.py` write; do not edit by hand.",
        "The rule (DESIGN.md): an instance is acknowledged with 0x0000 only once its file is",
        "durable and its row committed; anything else gets its DICOM failure status; bad input",
        "never crashes the node or loses other data, and a study that cannot be analysed ends",
        "NOT_ANALYZABLE with an SR that says why.",
        "",
        f"{len(scenarios)} scenarios recorded, acknowledged instances lost in all of them: "
        f"**{lost}**.",
        "",
        "## Scenarios of the hardening tests",
        *scenario_tables(scenarios),
        "",
        "## Long fuzz run (`bench/fuzz.py`)",
        *fuzz_section(fuzz),
        "",
        "## Scenarios covered by other tests",
        "",
        "| scenario | test | outcome |",
        "|---|---|---|",
        *[f"| {a} | `{b}` | {c} |" for a, b, c in ELSEWHERE],
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Render docs/reliability.md")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--fuzz", type=Path, default=FUZZ)
    parser.add_argument("--out", type=Path, default=DOC)
    args = parser.parse_args()
    if not args.results.is_file():
        parser.error(f"no results at {args.results}: run pytest tests/hardening first")
    scenarios = json.loads(args.results.read_text())["scenarios"]
    fuzz = json.loads(args.fuzz.read_text()) if args.fuzz.is_file() else None
    args.out.write_text(render(scenarios, fuzz))
    print(f"wrote {args.out} ({len(scenarios)} scenarios)")


if __name__ == "__main__":
    main()
