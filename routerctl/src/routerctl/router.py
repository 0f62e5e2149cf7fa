"""routerctl on top of ``routerd serve``: the router at a glance, resources, events, commands.

Reads go to the GET-only ``routerd-status.sock`` (0666: any user may look),
commands to ``routerd.sock`` (0660). Resources are named ``<Kind>/<name>``
(``DHCPv4Client/wan``); daemons keep ``<daemon-kind>/<resource>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
import os
from typing import Any

from routerd.client import CONDITION
from routerd.client import CURSOR
from routerd.client import INT
from routerd.client import OBJECT
from routerd.client import STR
from routerd.client import Deadline
from routerd.client import ListOf
from routerd.client import Obj
from routerd.client import Shape
from routerd.client import UnixClient
from routerd.errors import ClientError
from routerd.errors import SocketNotFound

from routerctl import api
from routerctl.errors import CtlError
from routerctl.output import age
from routerctl.output import compact
from routerctl.output import render_table
from routerctl.output import short_time

PREFIX = "/api/control.routerd.net/v1alpha1"
MAIN_SOCKET = "routerd.sock"
STATUS_SOCKET = "routerd-status.sock"
RESOURCE_HEADERS = ("RESOURCE", "PHASE", "SINCE", "DAEMON", "RESTARTS", "FACTS")
EVENT_HEADERS = ("ID", "TIME", "RESOURCE", "TOPIC", "SEVERITY", "MESSAGE")

# The control API's answers, as far as the views below rely on them.
REF = Obj({"apiVersion": STR, "kind": STR, "name": STR}, required=("kind", "name"))
ROUTER_EVENT = Obj(
    {
        "id": CURSOR,
        "time": STR,
        "source": STR,
        "topic": STR,
        "severity": STR,
        "message": STR,
        "attributes": OBJECT,
    },
    required=("id", "topic"),
)
EVENT_LIST = Obj({"cursor": CURSOR, "items": ListOf(ROUTER_EVENT)}, required=("cursor", "items"))
SUPERVISED = Obj(
    {"resource": REF, "daemonKind": STR, "state": STR, "pid": INT, "restarts": INT, "phase": STR},
    required=("resource", "state"),
)
ROUTER_STATUS = Obj(
    {
        "version": STR,
        "pid": INT,
        "startedAt": STR,
        "config": Obj({"path": STR, "generation": INT}),
        "daemons": ListOf(SUPERVISED),
    },
    required=("daemons",),
)
RESOURCE_ITEM = Obj(
    {
        "resource": REF,
        "daemonKind": STR,
        "spec": OBJECT,
        "phase": STR,
        "facts": STR,
        "conditions": ListOf(CONDITION),
        "observed": OBJECT,
        "daemon": Obj({"state": STR, "pid": INT, "restarts": INT}),
        "recentEvents": ListOf(ROUTER_EVENT),
    },
    required=("resource",),
)
RESOURCE_LIST = Obj({"items": ListOf(RESOURCE_ITEM)}, required=("items",))
RELOAD_RESULT = Obj(
    {
        "generation": INT,
        "started": ListOf(STR),
        "stopped": ListOf(STR),
        "reloaded": ListOf(STR),
        "restarted": ListOf(STR),
    }
)


class Router:
    """Requests to routerd's control API, all within ``deadline`` when one is given."""

    def __init__(self, runtime_dir: str, timeout: float, deadline: Deadline | None = None) -> None:
        self.read = UnixClient(
            os.path.join(runtime_dir, STATUS_SOCKET), timeout=timeout, deadline=deadline
        )
        self.write = UnixClient(
            os.path.join(runtime_dir, MAIN_SOCKET), timeout=timeout, deadline=deadline
        )

    def _fail(self, client: UnixClient, exc: ClientError) -> CtlError:
        if isinstance(exc, SocketNotFound) and not os.path.exists(client.path):
            return CtlError(f"routerd serve is not running (no socket at {client.path})")
        return api.client_error(client, exc)

    def get(self, path: str, shape: Shape, **query: Any) -> dict[str, Any]:
        try:
            resp = self.read.get(f"{PREFIX}/{path}", **query)
        except ClientError as exc:
            raise self._fail(self.read, exc) from None
        return api.json_body("routerd", resp, shape)

    def post(self, path: str, body: Any, shape: Shape) -> dict[str, Any]:
        try:
            resp = self.write.post(f"{PREFIX}/{path}", body)
        except ClientError as exc:
            raise self._fail(self.write, exc) from None
        return api.json_body("routerd", resp, shape)

    def events(
        self,
        *,
        since: str | None,
        topics: Sequence[str],
        resource: str | None,
        limit: int | None,
        wait: float | None = None,
    ) -> dict[str, Any]:
        """One page of stored events (``EVENT_LIST``); ``wait`` makes it a long-poll."""
        resp = api.get_answer(
            self.read,
            "routerd",
            f"{PREFIX}/events",
            hold=wait or 0.0,
            fail=self._fail,
            since=since,
            topic=list(topics) or None,
            resource=resource,
            limit=limit,
            wait=f"{wait:g}s" if wait else None,
        )
        return api.json_body("routerd", resp, EVENT_LIST)


def key_facts(item: Mapping[str, Any]) -> str:
    """The resource's key facts as its kind states them (``DaemonKind.facts``, via routerd serve)."""
    facts = item.get("facts")
    return compact(facts, 70) if isinstance(facts, str) and facts else ""


def resources_table(items: Sequence[Mapping[str, Any]], now: float) -> str:
    rows = []
    for item in items:
        ref = item.get("resource") or {}
        daemon = item.get("daemon") or {}
        rows.append(
            [
                f"{ref.get('kind')}/{ref.get('name')}",
                item.get("phase"),
                age(item.get("since"), now) if item.get("since") else "-",
                daemon.get("state") if isinstance(daemon, Mapping) else "-",
                daemon.get("restarts") if isinstance(daemon, Mapping) else "-",
                key_facts(item),
            ]
        )
    return render_table(RESOURCE_HEADERS, rows)


def glance(status: Mapping[str, Any], items: Sequence[Mapping[str, Any]], now: float) -> str:
    config = status.get("config") or {}
    head = (
        f"routerd {status.get('version')}  pid {status.get('pid')}  "
        f"up {age(status.get('startedAt'), now)}  config generation {config.get('generation')}  "
        f"({config.get('path')})"
    )
    return head + "\n\n" + (resources_table(items, now) if items else "No resources configured.")


def event_row(e: Mapping[str, Any]) -> list[object]:
    attrs = e.get("attributes") or {}
    owner = f"{attrs.get('resource.kind', '')}/{attrs.get('resource.name', '')}".strip("/")
    return [
        e.get("id"),
        short_time(e.get("time")),
        owner or e.get("source"),
        e.get("topic"),
        e.get("severity"),
        compact(e.get("message"), 80),
    ]


def events_table(events: Sequence[Mapping[str, Any]]) -> str:
    return render_table(EVENT_HEADERS, [event_row(e) for e in events])


def describe_page(item: Mapping[str, Any], now: float) -> str:
    ref = item.get("resource") or {}
    daemon = item.get("daemon") or {}
    lines = [
        f"Resource:   {ref.get('kind')}/{ref.get('name')} ({ref.get('apiVersion')})",
        f"Phase:      {item.get('phase')} since {short_time(item.get('since'))} ({age(item.get('since'), now)} ago)",
        f"Daemon:     {item.get('daemonKind')} {daemon.get('state')} pid {daemon.get('pid')} "
        f"restarts {daemon.get('restarts')}"
        if daemon
        # No process of its own: EventRule and DerivedEvent run inside routerd serve.
        else f"Engine:     routerd serve ({item.get('daemonKind')})",
        "Spec:",
    ]
    lines += [f"  {k}: {compact(v)}" for k, v in (item.get("spec") or {}).items()]
    conditions = item.get("conditions") or []
    lines.append("Conditions:")
    if conditions:
        table = render_table(
            ("TYPE", "STATUS", "REASON", "MESSAGE"),
            [
                [c.get("type"), c.get("status"), c.get("reason"), compact(c.get("message"), 70)]
                for c in conditions
            ],
        )
        lines += ["  " + line for line in table.splitlines()]
    lines.append("Observed:")
    lines += [f"  {k}: {compact(v)}" for k, v in (item.get("observed") or {}).items()]
    recent = item.get("recentEvents") or []
    lines.append("Recent events:")
    if recent:
        lines += ["  " + line for line in events_table(list(reversed(recent))).splitlines()]
    return "\n".join(lines)
