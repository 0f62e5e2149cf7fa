"""The rules engine as a durable consumer of a real SQLite event store (in process).

End to end through a real ``routerd serve`` (SIGKILL included): tests/test_rules_e2e.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
import sqlite3
import time
from typing import Any

import pytest
from routerd.config import ResourceConfig
from routerd.config import RouterConfig
from routerd.model import Event
from routerd.rules import RULES_API_VERSION
from routerd.rules.spec import DerivedEventSpec
from routerd.rules.spec import EventRuleSpec
from routerd.serve.rules import STATUS_EVERY
from routerd.serve.rules import RulesRunner
from routerd.serve.store import Batch
from routerd.serve.store import EventStore
from routerd.serve.store import StatusUpdate
from routerd.testing.daemon import poll

T0 = 1_767_225_600.0
UNHEALTHY = "routerd.healthcheck.state.unhealthy"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def config(*resources: ResourceConfig) -> RouterConfig:
    return RouterConfig("test", resources)


def event_rule(name: str, spec: dict[str, Any]) -> ResourceConfig:
    return ResourceConfig(
        RULES_API_VERSION, "EventRule", name, EventRuleSpec.model_validate(spec), "rules"
    )


def derived(name: str, spec: dict[str, Any]) -> ResourceConfig:
    return ResourceConfig(
        RULES_API_VERSION, "DerivedEvent", name, DerivedEventSpec.model_validate(spec), "rules"
    )


FLAPPING = event_rule(
    "flapping",
    {
        "pattern": {"window": {"match": UNHEALTHY, "threshold": 3, "within": "5m"}},
        "emit": {"topic": "routerd.rules.flapping"},
    },
)
SILENT = event_rule(
    "silent",
    {
        "pattern": {
            "absence": {
                "trigger": "routerd.healthcheck.probe.failed",
                "expected": "routerd.healthcheck.probe.succeeded",
                "within": "30s",
            }
        },
        "emit": {"topic": "routerd.rules.silent"},
    },
)
READY = derived(
    "ready",
    {
        "topic": "routerd.derived.ready",
        "inputs": [{"value": "${HealthCheck/internet.status.phase}", "equals": "Healthy"}],
    },
)


class Serve:
    """A store and a runner on one database file; ``restart`` keeps the file."""

    def __init__(self, path: Path, cfg: RouterConfig) -> None:
        self.path = path
        self.cfg = cfg
        self.clock = Clock()
        self.cursor = 0
        self.store: EventStore | None = None
        self.runner: RulesRunner | None = None
        #: serve's staleness of each resource, as the test sets it.
        self.stale: dict[str, dict[str, Any]] = {}

    def start(self, settle: float = 0.0) -> None:
        self.store = EventStore(self.path)
        self.store.start()
        self.runner = RulesRunner(
            self.store, clock=self.clock, settle=settle, grace=1.0, stale=self.stale.get
        )
        self.runner.configure(self.cfg)
        self.runner.start()
        poll(lambda: self.runner is not None and self.runner.commits > 0, 10, "the first commit")

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.stop()
            self.runner.join(10)
            assert not self.runner.is_alive()
        if self.store is not None:
            self.store.close()

    def daemon_events(self, *items: tuple[float, str]) -> None:
        events = []
        for t, topic in items:
            self.cursor += 1
            attrs = {
                "resource.kind": "HealthCheck",
                "resource.name": "internet",
                "daemon.kind": "healthcheck",
            }
            events.append(Event(self.cursor, T0 + t, topic, "info", "", "", attrs))
        assert self.store is not None
        assert self.store.submit(Batch("healthcheck/internet", 0, self.cursor, events)).wait(5)

    def status(self, phase: str) -> None:
        assert self.store is not None
        doc = {"phase": phase, "conditions": [], "observed": {}}
        up = StatusUpdate(
            "HealthCheck/internet", "HealthCheck", "internet", "healthcheck", phase, "", doc
        )
        assert self.store.submit(up).wait(5)

    def virtual(self) -> list[tuple[str, int, float]]:
        db = sqlite3.connect(self.path)
        try:
            rows = db.execute(
                "SELECT topic, cursor, time FROM events WHERE source = 'rules' ORDER BY id"
            ).fetchall()
        finally:
            db.close()
        return [(r[0], r[1], round(r[2] - T0, 3)) for r in rows]

    def consumed(self, count: int) -> None:
        poll(lambda: self.runner is not None and self.runner.consumed >= count, 10, "consumption")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    made: list[Serve] = []

    def make(*resources: ResourceConfig) -> Serve:
        s = Serve(tmp_path / "routerd.db", config(*resources))
        made.append(s)
        return s

    yield make
    for s in made:
        s.stop()


def test_virtual_events_are_stored_with_the_rule_status(serve: Any) -> None:
    s = serve(FLAPPING)
    s.start()
    s.daemon_events((0, UNHEALTHY), (10, UNHEALTHY), (20, UNHEALTHY))
    poll(lambda: s.virtual() == [("routerd.rules.flapping", 1, 20.0)], 10, "the virtual event")
    assert s.store is not None
    row = s.store.query(topics=("routerd.rules.*",), limit=1)[0]
    assert row["source"] == "rules"
    assert row["attributes"]["resource.kind"] == "EventRule"

    def fired() -> bool:
        status = s.store.resource("EventRule", "flapping") if s.store else None
        return status is not None and status["status"]["observed"]["fireCount"] == 1

    poll(fired, 5, "the rule's status (written at most every second)")
    status = s.store.resource("EventRule", "flapping")
    assert status is not None and status["phase"] == "Installed"


def test_a_fresh_database_starts_at_the_head(serve: Any, tmp_path: Path) -> None:
    s = serve(FLAPPING)
    # Events stored before the rules engine ever ran are history: not replayed.
    s.store = EventStore(s.path)
    s.store.start()
    s.daemon_events((0, UNHEALTHY), (1, UNHEALTHY), (2, UNHEALTHY))
    s.store.close()
    s.start()
    s.daemon_events((3, UNHEALTHY), (4, UNHEALTHY))
    s.consumed(2)
    assert s.virtual() == []
    s.daemon_events((5, UNHEALTHY))
    poll(lambda: len(s.virtual()) == 1, 10, "the first window after the head")


def test_a_restart_neither_repeats_nor_misses_and_keeps_windows(serve: Any) -> None:
    s = serve(FLAPPING, SILENT)
    s.start()
    s.daemon_events((0, UNHEALTHY), (10, UNHEALTHY), (20, UNHEALTHY))  # fires
    s.daemon_events((30, UNHEALTHY), (40, UNHEALTHY))  # two in the window...
    s.daemon_events((45, "routerd.healthcheck.probe.failed"))  # ...and a timer due at 75
    s.consumed(6)
    s.stop()
    # Stored while the engine is down (ingestion of a backlog after a restart).
    s.store = EventStore(s.path)
    s.store.start()
    s.daemon_events((50, UNHEALTHY), (100, "routerd.healthcheck.state.healthy"))
    s.store.close()
    s.start(settle=3600)  # the clock does not fire timers: only event time does
    poll(lambda: len(s.virtual()) == 3, 10, "the window across the restart and the timer")
    assert s.virtual() == [
        ("routerd.rules.flapping", 1, 20.0),
        ("routerd.rules.flapping", 2, 50.0),  # 30, 40 before the restart + 50 after
        ("routerd.rules.silent", 3, 75.0),  # the absence timer, by the backlog's event time
    ]
    s.stop()
    s.start()
    s.consumed(0)
    assert len(s.virtual()) == 3  # nothing published again


def test_timers_fire_by_the_clock_once_settled(serve: Any) -> None:
    s = serve(SILENT)
    s.start()
    s.daemon_events((0, "routerd.healthcheck.probe.failed"))
    s.consumed(1)
    s.clock.now = T0 + 30.5  # past the deadline, within the 1 s grace
    s.status("Healthy")  # wakes the engine
    assert s.virtual() == []
    s.clock.now = T0 + 31.5
    s.status("Healthy")
    poll(lambda: s.virtual() == [("routerd.rules.silent", 1, 30.0)], 10, "the timer")


def test_derived_events_follow_the_stored_status(serve: Any) -> None:
    s = serve(READY)
    s.start()
    s.status("Healthy")
    poll(lambda: [v[0] for v in s.virtual()] == ["routerd.derived.ready.asserted"], 10, "asserted")
    s.status("Unhealthy")
    poll(lambda: len(s.virtual()) == 2, 10, "retracted")
    assert s.virtual()[1][0] == "routerd.derived.ready.retracted"
    assert s.store is not None
    row = s.store.resource("DerivedEvent", "ready")
    assert row is not None and row["phase"] == "Retracted"
    s.stop()
    s.start()  # evaluated again at start: the same state, nothing published
    s.status("Unhealthy")
    s.consumed(0)
    assert len(s.virtual()) == 2
    s.status("Healthy")
    poll(lambda: len(s.virtual()) == 3, 10, "asserted again")


def test_reload_keeps_unchanged_rules_and_resets_changed_ones(serve: Any) -> None:
    s = serve(FLAPPING)
    s.start()
    s.daemon_events((0, UNHEALTHY), (1, UNHEALTHY))
    s.consumed(2)
    assert s.runner is not None
    s.runner.configure(config(FLAPPING, READY))  # flapping unchanged: keeps its two events
    s.daemon_events((2, UNHEALTHY))
    poll(lambda: len(s.virtual()) == 1, 10, "the window kept across the reload")
    changed = event_rule(
        "flapping",
        {
            "pattern": {"window": {"match": UNHEALTHY, "threshold": 2, "within": "5m"}},
            "emit": {"topic": "routerd.rules.flapping"},
        },
    )
    s.daemon_events((3, UNHEALTHY))
    s.consumed(4)
    s.runner.configure(config(changed))  # changed: starts empty (the event at 3 is gone)
    s.daemon_events((4, UNHEALTHY))
    s.consumed(5)
    assert len(s.virtual()) == 1
    s.daemon_events((5, UNHEALTHY))
    poll(lambda: len(s.virtual()) == 2, 10, "the changed rule")


def test_removing_a_rule_drops_its_state_and_status(serve: Any) -> None:
    s = serve(FLAPPING, SILENT)
    s.start()
    # It fires twice within a second: the second firing's status waits for the pacing...
    s.daemon_events((0, UNHEALTHY), (1, UNHEALTHY), (2, UNHEALTHY))
    poll(lambda: len(s.virtual()) == 1, 10, "the first virtual event")
    s.daemon_events((3, UNHEALTHY), (4, UNHEALTHY), (5, UNHEALTHY))
    poll(lambda: len(s.virtual()) == 2, 10, "the second virtual event")
    assert s.runner is not None
    s.runner.configure(config(SILENT))  # ...when it is removed
    s.daemon_events((6, "routerd.healthcheck.probe.failed"))
    s.consumed(7)

    def gone() -> bool:
        assert s.store is not None
        db = sqlite3.connect(s.path)
        try:
            keys = {k for (k,) in db.execute("SELECT key FROM rule_state")}
        finally:
            db.close()
        return s.store.resource("EventRule", "flapping") is None and keys == {"EventRule/silent"}

    poll(gone, 10, "the removed rule's state and status gone")
    # The paced status write comes due within STATUS_EVERY of the second firing; the
    # engine wakes for it by itself, and must not trip over the rule that is gone.
    due = time.monotonic() + STATUS_EVERY + 0.3
    poll(lambda: not s.runner.is_alive() or time.monotonic() > due, 10, "the pacing period")
    s.daemon_events((7, "routerd.healthcheck.probe.failed"))
    s.consumed(8)
    assert s.runner.is_alive()
    assert s.store is not None and s.store.resource("EventRule", "silent") is not None


def test_a_resource_going_stale_retracts_a_derived_event_without_any_commit(serve: Any) -> None:
    s = serve(READY)
    s.start()
    s.status("Healthy")
    poll(lambda: [v[0] for v in s.virtual()] == ["routerd.derived.ready.asserted"], 10, "asserted")
    # serve can no longer vouch for the status (its daemon stopped); the store does not change.
    s.stale["HealthCheck/internet"] = {
        "reason": "DaemonNotRunning",
        "message": "the daemon is Stopped",
        "since": None,
    }
    poll(lambda: len(s.virtual()) == 2, 10, "retracted on staleness alone")
    assert s.store is not None
    db = sqlite3.connect(s.path)
    try:
        (reason,) = db.execute(
            "SELECT reason FROM events WHERE source = 'rules' ORDER BY id DESC LIMIT 1"
        ).fetchone()
    finally:
        db.close()
    assert reason == "InputStale"
    row = s.store.resource("DerivedEvent", "ready")
    assert row is not None and row["phase"] == "Retracted"
    (cond,) = row["status"]["conditions"]
    assert cond["reason"] == "InputStale" and "DaemonNotRunning" in cond["message"]
    del s.stale["HealthCheck/internet"]  # current again: evaluated at once, asserts
    poll(lambda: len(s.virtual()) == 3, 10, "asserted when current again")
    assert s.virtual()[2][0] == "routerd.derived.ready.asserted"


def test_staleness_does_not_count_while_the_engine_settles_after_a_start(serve: Any) -> None:
    s = serve(READY)
    s.start()
    s.status("Healthy")
    poll(lambda: len(s.virtual()) == 1, 10, "asserted")
    s.stop()
    # A restart of serve: every follower has yet to read its daemon's status again.
    s.stale["HealthCheck/internet"] = {
        "reason": "NotRefreshed",
        "message": "no status read yet",
        "since": None,
    }
    s.start(settle=3600)
    assert s.runner is not None
    checks = s.runner.stale_checks
    poll(lambda: s.runner is not None and s.runner.stale_checks >= checks + 2, 10, "two checks")
    assert len(s.virtual()) == 1  # no flap: still Asserted
    assert s.store is not None
    row = s.store.resource("DerivedEvent", "ready")
    assert row is not None and row["phase"] == "Asserted"


class CountingRunner(RulesRunner):
    """Counts the rows the consumer reads from the store."""

    rows_read = 0

    def _read(self) -> list[tuple[Any, ...]]:
        rows = super()._read()
        self.rows_read += len(rows)
        return rows


def test_the_consumer_reads_only_its_input_not_its_own_virtual_events(tmp_path: Path) -> None:
    # Every input makes a virtual event: reading those back (they were evaluated when
    # made) doubled the rows the consumer read and decoded.
    every = event_rule(
        "every",
        {"pattern": {"any_of": [UNHEALTHY]}, "emit": {"topic": "routerd.rules.every"}},
    )
    store = EventStore(tmp_path / "routerd.db")
    store.start()
    runner = CountingRunner(store, settle=0.0)
    runner.configure(config(every))
    runner.start()
    try:
        poll(lambda: runner.commits > 0, 10, "the first commit")
        attrs = {"resource.kind": "HealthCheck", "resource.name": "a", "daemon.kind": "hc"}
        for n in range(1, 6):  # one at a time: each step's virtual event is stored before
            event = Event(n, T0 + n, UNHEALTHY, "info", "", "", dict(attrs))
            assert store.submit(Batch("healthcheck/a", 0, n, [event])).wait(5)
            poll(lambda n=n: runner.consumed_committed >= n, 10, f"event {n} consumed")
        assert len(store.query(topics=("routerd.rules.every",), limit=100)) == 5
        assert runner.rows_read == runner.consumed == 5
    finally:
        runner.stop()
        runner.join(10)
        store.close()
