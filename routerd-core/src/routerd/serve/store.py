"""The SQLite event store (peewee, WAL): one writer thread, readers on their own connections.

Events from a daemon, that daemon's consumer cursor and the resource status
read with them are written in the same transaction, so a crash of routerd or
of a daemon can neither duplicate nor lose an event, and a reader never sees
a status before the events that announce it. ``(source, epoch, cursor)`` is
unique as a last line of defence; the epoch moves when a daemon answers
``reset`` (its log was lost and its cursors started again).

When a commit fails (full disk, I/O error, a lock held too long) the writer
keeps what it accepted in memory (bounded), retries with exponential backoff
and reports ``Degraded`` with the error; it logs one line when it degrades
and one when it recovers. Counters count what was committed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
import functools
import json
import logging
from pathlib import Path
import queue
import sqlite3
import threading
import time
from typing import Any

import peewee as pw

from routerd.model import Event
from routerd.timefmt import rfc3339
from routerd.topics import compile_glob
from routerd.topics import topic_matches

log = logging.getLogger("routerd.store")

PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "foreign_keys": 1,
    "busy_timeout": 5000,
    # Per connection, and every API thread keeps one: 4 MiB, not 16.
    "cache_size": -4000,
    "temp_store": "memory",
}


database = pw.DatabaseProxy()


class BaseModel(pw.Model):
    class Meta:
        database = database


class StoredEvent(BaseModel):
    id = pw.AutoField()
    source = pw.CharField()  # "<daemon-kind>/<resource>"
    epoch = pw.IntegerField(default=0)
    cursor = pw.BigIntegerField()
    time = pw.FloatField()
    topic = pw.CharField()
    severity = pw.CharField()
    reason = pw.CharField()
    message = pw.TextField()
    resource_kind = pw.CharField()
    resource_name = pw.CharField()
    attributes = pw.TextField()

    class Meta:
        table_name = "events"
        indexes = (
            (("source", "epoch", "cursor"), True),
            (("topic", "id"), False),
            (("resource_kind", "resource_name", "id"), False),
            (("time",), False),
        )


class ResourceRow(BaseModel):
    key = pw.CharField(primary_key=True)  # "<Kind>/<name>"
    kind = pw.CharField()
    name = pw.CharField()
    daemon_kind = pw.CharField()
    phase = pw.CharField()
    since = pw.CharField()
    status = pw.TextField()  # the ResourceStatus JSON
    updated = pw.FloatField()

    class Meta:
        table_name = "resources"


class Topic(BaseModel):
    """Every topic ever stored: a glob is expanded against this small table."""

    topic = pw.CharField(primary_key=True)

    class Meta:
        table_name = "topics"


class ConsumerCursor(BaseModel):
    source = pw.CharField(primary_key=True)
    epoch = pw.IntegerField(default=0)
    cursor = pw.BigIntegerField(default=0)

    class Meta:
        table_name = "cursors"


@dataclass(frozen=True)
class StatusUpdate:
    key: str
    kind: str
    name: str
    daemon_kind: str
    phase: str
    since: str
    status: dict[str, Any]


@dataclass(frozen=True)
class Batch:
    """Events of a daemon, the cursor to store with them and the status read with them.

    ``statuses`` were read from the daemon after every event up to ``cursor``
    was fetched: they become visible in the same transaction as the events.
    """

    source: str
    epoch: int
    cursor: int
    events: list[Event]
    statuses: list[StatusUpdate] = field(default_factory=list)


_STOP = object()  # queued by close(): the writer commits what is before it, then ends


class Commit(threading.Event):
    """Set when a queued write is committed, or, ``ok`` False, when it was dropped
    from memory (the pending queue overflowed, or routerd stopped before the
    store could write again): its events are then fetched again from the daemon."""

    ok = True


@dataclass(frozen=True)
class _DeleteResource:
    key: str


#: Columns of ``events`` an insert fills, in order (also used by bench_serve).
EVENT_COLUMNS = (
    "source",
    "epoch",
    "cursor",
    "time",
    "topic",
    "severity",
    "reason",
    "message",
    "resource_kind",
    "resource_name",
    "attributes",
)
INSERT_EVENT_SQL = f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
#: Rows per multi-row INSERT (a power of two; 2,816 parameters, under SQLite's 32,766).
ROWS_PER_INSERT = 256


@functools.cache
def _insert_sql(rows: int) -> str:
    one = f"({', '.join('?' * len(EVENT_COLUMNS))})"
    return f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) VALUES {', '.join([one] * rows)}"


def insert_events(conn: sqlite3.Connection, values: list[tuple[Any, ...]]) -> None:
    """Insert rows in order with multi-row INSERTs of 256, 128, ... 1 rows (a few
    statements, all in sqlite3's statement cache).

    Not executemany: it releases the GIL around every row's step and takes it
    back, and beside any busy Python thread of serve (the rules engine, the API)
    each take waits its turn; the store fell from 74,000 to 8,000 rows/s beside
    one busy thread. This releases it once per 256 rows (docs/benchmarks.md, Rules).
    """
    done = 0
    while done < len(values):
        n = min(ROWS_PER_INSERT, 1 << ((len(values) - done).bit_length() - 1))
        conn.execute(_insert_sql(n), [v for row in values[done : done + n] for v in row])
        done += n


def event_row(ev: Event, source: str, epoch: int) -> dict[str, Any]:
    attrs = ev.attributes
    return {
        "source": source,
        "epoch": epoch,
        "cursor": ev.cursor,
        "time": ev.time,
        "topic": ev.topic,
        "severity": ev.severity,
        "reason": ev.reason,
        "message": ev.message,
        "resource_kind": str(attrs.get("resource.kind", "")),
        "resource_name": str(attrs.get("resource.name", "")),
        "attributes": json.dumps(attrs, separators=(",", ":")),
    }


def row_to_wire(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "source": row["source"],
        "cursor": str(row["cursor"]),
        "time": rfc3339(row["time"]),
        "topic": row["topic"],
        "severity": row["severity"],
        "reason": row["reason"],
        "message": row["message"],
        "attributes": json.loads(row["attributes"]),
    }


#: The writer retries a failed commit after 0.1 s, doubling up to this.
RETRY_CAP = 2.0
RETRY_FIRST = 0.1
#: Events kept in memory while commits fail. Followers wait for their batch,
#: so this holds one batch per daemon; past it a batch is dropped from memory
#: and its follower fetches it again from the daemon's own log later.
MAX_PENDING_EVENTS = 100_000
#: Items committed per transaction.
CHUNK = 256


class CustomWrite:
    """A write of another part of serve (the rules engine), in the writer's transaction:
    its ``batches`` and ``statuses`` as the followers' are, then ``write`` for its own
    tables. ``size`` counts its events against the pending bound."""

    batches: list[Batch]
    statuses: list[StatusUpdate]

    @property
    def size(self) -> int:
        return 0

    def write(self, conn: sqlite3.Connection) -> None:
        raise NotImplementedError


WriteItem = Batch | StatusUpdate | _DeleteResource | CustomWrite


def _size(item: WriteItem) -> int:
    if isinstance(item, CustomWrite):
        return item.size
    return len(item.events) if isinstance(item, Batch) else 0


def _statuses(item: WriteItem) -> list[StatusUpdate]:
    if isinstance(item, StatusUpdate):
        return [item]
    return item.statuses if isinstance(item, Batch | CustomWrite) else []


@dataclass
class _Tally:
    """What one transaction wrote; applied to the counters only once it commits."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    topics: set[str] = field(default_factory=set)
    statuses: list[str] = field(default_factory=list)  # keys of the statuses written


class EventStore:
    """The database, its writer thread and query helpers."""

    def __init__(
        self,
        path: Path,
        *,
        max_rows: int = 1_000_000,
        max_age: float = 30 * 86400,
        max_pending_events: int = MAX_PENDING_EVENTS,
        busy_timeout_ms: int = 5000,
        retry_first: float = RETRY_FIRST,
        retry_cap: float = RETRY_CAP,
    ) -> None:
        self.path = path
        self.max_rows = max_rows
        self.max_age = max_age
        self.max_pending_events = max_pending_events
        self.retry_first = retry_first
        self.retry_cap = retry_cap
        self._listeners: list[Callable[[list[str]], None]] = []
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = pw.SqliteDatabase(str(path), pragmas={**PRAGMAS, "busy_timeout": busy_timeout_ms})
        database.initialize(self.db)
        with self.db.connection_context():
            self.db.create_tables([StoredEvent, ResourceRow, ConsumerCursor, Topic])
        self._queue: queue.Queue[Any] = queue.Queue()
        self._cond = threading.Condition()
        self.head_id = self._max_id()
        # Counters of committed work (the writer thread updates them after each commit).
        self.inserted = 0
        self.duplicates = 0
        self.write_errors = 0  # failed commit attempts
        self.dropped = 0  # events dropped from memory; their followers fetch them again
        # Health, read by status (under _health_lock for a consistent view).
        self._health_lock = threading.Lock()
        self.state = "Ok"
        self.last_error: str | None = None
        self.degraded_since: float | None = None  # wall clock
        self.state_since = time.time()
        self.pending_events = 0
        self.pending_writes = 0
        self._drop_logged = False  # one line per degraded period, not one per batch
        self._thread = threading.Thread(target=self._writer, name="store-writer", daemon=True)
        self._closed = False
        self._known_topics: set[str] = set()

    def start(self) -> None:
        self._thread.start()

    def _max_id(self) -> int:
        with self.db.connection_context():
            value = StoredEvent.select(pw.fn.MAX(StoredEvent.id)).scalar()
        return int(value or 0)

    def health(self) -> dict[str, Any]:
        """The writer's state for ``status``: Ok or Degraded, why, since when, what waits."""
        with self._health_lock:
            return {
                "state": self.state,
                "stateSince": rfc3339(self.state_since),
                "lastError": self.last_error,
                "degradedSince": None
                if self.degraded_since is None
                else rfc3339(self.degraded_since),
                "pending": self.pending_events,
                "pendingWrites": self.pending_writes,
                "dropped": self.dropped,
            }

    @property
    def degraded(self) -> bool:
        return self.state != "Ok"

    # -- writing -----------------------------------------------------------
    def submit(self, item: WriteItem) -> Commit:
        """Queue a write; the returned :class:`Commit` is set once it is done."""
        done = Commit()
        self._queue.put((item, done))
        return done

    def _writer(self) -> None:
        pending: deque[tuple[WriteItem, Commit]] = deque()
        retry_at = 0.0
        backoff = self.retry_first
        last_prune = time.monotonic()
        stopping = False
        while True:
            now = time.monotonic()
            wait = 1.0 if not pending else max(0.0, retry_at - now)
            stopping = self._take(pending, wait) or stopping
            if pending and (stopping or time.monotonic() >= retry_at):
                if self._flush(pending):
                    backoff = self.retry_first
                else:
                    retry_at = time.monotonic() + backoff
                    backoff = min(backoff * 2, self.retry_cap)
            self._set_pending(pending)
            if stopping:
                break
            now = time.monotonic()
            if not self.degraded and now - last_prune > 60:
                last_prune = now
                self._prune(time.time())
        if pending:
            lost = sum(_size(item) for item, _ in pending)
            log.warning(
                "stopping with %d events not stored; they are fetched again at the next start",
                lost,
            )
            for _, done in pending:
                done.ok = False
                done.set()
        self._disconnect()

    def _take(self, pending: deque[tuple[WriteItem, Commit]], wait: float) -> bool:
        """Move queued writes into ``pending`` (bounded); True when close() asked to stop."""
        stopping = False
        try:
            items = [self._queue.get(timeout=wait)] if wait > 0 else [self._queue.get_nowait()]
        except queue.Empty:
            return False
        while len(items) < CHUNK:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        held = sum(_size(item) for item, _ in pending)
        for entry in items:
            if entry is _STOP:
                stopping = True
                continue
            item, done = entry
            size = _size(item)
            if held + size > self.max_pending_events and pending:
                # Memory is bounded: this batch's events stay in the daemon's
                # own log, and its follower asks for them again later.
                if not self._drop_logged:
                    self._drop_logged = True
                    log.warning(
                        "store: %d events pending in memory; dropping a batch of %d from %s"
                        " (fetched again from the daemon later)",
                        held,
                        size,
                        getattr(item, "source", "?"),
                    )
                with self._health_lock:
                    self.dropped += size
                done.ok = False
                done.set()
                continue
            held += size
            pending.append((item, done))
        return stopping

    def _set_pending(self, pending: deque[tuple[WriteItem, Commit]]) -> None:
        with self._health_lock:
            self.pending_writes = len(pending)
            self.pending_events = sum(_size(item) for item, _ in pending)

    def _flush(self, pending: deque[tuple[WriteItem, Commit]]) -> bool:
        """Commit ``pending`` in chunks; False (and the rest kept) when a commit fails."""
        while pending:
            chunk = [pending[i] for i in range(min(CHUNK, len(pending)))]
            try:
                tally = self._commit([item for item, _ in chunk])
            except Exception as exc:  # any failure keeps the writes pending
                self._failed(exc, sum(_size(item) for item, _ in pending))
                return False
            for _ in chunk:
                pending.popleft()
            self._committed(tally)
            for _, done in chunk:
                done.set()
        return True

    def _commit(self, items: list[WriteItem]) -> _Tally:
        tally = _Tally()
        self.db.connect(reuse_if_open=True)
        if not self._known_topics:
            self._known_topics = {t.topic for t in Topic.select()}
        # The transaction by hand, not peewee's atomic(): SQLite itself rolls
        # back on SQLITE_FULL and SQLITE_IOERR, and a second ROLLBACK would
        # replace the real error with "no transaction is active".
        conn: sqlite3.Connection = self.db.connection()  # type: ignore[no-untyped-call]
        conn.execute("BEGIN")
        try:
            for item in items:
                if isinstance(item, Batch):
                    self._write_batch(conn, item, tally)
                    for up in item.statuses:
                        self._write_status(up)
                elif isinstance(item, StatusUpdate):
                    self._write_status(item)
                elif isinstance(item, CustomWrite):
                    for b in item.batches:
                        self._write_batch(conn, b, tally)
                    for up in item.statuses:
                        self._write_status(up)
                    item.write(conn)
                else:
                    ResourceRow.delete().where(ResourceRow.key == item.key).execute()
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the error that matters is the one being raised
            raise
        tally.statuses = [up.key for item in items for up in _statuses(item)]
        return tally

    def _committed(self, tally: _Tally) -> None:
        self._known_topics |= tally.topics
        with self._health_lock:
            self.inserted += len(tally.rows)
            self.duplicates += tally.duplicates
            if self.state != "Ok":
                assert self.degraded_since is not None
                log.info(
                    "store: writes work again after %.1f s (%d failed attempts so far)",
                    time.time() - self.degraded_since,
                    self.write_errors,
                )
                self.state = "Ok"
                self.state_since = time.time()
                self.degraded_since = None
                self._drop_logged = False
        if tally.rows:
            with self._cond:
                self.head_id = max(self.head_id, max(int(r["id"]) for r in tally.rows))
                self._cond.notify_all()
        for listener in self._listeners:
            try:
                listener(tally.statuses)
            except Exception:  # a listener's bug must not stop the writer
                log.exception("store: a commit listener failed")

    def add_commit_listener(self, listener: Callable[[list[str]], None]) -> None:
        """Call ``listener(status_keys)`` on the writer thread after every commit
        (the rules engine re-evaluates DerivedEvents on it); it must not block."""
        self._listeners.append(listener)

    def _failed(self, exc: Exception, held: int) -> None:
        text = str(exc) or type(exc).__name__
        with self._health_lock:
            self.write_errors += 1
            self.last_error = text
            entering = self.state == "Ok"
            if entering:
                self.state = "Degraded"
                self.degraded_since = self.state_since = time.time()
        if entering:
            # One line per state change, not one per attempt. An error that is
            # not the database's own (a bug) gets its traceback, once.
            storage = isinstance(exc, sqlite3.Error | pw.PeeweeException)
            log.warning(
                "store: cannot commit (%s); keeping %d events in memory and retrying with backoff",
                text,
                held,
                exc_info=None if storage else exc,
            )
        # A fresh connection for the next attempt: after an I/O error SQLite may
        # keep the old one unusable.
        self._disconnect()

    def _disconnect(self) -> None:
        try:
            self.db.close()
        except Exception:  # closing a broken connection
            pass

    def _write_batch(self, conn: sqlite3.Connection, batch: Batch, tally: _Tally) -> None:
        stored = ConsumerCursor.get_or_none(ConsumerCursor.source == batch.source)
        floor = stored.cursor if stored is not None and stored.epoch == batch.epoch else -1
        rows = [event_row(e, batch.source, batch.epoch) for e in batch.events if e.cursor > floor]
        tally.duplicates += len(batch.events) - len(rows)
        if rows:
            # A few multi-row INSERTs (peewee builds SQL per row at ~150 us each).
            # The cursor floor above already removed what is stored, so a unique
            # violation means something else wrote: undo the inserts (a
            # savepoint) and fall back row by row.
            conn.execute("SAVEPOINT batch")
            try:
                insert_events(conn, [tuple(r[c] for c in EVENT_COLUMNS) for r in rows])
                last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
                conn.execute("RELEASE batch")
                for offset, row in enumerate(rows):
                    row["id"] = last - len(rows) + 1 + offset
            except sqlite3.IntegrityError:
                conn.execute("ROLLBACK TO batch")
                conn.execute("RELEASE batch")
                kept = []
                for row in rows:
                    # rowcount, not lastrowid: an ignored insert leaves lastrowid
                    # at the previous row's id.
                    cur = conn.execute(
                        INSERT_EVENT_SQL.replace("INSERT", "INSERT OR IGNORE", 1),
                        tuple(row[c] for c in EVENT_COLUMNS),
                    )
                    if cur.rowcount == 1:
                        row["id"] = cur.lastrowid
                        kept.append(row)
                tally.duplicates += len(rows) - len(kept)
                rows = kept
            new_topics = {r["topic"] for r in rows} - self._known_topics - tally.topics
            if new_topics:
                Topic.insert_many([{"topic": t} for t in new_topics]).on_conflict_ignore().execute()
                tally.topics |= new_topics
        tally.rows.extend(rows)
        ConsumerCursor.insert(
            source=batch.source, epoch=batch.epoch, cursor=batch.cursor
        ).on_conflict_replace().execute()

    def _write_status(self, up: StatusUpdate) -> None:
        ResourceRow.insert(
            key=up.key,
            kind=up.kind,
            name=up.name,
            daemon_kind=up.daemon_kind,
            phase=up.phase,
            since=up.since,
            status=json.dumps(up.status),
            updated=time.time(),
        ).on_conflict_replace().execute()

    def _prune(self, now: float) -> None:
        try:
            self.db.connect(reuse_if_open=True)
            with self.db.atomic():
                StoredEvent.delete().where(StoredEvent.time < now - self.max_age).execute()
                floor = self.head_id - self.max_rows
                if floor > 0:
                    StoredEvent.delete().where(StoredEvent.id <= floor).execute()
        except Exception as exc:  # pruning is retried next minute
            log.warning("store: pruning failed (%s); retrying in a minute", exc)
            self._disconnect()

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(_STOP)
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # -- reading (any thread; each keeps its own connection) -----------------
    def _reader(self) -> None:
        """Open this thread's connection once (0.5 ms each time otherwise)."""
        self.db.connect(reuse_if_open=True)

    def cursor_of(self, source: str) -> tuple[int, int] | None:
        self._reader()
        row = ConsumerCursor.get_or_none(ConsumerCursor.source == source)
        return None if row is None else (row.epoch, row.cursor)

    def matching_topics(self, patterns: tuple[str, ...]) -> list[str]:
        """The stored topics matching any glob (the topics table is small)."""
        self._reader()
        exact = {p for p in patterns if "*" not in p}
        globs = [p for p in patterns if "*" in p]
        found = set(exact)
        if globs:
            found |= {
                t.topic for t in Topic.select() if any(topic_matches(g, t.topic) for g in globs)
            }
        return sorted(found)

    def query(
        self,
        *,
        topics: tuple[str, ...] = (),
        resource: tuple[str, str] | None = None,
        since: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first without ``since``; oldest first after ``since`` (for following).

        Topic globs are expanded against the stored topics first; each exact
        topic is then read through the ``(topic, id)`` index and the pages are
        merged, so a glob costs a few index look-ups however many events a
        namespace holds.
        """
        for pattern in topics:
            compile_glob(pattern)
        self._reader()
        if not topics:
            return self._page(None, resource, since, limit)
        matched = self.matching_topics(topics)
        if len(matched) == 1:
            return self._page(matched[0], resource, since, limit)
        # Merge on ids first (index-only per topic), then read just the winners.
        ids: list[int] = []
        for topic in matched:
            q = self._filtered(StoredEvent.select(StoredEvent.id), topic, resource, since)
            ids.extend(r[0] for r in q.limit(limit).tuples())
        ids.sort(reverse=since is None)
        chosen = ids[:limit]
        if not chosen:
            return []
        q = StoredEvent.select().where(StoredEvent.id.in_(chosen))
        q = q.order_by(StoredEvent.id.asc() if since is not None else StoredEvent.id.desc())
        return [row_to_wire(r) for r in q.dicts()]  # type: ignore[arg-type]

    @staticmethod
    def _filtered(
        q: Any, topic: str | None, resource: tuple[str, str] | None, since: int | None
    ) -> Any:
        if topic is not None:
            q = q.where(StoredEvent.topic == topic)
        if resource is not None:
            q = q.where(
                (StoredEvent.resource_kind == resource[0])
                & (StoredEvent.resource_name == resource[1])
            )
        if since is not None:
            q = q.where(StoredEvent.id > since)
        return q.order_by(StoredEvent.id.asc() if since is not None else StoredEvent.id.desc())

    def _page(
        self, topic: str | None, resource: tuple[str, str] | None, since: int | None, limit: int
    ) -> list[dict[str, Any]]:
        self._reader()
        q = self._filtered(StoredEvent.select(), topic, resource, since)
        return [row_to_wire(r) for r in q.limit(limit).dicts()]

    def wait(self, since: int, timeout: float, **filters: Any) -> tuple[list[dict[str, Any]], int]:
        """Events after ``since`` (oldest first), holding up to ``timeout`` for a match.

        Returns the rows and the cursor to continue from: the last row's id,
        or, when nothing matched, the newest id that was examined.
        """
        deadline = time.monotonic() + timeout
        while True:
            seen = self.head_id  # read before querying: a commit after this wakes us
            rows = self.query(since=since, **filters)
            if rows:
                return rows, int(rows[-1]["id"])
            since = max(since, seen)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                return [], since
            with self._cond:
                self._cond.wait_for(self._moved_past(seen), remaining)

    def _moved_past(self, seen: int) -> Callable[[], bool]:
        def moved() -> bool:
            return self.head_id > seen or self._closed

        return moved

    @staticmethod
    def _resource_wire(r: ResourceRow) -> dict[str, Any]:
        return {
            "kind": r.kind,
            "name": r.name,
            "daemonKind": r.daemon_kind,
            "phase": r.phase,
            "since": r.since,
            "status": json.loads(r.status),
            "updated": rfc3339(r.updated),
        }

    def resources(self) -> list[dict[str, Any]]:
        self._reader()
        return [self._resource_wire(r) for r in ResourceRow.select().order_by(ResourceRow.key)]

    def resource(self, kind: str, name: str) -> dict[str, Any] | None:
        self._reader()
        r = ResourceRow.get_or_none(ResourceRow.key == f"{kind}/{name}")
        return None if r is None else self._resource_wire(r)

    def delete_resource(self, kind: str, name: str) -> None:
        """Drop a resource's status row (its events stay); waits unless writes fail."""
        self.submit(_DeleteResource(f"{kind}/{name}")).wait(0 if self.degraded else 5)

    def count(self) -> int:
        self._reader()
        return int(StoredEvent.select().count())
