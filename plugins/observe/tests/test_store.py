"""The observers' store: batches, retention by age, count and size, queries, a full disk."""

from __future__ import annotations

from pathlib import Path
import sqlite3

import pytest
from routerd_observe import records
from routerd_observe.dns import DnsRecord
from routerd_observe.flows import FlowRecord
from routerd_observe.query import parse_query
from routerd_observe.store import ObserverStore
from routerd_observe.store import Retention


def _flow(
    i: int, start: float, client: str = "192.168.50.2", end: float | None = None
) -> FlowRecord:
    return FlowRecord(
        uid=f"u{i}",
        start=start,
        end=end if end is not None else start + 1,
        family="ipv4",
        protocol="tcp" if i % 2 else "udp",
        client=client,
        client_port=1000 + i,
        peer="198.51.100.2",
        peer_port=443,
        nat_address=None,
        nat_port=None,
        bytes_out=100 * i,
        bytes_in=1000 * i,
        packets_out=i,
        packets_in=i,
        state=None,
        end_reason="destroy",
        counter_resets=0,
        mark=0,
        conntrack_id=i,
    )


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _store(tmp_path: Path, retention: Retention, clock: Clock) -> ObserverStore:
    store = ObserverStore(
        tmp_path / "observe.db",
        records.FLOWS,
        retention,
        prune_every=3600,
        clock=clock,
        busy_ms=100,
    )
    store.start()
    return store


def test_rows_are_written_in_batches_and_upserted(tmp_path: Path) -> None:
    clock = Clock(10_000.0)
    store = _store(tmp_path, Retention(86400, 100_000, 1 << 30), clock)
    try:
        store.put([records.flow_row(_flow(i, 9000.0 + i, end=None), 9500.0) for i in range(1000)])
        assert store.flush()
        # The final record of a flow replaces its interim one.
        store.put([records.flow_row(_flow(5, 9005.0, end=9999.0), 9999.0)])
        assert store.flush()
        conn = store.reader()
        assert conn.execute("SELECT count(*) FROM flows").fetchone()[0] == 1000
        assert conn.execute("SELECT \"end\" FROM flows WHERE uid = 'u5'").fetchone()[0] == 9999.0
        assert store.written == 1001 and store.commits >= 2
    finally:
        store.close()


def test_retention_by_age_count_and_size(tmp_path: Path) -> None:
    clock = Clock(100_000.0)
    store = _store(tmp_path, Retention(max_age=3600, max_records=500, max_bytes=1 << 30), clock)
    try:
        old = [records.flow_row(_flow(i, 90_000.0 + i), 0) for i in range(300)]
        new = [records.flow_row(_flow(1000 + i, 99_000.0 + i), 0) for i in range(800)]
        store.put(old + new)
        assert store.flush()
        # The writer applies retention after its first commit.
        conn = store.reader()
        starts = [r[0] for r in conn.execute("SELECT start FROM flows ORDER BY start")]
        assert len(starts) == 500 and min(starts) == 99_300.0  # the oldest went first
        assert store.pruned == 600
        store.retention = Retention(3600, 500, max_bytes=1)  # over any size: 5 % go
        assert store.prune() == 25
    finally:
        store.close()


def test_a_store_that_cannot_write_keeps_rows_and_reports_it(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    store = _store(tmp_path, Retention(86400, 100_000, 1 << 30), clock)
    try:
        # Another connection holds the write lock longer than the busy timeout.
        blocker = sqlite3.connect(str(store.path), timeout=0)
        blocker.execute("BEGIN IMMEDIATE")
        store.put([records.flow_row(_flow(1, 900.0), 900.0)])
        assert not store.flush(timeout=1.0)
        assert store.state == "Degraded" and store.write_errors >= 1 and store.pending == 1
        assert "locked" in str(store.last_error)
        blocker.rollback()
        blocker.close()
        assert store.flush(timeout=10)
        assert store.state == "Ok" and store.written == 1
    finally:
        store.close()


def test_backlog_beyond_max_pending_is_dropped_and_counted(tmp_path: Path) -> None:
    store = ObserverStore(
        tmp_path / "o.db", records.FLOWS, Retention(86400, 100_000, 1 << 30), max_pending=10
    )
    accepted = store.put([records.flow_row(_flow(i, 1.0), 1.0) for i in range(25)])
    assert accepted == 10 and store.dropped["store-backlog"] == 15


@pytest.fixture
def flows_db(tmp_path: Path) -> sqlite3.Connection:
    clock = Clock(10_000.0)
    store = _store(tmp_path, Retention(86400, 100_000, 1 << 30), clock)
    rows = [
        records.flow_row(_flow(i, 1000.0 + i, client=f"192.168.50.{2 + i % 3}"), 0)
        for i in range(300)
    ]
    store.put(rows)
    assert store.flush()
    store.close()
    return sqlite3.connect(str(tmp_path / "observe.db"))


def test_flow_queries_use_the_indexes_and_filter(flows_db: sqlite3.Connection) -> None:
    q = parse_query("traffic-flows", {"client": "192.168.50.3", "limit": "5", "protocol": "tcp"})
    items = records.query_flows(flows_db, q, [])["items"]
    assert len(items) == 5 and all(
        i["client"] == "192.168.50.3" and i["protocol"] == "tcp" for i in items
    )
    assert [i["start"] for i in items] == sorted((i["start"] for i in items), reverse=True)
    plan = " ".join(
        str(tuple(r))
        for r in flows_db.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM flows WHERE client = ? ORDER BY start DESC LIMIT 5",
            ("x",),
        )
    )
    assert "flows_client" in plan and "TEMP B-TREE" not in plan
    after = records.query_flows(flows_db, parse_query("traffic-flows", {"after": "295"}), [])[
        "items"
    ]
    assert [i["id"] for i in after] == [296, 297, 298, 299, 300]
    agg = records.query_flows(flows_db, parse_query("traffic-flows", {"agg": "1"}), [])[
        "aggregates"
    ]
    assert agg["flows"] == 300 and len(agg["byClient"]) == 3
    assert sum(g["flows"] for g in agg["byProtocol"]) == 300


def test_dns_names_join_flows_and_peer_suffix(tmp_path: Path, flows_db: sqlite3.Connection) -> None:
    store = ObserverStore(
        tmp_path / "dns.db", records.DNS, Retention(86400, 100_000, 1 << 30), clock=Clock(1000.0)
    )
    store.start()
    answer = {"name": "cdn.example.test", "type": "A", "ttl": 60, "data": "198.51.100.2"}
    store.put(
        [
            records.dns_row(
                DnsRecord(
                    990.0,
                    "192.168.50.2",
                    5353,
                    "192.168.50.1",
                    53,
                    "udp",
                    1,
                    "www.example.test",
                    "A",
                    "NOERROR",
                    (answer,),
                    0.002,
                    False,
                    "lan0",
                )
            )
        ]
    )
    assert store.flush()
    names = [store.reader()]
    item = records.query_flows(
        flows_db, parse_query("traffic-flows", {"client": "192.168.50.2", "limit": "1"}), names
    )["items"][0]
    assert item["peerName"] == "www.example.test"
    by_suffix = records.query_flows(
        flows_db,
        parse_query("traffic-flows", {"peer-suffix": "example.test", "limit": "5000"}),
        names,
    )["items"]
    assert len(by_suffix) == 300
    none = records.query_flows(
        flows_db, parse_query("traffic-flows", {"peer-suffix": "ample.test"}), names
    )["items"]
    assert none == []  # a suffix matches whole labels only
    dns = records.query_dns(
        store.reader(), parse_query("dns-queries", {"qname-suffix": "example.test", "agg": "1"})
    )
    assert (
        dns["aggregates"]["queries"] == 1
        and dns["aggregates"]["bySuffix"][0]["key"] == "example.test"
    )
    # Retention of a query removes the addresses it answered.
    store.retention = Retention(60, 100_000, 1 << 30)
    store.clock = Clock(10_000.0)
    store.prune()
    assert store.reader().execute("SELECT count(*) FROM dns_addr").fetchone()[0] == 0
    store.close()
