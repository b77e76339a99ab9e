"""The Storage SCP's own configuration, built from lungpath's Settings by the node process.

``scp_node`` may not import ``lungpath`` (DESIGN.md), so the composition root copies the
settings it needs into this plain, picklable object (it travels to every receiving process).
Arguments are checked here, at construction, with messages that name them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from scp_node.access import AllowEntry


@dataclass(frozen=True)
class ScpConfig:
    """Everything one receiving process needs. Zero means "no limit" for the limits."""

    ae_title: str
    host: str
    port: int
    store_dir: Path
    database_url: str
    allowed_calling_aes: tuple[str, ...] = ()
    min_free_bytes: int = 0
    max_associations: int = 16
    max_pdu: int = 0
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    network_timeout: float = 60.0
    max_instances_per_association: int = 0
    max_study_bytes: int = 0
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    #: Listen with SO_REUSEPORT so that several receiving processes share the port.
    reuse_port: bool = False
    #: Seconds a graceful stop waits for peers to release before aborting.
    shutdown_grace: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= len(self.ae_title.strip()) <= 16:
            raise ValueError(f"ae_title must be 1-16 characters, got {self.ae_title!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535 (0: any free port), got {self.port}")
        for name in ("min_free_bytes", "max_pdu", "max_instances_per_association",
                     "max_study_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_associations < 1:
            raise ValueError(f"max_associations must be >= 1, got {self.max_associations}")
        for name in ("acse_timeout", "dimse_timeout", "network_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.shutdown_grace < 0:
            raise ValueError(f"shutdown_grace must be >= 0, got {self.shutdown_grace}")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be given together")
        if self.tls_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_ca_file needs tls_cert_file and tls_key_file")
        for entry in self.allowed_calling_aes:
            AllowEntry.parse(entry)

    @property
    def database_wait(self) -> float:
        """Seconds a C-STORE waits for the database before answering 0xA700 "database busy".

        The answer must leave before the node's ``network_timeout`` (right after each handler
        the association thread checks it and aborts the association, so a late answer is
        lost) and before the peer's DIMSE timeout, taken to be no shorter than the node's
        ``dimse_timeout``. Before its answer an association thread may wait for the database
        three times: the association's row (for its first request), the instance's row, the
        audit event of a refusal. Each wait gets a quarter of the shorter timeout, which leaves
        a quarter for the file and the rest: 15 s with the default timeouts of 60 s.
        """
        return min(self.network_timeout, self.dimse_timeout) / 4

    @property
    def tls(self) -> bool:
        """Whether the node listens with TLS."""
        return self.tls_cert_file is not None
