"""Command-line parameter types shared by several commands."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """Parse ``30s``, ``30m``, ``12h``, ``7d`` or ``2w`` into a timedelta."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30m, 12h or 7d")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def parse_instant(text: str, now: datetime | None = None) -> datetime:
    """A point in time: an ISO-8601 timestamp, or a duration meaning that long ago.

    Naive timestamps are taken as UTC, which is what the audit database stores.
    """
    now = now or datetime.now(UTC)
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an ISO-8601 timestamp nor a duration like 30m, 12h or 7d"
        ) from None
    return instant if instant.tzinfo else instant.replace(tzinfo=UTC)


class Instant(click.ParamType):
    """A point in time given as an ISO-8601 timestamp or as ``30m`` / ``12h`` / ``7d`` ago."""

    name = "TIME"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return parse_instant(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


INSTANT = Instant()
