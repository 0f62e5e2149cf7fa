"""What each read command shows: rows and pages built from the daemons' JSON.

The functions take the decoded JSON (``DaemonStatus``, events, plugin
records) and are tolerant of missing fields: a daemon of another version must
not make routerctl crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

from routerctl.output import NONE
from routerctl.output import age
from routerctl.output import cell
from routerctl.output import compact
from routerctl.output import render_table
from routerctl.output import short_time

DAEMON_HEADERS = ("KIND", "RESOURCE", "PHASE", "SINCE", "DAEMON", "PID")
EVENT_HEADERS = ("CURSOR", "TIME", "TOPIC", "SEVERITY", "REASON", "MESSAGE")
#: Column floors for the streamed events table (``--follow``), so rows line up.
EVENT_MIN_WIDTHS = (6, 24, 36, 8, 14, 0)
CONDITION_HEADERS = ("TYPE", "STATUS", "REASON", "LAST TRANSITION", "MESSAGE")
PLUGIN_HEADERS = ("NAME", "DISTRIBUTION", "VERSION", "KINDS", "COMMANDS", "HOOKS", "ERROR")
UNREACHABLE = "Unreachable"


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


# -- daemons -------------------------------------------------------------------
def daemon_records(
    daemon_kind: str, resource: str, socket: str, status: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One record per resource a daemon reports (normally one), for ``routerctl daemons``."""
    daemon = _dict(status.get("daemon"))
    base = {
        "daemonKind": daemon_kind,
        "resource": resource,
        "phase": None,
        "since": None,
        "socket": socket,
        "daemonName": daemon.get("name"),
        "daemonPhase": status.get("phase"),
        "pid": daemon.get("pid"),
        "version": daemon.get("version"),
        "startedAt": daemon.get("startedAt"),
        "error": None,
        "resourceKind": None,
    }
    records = []
    for res in _list(status.get("resources")):
        res = _dict(res)
        ref = _dict(res.get("resource"))
        records.append(
            {
                **base,
                "resource": ref.get("name", resource),
                "resourceKind": ref.get("kind"),
                "phase": res.get("phase"),
                "since": res.get("since"),
            }
        )
    if not records:
        records.append(
            {**base, "resource": resource, "resourceKind": None, "phase": None, "since": None}
        )
    return records


def unreachable_record(daemon_kind: str, resource: str, socket: str, reason: str) -> dict[str, Any]:
    prefix = f"{socket}: "
    if reason.startswith(prefix):
        reason = reason[len(prefix) :]
    return {
        "daemonKind": daemon_kind,
        "resource": resource,
        "phase": UNREACHABLE,
        "since": None,
        "socket": socket,
        "daemonName": None,
        "daemonPhase": None,
        "pid": None,
        "version": None,
        "startedAt": None,
        "error": reason,
        "resourceKind": None,
    }


def daemons_table(records: Sequence[Mapping[str, Any]], now: float) -> str:
    with_error = any(r.get("error") for r in records)
    headers = (*DAEMON_HEADERS, "ERROR") if with_error else DAEMON_HEADERS
    rows = []
    for r in records:
        row = [
            r.get("daemonKind"),
            r.get("resource"),
            r.get("phase"),
            age(r.get("since"), now),
            r.get("daemonPhase"),
            r.get("pid"),
        ]
        if with_error:
            row.append(r.get("error"))
        rows.append(row)
    return render_table(headers, rows)


# -- status --------------------------------------------------------------------
def _when(text: object, now: float) -> str:
    if not text:
        return NONE
    return f"{short_time(text)} ({age(text, now)} ago)"


def _field(label: str, value: str) -> str:
    return f"{label + ':':<12} {value}"


def _indent(text: str, prefix: str = "  ") -> list[str]:
    return [prefix + line for line in text.splitlines()]


def observed_lines(observed: Mapping[str, Any]) -> list[str]:
    """``key: value`` per observed field, values aligned; lists and objects compact on one line."""
    if not observed:
        return ["  " + NONE]
    width = min(max(len(k) for k in observed) + 1, 26)
    return [f"  {(str(k) + ':'):<{width}} {compact(v)}" for k, v in observed.items()]


def status_page(status: Mapping[str, Any], socket: str, now: float) -> str:
    """The human view of a ``DaemonStatus``: per resource, then the daemon."""
    lines: list[str] = []
    for res in _list(status.get("resources")):
        res = _dict(res)
        ref = _dict(res.get("resource"))
        kind_name = f"{ref.get('kind', '?')}/{ref.get('name', '?')}"
        lines.append(_field("Resource", f"{kind_name} ({ref.get('apiVersion', '?')})"))
        lines.append(_field("Phase", cell(res.get("phase"))))
        lines.append(_field("Since", _when(res.get("since"), now)))
        lines.append("Conditions:")
        conditions = [_dict(c) for c in _list(res.get("conditions"))]
        if conditions:
            rows = [
                [
                    c.get("type"),
                    c.get("status"),
                    c.get("reason") or NONE,
                    _when(c.get("lastTransitionTime"), now),
                    c.get("message") or NONE,
                ]
                for c in conditions
            ]
            lines.extend(_indent(render_table(CONDITION_HEADERS, rows)))
        else:
            lines.append("  " + NONE)
        lines.append("Observed:")
        lines.extend(observed_lines(_dict(res.get("observed"))))
        lines.append("")
    daemon = _dict(status.get("daemon"))
    runtime = _dict(status.get("runtime"))
    lines.append(
        _field(
            "Daemon",
            f"{cell(daemon.get('name'))} (kind {cell(daemon.get('kind'))}, version {cell(daemon.get('version'))})",
        )
    )
    lines.append(_field("State", cell(status.get("phase"))))
    lines.append(_field("PID", cell(daemon.get("pid"))))
    lines.append(_field("Started", _when(daemon.get("startedAt"), now)))
    lines.append(_field("Socket", socket))
    commands = _list(runtime.get("commands"))
    if commands:
        lines.append(_field("Commands", ", ".join(str(c) for c in commands)))
    eventlog = _dict(runtime.get("eventLog"))
    if eventlog:
        lines.append(
            _field(
                "Events",
                f"head cursor {cell(eventlog.get('head'))}, "
                f"oldest retained {cell(eventlog.get('oldestRetained'))}",
            )
        )
    return "\n".join(lines)


# -- events --------------------------------------------------------------------
def event_row(event: Mapping[str, Any]) -> list[object]:
    return [
        event.get("cursor"),
        short_time(event.get("time")),
        event.get("topic"),
        event.get("severity"),
        event.get("reason") or NONE,
        event.get("message") or "",
    ]


def events_table(events: Sequence[Mapping[str, Any]]) -> str:
    return render_table(EVENT_HEADERS, [event_row(e) for e in events])


# -- plugins -------------------------------------------------------------------
def plugin_row(record: Mapping[str, Any]) -> list[object]:
    return [
        record.get("name"),
        record.get("distribution") or NONE,
        record.get("version") or NONE,
        record.get("daemonKinds"),
        record.get("commands"),
        record.get("hooks"),
        record.get("error"),
    ]


def plugins_table(records: Sequence[Mapping[str, Any]]) -> str:
    return render_table(PLUGIN_HEADERS, [plugin_row(r) for r in records])
