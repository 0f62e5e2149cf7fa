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
    "cache_size": -16000,
    "temp_store": "memory",
}


def _namespace(topic: str) -> str:
    """The protocol segment (``dhcpv4`` of ``routerd.dhcpv4.client.lease.bound``)."""
    parts = topic.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


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
    ns = pw.CharField()
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
            (("ns", "id"), False),
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


class Commit(threading.Event):
    """Set when a queued write is done; ``ok`` is False when it was rolled back."""

    ok = True


@dataclass(frozen=True)
class _DeleteResource:
    key: str


def event_row(ev: Event, source: str, epoch: int) -> dict[str, Any]:
    attrs = ev.attributes
    return {
        "source": source,
        "epoch": epoch,
        "cursor": ev.cursor,
        "time": ev.time,
        "topic": ev.topic,
        "ns": _namespace(ev.topic),
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
        self.db.register_function(topic_matches, "topic_match", 2, deterministic=True)
        database.initialize(self.db)
        with self.db.connection_context():
            self.db.create_tables([StoredEvent, ResourceRow, ConsumerCursor])
        self._queue: queue.Queue[Any] = queue.Queue()
        self._cond = threading.Condition()
        self.head_id = self._max_id()
        self.inserted = 0
        self.duplicates = 0
        self.write_errors = 0
        self._thread = threading.Thread(target=self._writer, name="store-writer", daemon=True)
        self._closed = False
        self._listeners: list[Callable[[list[dict[str, Any]]], None]] = []

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

    def add_listener(self, fn: Callable[[list[dict[str, Any]]], None]) -> None:
        """Called on the writer thread with the wire form of committed events."""
        self._listeners.append(fn)

    def _writer(self) -> None:
        self.db.connect(reuse_if_open=True)
        last_prune = 0.0
        while True:
            try:
                first = self._queue.get(timeout=1.0)
            except queue.Empty:
                first = None
            if first is None and self._closed:
                break
            items = [] if first is None else [first]
            while len(items) < 256:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if any(item is None for item in items):
                self._closed = True
                items = [i for i in items if i is not None]
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
            wire = [row_to_wire(r) for r in committed]
            for fn in self._listeners:
                try:
                    fn(wire)
                except Exception:
                    log.exception("store listener failed")
        for _, done in items:
            done.set()

    def _write_batch(self, batch: Batch) -> list[dict[str, Any]]:
        stored = ConsumerCursor.get_or_none(ConsumerCursor.source == batch.source)
        floor = stored.cursor if stored is not None and stored.epoch == batch.epoch else -1
        rows = [event_row(e, batch.source, batch.epoch) for e in batch.events if e.cursor > floor]
        self.duplicates += len(batch.events) - len(rows)
        out = []
        for row in rows:
            row_id = StoredEvent.insert(**row).on_conflict_ignore().execute()
            if row_id:
                row["id"] = row_id
                out.append(row)
            else:
                self.duplicates += 1
        self.inserted += len(out)
        ConsumerCursor.insert(
            source=batch.source, epoch=batch.epoch, cursor=batch.cursor
        ).on_conflict_replace().execute()
        return out

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
        self._queue.put(None)
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

    def query(
        self,
        *,
        topics: tuple[str, ...] = (),
        resource: tuple[str, str] | None = None,
        since: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        """Newest first without ``since``; oldest first after ``since`` (for following)."""
        q = StoredEvent.select()
        conds = []
        if resource is not None:
            conds.append(
                (StoredEvent.resource_kind == resource[0])
                & (StoredEvent.resource_name == resource[1])
            )
        if topics:
            ors: list[Any] = []
            for pattern in topics:
                segs = compile_glob(pattern)
                if "*" not in pattern:
                    ors.append(StoredEvent.topic == pattern)
                elif len(segs) > 1 and "*" not in segs[1] and segs[0] != "**":
                    ors.append(
                        (StoredEvent.ns == segs[1]) & pw.fn.topic_match(pattern, StoredEvent.topic)
                    )
                else:
                    ors.append(pw.fn.topic_match(pattern, StoredEvent.topic))
            cond = ors[0]
            for extra in ors[1:]:
                cond = cond | extra
            conds.append(cond)
        if since is not None:
            conds.append(StoredEvent.id > since)
        for cond in conds:
            q = q.where(cond)
        q = q.order_by(StoredEvent.id.asc() if since is not None else StoredEvent.id.desc()).limit(
            limit
        )
        self._reader()
        return [row_to_wire(r) for r in q.dicts()]  # type: ignore[arg-type]

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
