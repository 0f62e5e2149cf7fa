"""The SQLite event store: batches with cursors, glob queries, prompt close."""

from __future__ import annotations

import logging
from pathlib import Path
import sqlite3
import time
from typing import Any

import pytest
from routerd.model import Event
from routerd.serve.store import Batch
from routerd.serve.store import EventStore
from routerd.serve.store import StatusUpdate
from routerd.testing.daemon import poll


def ev(cursor: int, topic: str, name: str = "a") -> Event:
    attrs = {"resource.kind": "HealthCheck", "resource.name": name, "daemon.kind": "healthcheck"}
    return Event(cursor, 1_795_000_000.0 + cursor, topic, "info", "R", f"m{cursor}", attrs)


def test_batches_queries_and_prompt_close(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "routerd.db")
    store.start()
    topics = [
        "routerd.healthcheck.state.healthy",
        "routerd.healthcheck.probe.failed",
        "routerd.daemon.command.received",
    ]
    events = [ev(i, topics[i % 3], "a" if i % 2 else "b") for i in range(1, 61)]
    assert store.submit(Batch("healthcheck/a", 0, 30, events[:30])).wait(5)
    commit = store.submit(Batch("healthcheck/a", 0, 60, events[20:]))  # overlaps: 21..30 again
    assert commit.wait(5) and commit.ok
    assert store.count() == 60 and store.duplicates == 10
    assert store.cursor_of("healthcheck/a") == (0, 60)

    newest = store.query(topics=("routerd.healthcheck.*.*",), limit=5)
    assert [e["cursor"] for e in newest] == ["60", "58", "57", "55", "54"]
    assert all(e["topic"].startswith("routerd.healthcheck.") for e in newest)
    after = store.query(topics=("routerd.**.healthy", "routerd.daemon.command.received"), since=50)
    assert [int(e["id"]) for e in after] == sorted(int(e["id"]) for e in after)
    assert {e["topic"] for e in after} == {topics[0], topics[2]}
    assert store.query(topics=("routerd.nothing.*",)) == []
    by_resource = store.query(resource=("HealthCheck", "b"), limit=100)
    assert len(by_resource) == 30 and all(
        e["attributes"]["resource.name"] == "b" for e in by_resource
    )
    since = int(store.query(limit=11)[-1]["id"])  # the id of cursor 50
    rows, cursor = store.wait(since, 0.2, topics=("routerd.daemon.**",))
    assert [e["cursor"] for e in rows] == ["53", "56", "59"]
    assert cursor == int(rows[-1]["id"])
    t0 = time.monotonic()
    assert store.wait(cursor, 0.3, topics=("routerd.daemon.**",)) == ([], store.head_id)
    assert time.monotonic() - t0 >= 0.29, "waits its time when nothing matches"

    # A reset starts a new epoch: the same cursors are stored again, not dropped.
    assert store.submit(
        Batch("healthcheck/a", 1, 3, [ev(1, topics[0]), ev(2, topics[0]), ev(3, topics[0])])
    ).wait(5)
    assert store.count() == 63 and store.cursor_of("healthcheck/a") == (1, 3)

    t0 = time.monotonic()
    store.close()
    assert time.monotonic() - t0 < 2, (
        "close() returns once the writer has finished, not at its timeout"
    )


def status(name: str, phase: str) -> StatusUpdate:
    return StatusUpdate(
        f"HealthCheck/{name}", "HealthCheck", name, "healthcheck", phase, "2026-11-24T10:00:00Z", {}
    )


def lock_writes(path: Path) -> sqlite3.Connection:
    """Another connection takes the write lock: the store's commits get "database is locked"."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


def store_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "routerd.store"]


def test_failing_commits_keep_batches_retry_and_count_only_commits(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="routerd.store")
    path = tmp_path / "routerd.db"
    store = EventStore(path, busy_timeout_ms=20, retry_first=0.02, retry_cap=0.1)
    store.start()
    assert store.submit(Batch("healthcheck/a", 0, 2, [ev(1, "t.a"), ev(2, "t.a")])).wait(5)
    blocker = lock_writes(path)
    commits = [
        store.submit(
            Batch("healthcheck/a", 0, 4, [ev(3, "t.new"), ev(4, "t.a")], [status("a", "Healthy")])
        ),
        store.submit(Batch("healthcheck/b", 0, 1, [ev(1, "t.b", "b")])),
    ]
    poll(lambda: store.write_errors >= 5, 10, "several failed attempts")
    health = store.health()
    assert health["state"] == "Degraded" and "locked" in health["lastError"], health
    assert health["pending"] == 3 and health["pendingWrites"] == 2 and health["dropped"] == 0
    assert health["degradedSince"] is not None
    assert not any(c.is_set() for c in commits), "nothing is reported stored before it is"
    assert store.inserted == 2 and store.head_id == 2
    assert store.count() == 2 and store.resources() == [], "readers go on while writes fail"
    assert store.cursor_of("healthcheck/a") == (0, 2)

    blocker.execute("ROLLBACK")
    blocker.close()
    assert all(c.wait(5) and c.ok for c in commits)
    health = store.health()
    assert health["state"] == "Ok" and health["pending"] == 0 and health["degradedSince"] is None
    assert store.inserted == store.count() == 5
    assert store.cursor_of("healthcheck/a") == (0, 4)
    assert [r["phase"] for r in store.resources()] == ["Healthy"]
    # The topic first seen in a rolled-back attempt is still findable by glob.
    assert [
        e["cursor"] for e in store.query(topics=("t.*",), limit=10) if e["topic"] == "t.new"
    ] == ["3"]
    lines = store_lines(caplog)
    assert len(lines) == 2, lines  # one when it degraded, one when it recovered
    assert "cannot commit" in lines[0] and "work again" in lines[1]
    store.close()


def test_pending_memory_is_bounded_and_close_releases_waiters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "routerd.db"
    store = EventStore(
        path, busy_timeout_ms=20, retry_first=0.02, retry_cap=0.1, max_pending_events=3
    )
    store.start()
    blocker = lock_writes(path)
    kept = store.submit(Batch("healthcheck/a", 0, 2, [ev(1, "t.a"), ev(2, "t.a")]))
    poll(lambda: store.health()["state"] == "Degraded", 10, "the store to degrade")
    over = store.submit(Batch("healthcheck/b", 0, 2, [ev(1, "t.b", "b"), ev(2, "t.b", "b")]))
    assert over.wait(5) and not over.ok, "past the bound a batch is dropped (fetched again later)"
    assert store.health()["dropped"] == 2 and store.health()["pending"] == 2
    assert not kept.is_set()
    t0 = time.monotonic()
    store.close()
    assert time.monotonic() - t0 < 2
    assert kept.is_set() and not kept.ok, "stopping releases a follower waiting on a commit"
    blocker.close()
    assert sum("dropping" in line for line in store_lines(caplog)) == 1


def test_a_unique_violation_falls_back_row_by_row(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "routerd.db")
    store.start()
    assert store.submit(Batch("healthcheck/a", 0, 3, [ev(1, "t"), ev(2, "t"), ev(3, "t")])).wait(5)
    assert store.submit(Batch("healthcheck/a", 1, 1, [ev(1, "t")])).wait(5)  # a reset
    # Epoch 0 again (the cursor floor is epoch 1's): cursors 2-3 exist, 4 is new.
    commit = store.submit(Batch("healthcheck/a", 0, 4, [ev(2, "t"), ev(3, "t"), ev(4, "t")]))
    assert commit.wait(5) and commit.ok
    assert store.count() == 5 and store.inserted == 5 and store.duplicates == 2
    assert store.head_id == max(int(e["id"]) for e in store.query(limit=10))
    store.close()


class TracedStore(EventStore):
    """Records the SQL the writer runs for each batch."""

    statements: list[str]

    def _write_batch(self, conn: sqlite3.Connection, batch: Batch, tally: Any) -> None:
        conn.set_trace_callback(self.statements.append)
        try:
            super()._write_batch(conn, batch, tally)
        finally:
            conn.set_trace_callback(None)


def test_batches_of_any_size_are_stored_in_order_with_their_ids(tmp_path: Path) -> None:
    # Multi-row INSERTs of 256, 128, ... 1 rows: every split keeps order and ids.
    store = TracedStore(tmp_path / "routerd.db")
    store.statements = []
    store.start()
    cursor = 0
    for size in (1, 255, 256, 257, 1000):
        events = [ev(cursor + i + 1, f"t.{(cursor + i) % 7}") for i in range(size)]
        cursor += size
        commit = store.submit(Batch("healthcheck/a", 0, cursor, events))
        assert commit.wait(5) and commit.ok
    rows = []
    since = 0
    while page := store.query(since=since, limit=1000):
        rows += page
        since = int(page[-1]["id"])
    assert [int(r["cursor"]) for r in rows] == list(range(1, cursor + 1))
    assert [int(r["id"]) for r in rows] == list(range(1, cursor + 1))
    assert [r["message"] for r in rows] == [f"m{c}" for c in range(1, cursor + 1)]
    assert rows[41]["attributes"]["resource.name"] == "a" and rows[41]["topic"] == "t.6"
    assert store.head_id == cursor and store.inserted == cursor
    store.close()
    # A few statements per batch, not one per row: sqlite3 gives up the GIL around
    # each, and beside a busy thread of serve every take-back waited (executemany
    # ran 1,769 statements here, and fell to 4,000 rows/s; docs/benchmarks.md).
    inserts = [s for s in store.statements if s.startswith("INSERT INTO events")]
    assert len(inserts) == 1 + 8 + 1 + 2 + 7, len(inserts)
