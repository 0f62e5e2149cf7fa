"""Time formatting shared by every wire type: RFC 3339, UTC, microseconds."""

from __future__ import annotations

import datetime as _dt

_UTC = _dt.UTC


def rfc3339(ts: float) -> str:
    """Format a POSIX timestamp as ``2026-11-24T10:00:01.123456Z``."""
    return _dt.datetime.fromtimestamp(ts, _UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> float:
    """Parse what :func:`rfc3339` writes (any RFC 3339 offset) back to a timestamp."""
    value = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    return value.timestamp()
