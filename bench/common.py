"""What every benchmark shares: the machine description and the result file format.

Each bench writes ``bench/results/<name>.json`` with ``write_result``; ``bench/report.py``
renders docs/performance.md from those files, so the report always shows measured figures
with the machine and command that produced them.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """CPU model, core count, memory and OS of this run's machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def load_average() -> float:
    """The 1-minute load average now: above the core count, other work on a shared machine
    inflates every wall-clock figure, so results record it next to CPU seconds."""
    return round(os.getloadavg()[0], 1)


@dataclass
class Target:
    """One acceptance target and what this run measured for it."""

    what: str
    target: str
    measured: str
    met: bool


@dataclass
class BenchResult:
    """The result file of one benchmark run."""

    name: str
    title: str
    tables: list[dict[str, Any]] = field(default_factory=list)  # {"caption", "rows": [dict]}
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    command: str = field(default_factory=lambda: " ".join(shlex.quote(a) for a in sys.argv))
    machine: dict[str, Any] = field(default_factory=machine)
    date: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    commit: str = field(default_factory=lambda: _git_commit())

    def add_table(self, caption: str, rows: list[dict[str, Any]]) -> None:
        self.tables.append({"caption": caption, "rows": rows})

    def add_target(self, what: str, target: str, measured: str, met: bool) -> None:
        self.targets.append(Target(what, target, measured, met))


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
            cwd=Path(__file__).parent, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_result(result: BenchResult, results_dir: Path = RESULTS_DIR) -> Path:
    """Write ``<results_dir>/<name>.json`` and return its path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{result.name}.json"
    path.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return path
