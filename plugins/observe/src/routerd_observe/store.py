"""Each observer's own SQLite store (peewee, WAL): a writer thread and readers.

The engine thread hands rows to :meth:`ObserverStore.put` and never waits on
the disk. One writer thread commits them in batches with one
``executemany`` per transaction (peewee's per-row SQL generation costs
~150 µs a row here, python-stack.md §4: statements are written once, peewee
opens the database with its pragmas and gives every thread its own
connection). Readers (the daemon's HTTP threads, another observer joining
names) read on their own connections while the writer writes (WAL).

Nothing blocks the engine: rows beyond ``max_pending`` waiting for the disk
are dropped and counted (``store-backlog``), a commit that fails (full disk,
I/O error) is retried with backoff while at most ``max_pending`` rows wait,
and the state is reported in status (``state``, ``lastError``).

Retention: rows older than ``max_age`` seconds, rows beyond ``max_records``
(oldest first) and, while the database holds more than ``max_bytes`` of live
pages, the oldest 5 % are deleted every ``prune_every`` seconds. Freed pages
are reused by SQLite; the file does not shrink.
"""

from __future__ import annotations

from collections import Counter
from collections import deque
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
import logging
import os
from pathlib import Path
import sqlite3
import threading
import time
from typing import Any

import peewee as pw

log = logging.getLogger("routerd.observe.store")

PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "busy_timeout": 5000,
    "cache_size": -4000,
    "temp_store": "memory",
}
MAX_BATCH = 5000


@dataclass(frozen=True)
class Table:
    """What a store holds: one table, its indexes and how a row is written.

    :ivar name: table name.
    :ivar schema: ``CREATE TABLE`` / ``CREATE INDEX`` statements (idempotent).
    :ivar insert: the statement ``executemany`` runs for each batch of rows.
    :ivar time_column: the column retention ages by (seconds since the epoch).
    """

    name: str
    schema: tuple[str, ...]
    insert: str
    time_column: str


@dataclass(frozen=True)
class Retention:
    max_age: float
    max_records: int
    max_bytes: int


class ObserverStore:
    """One observer's database: ``put`` rows from any thread, query from any thread."""

    def __init__(
        self,
        path: Path,
        table: Table,
        retention: Retention,
        *,
        max_pending: int = 200_000,
        prune_every: float = 60.0,
        clock: Callable[[], float] = time.time,
        busy_ms: int = 5000,
    ) -> None:
        self.path = path
        self.table = table
        self.retention = retention
        self.max_pending = max_pending
        self.prune_every = prune_every
        self.clock = clock
        pragmas = {**PRAGMAS, "busy_timeout": busy_ms}
        self.db: Any = pw.SqliteDatabase(str(path), pragmas=pragmas, check_same_thread=False)
        self._pending: deque[Sequence[Any]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._readers = threading.local()
        self.written = 0
        self.commits = 0
        self.pruned = 0
        self.write_errors = 0
        self.dropped: Counter[str] = Counter()
        self.last_error: str | None = None
        self.state = "Ok"
        self.state_since = clock()
        self._next_prune = 0.0

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o027)
        try:
            self.db.connect(reuse_if_open=True)
        finally:
            os.umask(old)
        for statement in self.table.schema:
            self.db.execute_sql(statement)
        self.db.close()
        self._thread = threading.Thread(target=self._run, name="observe-store", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Commit what is pending (within ``timeout``) and stop the writer."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        reader = getattr(self._readers, "conn", None)
        if reader is not None:
            reader.close()
            self._readers.conn = None

    # -- writing -----------------------------------------------------------------
    def put(self, rows: Sequence[Sequence[Any]]) -> int:
        """Queue rows for the writer; returns how many were accepted."""
        if not rows:
            return 0
        with self._cond:
            room = self.max_pending - len(self._pending)
            accepted = rows if room >= len(rows) else rows[: max(0, room)]
            if len(accepted) < len(rows):
                self.dropped["store-backlog"] += len(rows) - len(accepted)
            self._pending.extend(accepted)
            self._cond.notify()
        return len(accepted)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every row queued so far is committed (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    _busy = False

    def _run(self) -> None:
        self.db.connect(reuse_if_open=True)
        backoff = 0.1
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._stopping:
                        self._cond.wait(min(1.0, max(0.05, self._next_prune - self.clock())))
                        if self.clock() >= self._next_prune:
                            break
                    if self._stopping and not self._pending:
                        return
                    batch = [
                        self._pending.popleft() for _ in range(min(MAX_BATCH, len(self._pending)))
                    ]
                    self._busy = bool(batch)
                try:
                    if batch:
                        self._commit(batch)
                    if self.clock() >= self._next_prune:
                        self._next_prune = self.clock() + self.prune_every
                        self.prune()
                except (sqlite3.Error, pw.PeeweeException, OSError) as exc:
                    self._failed(exc, batch)
                    if self._stopping:
                        return
                    with self._cond:
                        self._busy = False
                        self._cond.wait(backoff)
                    backoff = min(2.0, backoff * 2)
                    continue
                backoff = 0.1
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
        finally:
            self.db.close()

    def _commit(self, batch: list[Sequence[Any]]) -> None:
        with self.db.atomic():
            self.db.cursor().executemany(self.table.insert, batch)
        self.written += len(batch)
        self.commits += 1
        if self.state != "Ok":
            log.info("%s: writes work again", self.path)
            self.state, self.state_since, self.last_error = "Ok", self.clock(), None

    def _failed(self, exc: BaseException, batch: list[Sequence[Any]]) -> None:
        self.write_errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.state == "Ok":
            log.warning("%s: cannot write (%s); keeping rows in memory", self.path, exc)
            self.state, self.state_since = "Degraded", self.clock()
        with self._cond:
            room = self.max_pending - len(self._pending)
            keep = batch[: max(0, room)]
            if len(keep) < len(batch):
                self.dropped["store-backlog"] += len(batch) - len(keep)
            self._pending.extendleft(reversed(keep))

    def prune(self) -> int:
        """Apply retention now (on the writer's connection); returns rows deleted."""
        r, t = self.retention, self.table
        deleted = 0
        cutoff = self.clock() - r.max_age
        with self.db.atomic():
            cur = self.db.execute_sql(f"DELETE FROM {t.name} WHERE {t.time_column} < ?", (cutoff,))
            deleted += max(0, cur.rowcount)
            (count,) = self.db.execute_sql(f"SELECT count(*) FROM {t.name}").fetchone()
            if count > r.max_records:
                cur = self.db.execute_sql(
                    f"DELETE FROM {t.name} WHERE rowid IN "
                    f"(SELECT rowid FROM {t.name} ORDER BY {t.time_column} LIMIT ?)",
                    (count - r.max_records,),
                )
                deleted += max(0, cur.rowcount)
                count -= max(0, cur.rowcount)
            if self.live_bytes() > r.max_bytes and count:
                cur = self.db.execute_sql(
                    f"DELETE FROM {t.name} WHERE rowid IN "
                    f"(SELECT rowid FROM {t.name} ORDER BY {t.time_column} LIMIT ?)",
                    (max(1, count // 20),),
                )
                deleted += max(0, cur.rowcount)
        self.pruned += deleted
        return int(deleted)

    def live_bytes(self) -> int:
        page_size = self.db.execute_sql("PRAGMA page_size").fetchone()[0]
        pages = self.db.execute_sql("PRAGMA page_count").fetchone()[0]
        free = self.db.execute_sql("PRAGMA freelist_count").fetchone()[0]
        return int((pages - free) * page_size)

    # -- reading -----------------------------------------------------------------
    def reader(self) -> sqlite3.Connection:
        """This thread's read connection (kept open: connecting costs ~0.5 ms)."""
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if conn is None:
            conn = open_reader(self.path)
            self._readers.conn = conn
        return conn

    def stats(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "state": self.state,
            "written": self.written,
            "commits": self.commits,
            "pending": self.pending,
            "pruned": self.pruned,
            "writeErrors": self.write_errors,
            "dropped": dict(self.dropped),
            "lastError": self.last_error,
            "retention": {
                "maxAge": self.retention.max_age,
                "maxRecords": self.retention.max_records,
                "maxBytes": self.retention.max_bytes,
            },
        }


def open_reader(path: Path) -> sqlite3.Connection:
    """A connection for queries only (another process's store too)."""
    conn = sqlite3.connect(str(path), check_same_thread=False, timeout=5.0)
    conn.execute("PRAGMA query_only = 1")
    conn.execute("PRAGMA cache_size = -4000")
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn
