"""Disk faults of a daemon's writers (hardening issue 8, classes 1 and 5).

Class 1: a full disk or a short write must not stop a daemon, lose an
accepted event or leave a torn line; the fault is a condition, and the
backlog is written when the disk takes it again. Tested with an injected
``os.write`` (short writes at chosen places) and on a real, small tmpfs
filled to the last byte, with a real daemon.

Class 5: a corrupt or lost event log must never make cursors go back, hide
intact events behind a bad line, or crash the daemon.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import errno
import itertools
import json
import logging
import os
from pathlib import Path
import threading
import time
from typing import Any

import pytest
from routerd.daemon.eventlog import EventLog
from routerd.daemon.persistence import PersistenceHealth
from routerd.testing.daemon import DaemonFactory
from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.tmpfs import fill
from routerd.testing.tmpfs import require_mount_prereqs
from routerd.testing.tmpfs import small_tmpfs


class Clock:
    def __init__(self) -> None:
        self.now = 1_795_000_000.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


class FlakyWrite:
    """An ``os.write`` that the test turns into a full disk, byte-exact."""

    def __init__(self) -> None:
        self.budget: int | None = None  # bytes still accepted; None: unlimited
        self.short_once: int | None = None  # accept only this many bytes, once
        self.calls = 0

    def __call__(self, fd: int, data: bytes | memoryview) -> int:
        self.calls += 1
        if self.short_once is not None:
            n, self.short_once = self.short_once, None
            return os.write(fd, bytes(data[:n]))
        if self.budget is None:
            return os.write(fd, data)
        if self.budget == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = os.write(fd, bytes(data[: self.budget]))
        self.budget -= n
        return n


def make(path: Path, write: Any = os.write, **kw: Any) -> EventLog:
    log = EventLog(
        path / "events.jsonl",
        clock=Clock(),
        health=PersistenceHealth(retry_base=0.0, retry_cap=0.0),
        write=write,
        **kw,
    )
    log.restore()
    return log


def fill_log(log: EventLog, n: int) -> None:
    for i in range(n):
        log.append("t.a", reason="R", message=str(i), attributes={"i": i})


def file_cursors(path: Path) -> list[int]:
    """Cursors of the file's lines; every line must parse (no torn line)."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "the file ends inside a line"
    return [int(json.loads(line)["cursor"]) for line in data.splitlines()]


# -- class 1: short writes and a refusing disk -------------------------------


def test_a_short_write_is_completed(tmp_path: Path) -> None:
    write = FlakyWrite()
    log = make(tmp_path, write)
    write.short_once = 7  # the kernel took 7 bytes; the rest goes in the next call
    fill_log(log, 3)
    assert file_cursors(tmp_path / "events.jsonl") == [1, 2, 3]
    assert log.stats()["pending"] == 0 and not log.health.degraded


def test_a_short_write_then_enospc_is_cut_back_and_flushed_later(tmp_path: Path) -> None:
    write = FlakyWrite()
    log = make(tmp_path, write)
    fill_log(log, 2)
    write.budget = 30  # half a line fits, then ENOSPC
    fill_log(log, 5)
    assert file_cursors(tmp_path / "events.jsonl") == [1, 2], "no torn line left behind"
    stats = log.stats()
    assert stats["pending"] == 5 and stats["committed"] == "2" and stats["head"] == "7"
    assert "ENOSPC" in stats["lastError"] and stats["degradedSince"] is not None
    assert log.health.degraded
    # Accepted events are readable at once, with contiguous cursors.
    assert [e.cursor for e in log.query(0).events] == [1, 2, 3, 4, 5, 6, 7]
    write.budget = None  # space is back
    assert log.flush() is True
    assert file_cursors(tmp_path / "events.jsonl") == [1, 2, 3, 4, 5, 6, 7]
    stats = log.stats()
    assert stats["pending"] == 0 and stats["writtenLate"] == 5 and stats["dropped"] == 0
    assert stats["degradedSince"] is None and not log.health.degraded
    log.close()
    again = make(tmp_path)
    assert again.head == 7 and again.torn_lines == 0 and again.restored == 7


def test_append_never_raises_and_the_next_append_retries(tmp_path: Path) -> None:
    write = FlakyWrite()
    log = make(tmp_path, write)
    write.budget = 0
    fill_log(log, 3)  # would have raised ENOSPC into the emitter
    write.budget = None
    log.append("t.b", reason="R")  # the backoff (0 here) has run out: it flushes
    assert file_cursors(tmp_path / "events.jsonl") == [1, 2, 3, 4]


def test_overflow_drops_the_oldest_counts_them_and_readers_get_reset(tmp_path: Path) -> None:
    write = FlakyWrite()
    log = make(tmp_path, write, ring_size=3, max_pending=4)
    fill_log(log, 2)
    write.budget = 0
    fill_log(log, 10)  # cursors 3..12; only 9..12 fit the queue
    stats = log.stats()
    assert stats["pending"] == 4 and stats["dropped"] == 6
    following = log.query(2)
    assert following.reset is True, "a reader crossing dropped events is told"
    assert [e.cursor for e in following.events] == [9, 10, 11, 12]
    assert log.query(9).reset is False, "past the gap nothing is missing"
    write.budget = None
    assert log.flush()
    assert file_cursors(tmp_path / "events.jsonl") == [1, 2, 9, 10, 11, 12]
    log.close()
    again = make(tmp_path, ring_size=3)
    assert again.query(2).reset is True, "the gap is remembered across a restart"
    assert again.query(9).reset is False


def test_one_log_line_per_state_change(caplog: pytest.LogCaptureFixture) -> None:
    health = PersistenceHealth(retry_base=0.0)
    changes: list[int] = []
    health.add_listener(lambda faults: changes.append(len(faults)))
    enospc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with caplog.at_level(logging.INFO, logger="routerd.persistence"):
        for _ in range(50):
            health.failed("event log", "/x/events.jsonl", enospc)
        health.failed("event log", "/x/events.cursor", enospc)  # same fault, other file
        health.failed("event log", "/x/events.jsonl", OSError(errno.EIO, "I/O error"))
        for _ in range(3):
            health.succeeded("event log")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3, lines
    assert "(ENOSPC)" in lines[0] and "(EIO)" in lines[1] and "writable again" in lines[2]
    assert changes == [1, 1, 0]
    assert health.episodes == 1 and health.recoveries == 1


def test_retry_thread_backs_off_until_the_writer_recovers() -> None:
    health = PersistenceHealth(retry_base=0.01, retry_cap=0.05)
    attempts: list[float] = []
    done = threading.Event()

    def retry() -> None:
        attempts.append(time.monotonic())
        if len(attempts) < 4:
            health.failed("w", "/x", OSError(errno.EIO, "I/O error"))
        else:
            health.succeeded("w")
            done.set()

    health.register("w", retry)
    health.start()
    try:
        health.failed("w", "/x", OSError(errno.EIO, "I/O error"))
        assert done.wait(5), "the retry thread never recovered the writer"
    finally:
        health.stop()
    assert not health.degraded and len(attempts) == 4
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[-1] >= 0.035, f"backoff grows: {gaps}"


# -- class 5: corrupt and lost logs ------------------------------------------


def test_cursors_never_go_back_when_the_log_is_emptied(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = make(tmp_path)
    fill_log(log, 50)
    log.close()
    (tmp_path / "events.jsonl").write_bytes(b"")  # zero length, state intact
    with caplog.at_level(logging.WARNING, logger="routerd.eventlog"):
        again = make(tmp_path)
    assert any("50 events are lost" in r.getMessage() for r in caplog.records)
    assert again.stats()["lostEvents"] == 50
    assert again.append("t.b", reason="R").cursor == 51, "not 1: consumers hold 1..50"
    held = again.query(30)
    assert held.reset is True and [e.cursor for e in held.events] == [51]
    assert again.query(51).reset is False


def test_cursors_never_go_back_after_a_crash_and_a_lost_log(tmp_path: Path) -> None:
    log = make(tmp_path)
    fill_log(log, 50)  # no close: a crash, the lease is still ahead
    (tmp_path / "events.jsonl").unlink()
    again = make(tmp_path)
    assert again.append("t.b", reason="R").cursor > 50
    assert again.query(40).reset is True


def test_a_clean_restart_continues_without_a_gap(tmp_path: Path) -> None:
    log = make(tmp_path)
    fill_log(log, 5)
    log.close()
    again = make(tmp_path)
    assert again.append("t.b", reason="R").cursor == 6
    assert again.query(5).reset is False


def _spliced(tmp_path: Path, insert_after: int, junk: bytes, total: int = 20) -> None:
    """A log of ``total`` events with ``junk`` after line ``insert_after``."""
    log = make(tmp_path)
    fill_log(log, total)
    log.close()
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines(keepends=True)
    data = b"".join(lines[:insert_after]) + junk + b"".join(lines[insert_after:])
    (tmp_path / "events.jsonl").write_bytes(data)


def _spike(cursor: int) -> bytes:
    event = {
        "cursor": str(cursor),
        "time": "2026-11-24T10:00:01.123456Z",
        "topic": "t.spike",
        "severity": "info",
        "reason": "R",
        "message": "",
        "attributes": {},
    }
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


@pytest.mark.parametrize("ring_size", [1000, 4], ids=["ring", "files"])
def test_a_cursor_far_ahead_does_not_hide_the_events_after_it(
    tmp_path: Path, ring_size: int
) -> None:
    _spliced(tmp_path, 10, _spike(900_000_000))
    log = make(tmp_path, ring_size=ring_size)
    assert log.head == 20 and log.out_of_order == 1
    assert [e.cursor for e in log.query(5).events] == list(range(6, 21))
    assert log.append("t.b", reason="R").cursor == 21


def test_a_cursor_far_ahead_at_the_end_is_beyond_the_high_water_mark(tmp_path: Path) -> None:
    _spliced(tmp_path, 20, _spike(900_000_000))
    log = make(tmp_path)
    assert log.head == 20 and log.out_of_order == 1
    assert log.append("t.b", reason="R").cursor == 21


@pytest.mark.parametrize("ring_size", [1000, 2], ids=["ring", "files"])
def test_a_nul_block_does_not_drop_the_intact_event_after_it(
    tmp_path: Path, ring_size: int
) -> None:
    _spliced(tmp_path, 5, b"\0" * 4096, total=8)  # NULs glued to event 6's line
    log = make(tmp_path, ring_size=ring_size)
    assert log.head == 8 and log.torn_lines == 1
    assert [e.cursor for e in log.query(0).events] == list(range(1, 9))


def test_a_torn_line_glued_to_the_next_event_resyncs(tmp_path: Path) -> None:
    _spliced(tmp_path, 3, b'{"cursor":"4","time":"2026-1', total=6)  # a torn copy of 4
    log = make(tmp_path, ring_size=2)
    assert [e.cursor for e in log.query(0).events] == [1, 2, 3, 4, 5, 6]
    assert log.torn_lines == 1


# -- real daemons -------------------------------------------------------------

SCRATCH = """
    from routerd import hookimpl, DaemonKind
    from routerd.config import SpecModel
    from routerd.daemon.engine import CommandOutcome, DaemonEngine

    class ScratchSpec(SpecModel):
        note: str = ""

    class Engine(DaemonEngine):
        def start(self, ctx):
            self.ctx, self.n = ctx, 0
            ctx.status.set_phase("Applied", "Started")

        def command(self, name, args):
            self.n += 1
            self.ctx.emit("routerd.scratch.note.written", reason="Written", n=self.n)
            try:
                self.ctx.state.save({"n": self.n})
                saved = True
            except OSError:
                saved = False
            return CommandOutcome(f"note {self.n}", {"n": self.n, "saved": saved})

    @hookimpl
    def routerd_register_daemon_kinds(register):
        register(DaemonKind(name="scratch", kind="Scratch", spec_model=ScratchSpec,
                            factory=lambda ctx: Engine()))
"""


@pytest.fixture
def scratch(
    fake_plugins: Callable[[str, str, str], None], routerd_daemon: DaemonFactory, tmp_path: Path
) -> Iterator[Callable[..., DaemonProcess]]:
    """Start ``routerd daemon scratch`` (a fake plugin) for resource ``s``."""
    fake_plugins("routerd-plugin-scratch", "rdscratch", SCRATCH)
    path = [str(tmp_path / "site"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {"ROUTERD_PLUGINS": "rdscratch", "PYTHONPATH": os.pathsep.join(path)}
    config = router_config(resource("Scratch", "s", {}))

    def start(**kw: Any) -> DaemonProcess:
        return routerd_daemon("scratch", config, "s", env=env, **kw)

    yield start


def _condition(d: DaemonProcess, type_: str) -> dict[str, Any] | None:
    for cond in d.resource_status()["conditions"]:
        if cond["type"] == type_:
            return dict(cond)
    return None


def test_events_jsonl_that_is_a_directory_is_one_clean_error(
    scratch: Callable[..., DaemonProcess], routerd_daemon: DaemonFactory
) -> None:
    state = routerd_daemon.state_dir / "scratch" / "s"
    (state / "events.jsonl").mkdir(parents=True)
    d = scratch(start=False)
    d.start(wait=False)
    code = d.wait_exit(15)
    out = [line for line in d.log_text().splitlines() if not line.startswith("--- start")]
    assert code != 0
    assert "Traceback" not in d.log_text()
    assert out == [f"Error: event log {state / 'events.jsonl'} is a directory, not a file"], out
    assert not d.socket_path.exists(), "the socket of a daemon that never ran is removed"


def test_a_daemon_started_on_a_full_disk_serves_and_catches_up(
    scratch: Callable[..., DaemonProcess], routerd_daemon: DaemonFactory
) -> None:
    require_mount_prereqs()
    with small_tmpfs(routerd_daemon.state_dir, "256k") as fs:
        (fs / "scratch" / "s").mkdir(parents=True)
        filler = fill(fs)
        d = scratch()
        try:
            cond = poll(
                lambda: (c := _condition(d, "PersistenceDegraded")) and c["status"] == "True" and c,
                10,
                "PersistenceDegraded=True",
            )
            assert cond["reason"] == "NoSpace" and "ENOSPC" in cond["message"]
            for i in range(1, 21):
                resp = d.command("renew")
                assert resp.status == 200, resp.error_text()
                assert resp.json()["result"] == {"n": i, "saved": False}
            assert d.get("/v1/healthz").status == 200
            body = d.events(since=0)
            cursors = [int(e["cursor"]) for e in body["events"]]
            assert cursors == list(range(1, len(cursors) + 1)), "accepted events are readable"
            head = cursors[-1]
            runtime = d.status()["runtime"]
            assert runtime["eventLog"]["pending"] == head, "nothing reached the full disk"
            assert runtime["stateFile"]["unsaved"] is True
            assert runtime["persistence"]["degraded"] is True
            t0 = time.monotonic()
            filler.unlink()
            poll(
                lambda: _condition(d, "PersistenceDegraded")["status"] == "False",  # type: ignore[index]
                15,
                "PersistenceDegraded=False after the space came back",
            )
            recovered_in = time.monotonic() - t0
            runtime = d.status()["runtime"]
            assert runtime["eventLog"]["pending"] == 0 and runtime["eventLog"]["dropped"] == 0
            assert runtime["stateFile"]["unsaved"] is False
            state = fs / "scratch" / "s"
            assert json.loads((state / "state.json").read_text()) == {"n": 20}
            assert file_cursors(state / "events.jsonl")[:head] == list(range(1, head + 1))
            print(
                f"\nfull-disk start: {head} events buffered and flushed, "
                f"recovered {recovered_in:.2f} s after space returned"
            )
            assert d.stop() == 0
            d.start()
            body = d.events(since=d.head() - 1)
            assert body.get("reset") is not True
            assert file_cursors(state / "events.jsonl")[0] == 1
            assert d.status()["runtime"]["eventLog"]["tornLines"] == 0
            assert d.stop() == 0
        finally:
            d.kill()  # only if still running: the tmpfs must be free to unmount
