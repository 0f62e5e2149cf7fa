"""A daemon's event log: a ring of recent events plus ``events.jsonl``.

Every event is written to the file (one ``write(2)`` of one JSON line on an
``O_APPEND`` descriptor) before readers can see it, so a SIGKILL loses nothing
a client has seen. At start the ring and the cursor are restored from the
file and its one rotated predecessor; a torn or unreadable line is skipped
and counted. Cursors are strictly increasing integers that continue across
restarts; a client whose cursor cannot be honoured gets ``reset``.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
import json
import logging
import math
import os
from pathlib import Path
import re
import threading
import time
from typing import Any

from routerd.model import Event
from routerd.model import Scalar
from routerd.model import Severity
from routerd.topics import matches_any

log = logging.getLogger("routerd.eventlog")

RING_SIZE = 1000
MAX_LIMIT = 1000
MAX_WAIT = 30.0
ROTATE_BYTES = 4 * 1024 * 1024


#: Lines are written by :meth:`EventLog.append` with the cursor first.
_CURSOR_PREFIX = re.compile(rb'\{"cursor":"(\d+)"')


@dataclass
class _FileIndex:
    """Where each cursor's line starts in one event-log file."""

    ident: tuple[int, int]
    scanned: int = 0
    cursors: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class QueryResult:
    """The answer of :meth:`EventLog.query`: what ``/v1/events`` returns."""

    events: list[Event]
    cursor: int
    more: bool
    reset: bool

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "cursor": str(self.cursor),
            "events": [e.to_dict() for e in self.events],
            "more": self.more,
        }
        if self.reset:
            body["reset"] = True
        return body


def _scalar(value: object) -> Scalar:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


class EventLog:
    """Thread-safe append and long-poll over recent events."""

    def __init__(
        self,
        path: Path | None,
        *,
        ring_size: int = RING_SIZE,
        rotate_bytes: int = ROTATE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.rotate_bytes = rotate_bytes
        self.clock = clock
        self._ring: deque[Event] = deque(maxlen=ring_size)
        self._cond = threading.Condition(threading.Lock())
        self._fd: int | None = None
        self._size = 0
        self.head = 0
        self.oldest_retained = 1  # cursor of the oldest event still readable
        self._current_first: int | None = None  # first cursor in the current file
        self.torn_lines = 0
        self.restored = 0
        self.closed = False
        self._indexes: dict[Path, _FileIndex] = {}

    # -- files ---------------------------------------------------------------
    @property
    def rotated_path(self) -> Path | None:
        return None if self.path is None else self.path.with_name(self.path.name + ".1")

    def restore(self) -> None:
        """Load the ring and the head cursor from disk; open the file for appends."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        first: int | None = None
        for event in self._read_files(count_torn=True, truncate_tail=True):
            if first is None:
                first = event.cursor
            self._ring.append(event)
            self.head = event.cursor
            self.restored += 1
        # The current file's own first cursor (not the ring's: the file may
        # hold more than the ring), which becomes oldest_retained at rotation.
        self._current_first = next((e.cursor for e in self._read_one(self.path)), None)
        self.oldest_retained = first if first is not None else self.head + 1
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._size = os.fstat(self._fd).st_size
        if self.torn_lines:
            log.warning(
                "event log %s: skipped %d torn or unreadable lines",
                self.path,
                self.torn_lines,
            )

    def _read_files(
        self, *, count_torn: bool = False, truncate_tail: bool = False
    ) -> Iterator[Event]:
        last = 0
        for path in (self.rotated_path, self.path):
            if path is None:
                continue
            try:
                data = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("cannot read event log %s: %s", path, exc)
                continue
            if truncate_tail and path == self.path and data and not data.endswith(b"\n"):
                # A line torn by a crash mid-write: cut it so the next append
                # starts on a fresh line.
                cut = data.rfind(b"\n") + 1
                os.truncate(path, cut)
                data = data[:cut]
                if count_torn:
                    self.torn_lines += 1
            for line in data.splitlines():
                if not line.strip():
                    continue
                try:
                    event = Event.from_dict(json.loads(line))
                except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                    if count_torn:
                        self.torn_lines += 1
                    continue
                if event.cursor <= last:
                    if count_torn:
                        self.torn_lines += 1
                    continue
                last = event.cursor
                yield event

    def _read_one(self, path: Path) -> Iterator[Event]:
        try:
            data = path.read_bytes()
        except OSError:
            return
        for line in data.splitlines():
            try:
                yield Event.from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                continue

    def _rotate(self) -> None:
        # The current file becomes ".1"; its first cursor is remembered, so
        # rotation never re-reads megabytes while holding the lock.
        assert self.path is not None and self._fd is not None
        os.close(self._fd)
        rotated = self.rotated_path
        assert rotated is not None
        os.replace(self.path, rotated)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._size = 0
        self.oldest_retained = (
            self._current_first if self._current_first is not None else self.head + 1
        )
        self._current_first = None

    # -- writing -------------------------------------------------------------
    def append(
        self,
        topic: str,
        *,
        severity: Severity = "info",
        reason: str = "",
        message: str = "",
        attributes: dict[str, Any] | None = None,
    ) -> Event:
        """Append an event, durable in the file before any reader sees it."""
        attrs = {str(k): _scalar(v) for k, v in (attributes or {}).items()}
        with self._cond:
            event = Event(self.head + 1, self.clock(), topic, severity, reason, message, attrs)
            if self._fd is not None:
                line = json.dumps(event.to_dict(), separators=(",", ":")).encode() + b"\n"
                os.write(self._fd, line)
                self._size += len(line)
            self.head = event.cursor
            self._ring.append(event)
            if self._current_first is None:
                self._current_first = event.cursor
            if self._fd is not None and self._size >= self.rotate_bytes:
                try:
                    self._rotate()
                except OSError:
                    log.exception("event log rotation failed")
            elif self.path is None and len(self._ring) == self._ring.maxlen:
                self.oldest_retained = self._ring[0].cursor
            self._cond.notify_all()
        return event

    # -- reading -------------------------------------------------------------
    def _index(self, path: Path) -> _FileIndex | None:
        """Cursor → byte offset of ``path``, extended over what was appended since."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        idx = self._indexes.get(path)
        if idx is None or idx.ident != (st.st_dev, st.st_ino) or st.st_size < idx.scanned:
            idx = self._indexes[path] = _FileIndex((st.st_dev, st.st_ino))
        if st.st_size > idx.scanned:
            with open(path, "rb") as f:
                f.seek(idx.scanned)
                data = f.read(st.st_size - idx.scanned)
            pos = 0
            while (end := data.find(b"\n", pos)) >= 0:
                match = _CURSOR_PREFIX.match(data, pos, end)
                if match is not None:
                    cursor = int(match.group(1))
                    if not idx.cursors or cursor > idx.cursors[-1]:
                        idx.cursors.append(cursor)
                        idx.offsets.append(idx.scanned + pos)
                pos = end + 1
            idx.scanned += pos  # a partial last line is scanned again next time
        return idx

    def _from_files(self, since: int) -> Iterator[Event]:
        # Older than the ring (a consumer that was away): seek through the
        # index instead of re-parsing whole files for every page.
        for path in (self.rotated_path, self.path):
            if path is None or (idx := self._index(path)) is None:
                continue
            start = bisect.bisect_right(idx.cursors, since)
            if start == len(idx.cursors):
                continue
            with open(path, "rb") as f:
                f.seek(idx.offsets[start])
                for line in f:
                    try:
                        event = Event.from_dict(json.loads(line))
                    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                        continue
                    if event.cursor > since:
                        since = event.cursor
                        yield event

    def _candidates(self, since: int) -> Iterator[Event]:
        ring = self._ring
        if ring and ring[0].cursor <= since + 1:
            for event in ring:
                if event.cursor > since:
                    yield event
            return
        yield from self._from_files(since)

    def query(
        self, since: int | None, topics: tuple[str, ...] = (), limit: int = MAX_LIMIT
    ) -> QueryResult:
        """Events after ``since`` matching ``topics`` (caller holds no lock)."""
        with self._cond:
            return self._query_locked(since, topics, limit)

    def _query_locked(self, since: int | None, topics: tuple[str, ...], limit: int) -> QueryResult:
        limit = max(1, min(limit, MAX_LIMIT))
        reset = False
        start = self.oldest_retained - 1
        if since is not None:
            if since > self.head or since < self.oldest_retained - 1:
                reset = True  # ahead of a lost log, or behind what is retained
            else:
                start = since
        events: list[Event] = []
        more = False
        for event in self._candidates(start):
            if not matches_any(topics, event.topic):
                continue
            if len(events) == limit:
                more = True
                break
            events.append(event)
        cursor = events[-1].cursor if events else self.head
        return QueryResult(events, cursor, more, reset)

    def wait(
        self,
        since: int | None,
        topics: tuple[str, ...] = (),
        limit: int = MAX_LIMIT,
        timeout: float = 0.0,
    ) -> QueryResult:
        """Like :meth:`query`, but hold up to ``timeout`` s until something matches."""
        deadline = time.monotonic() + min(max(timeout, 0.0), MAX_WAIT)
        with self._cond:
            while True:
                result = self._query_locked(since, topics, limit)
                remaining = deadline - time.monotonic()
                if result.events or result.reset or remaining <= 0 or self.closed:
                    return result
                # Nothing matched up to the head: only newer events can match.
                since = result.cursor
                self._cond.wait(remaining)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "head": str(self.head),
                "oldestRetained": str(self.oldest_retained),
                "inMemory": len(self._ring),
                "restored": self.restored,
                "tornLines": self.torn_lines,
            }

    def close(self) -> None:
        """Wake every waiter and close the file; later appends stay in memory."""
        with self._cond:
            self.closed = True
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._cond.notify_all()
