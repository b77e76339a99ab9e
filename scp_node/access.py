"""Who may open an association: the calling-AE allow-list, peer addresses, the called AE.

An allow-list entry is ``AE`` (any address) or ``AE@address`` (only from that IP address or
network, e.g. ``CT1@10.1.2.3`` or ``PACS@10.1.0.0/16``). An empty allow-list admits any
calling AE. The called AE title must be the node's own. Each refusal carries the DICOM
A-ASSOCIATE-RJ (result, source, reason) and a reason for the audit log.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

# A-ASSOCIATE-RJ: result 1 = rejected-permanent, source 1 = DICOM UL service-user,
# reason 3 = calling AE title not recognized, 7 = called AE title not recognized (PS3.8 9.3.4)
REJECT_CALLING_AE = (0x01, 0x01, 0x03)
REJECT_CALLED_AE = (0x01, 0x01, 0x07)
# result 2 = rejected-transient, source 3 = service-provider (presentation),
# reason 2 = local limit exceeded
REJECT_LIMIT = (0x02, 0x03, 0x02)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Refusal:
    """Why an association is refused, and the A-ASSOCIATE-RJ that says so."""

    reason: str
    result: int
    source: int
    diagnostic: int


@dataclass(frozen=True)
class AllowEntry:
    """One calling AE title, optionally bound to an address or network."""

    ae_title: str
    network: Network | None = None

    @classmethod
    def parse(cls, entry: str) -> AllowEntry:
        """Parse ``AE`` or ``AE@address[/prefix]``; raise ``ValueError`` naming the entry."""
        title, _, address = entry.partition("@")
        if not title.strip():
            raise ValueError(f"allow-list entry {entry!r} has no AE title")
        if not address:
            return cls(title.strip())
        try:
            return cls(title.strip(), ipaddress.ip_network(address, strict=False))
        except ValueError:
            raise ValueError(
                f"allow-list entry {entry!r}: {address!r} is not an IP address or network"
            ) from None

    def admits(self, calling_ae: str, peer_host: str) -> bool:
        """Whether this entry admits the calling AE from this peer address."""
        if calling_ae != self.ae_title:
            return False
        if self.network is None:
            return True
        try:
            return ipaddress.ip_address(peer_host) in self.network
        except ValueError:
            return False


class AccessPolicy:
    """Decides whether an association request is admitted."""

    def __init__(self, node_ae_title: str, allowed: Iterable[str] = ()) -> None:
        if not node_ae_title.strip():
            raise ValueError("node_ae_title must not be empty")
        self.node_ae_title = node_ae_title.strip()
        self.entries = tuple(AllowEntry.parse(entry) for entry in allowed)

    def check(self, *, calling_ae: str, called_ae: str, peer_host: str) -> Refusal | None:
        """``None`` if admitted, else the refusal (the called AE is checked first)."""
        calling, called = calling_ae.strip(), called_ae.strip()
        if called != self.node_ae_title:
            return Refusal(f"called AE title {called!r} is not this node's "
                           f"({self.node_ae_title!r})", *REJECT_CALLED_AE)
        if not self.entries:
            return None
        if any(entry.admits(calling, peer_host) for entry in self.entries):
            return None
        if any(entry.ae_title == calling for entry in self.entries):
            return Refusal(f"calling AE title {calling!r} is not allowed from {peer_host}",
                           *REJECT_CALLING_AE)
        return Refusal(f"calling AE title {calling!r} is not on the allow-list",
                       *REJECT_CALLING_AE)
