"""The main API's observer endpoints, added to ``routerd serve`` by the hook.

``GET /api/control.routerd.net/v1alpha1/traffic-flows|firewall-logs|dns-queries``
read each configured observer's store file on a connection of the serving
thread: SQLite's WAL lets them read while the observer writes, and an
observer that floods, stalls or crashes cannot hold them up (its last
committed records are still served, with a condition saying it is not
running). ``connections`` dumps the live conntrack table itself, in the
serving thread with its own netlink socket, filtered in the kernel where it
can be and stopped at ``limit`` (docs/observe.md, "Decisions"). All four
answer on the main socket only: the status socket is every local user's.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
import socket
import sqlite3
import threading
import time
from typing import Any

import falcon
from routerd.serve.routes import DaemonTarget
from routerd.serve.routes import ServeView

from routerd_observe import conntrack
from routerd_observe import ctnetlink as ct
from routerd_observe import records
from routerd_observe.query import Query
from routerd_observe.query import parse_query
from routerd_observe.store import open_reader

DB_NAME = "observe.db"
#: A live dump answers within this or fails with 503.
DUMP_DEADLINE = 10.0
_local = threading.local()


def _reader(path: Path) -> sqlite3.Connection:
    """This thread's connection to ``path`` (opening one costs ~0.5 ms)."""
    conns: dict[str, sqlite3.Connection] | None = getattr(_local, "conns", None)
    if conns is None:
        conns = _local.conns = {}
    conn = conns.get(str(path))
    if conn is None:
        conn = conns[str(path)] = open_reader(path)
    return conn


def _condition(type_: str, status: bool, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": None,
    }


def no_observer(kind: str) -> dict[str, Any]:
    return _condition(
        "ObserverAvailable",
        False,
        "NoObserverConfigured",
        f"no {kind} resource is configured; add one to the config (docs/observe.md)",
    )


class _Base:
    daemon_kind: str
    resource_kind: str
    endpoint: str
    list_kind: str

    def __init__(self, serve: ServeView) -> None:
        self.serve = serve

    def refuse_on_status_socket(self) -> None:
        """What LAN hosts connect to and look up is not for every local user."""
        if self.serve.status_socket:
            raise falcon.HTTPForbidden(
                title="Main socket only",
                description=f"{self.endpoint} is served on routerd's main socket only "
                "(root and the routerd group): it shows what LAN hosts do",
            )

    def answer(
        self, items: list[dict[str, Any]], conditions: list[dict[str, Any]], **extra: Any
    ) -> dict[str, Any]:
        return {
            "apiVersion": self.serve.api_version,
            "kind": self.list_kind,
            "items": items,
            "conditions": conditions,
            **extra,
        }


class RecordsRoute(_Base):
    """The records of every observer of one daemon kind, merged newest first."""

    time_key: str

    def __init__(
        self,
        serve: ServeView,
        query: Callable[[sqlite3.Connection, Query, list[Path]], dict[str, Any]],
    ) -> None:
        super().__init__(serve)
        self.query = query

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.refuse_on_status_socket()
        q = parse_query(self.endpoint, dict(req.params))
        targets = self.serve.daemons(self.daemon_kind)
        if not targets:
            resp.media = self.answer([], [no_observer(self.resource_kind)])
            return
        conditions: list[dict[str, Any]] = []
        items: list[dict[str, Any]] = []
        aggregates: list[dict[str, Any]] = []
        dns_stores = [t.state_dir / DB_NAME for t in self.serve.daemons("dns-query-log")]
        for target in targets:
            if target.state != "Running":
                conditions.append(
                    _condition(
                        "ObserverRunning",
                        False,
                        f"Daemon{target.state}",
                        f"{target.kind}/{target.name} is {target.state}; "
                        "serving its stored records",
                    )
                )
            path = target.state_dir / DB_NAME
            if not path.exists():
                conditions.append(
                    _condition(
                        "RecordsAvailable",
                        False,
                        "NoStoreYet",
                        f"{target.kind}/{target.name} has not written records yet",
                    )
                )
                continue
            try:
                result = self.query(_reader(path), q, [p for p in dns_stores if p.exists()])
            except sqlite3.Error as exc:
                conditions.append(
                    _condition(
                        "RecordsAvailable",
                        False,
                        "StoreUnreadable",
                        f"{target.kind}/{target.name}: {exc}",
                    )
                )
                continue
            if "aggregates" in result:
                aggregates.append(
                    {"observer": f"{target.kind}/{target.name}", **result["aggregates"]}
                )
            for item in result.get("items", []):
                item["observer"] = f"{target.kind}/{target.name}"
                items.append(item)
        if q.agg:
            resp.media = self.answer([], conditions, aggregates=aggregates)
            return
        if len(targets) > 1:
            if q.after is not None:
                items.sort(key=lambda i: (i["observer"], i["id"]))
            else:
                items.sort(key=lambda i: i[self.time_key], reverse=True)
        resp.media = self.answer(items[: q.limit], conditions)


def _flows(conn: sqlite3.Connection, q: Query, dns: list[Path]) -> dict[str, Any]:
    return records.query_flows(conn, q, [_reader(p) for p in dns])


def _dns(conn: sqlite3.Connection, q: Query, dns: list[Path]) -> dict[str, Any]:
    return records.query_dns(conn, q)


def _firewall(conn: sqlite3.Connection, q: Query, dns: list[Path]) -> dict[str, Any]:
    return records.query_firewall(conn, q)


class FlowsRoute(RecordsRoute):
    daemon_kind = "flow-log"
    resource_kind = "FlowLog"
    endpoint = "traffic-flows"
    list_kind = "TrafficFlowList"
    time_key = "start"

    def __init__(self, serve: ServeView) -> None:
        super().__init__(serve, _flows)


class DnsRoute(RecordsRoute):
    daemon_kind = "dns-query-log"
    resource_kind = "DNSQueryLog"
    endpoint = "dns-queries"
    list_kind = "DNSQueryList"
    time_key = "time"

    def __init__(self, serve: ServeView) -> None:
        super().__init__(serve, _dns)


class FirewallRoute(RecordsRoute):
    daemon_kind = "firewall-log"
    resource_kind = "FirewallLog"
    endpoint = "firewall-logs"
    list_kind = "FirewallLogList"
    time_key = "time"

    def __init__(self, serve: ServeView) -> None:
        super().__init__(serve, _firewall)


class ConnectionsRoute(_Base):
    """The live conntrack table, while a FlowLog is configured."""

    daemon_kind = "flow-log"
    resource_kind = "FlowLog"
    endpoint = "connections"
    list_kind = "ConnectionList"

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.refuse_on_status_socket()
        q = parse_query(self.endpoint, dict(req.params))
        targets: list[DaemonTarget] = self.serve.daemons(self.daemon_kind)
        if not targets:
            resp.media = self.answer([], [no_observer(self.resource_kind)])
            return
        try:
            out = live_connections(q)
        except (OSError, TimeoutError) as exc:
            raise falcon.HTTPServiceUnavailable(
                title="Conntrack unavailable", description=f"cannot dump the conntrack table: {exc}"
            ) from None
        resp.media = self.answer(out.pop("items"), [], **out)


def live_connections(q: Query) -> dict[str, Any]:
    family = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}.get(q.family or "", socket.AF_UNSPEC)
    proto = ct.PROTOCOL_NUMBERS.get(q.protocol) if q.protocol else None

    def match(e: ct.CtEntry) -> bool:
        if q.state is not None and e.tcp_state != q.state:
            return False
        r = e.reply
        addresses = (e.orig.src, e.orig.dst, *((r.src, r.dst) if r else ()))
        ports = (e.orig.sport, e.orig.dport, *((r.sport, r.dport) if r else ()))
        return (q.address is None or q.address in addresses) and (q.port is None or q.port in ports)

    needs_match = q.state is not None or q.address is not None or q.port is not None
    # A protocol filter needs a family in the kernel's CTA_FILTER: without
    # one, ask for each family in turn.
    families = [family] if family or proto is None else [socket.AF_INET, socket.AF_INET6]
    items: list[dict[str, Any]] = []
    scanned = 0
    truncated = False
    seconds = 0.0
    for fam in families:
        left = q.limit - len(items)
        if left <= 0:
            truncated = True
            break
        result = conntrack.dump(
            family=fam,
            mark=q.mark,
            protocol=proto,
            limit=left,
            match=match if needs_match else None,
            deadline=time.monotonic() + DUMP_DEADLINE,
            patterns=ct.prefilter(address=q.address, port=q.port, state=q.state),
        )
        scanned += result.scanned
        seconds += result.seconds
        truncated = truncated or result.truncated
        items.extend(e.to_json() for e in result.entries)
    out: dict[str, Any] = {
        "items": items,
        "more": truncated,
        "scanned": scanned,
        "dumpSeconds": round(seconds, 6),
    }
    if q.count:
        out["count"] = conntrack.table_count()
    return out
