"""Output formatting for routerctl: tables, humanised ages, JSON and YAML.

Only the standard library is imported here; PyYAML is imported when YAML is
asked for, so the common commands stay fast (python-stack.md §8).
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Sequence
import datetime as _dt
import json
from typing import Any
from typing import TextIO

FORMATS = ("table", "json", "yaml")
#: Stand-in for a value that is absent (a row without a PID, a time not known).
NONE = "-"
#: ``observed`` values longer than this are cut in the table view (json/yaml show all).
MAX_VALUE_WIDTH = 160


# -- times ---------------------------------------------------------------------
def parse_time(text: object) -> float | None:
    """An RFC 3339 string to a POSIX timestamp, or None when absent or malformed."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.UTC)
    return value.timestamp()


def human_duration(seconds: float) -> str:
    """Compact age like kubectl's: ``0s``, ``45s``, ``3m12s``, ``25m``, ``5h3m``, ``3d4h``, ``400d``.

    Two units while the first is small, one unit afterwards; never negative
    (a clock that moved backwards shows ``0s``).
    """
    total = int(max(seconds, 0.0))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 10:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 10:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if hours < 24:
        return f"{hours}h"
    days, hours = divmod(hours, 24)
    if days < 8:
        return f"{days}d{hours}h" if hours else f"{days}d"
    return f"{days}d"


def age(text: object, now: float) -> str:
    """``5s`` for an RFC 3339 time five seconds before ``now``; ``-`` when unknown."""
    ts = parse_time(text)
    return NONE if ts is None else human_duration(now - ts)


def short_time(text: object) -> str:
    """``2026-11-24T10:00:01.123Z`` (milliseconds) for an RFC 3339 time; ``-`` when absent."""
    ts = parse_time(text)
    if ts is None:
        return str(text) if text else NONE
    value = _dt.datetime.fromtimestamp(ts, _dt.UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# -- cells and values ----------------------------------------------------------
def cell(value: object) -> str:
    """One table cell: one line, ``-`` for None, lists joined with commas."""
    if value is None:
        return NONE
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(cell(v) for v in value) if value else NONE
    text = str(value)
    if "\n" in text or "\r" in text or "\t" in text:
        text = " ".join(text.split())
    return text


def compact(value: object, width: int = MAX_VALUE_WIDTH) -> str:
    """A value on one line: scalars as is, lists and objects as compact JSON, cut at ``width``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return cell(value) if value else '""'
    if isinstance(value, int | float):
        return str(value)
    text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False, default=str)
    if len(text) <= width:
        return text
    suffix = f" … ({len(value)} items)" if isinstance(value, list | tuple) else " …"
    return text[: max(width - len(suffix), 10)] + suffix


# -- tables --------------------------------------------------------------------
def column_widths(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[int]:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, value in enumerate(row):
            widths[i] = max(widths[i], len(value))
    return widths


def format_row(values: Sequence[str], widths: Sequence[int]) -> str:
    """Cells left-aligned to ``widths``, two spaces apart; the last one is not padded."""
    parts = [v.ljust(w) for v, w in zip(values[:-1], widths[:-1], strict=True)]
    parts.append(values[-1])
    return "  ".join(parts).rstrip()


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain table: a header line and one line per row, columns sized to fit."""
    text_rows = [[cell(v) for v in row] for row in rows]
    widths = column_widths(headers, text_rows)
    lines = [format_row(list(headers), widths)]
    lines.extend(format_row(row, widths) for row in text_rows)
    return "\n".join(lines)


class StreamTable:
    """A table printed row by row (``events --follow``): widths from the first batch, grown later."""

    def __init__(self, headers: Sequence[str], out: TextIO, minimum: Sequence[int] = ()) -> None:
        self.headers = list(headers)
        self.out = out
        self.widths = [
            max(len(h), minimum[i] if i < len(minimum) else 0) for i, h in enumerate(headers)
        ]
        self.started = False

    def write(self, rows: Sequence[Sequence[object]]) -> None:
        text_rows = [[cell(v) for v in row] for row in rows]
        if not self.started:
            self.widths = [
                max(a, b)
                for a, b in zip(self.widths, column_widths(self.headers, text_rows), strict=True)
            ]
            self.out.write(format_row(self.headers, self.widths) + "\n")
            self.started = True
        for row in text_rows:
            self.widths = [max(w, len(v)) for w, v in zip(self.widths, row, strict=True)]
            self.out.write(format_row(row, self.widths) + "\n")
        self.out.flush()


# -- documents -----------------------------------------------------------------
def to_json(data: Any, *, indent: int | None = 2) -> str:
    if indent is None:
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    return json.dumps(data, ensure_ascii=False, indent=indent, default=str)


def to_yaml(data: Any) -> str:
    import yaml  # only when asked for: PyYAML is not on the common path

    text: str = yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100
    )
    return text.rstrip("\n")


def dump(data: Any, fmt: str) -> str:
    """``data`` as a JSON (indented) or YAML document."""
    if fmt == "yaml":
        return to_yaml(data)
    return to_json(data)
