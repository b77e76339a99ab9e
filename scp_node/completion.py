"""Study completion: a study with no new instance for ``stable_seconds`` becomes COMPLETE.

The state lives in the database (``db.ingest.complete_stable_studies`` completes each
revision exactly once, whichever process sweeps), so this thread only decides when to ask.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

from sqlalchemy import Engine

from db.ingest import complete_stable_studies

logger = logging.getLogger(__name__)


class CompletionSweeper:
    """A daemon thread that completes stable studies every ``interval`` seconds."""

    def __init__(self, engine: Engine, *, stable_seconds: float,
                 interval: float | None = None) -> None:
        if stable_seconds <= 0:
            raise ValueError(f"stable_seconds must be > 0, got {stable_seconds}")
        # a quarter of the window: a study completes at most 25 % late, and a 60 s window
        # costs one small query every 15 s (capped at 5 s so that operators see it move)
        self.interval = interval if interval is not None else min(stable_seconds / 4, 5.0)
        if self.interval <= 0:
            raise ValueError(f"interval must be > 0, got {self.interval}")
        self.engine = engine
        self.stable_seconds = stable_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="study-completion", daemon=True)

    def start(self) -> None:
        """Start sweeping in the background."""
        self._thread.start()

    def sweep(self) -> list[str]:
        """Complete the studies that are stable now; return their UIDs."""
        completed = complete_stable_studies(self.engine, now=datetime.now(UTC),
                                            stable_seconds=self.stable_seconds)
        for study_uid in completed:
            logger.info("study complete study=%s", study_uid)
        return completed

    def stop(self) -> None:
        """Stop sweeping and wait for a sweep in progress to end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except Exception:
                logger.exception("study completion sweep failed; retrying in %.1f s",
                                 self.interval)
