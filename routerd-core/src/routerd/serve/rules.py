"""EventRules and DerivedEvents in routerd serve: a durable consumer of the event store.

One thread reads the events after its stored position (skipping the virtual
events it stored itself: their cascade was evaluated when they were made),
feeds them to :class:`routerd.rules.core.RulesCore`, and hands the writer one
:class:`RulesWrite` holding the virtual events, the new position, the state
of every rule that changed and the rules' statuses: one transaction, so a
restart (SIGKILL included) resumes exactly where the last commit left off,
with the windows and timers of that moment. It waits for that commit before
reading on, as the followers do.

Time: events are evaluated at their own time. Timers fire by the wall clock
less :data:`GRACE` (an event stored a moment late still counts), except in
the first :data:`SETTLE` seconds after a start, while ingestion catches up on
what the daemons logged meanwhile: then only event times move the clock, so
a backlog is judged as it happened.

DerivedEvents are evaluated when the store commits a new status of a
resource they read (the store's commit listeners), at their hysteresis
deadlines, and when a resource they read becomes stale or current again
(serve's staleness, :data:`STALE_CHECK`): a stale status is given to them
marked ``stale``, and its values are unknown (:mod:`routerd.rules.derived`).
Staleness counts only once the engine has settled: right after a start the
followers are still reading every status for the first time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
import hashlib
import json
import logging
import sqlite3
import threading
import time
from typing import Any

from routerd.config import RouterConfig
from routerd.model import Event
from routerd.rules import DERIVED_EVENT
from routerd.rules import ENGINE_KIND
from routerd.rules import EVENT_RULE
from routerd.rules.core import RulesCore
from routerd.rules.derived import DerivedDef
from routerd.rules.eventrule import RuleDef
from routerd.rules.spec import DerivedEventSpec
from routerd.rules.spec import EventRuleSpec
from routerd.serve.store import Batch
from routerd.serve.store import CustomWrite
from routerd.serve.store import EventStore
from routerd.serve.store import StatusUpdate

log = logging.getLogger("routerd.rules")

#: Name of the consumer's row in ``rule_consumers``.
CONSUMER = "rules"
#: Source of every virtual event in the store (its cursors count them: 1, 2, ...).
EVENT_SOURCE = ENGINE_KIND
#: Prefix of a rule resource's ``<daemonKind>/<name>`` (serve's staleness check).
SOURCE_PREFIX = f"{ENGINE_KIND}/"
#: Timers fire this long after their deadline by the wall clock.
GRACE = 1.0
#: After a start, timers follow event time only for this long (ingestion catches up).
SETTLE = 5.0
#: Events read per step (one commit each at most): large pages, few commits.
READ_LIMIT = 5000
#: An EventRule's status (counters) is written at most this often; a
#: DerivedEvent's at every change (its phase is what clients wait on).
STATUS_EVERY = 1.0
#: A position that moved over events no rule took is stored at least this often.
IDLE_COMMIT = 5.0
#: How often the staleness of the resources DerivedEvents read is looked at: it
#: changes with the daemons' processes, their sockets and the clock (serve's
#: ``_stale``), none of which commits anything to the store.
STALE_CHECK = 1.0
#: Why a resource's stored status is not current (``{"reason", "message", "since"}``), or None.
StaleOracle = Callable[[str], dict[str, Any] | None]

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS rule_consumers "
    "(consumer TEXT PRIMARY KEY, position INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rule_state "
    "(key TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL)",
)
# The virtual events this consumer stored are skipped by SQLite (their cascade
# was evaluated when they were made), so a page is all input.
_READ = (
    "SELECT id, time, topic, severity, reason, message, attributes "
    "FROM events WHERE id > ? AND source != ? ORDER BY id LIMIT ?"
)


def spec_hash(spec: EventRuleSpec | DerivedEventSpec) -> str:
    """Identifies a spec: a rule whose spec changed starts with an empty state."""
    text = spec.model_dump_json(by_alias=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rule_defs(config: RouterConfig) -> tuple[list[RuleDef], list[DerivedDef], dict[str, str]]:
    """The config's EventRules and DerivedEvents, and each one's spec hash by key."""
    rules: list[RuleDef] = []
    derived: list[DerivedDef] = []
    hashes: dict[str, str] = {}
    for res in config.resources:
        if res.kind == EVENT_RULE and isinstance(res.spec, EventRuleSpec):
            rules.append(RuleDef(res.name, res.spec))
        elif res.kind == DERIVED_EVENT and isinstance(res.spec, DerivedEventSpec):
            derived.append(DerivedDef(res.name, res.spec))
        else:
            continue
        hashes[res.ref] = spec_hash(res.spec)
    return rules, derived, hashes


@dataclass
class RulesWrite(CustomWrite):
    """What one step of the consumer stores, in one transaction."""

    position: int
    batches: list[Batch] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    #: ``<Kind>/<name>`` -> (spec hash, state JSON), or None to delete the row.
    states: dict[str, tuple[str, str] | None] = field(default_factory=dict)
    #: Rules gone from the config: their status rows go too (their events stay).
    removed: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(len(b.events) for b in self.batches)

    def write(self, conn: sqlite3.Connection) -> None:
        for stmt in SCHEMA:
            conn.execute(stmt)
        conn.execute(
            "INSERT OR REPLACE INTO rule_consumers (consumer, position) VALUES (?, ?)",
            (CONSUMER, self.position),
        )
        for key, value in self.states.items():
            if value is None:
                conn.execute("DELETE FROM rule_state WHERE key = ?", (key,))
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO rule_state (key, spec, state) VALUES (?, ?, ?)",
                    (key, *value),
                )
        for key in self.removed:
            conn.execute("DELETE FROM resources WHERE key = ?", (key,))


class RulesRunner(threading.Thread):
    """The consumer thread; ``configure`` before ``start`` and on every reload."""

    def __init__(
        self,
        store: EventStore,
        *,
        clock: Callable[[], float] = time.time,
        grace: float = GRACE,
        settle: float = SETTLE,
        stale: StaleOracle | None = None,
    ) -> None:
        super().__init__(name="rules", daemon=True)
        self.store = store
        self.clock = clock
        self.stale = stale
        #: Staleness of the resources DerivedEvents read, as of the last check.
        self._stale_seen: dict[str, dict[str, Any]] = {}
        self._stale_checked = float("-inf")  # monotonic
        self._watched: set[str] = set()
        self.stale_checks = 0
        self.grace = grace
        self.settle = settle
        self._wake = threading.Condition()
        self._signalled = False
        self._stop_flag = False
        self._changed: set[str] = set()
        self._config: RouterConfig | None = None
        self._new_config = False
        self.core: RulesCore | None = None
        self.hashes: dict[str, str] = {}
        self.position = 0
        self.seq = 0
        self._status_at = float("-inf")
        self._status_later: set[str] = set()
        self.started = 0.0
        self.consumed = 0
        self.consumed_committed = 0  # as of the last commit
        self.published = 0
        self.commits = 0
        self.failed_commits = 0
        self.last_error: str | None = None
        self._conn: sqlite3.Connection | None = None
        self._last_commit = float("-inf")
        self._uncommitted = False
        self._pending_states: dict[str, tuple[str, str] | None] = {}
        self._removed: list[str] = []
        self._status_due: set[str] = set()
        store.add_commit_listener(self._on_commit)

    # -- control (any thread) --------------------------------------------------------
    def configure(self, config: RouterConfig) -> None:
        with self._wake:
            self._config = config
            self._new_config = True
            self._signal()

    def stop(self) -> None:
        with self._wake:
            self._stop_flag = True
            self._signal()

    def _on_commit(self, status_keys: list[str]) -> None:
        """The store committed (the writer thread): new events, or statuses of ``status_keys``."""
        with self._wake:
            self._changed.update(k for k in status_keys if not _is_rule_key(k))
            self._signal()

    def _signal(self) -> None:
        self._signalled = True
        self._wake.notify_all()

    def snapshot(self) -> dict[str, Any]:
        return {
            "position": str(self.position),
            "consumed": self.consumed,
            "published": self.published,
            "commits": self.commits,
            "failedCommits": self.failed_commits,
            "lastError": self.last_error,
            "settled": self._settled(self.clock()) if self.started else False,
        }

    # -- the thread ------------------------------------------------------------------
    def run(self) -> None:
        try:
            self._conn = sqlite3.connect(str(self.store.path), timeout=10.0)
            for stmt in SCHEMA:
                self._conn.execute(stmt)
            self._conn.commit()
            self.started = self.clock()
            self._resume()
            while not self._stop_flag:
                self._step()
        except Exception:
            log.exception("the rules engine stopped")
            raise
        finally:
            if self._conn is not None:
                self._conn.close()

    def _resume(self) -> None:
        """Position and states as the last commit left them (a fresh database: the head)."""
        assert self._conn is not None
        row = self._conn.execute(
            "SELECT position FROM rule_consumers WHERE consumer = ?", (CONSUMER,)
        ).fetchone()
        if row is None:
            self.position = self._head()
            log.info("rules: a fresh store; consuming from the head (id %d)", self.position)
        else:
            self.position = int(row[0])
        with self._wake:
            config = self._config
            self._new_config = False
        assert config is not None, "configure() before start()"
        self._build(config, from_store=True)
        out = self._core().on_status(None, self.clock())
        self._commit(out, force=True)

    def _head(self) -> int:
        assert self._conn is not None
        value = self._conn.execute("SELECT MAX(id) FROM events").fetchone()[0]
        return int(value or 0)

    def _core(self) -> RulesCore:
        assert self.core is not None
        return self.core

    def _build(self, config: RouterConfig, *, from_store: bool) -> None:
        """A core for ``config``; each rule's state from the old core or the store when
        its spec is unchanged; rows of rules that are gone or changed are deleted."""
        assert self._conn is not None
        rules, derived, hashes = rule_defs(config)
        old, old_hashes = self.core, self.hashes
        core = RulesCore(rules, derived, self._lookup, started=self.started)
        states: dict[str, tuple[str, str] | None] = {}
        stored: dict[str, tuple[str, str]] = {}
        if from_store:
            stored = {
                k: (s, st)
                for k, s, st in self._conn.execute("SELECT key, spec, state FROM rule_state")
            }
        for key, h in hashes.items():
            try:
                if old is not None and old_hashes.get(key) == h:
                    core.load(key, old.dump(key))
                elif key in stored and stored[key][0] == h:
                    core.load(key, json.loads(stored[key][1]))
                elif key in stored or key in old_hashes:
                    states[key] = None  # changed: starts empty
            except (KeyError, ValueError, TypeError):
                log.warning("rules: the stored state of %s is unreadable; it starts empty", key)
                states[key] = None
        removed = sorted({*stored, *old_hashes} - set(hashes))
        for key in removed:
            states[key] = None
        got = self.store.cursor_of(EVENT_SOURCE)
        self.seq = got[1] if got is not None else 0
        self.core, self.hashes = core, hashes
        self._watched = {k for k in core.read_by_derived if not _is_rule_key(k)}
        self._stale_checked = float("-inf")  # look at the new set at once
        self._status_later &= set(hashes)  # a removed rule has no status to write
        self._pending_states = states
        self._removed = removed
        core.take_dirty()
        self._status_due = set(hashes)  # every rule's status, as it now is

    def _lookup(self, key: str) -> dict[str, Any] | None:
        """A daemon-reported status from the store (rules' own come from the core),
        with ``stale`` when serve cannot keep it current (as of the last check)."""
        kind, _, name = key.partition("/")
        row = self.store.resource(kind, name)
        stale = self._stale_seen.get(key)
        if row is None:
            return None if stale is None else {"stale": stale}
        status: dict[str, Any] = row["status"]
        if stale is not None:
            status = {**status, "stale": stale}
        return status

    def _stale_changes(self, now: float) -> set[str]:
        """The watched resources whose staleness changed since the last check (paced)."""
        if self.stale is None or not self._watched:
            return set()
        mono = time.monotonic()
        if mono - self._stale_checked < STALE_CHECK:
            return set()
        self._stale_checked = mono
        self.stale_checks += 1
        seen: dict[str, dict[str, Any]] = {}
        if self._settled(now):  # before that, followers are reading statuses for the first time
            for key in self._watched:
                why = self.stale(key)
                if why is not None:
                    old = self._stale_seen.get(key)
                    # The same reason is the same staleness (its message counts seconds).
                    seen[key] = old if old is not None and old["reason"] == why["reason"] else why
        changed = {
            k
            for k in seen.keys() | self._stale_seen.keys()
            if (seen.get(k) or {}).get("reason") != (self._stale_seen.get(k) or {}).get("reason")
        }
        self._stale_seen = seen
        return changed

    def _settled(self, now: float) -> bool:
        return now - self.started >= self.settle

    def _step(self) -> None:
        out: list[Event] = []
        with self._wake:
            config = self._config if self._new_config else None
            self._new_config = False
            changed, self._changed = self._changed, set()
            self._signalled = False
        if config is not None:
            self._build(config, from_store=False)
            out += self._core().on_status(None, self.clock())
        rows = self._read()
        core = self._core()
        wants = core.wants
        due: float | None = None
        due_known = False  # next_deadline() only when a skipped event needs it
        for row in rows:
            if not wants(row[2]):
                # No rule takes it: only its time matters (timers due before it fire).
                if not due_known:
                    due, due_known = core.next_deadline(), True
                if due is not None and row[1] > due:
                    out += core.advance(float(row[1]))
                    due = core.next_deadline()
                continue
            ev = _event(row)
            if ev is not None:
                out += core.feed(ev)
                due_known = False
        if rows:
            self.position = int(rows[-1][0])
            self.consumed += len(rows)
        now = self.clock()
        changed |= self._stale_changes(now)
        for key in sorted(changed):
            out += core.on_status(key, now)
        if self._settled(now):
            out += core.advance(now - self.grace)
        if rows:
            self._uncommitted = True
        self._commit(out)
        if len(rows) < READ_LIMIT:
            self._wait(now)

    def _read(self) -> list[tuple[Any, ...]]:
        assert self._conn is not None
        rows = self._conn.execute(_READ, (self.position, EVENT_SOURCE, READ_LIMIT)).fetchall()
        self._conn.commit()  # end the read transaction: the next read sees new commits
        return rows

    def _wait(self, now: float) -> None:
        timeout = IDLE_COMMIT
        deadline = self._core().next_deadline()
        if deadline is not None:
            if not self._settled(now):
                deadline = max(deadline, self.started + self.settle - self.grace)
            timeout = min(timeout, max(0.0, deadline + self.grace - now))
        if self._status_later:
            pace = self._status_at + STATUS_EVERY - time.monotonic()
            timeout = min(timeout, max(0.0, pace))
        if self.stale is not None and self._watched:
            pace = self._stale_checked + STALE_CHECK - time.monotonic()
            timeout = min(timeout, max(0.0, pace))
        with self._wake:
            if not self._signalled and not self._stop_flag:
                self._wake.wait(timeout)

    def _commit(self, out: list[Event], *, force: bool = False) -> None:
        core = self._core()
        dirty = core.take_dirty()
        states = self._pending_states
        # Pacing of writes is wall time spent, not the rules' clock.
        now = time.monotonic()
        idle_due = self._uncommitted and now - self._last_commit >= IDLE_COMMIT
        self._status_later |= dirty
        status_keys = self._status_due | {k for k in self._status_later if not _is_rule_of(k)}
        if self._status_later and now - self._status_at >= STATUS_EVERY:
            status_keys |= self._status_later
        if not (out or dirty or states or force or idle_due or status_keys):
            return
        for key in dirty:
            states[key] = (self.hashes[key], json.dumps(core.dump(key), separators=(",", ":")))
        statuses = [self._status_update(key) for key in sorted(status_keys)]
        write = RulesWrite(self.position, self._batches(out), statuses, states, self._removed)
        done = self.store.submit(write)
        done.wait()
        if not done.ok:
            # Dropped, not stored: start again from what the store has.
            self.failed_commits += 1
            self.last_error = "the store dropped a write; resuming from the stored state"
            log.warning("rules: %s", self.last_error)
            self._resume()
            return
        if status_keys - self._status_due:
            self._status_at = now
        self._status_later -= status_keys
        self.commits += 1
        self.published += len(out)
        self.consumed_committed = self.consumed
        self._pending_states, self._removed, self._status_due = {}, [], set()
        self._last_commit = now
        self._uncommitted = False

    def _batches(self, out: list[Event]) -> list[Batch]:
        """The step's virtual events, in the order they were made, numbered on."""
        if not out:
            return []
        stamped = []
        for ev in out:
            self.seq += 1
            stamped.append(
                Event(
                    self.seq, ev.time, ev.topic, ev.severity, ev.reason, ev.message, ev.attributes
                )
            )
        return [Batch(EVENT_SOURCE, 0, self.seq, stamped)]

    def _status_update(self, key: str) -> StatusUpdate:
        kind, _, name = key.partition("/")
        doc = self._core().resource_status(kind, name)
        return StatusUpdate(key, kind, name, ENGINE_KIND, doc["phase"], doc["since"], doc)


def _is_rule_of(key: str) -> bool:
    """An EventRule's key (its status may wait for STATUS_EVERY)."""
    return key.startswith(f"{EVENT_RULE}/")


def _is_rule_key(key: str) -> bool:
    return key.startswith((f"{EVENT_RULE}/", f"{DERIVED_EVENT}/"))


def _event(row: tuple[Any, ...]) -> Event | None:
    _id, t, topic, severity, reason, message, attributes = row
    try:
        attrs = json.loads(attributes)
    except ValueError:
        return None
    if not isinstance(attrs, dict):
        return None
    return Event(int(_id), float(t), topic, severity, reason, message, attrs)
