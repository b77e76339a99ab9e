"""A receiving process: one Storage SCP serving until SIGTERM or SIGINT, then a graceful stop.

The node starts one per ``receivers`` setting when it needs more than one (they share the
port through SO_REUSEPORT and stay consistent through the database).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Protocol

from db.engine import create_engine_for
from scp_node.config import ScpConfig
from scp_node.server import StorageSCP


class EventLike(Protocol):
    """What ``serve_until_signalled`` needs of a (multiprocessing) event."""

    def set(self) -> None: ...


def serve_until_signalled(config: ScpConfig, log_level: str = "INFO",
                          ready: EventLike | None = None) -> None:
    """Run one Storage SCP in this process until SIGTERM/SIGINT (a ``Process`` target).

    ``ready`` (a multiprocessing Event) is set once the port is bound, so the parent knows
    every receiver shares the port before it reports the node started.
    """
    logging.basicConfig(level=log_level,
                        format="%(asctime)s %(levelname)s %(process)d %(name)s %(message)s")
    stopping = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    engine = create_engine_for(config.database_url)
    scp = StorageSCP(config, engine)
    scp.start()
    if ready is not None:
        ready.set()
    try:
        stopping.wait()
    finally:
        scp.stop()
        engine.dispose()
