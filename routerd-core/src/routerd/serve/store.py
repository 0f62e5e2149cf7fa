"""The SQLite event store (peewee, WAL): one writer thread, readers on their own connections.

Events from a daemon and that daemon's consumer cursor are written in the
same transaction, so a crash of routerd or of a daemon can neither duplicate
nor lose an event: after a restart, ingestion resumes from the stored cursor.
``(source, epoch, cursor)`` is unique as a last line of defence; the epoch
moves when a daemon answers ``reset`` (its log was lost and its cursors
started again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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
class Batch:
    """Events of one long-poll answer and the cursor to store with them."""

    source: str
    epoch: int
    cursor: int
    events: list[Event]


@dataclass(frozen=True)
class StatusUpdate:
    key: str
    kind: str
    name: str
    daemon_kind: str
    phase: str
    since: str
    status: dict[str, Any]


_STOP = object()  # queued by close(): the writer commits what is before it, then ends


class Commit(threading.Event):
    """Set when a queued write is done; ``ok`` is False when it was rolled back."""

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


class EventStore:
    """The database, its writer thread and query helpers."""

    def __init__(
        self, path: Path, *, max_rows: int = 1_000_000, max_age: float = 30 * 86400
    ) -> None:
        self.path = path
        self.max_rows = max_rows
        self.max_age = max_age
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = pw.SqliteDatabase(str(path), pragmas=PRAGMAS)
        database.initialize(self.db)
        with self.db.connection_context():
            self.db.create_tables([StoredEvent, ResourceRow, ConsumerCursor, Topic])
        self._queue: queue.Queue[Any] = queue.Queue()
        self._cond = threading.Condition()
        self.head_id = self._max_id()
        self.inserted = 0
        self.duplicates = 0
        self.write_errors = 0
        self._thread = threading.Thread(target=self._writer, name="store-writer", daemon=True)
        self._closed = False
        self._known_topics: set[str] = set()

    def start(self) -> None:
        self._thread.start()

    def _max_id(self) -> int:
        with self.db.connection_context():
            value = StoredEvent.select(pw.fn.MAX(StoredEvent.id)).scalar()
        return int(value or 0)

    # -- writing -----------------------------------------------------------
    def submit(self, item: Batch | StatusUpdate | _DeleteResource) -> Commit:
        """Queue a write; the returned :class:`Commit` is set once it is done."""
        done = Commit()
        self._queue.put((item, done))
        return done

    def _writer(self) -> None:
        self.db.connect(reuse_if_open=True)
        self._known_topics = {t.topic for t in Topic.select()}
        last_prune = 0.0
        stopping = False
        while not stopping:
            try:
                items = [self._queue.get(timeout=1.0)]
            except queue.Empty:
                items = []
            while items and len(items) < 256:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if _STOP in items:
                stopping = True
                items = [i for i in items if i is not _STOP]
            if items:
                self._commit(items)
            now = time.time()
            if now - last_prune > 60:
                last_prune = now
                self._prune(now)
        self.db.close()

    def _commit(self, items: list[tuple[Batch | StatusUpdate | _DeleteResource, Commit]]) -> None:
        committed: list[dict[str, Any]] = []

        try:
            with self.db.atomic():
                for item, _ in items:
                    if isinstance(item, Batch):
                        committed.extend(self._write_batch(item))
                    elif isinstance(item, StatusUpdate):
                        self._write_status(item)
                    else:
                        ResourceRow.delete().where(ResourceRow.key == item.key).execute()
        except pw.PeeweeException:
            self.write_errors += 1
            log.exception("store write failed; the batch will be fetched again")
            for _, done in items:
                done.ok = False
                done.set()
            return
        if committed:
            with self._cond:
                self.head_id = max(int(r["id"]) for r in committed)
                self._cond.notify_all()
        for _, done in items:
            done.set()

    def _write_batch(self, batch: Batch) -> list[dict[str, Any]]:
        stored = ConsumerCursor.get_or_none(ConsumerCursor.source == batch.source)
        floor = stored.cursor if stored is not None and stored.epoch == batch.epoch else -1
        rows = [event_row(e, batch.source, batch.epoch) for e in batch.events if e.cursor > floor]
        self.duplicates += len(batch.events) - len(rows)
        if rows:
            # One executemany (peewee builds SQL per row at ~150 us each). The
            # cursor floor above already removed what is stored, so a unique
            # violation means something else wrote: fall back row by row.
            conn: sqlite3.Connection = self.db.connection()  # type: ignore[no-untyped-call]
            try:
                conn.executemany(
                    INSERT_EVENT_SQL, [tuple(r[c] for c in EVENT_COLUMNS) for r in rows]
                )
                last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
                for offset, row in enumerate(rows):
                    row["id"] = last - len(rows) + 1 + offset
            except sqlite3.IntegrityError:
                kept = []
                for row in rows:
                    row_id = StoredEvent.insert(**row).on_conflict_ignore().execute()
                    if row_id:
                        row["id"] = row_id
                        kept.append(row)
                self.duplicates += len(rows) - len(kept)
                rows = kept
            new_topics = {r["topic"] for r in rows} - self._known_topics
            if new_topics:
                Topic.insert_many([{"topic": t} for t in new_topics]).on_conflict_ignore().execute()
                self._known_topics |= new_topics
        self.inserted += len(rows)
        ConsumerCursor.insert(
            source=batch.source, epoch=batch.epoch, cursor=batch.cursor
        ).on_conflict_replace().execute()
        return rows

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
            with self.db.atomic():
                StoredEvent.delete().where(StoredEvent.time < now - self.max_age).execute()
                floor = self.head_id - self.max_rows
                if floor > 0:
                    StoredEvent.delete().where(StoredEvent.id <= floor).execute()
        except pw.PeeweeException:
            log.exception("pruning failed")

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
        }

    def resources(self) -> list[dict[str, Any]]:
        self._reader()
        return [self._resource_wire(r) for r in ResourceRow.select().order_by(ResourceRow.key)]

    def resource(self, kind: str, name: str) -> dict[str, Any] | None:
        self._reader()
        r = ResourceRow.get_or_none(ResourceRow.key == f"{kind}/{name}")
        return None if r is None else self._resource_wire(r)

    def delete_resource(self, kind: str, name: str) -> None:
        self.submit(_DeleteResource(f"{kind}/{name}")).wait(5)

    def count(self) -> int:
        self._reader()
        return int(StoredEvent.select().count())
