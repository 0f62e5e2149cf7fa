"""A daemon's event log: a ring of recent events plus ``events.jsonl``.

Every event is written to the file (whole JSON lines on an ``O_APPEND``
descriptor) when it is appended. When the disk refuses (``ENOSPC``, ``EIO``,
a short write) the event is still accepted: it is readable at once and kept
in a bounded memory queue that is written, in cursor order, as soon as the
disk takes it again (retried with backoff, and on the next append). Only when
that queue overflows are the oldest waiting events dropped; they are counted,
and a reader whose range crosses them gets ``reset``. A short write never
leaves half a line behind: it is completed or cut back to the line start.

Cursors are strictly increasing integers that continue across restarts, and
never go backwards even when the log is lost: a small ``events.cursor`` file
holds a high-water mark ("lease") that is always ahead of every cursor in the
log, written (with ``fsync``) before the log passes it. With
``background_marks`` (what a daemon uses) the emitter never waits for that
``fsync``: the mark is written on a thread, ahead of need, and an event whose
cursor it does not cover yet is accepted but held (neither written nor
visible) until it does; one it covers is written at once, as without the
thread, even while the next mark is being written. So an event is always in
the file before it is visible, but may become visible a little after
``append`` returns (after a start, the first events wait for the new mark):
a reader waits for it (long-poll), it does not read once. At start the ring
and the cursor are restored from the files; unreadable lines (torn, garbage, a NUL block) and
lines whose cursor is out of order are skipped and counted, and reading
resynchronises on the next line, or on the next event start inside a line.
"""

from __future__ import annotations

from array import array
import bisect
from collections import deque
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
import contextlib
from dataclasses import dataclass
from dataclasses import field
import errno
import itertools
import json
import logging
import math
import os
from pathlib import Path
import stat
import threading
import time
from typing import Any

from routerd.daemon.persistence import PersistenceHealth
from routerd.daemon.persistence import StorageUnusable
from routerd.daemon.persistence import describe
from routerd.daemon.persistence import is_transient
from routerd.daemon.statefile import atomic_write
from routerd.model import Event
from routerd.model import Scalar
from routerd.model import Severity
from routerd.timefmt import rfc3339
from routerd.topics import TopicFilter

log = logging.getLogger("routerd.eventlog")

RING_SIZE = 1000
MAX_LIMIT = 1000
MAX_WAIT = 30.0
ROTATE_BYTES = 4 * 1024 * 1024
#: Events accepted while the disk refuses them, waiting to be written.
MAX_PENDING = 10_000
#: How far the cursor file's high-water mark runs ahead of the head.
CURSOR_LEASE = 1000
#: At most this many dropped ranges are remembered (and written down).
MAX_DROPPED_RANGES = 32
#: Pending lines written with one ``write(2)`` at most (when catching up).
_CHUNK = 64 * 1024
WRITER = "event log"

Write = Callable[[int, bytes | memoryview], int]

#: Candidates a query copies under the append lock at a time (it matches
#: topics on them outside the lock).
_QUERY_CHUNK = 256

#: Lines are written by :meth:`EventLog.append` with the cursor first.
_EVENT_START = b'{"cursor":"'


@dataclass
class _FileIndex:
    """Where each (valid, in-order) cursor's event starts in one log file."""

    ident: tuple[int, int]
    scanned: int = 0
    cursors: array[int] = field(default_factory=lambda: array("Q"))
    offsets: array[int] = field(default_factory=lambda: array("Q"))


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


def _parse(raw: bytes | memoryview) -> Event | None:
    try:
        event = Event.from_dict(json.loads(bytes(raw)))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError):
        return None
    return event if event.cursor > 0 else None


def _parse_segment(data: bytes, start: int, end: int) -> tuple[int, Event | None, bool]:
    """Parse the line ``data[start:end]``: ``(offset, event, damaged)``.

    A line that does not parse as a whole may still end with an intact event
    glued to garbage (a NUL block, a line torn by a crash and appended to);
    resynchronise on the last event start inside it. ``damaged`` says that
    something in the line was unreadable.
    """
    event = _parse(memoryview(data)[start:end])
    if event is not None:
        return start, event, False
    inner = data.rfind(_EVENT_START, start + 1, end)
    if inner > start:
        event = _parse(memoryview(data)[inner:end])
        if event is not None:
            return inner, event, True
    return start, None, True


def _lines(data: bytes) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of every non-blank line (complete or not) in ``data``."""
    pos = 0
    size = len(data)
    while pos < size:
        end = data.find(b"\n", pos)
        if end < 0:
            end = size
        if data[pos:end].strip(b" \t\r"):
            yield pos, end
        pos = end + 1


def increasing_subsequence(values: Sequence[int]) -> list[bool]:
    """Mask of a longest strictly increasing subsequence of ``values``.

    Of equally long ones the one ending latest wins, so a single outlier
    (a cursor far ahead of its neighbours, or one that went back) is what
    gets dropped, not the run of good lines around it.
    """
    tails: list[int] = []
    tail_at: list[int] = []
    prev = [-1] * len(values)
    for i, value in enumerate(values):
        k = bisect.bisect_left(tails, value)
        if k == len(tails):
            tails.append(value)
            tail_at.append(i)
        else:
            tails[k] = value
            tail_at[k] = i
        prev[i] = tail_at[k - 1] if k else -1
    keep = [False] * len(values)
    i = tail_at[-1] if tail_at else -1
    while i >= 0:
        keep[i] = True
        i = prev[i]
    return keep


@dataclass
class _Scan:
    """One log file as read at start."""

    path: Path
    data: bytes
    ident: tuple[int, int]
    offsets: list[int] = field(default_factory=list)
    cursors: list[int] = field(default_factory=list)


class EventLog:
    """Thread-safe append and long-poll over recent events."""

    def __init__(
        self,
        path: Path | None,
        *,
        ring_size: int = RING_SIZE,
        rotate_bytes: int = ROTATE_BYTES,
        max_pending: int = MAX_PENDING,
        clock: Callable[[], float] = time.time,
        health: PersistenceHealth | None = None,
        write: Write = os.write,
        background_marks: bool = False,
        write_mark: Callable[[Path, bytes], None] | None = None,
    ) -> None:
        """``background_marks``: write the cursor file's high-water mark on a
        thread (see the module docstring); ``write_mark``: how (default
        :func:`routerd.daemon.statefile.atomic_write`; tests)."""
        self.path = path
        self.background_marks = background_marks
        self._write_mark = write_mark if write_mark is not None else atomic_write
        self.rotate_bytes = rotate_bytes
        self.max_pending = max_pending
        self.clock = clock
        self.health = health if health is not None else PersistenceHealth(wall=clock)
        self._write = write
        self._ring: deque[Event] = deque(maxlen=ring_size)
        self._cond = threading.Condition(threading.Lock())
        self._fd: int | None = None
        self._size = 0
        self._torn = False  # the file ends in a partial line we could not cut
        self.head = 0  # the last cursor handed out
        self.visible = 0  # the last cursor readers can see (below head only while held)
        self.committed = 0  # the last cursor written to the file
        self.oldest_retained = 1  # cursor of the oldest event still readable
        self._current_first: int | None = None  # first cursor in the current file
        self._reserved = 0  # the cursor file's high-water mark, as written
        # Accepted above the mark while it is being written: not written, not visible yet.
        self._held: list[Event] = []
        self._mark_thread: threading.Thread | None = None
        self._cursor_file_ok = False
        self._hole: tuple[int, int] | None = None  # (lo, hi]: cursors lost with the log
        self._pending: deque[tuple[int, bytes]] = deque()
        self._dropped_ranges: list[tuple[int, int]] = []
        self._failing = False
        self._degraded_since: float | None = None
        self._last_error: str | None = None
        self._overflowing = False
        self.torn_lines = 0
        self.out_of_order = 0
        self.lost_events = 0
        self.restored = 0
        self.dropped = 0
        self.written_late = 0
        self.write_errors = 0
        self.closed = False
        self._indexes: dict[Path, _FileIndex] = {}
        if path is not None:
            self.health.register(WRITER, self.flush)

    # -- files ---------------------------------------------------------------
    @property
    def rotated_path(self) -> Path | None:
        return None if self.path is None else self.path.with_name(self.path.name + ".1")

    @property
    def cursor_path(self) -> Path | None:
        return None if self.path is None else self.path.with_name("events.cursor")

    def _check_usable(self) -> None:
        """Refuse, with one line, a path that can never work (not retried)."""
        assert self.path is not None
        parent = self.path.parent
        for path, what in (
            (self.path, "event log"),
            (self.rotated_path, "rotated event log"),
            (self.cursor_path, "event cursor file"),
        ):
            assert path is not None
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if is_transient(exc):
                    continue
                raise StorageUnusable(f"{what} {path} is not usable: {describe(exc)}") from None
            if stat.S_ISDIR(st.st_mode):
                raise StorageUnusable(f"{what} {path} is a directory, not a file")
            if not stat.S_ISREG(st.st_mode):
                raise StorageUnusable(f"{what} {path} is not a regular file")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if not is_transient(exc):
                raise StorageUnusable(
                    f"state directory {parent} is not usable: {describe(exc)}"
                ) from None

    def restore(self) -> None:
        """Load the ring and the head cursor from disk; open the file for appends.

        Raises :class:`StorageUnusable` (one line) when a path can never work,
        e.g. ``events.jsonl`` is a directory. A disk that refuses for now
        (full, I/O errors) only degrades the log: it keeps events in memory.
        """
        if self.path is None:
            return
        self._check_usable()
        reserved, committed = self._read_cursor_file()
        scans = [s for p in (self.rotated_path, self.path) if (s := self._scan(p)) is not None]
        self._select(scans, reserved)
        file_head = self.head
        if reserved is not None and reserved > self.head:
            # Cursors up to the high-water mark may have been handed out:
            # continue above them, and tell a reader holding one of them.
            self._hole = (file_head, reserved)
            self.head = reserved
        if committed is not None and committed > file_head:
            self.lost_events = committed - file_head
            log.warning(
                "event log %s ends at cursor %d but cursor %d was written before: "
                "%d events are lost; continuing at cursor %d (readers get reset)",
                self.path,
                file_head,
                committed,
                self.lost_events,
                self.head + 1,
            )
        if not self.restored:
            self.oldest_retained = self.head + 1
        self.visible = self.head
        self._dropped_ranges = [r for r in self._dropped_ranges if r[1] >= self.oldest_retained]
        self.committed = file_head
        try:
            self._open()
        except OSError as exc:
            if not is_transient(exc):
                raise StorageUnusable(
                    f"event log {self.path} is not usable: {describe(exc)}"
                ) from None
            self._failed(self.path, exc)
        with self._cond:
            self._mark_ahead()  # the first event after a clean stop needs a new mark: start it now
        if self.torn_lines or self.out_of_order:
            log.warning(
                "event log %s: skipped %d unreadable and %d out-of-order lines",
                self.path,
                self.torn_lines,
                self.out_of_order,
            )

    def _scan(self, path: Path | None) -> _Scan | None:
        if path is None:
            return None
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            if not is_transient(exc):
                raise StorageUnusable(f"cannot read {path}: {describe(exc)}") from None
            log.warning("cannot read event log %s: %s", path, describe(exc))
            return None
        if path == self.path and data and not data.endswith(b"\n"):
            # A line torn by a crash mid-write: cut it so the next append
            # starts on a fresh line.
            cut = data.rfind(b"\n") + 1
            try:
                os.truncate(path, cut)
            except OSError as exc:
                # The next append starts with a newline instead.
                log.warning("cannot cut the torn tail of %s: %s", path, describe(exc))
                self._torn = True
            data = data[:cut]
            self.torn_lines += 1
        scan = _Scan(path, data, (st.st_dev, st.st_ino))
        for start, end in _lines(data):
            offset, event, damaged = _parse_segment(data, start, end)
            if damaged:
                self.torn_lines += 1
            if event is not None:
                scan.offsets.append(offset)
                scan.cursors.append(event.cursor)
        return scan

    def _select(self, scans: list[_Scan], reserved: int | None) -> None:
        """Keep the longest in-order run of events (within the high-water mark)."""
        entries = [(s, i) for s in scans for i in range(len(s.cursors))]
        cursors = [s.cursors[i] for s, i in entries]
        in_bound = [reserved is None or c <= reserved for c in cursors]
        candidates = [c for c, ok in zip(cursors, in_bound, strict=True) if ok]
        keep_candidates = iter(increasing_subsequence(candidates))
        keep = [ok and next(keep_candidates) for ok in in_bound]
        self.out_of_order += keep.count(False)
        kept = [e for e, k in zip(entries, keep, strict=True) if k]
        for scan in scans:
            idx = _FileIndex(scan.ident, scanned=len(scan.data))
            self._indexes[scan.path] = idx
        for scan, i in kept:
            idx = self._indexes[scan.path]
            idx.cursors.append(scan.cursors[i])
            idx.offsets.append(scan.offsets[i])
        self.restored = len(kept)
        if kept:
            self.head = kept[-1][0].cursors[kept[-1][1]]
            first_scan, first_i = kept[0]
            self.oldest_retained = first_scan.cursors[first_i]
        else:
            self.oldest_retained = 1
        current = self._indexes.get(self.path) if self.path is not None else None
        self._current_first = (
            current.cursors[0] if current is not None and current.cursors else None
        )
        for scan, i in kept[-(self._ring.maxlen or 0) :]:
            start = scan.offsets[i]
            end = scan.data.find(b"\n", start)
            event = _parse(memoryview(scan.data)[start : end if end >= 0 else len(scan.data)])
            if event is not None:
                self._ring.append(event)

    def _read_cursor_file(self) -> tuple[int | None, int | None]:
        """``(reserved, committed)`` from ``events.cursor``; Nones when absent."""
        path = self.cursor_path
        assert path is not None
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            log.warning("cannot read %s: %s", path, describe(exc))
            return None, None
        try:
            data = json.loads(raw)
            reserved = int(data["reserved"])
            committed = int(data.get("committed", 0))
            ranges = [(int(a), int(b)) for a, b in data.get("dropped", [])]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, RecursionError) as exc:
            self.torn_lines += 1
            log.warning("%s is unreadable (%s); ignoring it", path, exc)
            return None, None
        self._reserved = reserved
        self._cursor_file_ok = True
        self._dropped_ranges = ranges[-MAX_DROPPED_RANGES:]
        return reserved, committed

    def _cursor_body(self, reserved: int) -> bytes:
        body = {
            "version": 1,
            "reserved": str(reserved),
            "committed": str(self.committed),
            "dropped": [[str(a), str(b)] for a, b in self._dropped_ranges],
        }
        return json.dumps(body, separators=(",", ":")).encode() + b"\n"

    def _write_cursor_file(self, reserved: int) -> None:
        path = self.cursor_path
        assert path is not None
        self._write_mark(path, self._cursor_body(reserved))
        self._reserved = reserved

    # -- the high-water mark on a thread (background_marks) --------------------
    def _mark_ahead(self) -> None:
        """Start writing the next mark if the current one is (almost) used up (lock held).

        Half a lease ahead, so that in steady state the new mark is on disk
        before any cursor needs it and nothing is ever held.
        """
        if (
            not self.background_marks
            or self.path is None
            or self.closed
            or self._failing
            or self._mark_thread is not None
            or self._reserved - self.head > CURSOR_LEASE // 2
        ):
            return
        target = self.head + CURSOR_LEASE
        body = self._cursor_body(target)
        thread = threading.Thread(
            target=self._mark, args=(target, body), name="eventlog-mark", daemon=True
        )
        self._mark_thread = thread
        thread.start()

    def _mark(self, target: int, body: bytes) -> None:
        """The mark thread: write the mark, then write and show what waited for it."""
        path = self.cursor_path
        assert path is not None
        error: OSError | None = None
        try:
            self._write_mark(path, body)
        except OSError as exc:
            error = exc
        with self._cond:
            self._mark_thread = None
            if error is None:
                self._reserved = max(self._reserved, target)
                if self._pending and not self._failing:
                    self._flush_locked()
            else:
                # The disk refuses: as for any write, accept visible first
                # and let the retry thread write the mark and the lines.
                self._failed(path, error)
            self._publish_held()
            if len(self._pending) > self.max_pending:
                self._drop_oldest()
            self._mark_ahead()

    def wait_shown(self, timeout: float) -> bool:
        """Wait until no accepted event is held for the high-water mark; False on timeout.

        With ``background_marks`` an event can be accepted a few
        milliseconds before anyone can read it; code that reads its own
        events straight back (tests) waits here first.
        """
        with self._cond:
            return self._cond.wait_for(lambda: not self._held, timeout)

    def _publish_held(self) -> None:
        for event in self._held:
            self._ring.append(event)
            self.visible = event.cursor
        self._held.clear()
        self._cond.notify_all()

    def _open(self) -> None:
        assert self.path is not None
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            self._size = os.fstat(fd).st_size
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _rotate(self) -> None:
        # The current file becomes ".1"; its first cursor is remembered, so
        # rotation never re-reads megabytes while holding the lock.
        assert self.path is not None
        rotated = self.rotated_path
        assert rotated is not None
        self._close_fd()
        os.replace(self.path, rotated)
        moved = self._indexes.pop(self.path, None)
        self._indexes.pop(rotated, None)
        if moved is not None:
            self._indexes[rotated] = moved
        self._size = 0
        self.oldest_retained = (
            self._current_first if self._current_first is not None else self.committed + 1
        )
        self._current_first = None
        self._dropped_ranges = [r for r in self._dropped_ranges if r[1] >= self.oldest_retained]
        self._open()

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
        """Accept an event: written to the file now, or kept until the disk takes it.

        Never raises for a disk error: that is reported to :attr:`health`.
        """
        attrs = {str(k): _scalar(v) for k, v in (attributes or {}).items()}
        with self._cond:
            event = Event(self.head + 1, self.clock(), topic, severity, reason, message, attrs)
            self.head = event.cursor
            if self.path is not None and not self.closed:
                line = json.dumps(event.to_dict(), separators=(",", ":")).encode() + b"\n"
                self._pending.append((event.cursor, line))
                if self._held or (
                    self.background_marks and not self._failing and event.cursor > self._reserved
                ):
                    # Not covered by the mark on disk yet: the mark thread
                    # writes and shows it (and those after it, in order) once
                    # the mark is durable; the emitter does not wait for fsync.
                    self._held.append(event)
                    self._mark_ahead()
                    return event
                if not self._failing or self.health.retry_due(WRITER):
                    self._flush_locked()
                if len(self._pending) > self.max_pending:
                    self._drop_oldest()
                self._mark_ahead()
            self._ring.append(event)
            self.visible = event.cursor
            if self.path is None and len(self._ring) == self._ring.maxlen:
                self.oldest_retained = self._ring[0].cursor
            self._cond.notify_all()
        return event

    def flush(self) -> bool:
        """Write what waits in memory now; True when nothing is left waiting."""
        with self._cond:
            if self.path is None or self.closed:
                return True
            if not self._pending and self._failing and self._fd is None:
                # Nothing to write, but the file must be open again.
                try:
                    self._open()
                except OSError as exc:
                    self._failed(self.path, exc)
                    return False
                self._recovered()
                return True
            return self._flush_locked()

    def _flush_locked(self) -> bool:
        assert self.path is not None
        # While the mark thread writes the next mark, the lines the mark on
        # disk already covers are still written now, before their events are
        # visible (DESIGN.md §6: a reader never sees an event a crash of the
        # process would lose); the others wait for the thread, which writes
        # them once its mark is on disk.
        covered_only = self._mark_thread is not None
        where: Path = self.path
        try:
            if self._fd is None:
                self._open()
            if not covered_only and self._pending and self._pending[-1][0] > self._reserved:
                where = self.cursor_path or self.path
                # The high-water mark must be on disk before any line that
                # passes it, so that a lost log never lets cursors go back.
                self._write_cursor_file(self.head + CURSOR_LEASE)
                where = self.path
            while self._pending and (not covered_only or self._pending[0][0] <= self._reserved):
                self._write_some(self._reserved if covered_only else None)
                if self._size >= self.rotate_bytes:
                    self._rotate()
        except OSError as exc:
            self._failed(where, exc)
            return False
        if self._pending:
            return False  # above the mark on disk: the mark thread writes them
        if self._failing:
            self._recovered()
        return True

    def _write_some(self, upto: int | None = None) -> None:
        """Write a chunk of pending lines (cursors up to ``upto``); whole lines only, even on a short write."""
        assert self._fd is not None
        lines: list[bytes] = []
        size = 0
        for cursor, line in self._pending:
            if (lines and size + len(line) > _CHUNK) or (upto is not None and cursor > upto):
                break
            lines.append(line)
            size += len(line)
        prefix = b"\n" if self._torn else b""
        data = prefix + b"".join(lines)
        view = memoryview(data)
        done = 0
        error: OSError | None = None
        while done < len(data):
            try:
                n = self._write(self._fd, view[done:])
            except OSError as exc:
                error = exc
                break
            if n <= 0:
                error = OSError(errno.EIO, "write(2) wrote nothing")
                break
            done += n
        whole = data.rfind(b"\n", 0, done) + 1
        if whole < done:
            # A short write tore a line: cut it, or, if even that fails, make
            # the next write start with a newline so the torn part stays alone.
            try:
                os.ftruncate(self._fd, self._size + whole)
            except OSError:
                self._torn = True
                self._size += done
            else:
                self._size += whole
                self._torn = False
        else:
            self._size += done
            if whole:
                self._torn = False
        count = data.count(b"\n", len(prefix), whole) if whole > len(prefix) else 0
        for _ in range(count):
            cursor, _line = self._pending.popleft()
            self.committed = cursor
            if self._current_first is None:
                self._current_first = cursor
            if self._failing:
                self.written_late += 1
        if error is not None:
            raise error
        if done < len(data):
            raise OSError(errno.EIO, "short write")

    def _failed(self, path: Path, exc: OSError) -> None:
        self.write_errors += 1
        self._last_error = f"{path}: {describe(exc)}"
        if not self._failing:
            self._failing = True
            self._degraded_since = self.clock()
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            # EIO, a file replaced under us: start from a fresh descriptor.
            self._close_fd()
        self.health.failed(WRITER, path, exc)

    def _recovered(self) -> None:
        took = self.clock() - (self._degraded_since or self.clock())
        note = f"wrote {self.written_late} events kept in memory ({took:.1f} s late at most)"
        if self.dropped:
            note += f"; {self.dropped} events were dropped"
        self._failing = False
        self._overflowing = False
        self._degraded_since = None
        self.health.succeeded(WRITER, note)

    def _drop_oldest(self) -> None:
        while len(self._pending) > self.max_pending:
            cursor, _ = self._pending.popleft()
            self.dropped += 1
            last = self._dropped_ranges[-1] if self._dropped_ranges else None
            if last is not None and last[1] == cursor - 1:
                self._dropped_ranges[-1] = (last[0], cursor)
            else:
                self._dropped_ranges.append((cursor, cursor))
                del self._dropped_ranges[:-MAX_DROPPED_RANGES]
        if not self._overflowing:
            self._overflowing = True
            log.error(
                "event log %s: %d events wait for the disk; dropping the oldest "
                "(readers crossing them get reset)",
                self.path,
                self.max_pending,
            )

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
            try:
                with open(path, "rb") as f:
                    f.seek(idx.scanned)
                    data = f.read(st.st_size - idx.scanned)
            except OSError:
                return idx
            complete = data.rfind(b"\n") + 1  # a partial last line is scanned again next time
            for start, end in _lines(data[:complete]):
                offset, event, _ = _parse_segment(data, start, end)
                if event is not None and (not idx.cursors or event.cursor > idx.cursors[-1]):
                    idx.cursors.append(event.cursor)
                    idx.offsets.append(idx.scanned + offset)
            idx.scanned += complete
        return idx

    def _from_files(self, since: int) -> Iterator[Event]:
        # Older than the ring (a consumer that was away): go through the
        # index, which holds only the valid in-order lines, instead of
        # re-parsing whole files for every page.
        for path in (self.rotated_path, self.path):
            if path is None or (idx := self._index(path)) is None:
                continue
            start = bisect.bisect_right(idx.cursors, since)
            n = len(idx.cursors)
            if start == n:
                continue
            try:
                f = open(path, "rb")  # noqa: SIM115 (closed by the with below)
            except OSError:
                continue
            with f:
                f.seek(idx.offsets[start])
                pos, j = idx.offsets[start], start
                for line in f:
                    end = pos + len(line)
                    while j < n and idx.offsets[j] < end:
                        event = _parse(memoryview(line)[idx.offsets[j] - pos :])
                        if event is not None and event.cursor == idx.cursors[j] > since:
                            since = event.cursor
                            yield event
                        j += 1
                    if j >= n:
                        break
                    pos = end

    def _candidates(self, since: int) -> Iterator[Event]:
        ring = self._ring
        if ring and ring[0].cursor <= since + 1:
            for event in ring:
                if event.cursor > since:
                    yield event
            return
        last = since
        pending = self._pending
        if not pending or pending[0][0] > since + 1:
            for event in self._from_files(since):
                last = event.cursor
                yield event
        # Accepted but not yet written (the disk refuses), older than the ring.
        ring_first = ring[0].cursor if ring else self.visible + 1
        for cursor, line in pending:
            if cursor >= ring_first:
                break
            if cursor > last and (parsed := _parse(line)) is not None:
                last = cursor
                yield parsed
        for event in ring:
            if event.cursor > last:
                yield event

    def query(
        self, since: int | None, topics: tuple[str, ...] = (), limit: int = MAX_LIMIT
    ) -> QueryResult:
        """Events after ``since`` matching ``topics`` (caller holds no lock)."""
        return self._query(since, TopicFilter.of(topics), limit)

    def _start_locked(self, since: int | None) -> tuple[int, bool]:
        """Where a read after ``since`` starts, and whether ``since`` must be reset."""
        start = self.oldest_retained - 1
        if since is None:
            return start, False
        if since > self.visible or since < self.oldest_retained - 1:
            return start, True  # ahead of a lost log, or behind what is retained
        hole = self._hole
        # A cursor the log no longer vouches for (it was lost).
        return since, hole is not None and hole[0] < since <= hole[1]

    def _query(self, since: int | None, topics: TopicFilter, limit: int) -> QueryResult:
        # Topics are matched outside the append lock: under it a query only
        # takes the next chunk of candidates (a bounded copy), so no glob, and
        # no number of readers, can hold up an append, a status or a healthz.
        limit = max(1, min(limit, MAX_LIMIT))
        with self._cond:
            start, reset = self._start_locked(since)
            chunk = list(itertools.islice(self._candidates(start), _QUERY_CHUNK))
            head = self.visible
        events: list[Event] = []
        more = False
        while True:
            for event in chunk:
                if not topics.matches(event.topic):
                    continue
                if len(events) == limit:
                    more = True
                    break
                events.append(event)
            if more or len(chunk) < _QUERY_CHUNK:
                break  # a short chunk ends at the head it was taken with
            start = chunk[-1].cursor
            with self._cond:
                if start < self.oldest_retained - 1:
                    reset = True  # rotated away between two chunks
                    start = self.oldest_retained - 1
                chunk = list(itertools.islice(self._candidates(start), _QUERY_CHUNK))
                head = self.visible
        cursor = events[-1].cursor if events else head
        if not reset and since is not None:
            with self._cond:
                # Events dropped while the disk was full lie in the range read.
                reset = any(a <= cursor and b > since for a, b in self._dropped_ranges)
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
        flt = TopicFilter.of(topics)
        while True:
            result = self._query(since, flt, limit)
            remaining = deadline - time.monotonic()
            if result.events or result.reset or remaining <= 0 or self.closed:
                return result
            # Nothing matched up to the head: only newer events can match.
            since = result.cursor
            with self._cond:
                # Checked under the lock append notifies under, so an event
                # appended since the query is never slept through.
                if self.visible == since and not self.closed:
                    self._cond.wait(remaining)

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "head": str(self.visible),
                "committed": str(self.committed),
                "oldestRetained": str(self.oldest_retained),
                "inMemory": len(self._ring),
                "restored": self.restored,
                "tornLines": self.torn_lines,
                "outOfOrderLines": self.out_of_order,
                "lostEvents": self.lost_events,
                "pending": len(self._pending),
                "dropped": self.dropped,
                "writtenLate": self.written_late,
                "writeErrors": self.write_errors,
                "lastError": self._last_error,
                "degradedSince": None
                if self._degraded_since is None
                else rfc3339(self._degraded_since),
            }

    def close(self) -> None:
        """Write what waits, wake every waiter, close the file; later appends stay in memory."""
        while True:
            with self._cond:
                thread = self._mark_thread
                if thread is None or self.closed:
                    self._close_locked()
                    return
            thread.join()  # its mark, and what waits for it, first

    def _close_locked(self) -> None:
        if self.closed:
            return
        if self.path is not None:
            self._flush_locked()
            if self._pending:
                log.error(
                    "event log %s: %d events could not be written before the exit",
                    self.path,
                    len(self._pending),
                )
                self._overflowing = True  # logged just now
                self.max_pending = 0
                self._drop_oldest()
            # A clean stop hands out nothing beyond the head: the next
            # start continues at head + 1 instead of jumping a lease.
            with contextlib.suppress(OSError):
                self._write_cursor_file(self.head)
        self.closed = True
        self._close_fd()
        self._cond.notify_all()
