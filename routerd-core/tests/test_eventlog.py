from __future__ import annotations

import json
from pathlib import Path
import threading
import time

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import pytest
from routerd.daemon.eventlog import EventLog


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_795_000_000.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def make(tmp_path: Path, **kw: object) -> EventLog:
    log = EventLog(tmp_path / "events.jsonl", clock=FakeClock(), **kw)  # type: ignore[arg-type]
    log.restore()
    return log


def fill(log: EventLog, n: int, topic: str = "t.a") -> None:
    for i in range(n):
        log.append(topic, reason="R", message=str(i), attributes={"i": i})


def test_append_writes_before_visible_and_cursors_increase(tmp_path: Path) -> None:
    log = make(tmp_path)
    fill(log, 3)
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["cursor"] for line in lines] == ["1", "2", "3"]
    assert [e.cursor for e in log.query(None).events] == [1, 2, 3]


def test_since_limit_more_and_cursor(tmp_path: Path) -> None:
    log = make(tmp_path)
    fill(log, 5)
    res = log.query(2, limit=2)
    assert [e.cursor for e in res.events] == [3, 4]
    assert res.more is True and res.cursor == 4 and res.reset is False
    res = log.query(4)
    assert [e.cursor for e in res.events] == [5] and res.more is False
    empty = log.query(5)
    assert empty.events == [] and empty.cursor == 5


def test_topic_filter_cursor_is_last_returned_or_head(tmp_path: Path) -> None:
    log = make(tmp_path)
    fill(log, 2, "a.x")
    fill(log, 2, "b.x")
    res = log.query(None, ("a.*",))
    assert [e.cursor for e in res.events] == [1, 2] and res.cursor == 2
    none = log.query(None, ("c.*",))
    assert none.events == [] and none.cursor == 4


def test_reset_when_ahead(tmp_path: Path) -> None:
    log = make(tmp_path)
    fill(log, 3)
    res = log.query(10)
    assert res.reset is True and [e.cursor for e in res.events] == [1, 2, 3]


def test_restore_continues_cursor_and_counts_torn_lines(tmp_path: Path) -> None:
    log = make(tmp_path)
    fill(log, 3)
    log.close()
    with (tmp_path / "events.jsonl").open("a") as f:
        f.write("not json\n")
        f.write(
            '{"cursor": "2", "time": "2026-01-01T00:00:00.000000Z", "topic": "t", "severity": "info"}\n'
        )
        f.write('{"cursor": "4", "ti')  # torn by a crash mid-line
    log2 = make(tmp_path)
    assert log2.head == 3
    assert log2.torn_lines == 2  # garbage, the torn tail
    assert log2.out_of_order == 1  # a cursor going backwards
    log2.append("t.b", reason="R")
    assert log2.head == 4
    log2.close()
    # The torn tail was cut, so the new line is whole and parseable.
    log3 = make(tmp_path)
    assert log3.head == 4 and log3.torn_lines == 1 and log3.out_of_order == 1


def test_rotation_keeps_one_previous_file_and_serves_old_cursors(tmp_path: Path) -> None:
    log = make(tmp_path, ring_size=10, rotate_bytes=2000)
    fill(log, 60)
    assert (tmp_path / "events.jsonl.1").exists()
    assert log.oldest_retained > 1
    res = log.query(log.oldest_retained - 1, limit=1000)
    assert res.reset is False
    assert res.events[0].cursor == log.oldest_retained
    assert res.events[-1].cursor == 60
    assert len(res.events) > 10, "older than the ring: read from the files"
    lost = log.query(0)
    assert lost.reset is True, "a cursor behind what is retained is a reset, not a silent gap"


def test_ring_only_log_tracks_oldest(tmp_path: Path) -> None:
    log = EventLog(None, ring_size=5, clock=FakeClock())
    fill(log, 8)
    assert log.oldest_retained == 4
    assert log.query(3).reset is False
    assert log.query(1).reset is True


def test_wait_returns_when_event_arrives(tmp_path: Path) -> None:
    log = make(tmp_path)
    fill(log, 1)
    got: list[int] = []

    def waiter() -> None:
        got.extend(e.cursor for e in log.wait(1, ("t.b",), timeout=10).events)

    thread = threading.Thread(target=waiter)
    thread.start()
    fill(log, 2, "t.a")  # not matching: the waiter keeps waiting
    log.append("t.b", reason="R")
    thread.join(5)
    assert got == [4]


def test_wait_times_out_with_head(tmp_path: Path) -> None:
    log = make(tmp_path)
    fill(log, 2)
    t0 = time.monotonic()
    res = log.wait(2, timeout=0.2)
    assert time.monotonic() - t0 >= 0.19
    assert res.events == [] and res.cursor == 2


def test_close_wakes_waiters(tmp_path: Path) -> None:
    log = make(tmp_path)
    done = threading.Event()

    def waiter() -> None:
        log.wait(0, timeout=30)
        done.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    log.close()
    assert done.wait(5)


def test_attributes_are_flat_scalars(tmp_path: Path) -> None:
    log = make(tmp_path)
    event = log.append("t.a", reason="R", attributes={"l": [1, 2], "f": float("nan"), "ok": True})
    assert event.attributes == {"l": "[1, 2]", "f": "nan", "ok": True}


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=600))
def test_restore_never_raises_on_garbage(
    tmp_path_factory: pytest.TempPathFactory, junk: bytes
) -> None:
    d = tmp_path_factory.mktemp("garbage")
    (d / "events.jsonl").write_bytes(junk)
    log = EventLog(d / "events.jsonl", clock=FakeClock())
    log.restore()
    event = log.append("t.a", reason="R")
    assert event.cursor == log.head >= 1
    log.close()


def test_rotation_after_restart_keeps_oldest_right(tmp_path: Path) -> None:
    log = make(tmp_path, ring_size=10, rotate_bytes=2000)
    fill(log, 25)  # at least one rotation: ".1" exists
    log.close()
    again = make(tmp_path, ring_size=10, rotate_bytes=2000)
    first_current = json.loads((tmp_path / "events.jsonl").read_text().splitlines()[0])["cursor"]
    fill(again, 40)
    assert again.oldest_retained >= int(first_current)
    res = again.query(again.oldest_retained - 1)
    assert res.reset is False and res.events[0].cursor == again.oldest_retained
    on_disk = [
        json.loads(x)["cursor"] for x in (tmp_path / "events.jsonl.1").read_text().splitlines()
    ]
    assert int(on_disk[0]) == again.oldest_retained, (
        "oldest retained is the first line of the rotated file"
    )


def test_restore_of_a_file_larger_than_the_ring_keeps_old_events_readable(tmp_path: Path) -> None:
    log = make(tmp_path, ring_size=10, rotate_bytes=10_000_000)
    fill(log, 50)  # all in the current file, more than the ring holds
    log.close()
    again = make(tmp_path, ring_size=10, rotate_bytes=4000)
    fill(again, 20)  # forces a rotation: the whole current file becomes ".1"
    assert (tmp_path / "events.jsonl.1").exists()
    assert again.oldest_retained == 1, "the rotated file still starts at cursor 1"
    res = again.query(0, limit=1000)
    assert res.reset is False and res.events[0].cursor == 1


def test_file_reads_follow_appends_after_the_index_was_built(tmp_path: Path) -> None:
    log = make(tmp_path, ring_size=5)
    fill(log, 20)
    assert [e.cursor for e in log.query(3, limit=2).events] == [4, 5]  # from the file
    fill(log, 20)  # the ring moves on; the file grows
    page = log.query(6, limit=1000)
    assert [e.cursor for e in page.events] == list(range(7, 41))
    assert log._indexes, "served through the cursor index"
