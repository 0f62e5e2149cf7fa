"""The cursor file's high-water mark written off the emitter's path (``background_marks``).

Issue 11: a forked daemon's first event waited 3-12 ms for the ``fsync`` of
``events.cursor`` before the engine could go on. A daemon's event log now
writes the mark on a thread, ahead of need; an event the mark on disk does
not cover yet is held (neither in the file nor visible) until it is. Every
continuity guarantee of docs/decisions.md ("Persistence faults") still
holds: checked here in that mode, next to test_persistence_faults.py.
"""

from __future__ import annotations

from collections.abc import Callable
import errno
import json
import os
from pathlib import Path
import threading
import time
from typing import Any

import pytest
from routerd.config import load_resource
from routerd.daemon import eventlog as eventlog_module
from routerd.daemon.eventlog import CURSOR_LEASE
from routerd.daemon.eventlog import EventLog
from routerd.daemon.persistence import PersistenceHealth
from routerd.daemon.runtime import DaemonPaths
from routerd.daemon.runtime import DaemonRuntime
from routerd.daemon.statefile import atomic_write
from routerd.plugins import load_plugins
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config


class GatedMark:
    """``write_mark``: the calls listed in ``gated`` wait for :attr:`gate`, those in ``fail`` raise ENOSPC."""

    def __init__(self, gated: tuple[int, ...] = (), fail: tuple[int, ...] = ()) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.gated, self.fail = gated, fail
        self.calls = 0
        self.log_at_mark: list[bytes] = []  # the event log as it was when each mark was written

    def __call__(self, path: Path, data: bytes) -> None:
        self.calls += 1
        n = self.calls
        log = path.with_name("events.jsonl")
        self.log_at_mark.append(log.read_bytes() if log.exists() else b"")
        if n in self.gated:
            self.entered.set()
            assert self.gate.wait(10), "the test never opened the gate"
        if n in self.fail:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        atomic_write(path, data)


def make(path: Path, mark: Callable[[Path, bytes], None], **kw: Any) -> EventLog:
    log = EventLog(
        path / "events.jsonl",
        health=PersistenceHealth(retry_base=0.0, retry_cap=0.0),
        background_marks=True,
        write_mark=mark,
        **kw,
    )
    log.restore()
    return log


def reserved(path: Path) -> int:
    return int(json.loads((path / "events.cursor").read_text())["reserved"])


def file_cursors(path: Path) -> list[int]:
    data = (path / "events.jsonl").read_bytes()
    return [int(json.loads(line)["cursor"]) for line in data.splitlines()]


def visible(log: EventLog, since: int = 0) -> list[int]:
    return [e.cursor for e in log.query(since).events]


def test_an_event_above_the_mark_is_held_until_the_mark_is_on_disk(tmp_path: Path) -> None:
    mark = GatedMark(gated=(1,))
    log = make(tmp_path, mark)  # a fresh log: its first mark is being written
    assert mark.entered.wait(5)
    t0 = time.monotonic()
    first = log.append("t.a", reason="R")
    second = log.append("t.a", reason="R")
    assert time.monotonic() - t0 < 1.0, "the emitter does not wait for the fsync"
    assert (first.cursor, second.cursor) == (1, 2)
    assert visible(log) == [] and log.stats()["head"] == "0", "not readable before it is durable"
    assert log.query(0).cursor == 0, "a reader is not moved past what it cannot see"
    assert log.wait_shown(0.05) is False
    assert not (tmp_path / "events.jsonl").exists() or file_cursors(tmp_path) == []
    waiter = threading.Thread(target=lambda: results.append(log.wait(0, timeout=10)))
    results: list[Any] = []
    waiter.start()
    mark.gate.set()
    waiter.join(10)
    assert [e.cursor for e in results[0].events] == [1, 2], "a long-poll wakes when they show"
    assert log.wait_shown(1)
    assert file_cursors(tmp_path) == [1, 2]
    assert mark.log_at_mark[0] == b"", "the mark went to disk before any line"
    assert reserved(tmp_path) == CURSOR_LEASE
    log.close()


def test_the_next_mark_is_written_ahead_so_nothing_waits_in_steady_state(tmp_path: Path) -> None:
    mark = GatedMark(gated=(2,))
    log = make(tmp_path, mark)
    poll(lambda: (tmp_path / "events.cursor").exists(), 5, "the first mark")
    poll(lambda: log.stats()["head"] == "0" and mark.calls == 1, 5, "the first mark done")
    for _ in range(CURSOR_LEASE // 2):
        log.append("t.a", reason="R")
    assert mark.entered.wait(5), "half a lease before the end, the next mark is under way"
    for _ in range(CURSOR_LEASE // 2):  # up to the old mark: written and visible at once
        log.append("t.a", reason="R")
    assert visible(log, CURSOR_LEASE - 10) == list(range(CURSOR_LEASE - 9, CURSOR_LEASE + 1))
    over = log.append("t.a", reason="R")
    assert over.cursor == CURSOR_LEASE + 1 and visible(log, CURSOR_LEASE) == []
    mark.gate.set()
    assert [e.cursor for e in log.wait(CURSOR_LEASE, timeout=10).events] == [over.cursor]
    assert reserved(tmp_path) >= CURSOR_LEASE // 2 + CURSOR_LEASE
    log.close()


def test_an_event_the_mark_on_disk_covers_is_written_before_it_is_visible(
    tmp_path: Path,
) -> None:
    """While the next mark is written ahead of need, an event below the mark on
    disk is written at once, not after that fsync: a reader never sees an event
    a crash of the process would lose (DESIGN.md §6, "before it is visible")."""
    mark = GatedMark(gated=(2,))
    log = make(tmp_path, mark)
    for _ in range(CURSOR_LEASE // 2):
        log.append("t.a", reason="R")
    assert mark.entered.wait(5), "the next mark is under way (and stalls)"
    covered = [log.append("t.a", reason="R").cursor for _ in range(3)]
    assert covered[-1] <= reserved(tmp_path)
    assert visible(log, covered[0] - 1) == covered
    assert file_cursors(tmp_path) == list(range(1, covered[-1] + 1)), "visible, so written"
    mark.gate.set()
    log.close()
    assert file_cursors(tmp_path) == list(range(1, covered[-1] + 1))


def test_a_clean_restart_still_continues_without_a_gap(tmp_path: Path) -> None:
    log = make(tmp_path, GatedMark())
    for _ in range(5):
        log.append("t.a", reason="R")
    log.close()
    assert reserved(tmp_path) == 5, "a clean stop writes the mark down to the head"
    again = make(tmp_path, GatedMark())
    nxt = again.append("t.b", reason="R")
    assert nxt.cursor == 6
    assert [e.cursor for e in again.wait(5, timeout=10).events] == [6]
    assert again.query(5).reset is False
    again.close()


def test_a_crash_and_a_lost_log_never_reuse_a_cursor(tmp_path: Path) -> None:
    log = make(tmp_path, GatedMark())
    for _ in range(50):
        log.append("t.a", reason="R")
    poll(lambda: visible(log, 45) == [46, 47, 48, 49, 50], 5, "the events written")
    # A crash: no close(), and the log is lost; only the mark survives.
    (tmp_path / "events.jsonl").unlink()
    again = make(tmp_path, GatedMark())
    nxt = again.append("t.b", reason="R")
    assert nxt.cursor > 50, "consumers may hold 1..50"
    assert again.wait(40, timeout=10).reset is True
    again.close()


def test_a_mark_the_disk_refuses_shows_the_held_events_and_is_retried(tmp_path: Path) -> None:
    mark = GatedMark(gated=(1,), fail=(1,))
    log = make(tmp_path, mark)
    assert mark.entered.wait(5)
    held = [log.append("t.a", reason="R").cursor for _ in range(3)]
    assert visible(log) == []
    mark.gate.set()
    # Degraded, as for any write the disk refuses: visible first, kept in memory.
    poll(lambda: visible(log) == held, 5, "the held events shown")
    assert log.health.degraded and log.stats()["pending"] == 3
    assert not (tmp_path / "events.jsonl").exists() or file_cursors(tmp_path) == []
    assert log.flush(), "the retry writes the mark, then the lines"
    assert file_cursors(tmp_path) == held and reserved(tmp_path) >= 3
    assert not log.health.degraded
    log.close()


def test_close_waits_for_the_mark_and_writes_what_it_held(tmp_path: Path) -> None:
    mark = GatedMark(gated=(1,))
    log = make(tmp_path, mark)
    assert mark.entered.wait(5)
    for _ in range(3):
        log.append("t.a", reason="R")
    closer = threading.Thread(target=log.close)
    closer.start()
    closer.join(0.2)
    assert closer.is_alive(), "close waits for the mark in flight"
    mark.gate.set()
    closer.join(10)
    assert not closer.is_alive()
    assert file_cursors(tmp_path) == [1, 2, 3] and reserved(tmp_path) == 3
    again = make(tmp_path, GatedMark())
    assert again.append("t.b", reason="R").cursor == 4
    again.close()


@pytest.fixture
def gated_atomic_write(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """``events.cursor`` writes wait for the returned event (the fsync of a busy disk)."""
    gate = threading.Event()

    def slow(path: Path, data: bytes, mode: int = 0o640) -> None:
        if path.name == "events.cursor":
            assert gate.wait(10), "the test never opened the gate"
        atomic_write(path, data, mode)

    monkeypatch.setattr(eventlog_module, "atomic_write", slow)
    return gate


def test_a_daemon_does_not_wait_for_the_cursor_file_before_its_engine_goes_on(
    tmp_path: Path, gated_atomic_write: threading.Event
) -> None:
    """Before: the first event (``lifecycle.started``) wrote the mark with fsync inline."""
    plugins = load_plugins(allow={"healthcheck"})
    kind = plugins.kinds["healthcheck"]
    spec = {"protocol": "tcp", "target": "127.0.0.1", "port": 9, "interval": "1h"}
    config = write_config(tmp_path / "r.yaml", router_config(resource("HealthCheck", "a", spec)))
    res = load_resource(config, plugins, "a", kind)
    paths = DaemonPaths.default("healthcheck", "a", tmp_path / "run", tmp_path / "state")
    rt = DaemonRuntime(plugins, kind, config, res, paths)
    rt.open_storage()
    emitted = threading.Event()

    def emit() -> None:
        rt.emit("routerd.daemon.lifecycle.started", reason="Started", message="m")
        emitted.set()

    emitter = threading.Thread(target=emit, daemon=True)
    emitter.start()
    try:
        assert emitted.wait(2), "the emitter waited for the cursor file's fsync"
        assert rt.eventlog.query(0).events == [], "and nobody sees the event before it is durable"
    finally:
        gated_atomic_write.set()
        emitter.join(10)
    shown = rt.eventlog.wait(0, timeout=10).events
    assert [e.topic for e in shown] == ["routerd.daemon.lifecycle.started"]
    assert file_cursors(paths.state_dir) == [1]
    rt.eventlog.close()
    rt.persistence.stop()
