"""Durations as written in config and query strings: ``10``, ``0.5``, ``500ms``, ``5m``.

Kept free of heavy imports: routerctl parses ``--timeout 60s`` with it.
"""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
#: The longest duration anything accepts: 365 days. Far below what timers can
#: hold (``threading.TIMEOUT_MAX`` is ~292 years; ``100000000d`` overflowed it
#: and left a health check Pending forever), and no interval or timeout of a
#: router means more than a year. Uses with a tighter sane range check it too.
MAX_DURATION = 365 * 86400.0
#: A duration string longer than this is not a duration (``"0.000…1s"`` aside).
_MAX_TEXT = 32


def parse_duration(value: object, maximum: float = MAX_DURATION) -> float:
    """Return seconds for a number or a string with a unit.

    Raises ``ValueError`` naming what was expected; never returns a negative,
    infinite or NaN value, nor one above ``maximum`` (default
    :data:`MAX_DURATION`).
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 10, 0.5, 500ms, 10s, 5m, 1h or 1d")
    if isinstance(value, int) and value > maximum:
        seconds = math.inf  # a 400-digit int does not even convert to float
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _PATTERN.match(value) if len(value) <= _MAX_TEXT else None
        if match is None:
            shown = repr(value) if len(value) <= _MAX_TEXT else repr(value[:_MAX_TEXT]) + "..."
            raise ValueError(
                f"{shown} is not a duration (expected e.g. 10, 0.5, 500ms, 10s, 5m, 1h, 1d)"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError("expected a duration such as 10, 0.5, 500ms, 10s, 5m, 1h or 1d")
    if math.isnan(seconds) or seconds < 0:
        raise ValueError("a duration must be a finite number of seconds >= 0")
    if seconds > maximum:
        raise ValueError(f"a duration must be at most {format_duration(maximum)}")
    return seconds


def format_duration(seconds: float) -> str:
    """Short human form: ``500ms``, ``10s``, ``2m30s``, ``1h``."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            parts.append(f"{whole // size}{unit}")
            whole %= size
    return "".join(parts) or "0s"
