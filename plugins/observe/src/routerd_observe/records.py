"""The observers' tables, how records become rows, and how rows are queried.

Every list is newest first and bounded by ``limit``; ``after=<id>`` lists
the records after that id oldest first (what ``--follow`` uses). Filters run
in SQLite through indexes; the queries are hand-written so that the plan
stays one index range scan (``EXPLAIN QUERY PLAN`` in the tests).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from routerd.timefmt import rfc3339

from routerd_observe.dns import DnsRecord
from routerd_observe.flows import FlowRecord
from routerd_observe.query import Query
from routerd_observe.store import Table

# -- flows ---------------------------------------------------------------------
FLOW_COLUMNS = (
    "uid", "start", "end", "family", "protocol", "client", "client_port", "peer", "peer_port",
    "nat_address", "nat_port", "bytes_out", "bytes_in", "packets_out", "packets_in", "state",
    "end_reason", "counter_resets", "mark", "conntrack_id", "updated",
)  # fmt: skip
_UPDATE = ", ".join(f'"{c}" = excluded."{c}"' for c in FLOW_COLUMNS if c != "uid")
FLOWS = Table(
    name="flows",
    schema=(
        """CREATE TABLE IF NOT EXISTS flows (
            id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE, start REAL NOT NULL, "end" REAL,
            family TEXT, protocol TEXT, client TEXT, client_port INTEGER, peer TEXT,
            peer_port INTEGER, nat_address TEXT, nat_port INTEGER, bytes_out INTEGER,
            bytes_in INTEGER, packets_out INTEGER, packets_in INTEGER, state TEXT,
            end_reason TEXT, counter_resets INTEGER, mark INTEGER, conntrack_id INTEGER,
            updated REAL)""",
        "CREATE INDEX IF NOT EXISTS flows_start ON flows(start)",
        "CREATE INDEX IF NOT EXISTS flows_client ON flows(client, start)",
        "CREATE INDEX IF NOT EXISTS flows_peer ON flows(peer, start)",
        # "Active since": ended after it or still open (an OR of two index ranges).
        'CREATE INDEX IF NOT EXISTS flows_end ON flows("end")',
    ),
    insert=(
        "INSERT INTO flows ("
        + ", ".join(f'"{c}"' for c in FLOW_COLUMNS)
        + ") VALUES ("
        + ", ".join("?" * len(FLOW_COLUMNS))
        + f") ON CONFLICT(uid) DO UPDATE SET {_UPDATE}"
    ),
    time_column="start",
)


def flow_row(r: FlowRecord, now: float) -> tuple[Any, ...]:
    return (
        r.uid, r.start, r.end, r.family, r.protocol, r.client, r.client_port, r.peer,
        r.peer_port, r.nat_address, r.nat_port, r.bytes_out, r.bytes_in, r.packets_out,
        r.packets_in, r.state, r.end_reason, r.counter_resets, r.mark, r.conntrack_id, now,
    )  # fmt: skip


def _flow_item(row: sqlite3.Row) -> dict[str, Any]:
    end = row["end"]
    return {
        "id": row["id"],
        "start": rfc3339(row["start"]),
        "end": rfc3339(end) if end is not None else None,
        "durationSeconds": round(end - row["start"], 6) if end is not None else None,
        "open": end is None,
        "family": row["family"],
        "protocol": row["protocol"],
        "client": row["client"],
        "clientPort": row["client_port"],
        "peer": row["peer"],
        "peerPort": row["peer_port"],
        "peerName": None,
        "natAddress": row["nat_address"],
        "natPort": row["nat_port"],
        "bytesOut": row["bytes_out"],
        "bytesIn": row["bytes_in"],
        "packetsOut": row["packets_out"],
        "packetsIn": row["packets_in"],
        "state": row["state"],
        "endReason": row["end_reason"],
        "counterResets": row["counter_resets"],
        "mark": row["mark"],
        "conntrackId": row["conntrack_id"],
    }


def _flow_where(q: Query, peers: list[str] | None, *, scan: bool = False) -> tuple[str, list[Any]]:
    """The WHERE clause of a flow query.

    ``scan``: the query reads every match (aggregates), so "active since"
    goes through the ``end`` index as a set of row ids; a newest-first page
    instead walks the start index and stops at ``limit``.
    """
    where: list[str] = []
    args: list[Any] = []
    if q.since is not None:
        if scan:
            where.append(
                'rowid IN (SELECT rowid FROM flows WHERE "end" >= ? '
                'UNION ALL SELECT rowid FROM flows WHERE "end" IS NULL)'
            )
        else:
            where.append('("end" IS NULL OR "end" >= ?)')
        args.append(q.since)
    if q.until is not None:
        where.append("start <= ?")
        args.append(q.until)
    if q.client is not None:
        where.append("client = ?")
        args.append(q.client)
    if q.peer is not None:
        where.append("peer = ?")
        args.append(q.peer)
    if peers is not None:
        where.append(f"peer IN ({', '.join('?' * len(peers))})" if peers else "0")
        args.extend(peers)
    if q.protocol is not None:
        where.append("protocol = ?")
        args.append(q.protocol)
    if q.after is not None:
        where.append("id > ?")
        args.append(q.after)
    return (" WHERE " + " AND ".join(where)) if where else "", args


def query_flows(
    conn: sqlite3.Connection, q: Query, names: list[sqlite3.Connection]
) -> dict[str, Any]:
    """Flows (or aggregates) matching ``q``; names joined from a DNS store."""
    conn.row_factory = sqlite3.Row
    peers = None
    if q.peer_suffix is not None:
        peers = _suffix_addresses(q.peer_suffix, names)
    if q.agg:
        where, args = _flow_where(q, peers, scan=True)
        return {"aggregates": _flow_aggregates(conn, where, args, names)}
    where, args = _flow_where(q, peers)
    if q.after is not None:
        sql = f"SELECT * FROM flows{where} ORDER BY id LIMIT ?"
    else:
        sql = f"SELECT * FROM flows{where} ORDER BY start DESC LIMIT ?"
    items = [_flow_item(r) for r in conn.execute(sql, [*args, q.limit])]
    if names:
        for item in items:
            item["peerName"] = peer_name(names, item["client"], item["peer"])
    return {"items": items}


def _suffix_addresses(suffix: str, names: list[sqlite3.Connection]) -> list[str]:
    """Peer addresses for ``peer-suffix``: an address itself, or what DNS answered for names under it."""
    import ipaddress

    try:
        return [str(ipaddress.ip_address(suffix))]
    except ValueError:
        pass
    rev = suffix[::-1]
    found: set[str] = set()
    for conn in names:
        rows = conn.execute(
            "SELECT DISTINCT address FROM dns_addr WHERE qname_rev = ? OR "
            "(qname_rev >= ? AND qname_rev < ?) LIMIT 4096",
            (rev, rev + ".", rev + "/"),
        )
        found.update(r[0] for r in rows)
    return sorted(found)[:4096]


def peer_name(names: list[sqlite3.Connection], client: str, peer: str) -> str | None:
    """The name ``client`` looked up that answered ``peer`` (newest), else anyone's."""
    for sql, args in (
        (
            "SELECT qname FROM dns_addr WHERE address = ? AND client = ? "
            "ORDER BY time DESC LIMIT 1",
            (peer, client),
        ),
        ("SELECT qname FROM dns_addr WHERE address = ? ORDER BY time DESC LIMIT 1", (peer,)),
    ):
        for conn in names:
            row = conn.execute(sql, args).fetchone()
            if row is not None:
                return str(row[0])
    return None


def _flow_aggregates(
    conn: sqlite3.Connection, where: str, args: list[Any], names: list[sqlite3.Connection]
) -> dict[str, Any]:
    def group(column: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = conn.execute(
            f"SELECT {column} AS k, count(*) AS flows, sum(bytes_out) AS bo, sum(bytes_in) AS bi, "
            f"sum(packets_out) AS po, sum(packets_in) AS pi FROM flows{where} "
            f"GROUP BY {column} ORDER BY (coalesce(bo, 0) + coalesce(bi, 0)) DESC LIMIT ?",
            [*args, limit],
        )
        return [
            {
                "key": r["k"],
                "flows": r["flows"],
                "bytesOut": r["bo"] or 0,
                "bytesIn": r["bi"] or 0,
                "packetsOut": r["po"] or 0,
                "packetsIn": r["pi"] or 0,
            }
            for r in rows
        ]

    by_peer = group("peer")
    if names:
        for g in by_peer:
            g["name"] = peer_name(names, "", g["key"]) if g["key"] else None
    (total,) = conn.execute(f"SELECT count(*) FROM flows{where}", args).fetchone()
    return {
        "flows": total,
        "byClient": group("client"),
        "byPeer": by_peer,
        "byProtocol": group("protocol"),
    }


# -- DNS -------------------------------------------------------------------------
DNS_COLUMNS = (
    "time", "client", "client_port", "server", "server_port", "transport", "dns_id", "qname",
    "qname_rev", "qtype", "rcode", "answers", "addresses", "latency", "truncated", "interface",
)  # fmt: skip
DNS = Table(
    name="dns",
    schema=(
        """CREATE TABLE IF NOT EXISTS dns (
            id INTEGER PRIMARY KEY, time REAL NOT NULL, client TEXT, client_port INTEGER,
            server TEXT, server_port INTEGER, transport TEXT, dns_id INTEGER, qname TEXT,
            qname_rev TEXT, qtype TEXT, rcode TEXT, answers TEXT, addresses TEXT, latency REAL,
            truncated INTEGER, interface TEXT)""",
        "CREATE INDEX IF NOT EXISTS dns_time ON dns(time)",
        "CREATE INDEX IF NOT EXISTS dns_client ON dns(client, time)",
        "CREATE INDEX IF NOT EXISTS dns_qname ON dns(qname_rev, time)",
        """CREATE TABLE IF NOT EXISTS dns_addr (
            dns_row INTEGER, address TEXT, client TEXT, time REAL, qname TEXT, qname_rev TEXT)""",
        "CREATE INDEX IF NOT EXISTS dns_addr_address ON dns_addr(address, client, time)",
        "CREATE INDEX IF NOT EXISTS dns_addr_qname ON dns_addr(qname_rev)",
        "CREATE INDEX IF NOT EXISTS dns_addr_row ON dns_addr(dns_row)",
        # Every A/AAAA answer, for naming flows' peers; kept with its query.
        """CREATE TRIGGER IF NOT EXISTS dns_addr_insert AFTER INSERT ON dns
           WHEN NEW.addresses IS NOT NULL AND NEW.addresses != '[]' BEGIN
             INSERT INTO dns_addr SELECT NEW.id, value, NEW.client, NEW.time, NEW.qname,
               NEW.qname_rev FROM json_each(NEW.addresses);
           END""",
        """CREATE TRIGGER IF NOT EXISTS dns_addr_delete AFTER DELETE ON dns BEGIN
             DELETE FROM dns_addr WHERE dns_row = OLD.id;
           END""",
    ),
    insert=(
        "INSERT INTO dns ("
        + ", ".join(DNS_COLUMNS)
        + ") VALUES ("
        + ", ".join("?" * len(DNS_COLUMNS))
        + ")"
    ),
    time_column="time",
)


def dns_row(r: DnsRecord) -> tuple[Any, ...]:
    return (
        r.time, r.client, r.client_port, r.server, r.server_port, r.transport, r.dns_id,
        r.qname, r.qname[::-1], r.qtype, r.rcode, json.dumps(list(r.answers)),
        json.dumps(r.addresses()), r.latency, int(r.truncated), r.interface,
    )  # fmt: skip


def _dns_item(row: sqlite3.Row) -> dict[str, Any]:
    latency = row["latency"]
    return {
        "id": row["id"],
        "time": rfc3339(row["time"]),
        "client": row["client"],
        "clientPort": row["client_port"],
        "server": row["server"],
        "serverPort": row["server_port"],
        "transport": row["transport"],
        "dnsId": row["dns_id"],
        "qname": row["qname"],
        "qtype": row["qtype"],
        "rcode": row["rcode"],
        "answered": row["rcode"] is not None,
        "answers": json.loads(row["answers"]),
        "latencyMs": round(latency * 1000, 3) if latency is not None else None,
        "truncated": bool(row["truncated"]),
        "interface": row["interface"],
    }


def _dns_where(q: Query) -> tuple[str, list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if q.since is not None:
        where.append("time >= ?")
        args.append(q.since)
    if q.until is not None:
        where.append("time <= ?")
        args.append(q.until)
    if q.client is not None:
        where.append("client = ?")
        args.append(q.client)
    if q.qname_suffix is not None:
        rev = q.qname_suffix[::-1]
        where.append("(qname_rev = ? OR (qname_rev >= ? AND qname_rev < ?))")
        args.extend([rev, rev + ".", rev + "/"])
    if q.rcode is not None:
        if q.rcode == "NONE":
            where.append("rcode IS NULL")
        else:
            where.append("rcode = ?")
            args.append(q.rcode)
    if q.after is not None:
        where.append("id > ?")
        args.append(q.after)
    return (" WHERE " + " AND ".join(where)) if where else "", args


def query_dns(conn: sqlite3.Connection, q: Query) -> dict[str, Any]:
    conn.row_factory = sqlite3.Row
    where, args = _dns_where(q)
    if q.agg:
        return {"aggregates": _dns_aggregates(conn, where, args)}
    order = "id" if q.after is not None else "time DESC"
    rows = conn.execute(f"SELECT * FROM dns{where} ORDER BY {order} LIMIT ?", [*args, q.limit])
    return {"items": [_dns_item(r) for r in rows]}


def _dns_aggregates(conn: sqlite3.Connection, where: str, args: list[Any]) -> dict[str, Any]:
    def group(expr: str, limit: int = 100) -> list[dict[str, Any]]:
        rows = conn.execute(
            f"SELECT {expr} AS k, count(*) AS n FROM dns{where} GROUP BY k ORDER BY n DESC LIMIT ?",
            [*args, limit],
        )
        return [{"key": r["k"], "queries": r["n"]} for r in rows]

    (total,) = conn.execute(f"SELECT count(*) FROM dns{where}", args).fetchone()
    lat_where = where + (" AND " if where else " WHERE ") + "latency IS NOT NULL"
    latencies = [
        r[0] for r in conn.execute(f"SELECT latency FROM dns{lat_where} ORDER BY latency", args)
    ]

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return round(float(latencies[min(len(latencies) - 1, int(p * len(latencies)))]) * 1000, 3)

    # The registrable-looking suffix: the last two labels.
    suffix = (
        "CASE WHEN instr(substr(qname_rev, instr(qname_rev, '.') + 1), '.') = 0 THEN qname ELSE "
        "reverse_2(qname_rev) END"
    )
    conn.create_function("reverse_2", 1, _last_two_labels, deterministic=True)
    return {
        "queries": total,
        "byRcode": group("coalesce(rcode, 'UNANSWERED')"),
        "byClient": group("client"),
        "bySuffix": group(suffix),
        "latencyMs": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)},
    }


def _last_two_labels(rev: str | None) -> str | None:
    if rev is None:
        return None
    parts = rev.split(".")
    return ".".join(parts[:2])[::-1]


# -- firewall logs ---------------------------------------------------------------
FW_COLUMNS = (
    "time", "prefix", "action", "hook", "indev", "outdev", "family", "protocol", "src", "dst",
    "sport", "dport", "tcp_flags", "icmp_type", "icmp_code", "length", "mark", "grp", "truncated",
)  # fmt: skip
FIREWALL = Table(
    name="fwlog",
    schema=(
        """CREATE TABLE IF NOT EXISTS fwlog (
            id INTEGER PRIMARY KEY, time REAL NOT NULL, prefix TEXT, action TEXT, hook TEXT,
            indev TEXT, outdev TEXT, family TEXT, protocol TEXT, src TEXT, dst TEXT,
            sport INTEGER, dport INTEGER, tcp_flags TEXT, icmp_type INTEGER, icmp_code INTEGER,
            length INTEGER, mark INTEGER, grp INTEGER, truncated INTEGER)""",
        "CREATE INDEX IF NOT EXISTS fwlog_time ON fwlog(time)",
        "CREATE INDEX IF NOT EXISTS fwlog_action ON fwlog(action, time)",
        "CREATE INDEX IF NOT EXISTS fwlog_src ON fwlog(src, time)",
        "CREATE INDEX IF NOT EXISTS fwlog_dst ON fwlog(dst, time)",
    ),
    insert=(
        "INSERT INTO fwlog ("
        + ", ".join(FW_COLUMNS)
        + ") VALUES ("
        + ", ".join("?" * len(FW_COLUMNS))
        + ")"
    ),
    time_column="time",
)


def _fw_item(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "time": rfc3339(row["time"]),
        "prefix": row["prefix"],
        "action": row["action"],
        "hook": row["hook"],
        "in": row["indev"],
        "out": row["outdev"],
        "family": row["family"],
        "protocol": row["protocol"],
        "src": row["src"],
        "dst": row["dst"],
        "sport": row["sport"],
        "dport": row["dport"],
        "tcpFlags": row["tcp_flags"],
        "icmpType": row["icmp_type"],
        "icmpCode": row["icmp_code"],
        "length": row["length"],
        "mark": row["mark"],
        "group": row["grp"],
        "truncated": bool(row["truncated"]),
    }


def query_firewall(conn: sqlite3.Connection, q: Query) -> dict[str, Any]:
    conn.row_factory = sqlite3.Row
    where: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("action", q.action),
        ("src", q.src),
        ("dst", q.dst),
        ("protocol", q.protocol),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if q.prefix is not None:
        # A prefix match on the rule's prefix, case-sensitive like nft's.
        where.append("substr(prefix, 1, ?) = ?")
        args.extend([len(q.prefix), q.prefix])
    if q.since is not None:
        where.append("time >= ?")
        args.append(q.since)
    if q.until is not None:
        where.append("time <= ?")
        args.append(q.until)
    if q.after is not None:
        where.append("id > ?")
        args.append(q.after)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    order = "id" if q.after is not None else "time DESC"
    rows = conn.execute(f"SELECT * FROM fwlog{clause} ORDER BY {order} LIMIT ?", [*args, q.limit])
    return {"items": [_fw_item(r) for r in rows]}
