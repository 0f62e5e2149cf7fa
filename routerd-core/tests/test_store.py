"""The SQLite event store: batches with cursors, glob queries, prompt close."""

from __future__ import annotations

from pathlib import Path
import time

from routerd.model import Event
from routerd.serve.store import Batch
from routerd.serve.store import EventStore


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
