"""Follow each daemon's ``/v1/events`` and store what arrives.

A follower long-polls from the cursor stored in the database and hands each
answer to the writer as one batch with its cursor; it waits for the commit
before asking again, so the stored cursor is always exactly the last stored
event. While the store cannot commit, the follower waits on its batch: it
fetches nothing more, the daemon's own event log keeps the rest, and nothing
is lost. A ``reset`` from a daemon (its log was lost or rotated past us) is
recorded as a ``routerd.serve.ingest.reset`` event under a new epoch, never
skipped silently.

A resource's status is read from the daemon's ``/v1/status`` after phase
changes and at least every 30 s, and is stored in the same batch as every
event up to the status's event-log head (the head is read after the
snapshot). A status whose phase is set but whose ``phase.changed`` event is
not in the log yet (the daemon sets the phase, then appends the event) is
held until the event is there. So a reader who sees a phase finds the events
that announce it.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
import logging
import threading
import time
from typing import Any

from routerd.client import ANY
from routerd.client import BOOL
from routerd.client import CURSOR
from routerd.client import DAEMON_STATUS
from routerd.client import ListOf
from routerd.client import Obj
from routerd.client import Response
from routerd.client import UnixClient
from routerd.errors import ClientError
from routerd.model import Event
from routerd.serve.store import Batch
from routerd.serve.store import EventStore
from routerd.serve.store import StatusUpdate
from routerd.timefmt import parse_rfc3339

log = logging.getLogger("routerd.ingest")
POLL_WAIT = 25.0
STATUS_EVERY = 30.0
#: A status not refreshed for this long is stale even if nothing failed yet: a
#: hung daemon still accepts connections and fails a long-poll only at its
#: client timeout.
STALE_AFTER = STATUS_EVERY + POLL_WAIT + 20.0
TOPIC_RESET = "routerd.serve.ingest.reset"
PHASE_CHANGED = "routerd.resource.phase.changed"
_REFRESH_TOPICS = (PHASE_CHANGED, "routerd.daemon.lifecycle.ready")
#: The phase a resource starts in; no phase event announces it.
INITIAL_PHASE = "Pending"
#: Event times and ``since`` are both rounded to microseconds on the wire.
_TIME_SLACK = 1e-6
#: Reads of status (with the events up to it) before giving up for this round.
_SETTLE_TRIES = 3
#: Pages of 1000 events fetched to reach a status's head before giving up.
_MAX_PAGES = 50
#: An events page as a follower takes it: the frame is checked strictly, each
#: event on its own in :meth:`Follower._parse`, so one malformed event is a
#: counted drop instead of a page refused for ever.
EVENT_PAGE = Obj(
    {"cursor": CURSOR, "events": ListOf(ANY), "more": BOOL, "reset": BOOL},
    required=("cursor", "events"),
)


@dataclass
class _Answer:
    """Events fetched from a daemon and not yet committed."""

    epoch: int
    cursor: int | None
    events: list[Event] = field(default_factory=list)

    @property
    def refresh(self) -> bool:
        return any(e.topic in _REFRESH_TOPICS for e in self.events)


@dataclass
class _Marks:
    """What the store holds of one resource: its status and the latest events."""

    stored: tuple[str, str] | None = None  # (phase, since) of the stored status
    change: tuple[str, float] | None = None  # (phase, time) of the latest phase event
    latest: float = 0.0  # time of the latest event

    def fold(self, events: list[Event], key: str) -> _Marks:
        marks = _Marks(self.stored, self.change, self.latest)
        for ev in events:
            attrs = ev.attributes
            if f"{attrs.get('resource.kind')}/{attrs.get('resource.name')}" != key:
                continue
            marks.latest = max(marks.latest, ev.time)
            if ev.topic == PHASE_CHANGED:
                marks.change = (str(attrs.get("phase")), ev.time)
        return marks

    def announces(self, up: StatusUpdate) -> bool:
        """True when the stored and fetched events announce ``up``'s phase."""
        if self.stored == (up.phase, up.since):
            return True
        try:
            since = parse_rfc3339(up.since) - _TIME_SLACK
        except ValueError:
            return True  # nothing to compare with: store it rather than hold it forever
        if self.change is not None and self.change[1] >= since:
            return self.change[0] == up.phase
        # The initial phase has no phase event; the daemon's started event follows it.
        return up.phase == INITIAL_PHASE and self.latest >= since


class Follower(threading.Thread):
    """Ingestion of one daemon's events and status.

    Attributes must not shadow :class:`threading.Thread`'s (``_stop`` is a
    method ``join()`` calls); ``tests/test_thread_subclasses.py`` checks it.
    """

    def __init__(self, source: str, socket_path: str, daemon_kind: str, store: EventStore) -> None:
        super().__init__(name=f"follow-{source}", daemon=True)
        self.source = source
        self.socket_path = socket_path
        self.daemon_kind = daemon_kind
        self.store = store
        self._halt = threading.Event()
        self.finish_when_gone = False
        self.batches = 0
        self.resets = 0
        self.held_statuses = 0
        self.malformed_events = 0
        self.last_error: str | None = None
        self.unreachable_since: float | None = None  # wall clock
        self._reached = False
        self.status_at: float | None = None  # wall clock of the last stored status
        self._status_due = 0.0  # monotonic
        self._marks: dict[str, _Marks] = {}

    def stop(self) -> None:
        self._halt.set()

    @property
    def halted(self) -> bool:
        return self._halt.is_set()

    def stale(self) -> tuple[str, str, float | None] | None:
        """Why the stored status of this daemon is not current: (reason, message, since)."""
        if not self.is_alive():
            return "NotFollowed", f"routerd is not following {self.source}", None
        if self.unreachable_since is not None:
            return (
                "DaemonUnreachable",
                f"{self.source} does not answer: {self.last_error}",
                self.unreachable_since,
            )
        if self.status_at is None:
            return "NotRefreshed", f"no status read from {self.source} yet", None
        age = time.time() - self.status_at
        if age > STALE_AFTER:
            return "NotRefreshed", f"no status from {self.source} for {age:.0f} s", self.status_at
        return None

    # -- the loop -------------------------------------------------------------
    def run(self) -> None:
        stored = self._stored_cursor()
        if stored is None:
            return
        epoch, cursor = stored
        backoff = 0.2
        while not self._halt.is_set():
            client = UnixClient(self.socket_path, timeout=POLL_WAIT + 10)
            until_due = max(0.0, self._status_due - time.monotonic())
            wait = POLL_WAIT if self.finish_when_gone else min(POLL_WAIT, until_due)
            try:
                resp = self._events(client, cursor, wait)
            except ClientError as exc:
                self._unreachable(str(exc))
                if self.finish_when_gone:
                    return
                self._halt.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._reachable()
            if resp.status == 429:
                self._halt.wait(_retry_after(resp))
                continue
            if resp.status != 200:
                self.last_error = resp.error_text()
                self._halt.wait(1.0)
                continue
            try:
                page = resp.json_as(EVENT_PAGE)
            except ClientError as exc:
                # A daemon answering garbage is treated like one that does not
                # answer: counted, retried with backoff, never the end of the thread.
                self._unreachable(str(exc))
                self._halt.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            answer = self._parse(page, epoch, cursor)
            statuses: list[StatusUpdate] = []
            if (until_due == 0 or answer.refresh) and not self.finish_when_gone:
                answer, statuses = self._with_status(client, answer)
            if not answer.events and answer.cursor == cursor and not statuses:
                continue
            done = self._commit(
                Batch(self.source, answer.epoch, answer.cursor or 0, answer.events, statuses)
            )
            if done is None:
                return  # stopped while the store could not write
            if done:
                backoff = 0.2
                epoch, cursor = answer.epoch, answer.cursor
            else:
                # Dropped from the writer's memory: fetch it again, later.
                self._halt.wait(backoff)
                backoff = min(backoff * 2, 5.0)

    def _stored_cursor(self) -> tuple[int, int | None] | None:
        """``(epoch, cursor)`` to resume from; None when stopped before the store answered."""
        while not self._halt.is_set():
            try:
                stored = self.store.cursor_of(self.source)
            except Exception as exc:  # the store cannot be read yet: wait for it
                self.last_error = f"cannot read the stored cursor: {exc}"
                self._halt.wait(1.0)
                continue
            return stored if stored is not None else (0, None)
        return None

    def _events(self, client: UnixClient, cursor: int | None, wait: float) -> Response:
        query: dict[str, Any] = {"wait": f"{wait:.3f}", "limit": 1000}
        if cursor is not None:
            query["since"] = cursor
        return client.get("/v1/events", **query)

    def _unreachable(self, why: str) -> None:
        self.last_error = why
        if self.unreachable_since is None:
            self.unreachable_since = time.time()
            # A daemon that is still starting is not news; losing one is.
            if self._reached and not self.finish_when_gone:
                log.info("%s: cannot reach the daemon (%s); retrying", self.source, why)

    def _reachable(self) -> None:
        if self.unreachable_since is not None and self._reached:
            log.info("%s: following again", self.source)
        self._reached = True
        self.unreachable_since = None
        self.last_error = None

    def _parse(self, body: dict[str, Any], epoch: int, cursor: int | None) -> _Answer:
        events: list[Event] = []
        for raw in body.get("events", []):
            try:
                events.append(Event.from_dict(raw))
            except (KeyError, ValueError, TypeError, AttributeError):
                self.malformed_events += 1
                log.warning("%s: dropped a malformed event", self.source)
        new_cursor = int(body.get("cursor", cursor or 0))
        if body.get("reset"):
            self.resets += 1
            epoch += 1
            marker = Event(
                0,
                time.time(),
                TOPIC_RESET,
                "warning",
                "CursorReset",
                f"{self.source} could not honour cursor {cursor}; continuing under epoch {epoch}",
                {
                    "source": self.source,
                    "previousCursor": cursor,
                    "epoch": epoch,
                    "daemon.kind": self.daemon_kind,
                },
            )
            events.insert(0, marker)
        return _Answer(epoch, new_cursor, events)

    # -- status with the events up to it -----------------------------------------
    def _with_status(
        self, client: UnixClient, answer: _Answer
    ) -> tuple[_Answer, list[StatusUpdate]]:
        """Read the status and fetch every event up to it; ``[]`` if that is not possible now."""
        # Until a status is stored, try again in a second (not in a tight loop).
        self._status_due = time.monotonic() + 1.0
        for _ in range(_SETTLE_TRIES):
            try:
                resp = client.get("/v1/status")
                if resp.status != 200:
                    return answer, []
                body = resp.json_as(DAEMON_STATUS)
            except ClientError:
                return answer, []
            head = _head(body)
            reached = self._fetch_until(client, answer, head) if head is not None else answer
            if reached is None:
                return answer, []
            answer = reached
            statuses = [self._update(res) for res in body.get("resources", [])]
            if all(self._marks_of(s.key).fold(answer.events, s.key).announces(s) for s in statuses):
                return answer, statuses
            # The phase is set and its event is about to be appended: wait for it.
            self.held_statuses += 1
            more = self._fetch(client, answer, wait=1.0)
            if more is None:
                return answer, []
            answer = more
        return answer, []

    def _fetch_until(self, client: UnixClient, answer: _Answer, head: int) -> _Answer | None:
        """``answer`` plus every event up to ``head``, and none after it."""
        for _ in range(_MAX_PAGES):
            if answer.cursor is not None and answer.cursor >= head:
                return answer
            more = self._fetch(client, answer, wait=0.0, until=head)
            if more is None:
                return None
            answer = more
        return None

    def _fetch(
        self, client: UnixClient, answer: _Answer, wait: float, until: int | None = None
    ) -> _Answer | None:
        try:
            resp = self._events(client, answer.cursor, wait)
            if resp.status != 200:
                return None
            body = resp.json_as(EVENT_PAGE)
        except ClientError:
            return None
        if body.get("reset"):
            return None  # the main loop records it
        more = self._parse(body, answer.epoch, answer.cursor)
        cursor = more.cursor
        events = more.events
        if until is not None:
            # Events after the status's head belong with a later status.
            events = [e for e in events if e.cursor <= until]
            cursor = min(cursor, until) if cursor is not None else until
        return _Answer(answer.epoch, cursor, answer.events + events)

    def _update(self, res: dict[str, Any]) -> StatusUpdate:
        ref = res.get("resource", {})
        kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
        return StatusUpdate(
            f"{kind}/{name}",
            kind,
            name,
            self.daemon_kind,
            str(res.get("phase")),
            str(res.get("since")),
            res,
        )

    def _marks_of(self, key: str) -> _Marks:
        marks = self._marks.get(key)
        if marks is None:
            marks = self._marks[key] = self._load_marks(key)
        return marks

    def _load_marks(self, key: str) -> _Marks:
        kind, _, name = key.partition("/")
        marks = _Marks()
        try:
            row = self.store.resource(kind, name)
            latest = self.store.query(resource=(kind, name), limit=1)
            change = self.store.query(topics=(PHASE_CHANGED,), resource=(kind, name), limit=1)
        except Exception as exc:  # an unreadable store: decide on fetched events alone
            log.warning("%s: cannot read %s from the store (%s)", self.source, key, exc)
            return marks
        if row is not None:
            marks.stored = (row["phase"], row["since"])
        if latest:
            marks.latest = parse_rfc3339(latest[0]["time"])
        if change:
            marks.change = (
                str(change[0]["attributes"].get("phase")),
                parse_rfc3339(change[0]["time"]),
            )
        return marks

    def _commit(self, batch: Batch) -> bool | None:
        """Queue ``batch`` and wait for its commit: True, False (dropped) or None (stopped)."""
        done = self.store.submit(batch)
        while not done.wait(0.5):
            if self._halt.is_set():
                return None
        if not done.ok:
            return False
        self.batches += 1
        for key in {*self._marks, *(s.key for s in batch.statuses)}:
            self._marks[key] = self._marks_of(key).fold(batch.events, key)
        for up in batch.statuses:
            self._marks[up.key].stored = (up.phase, up.since)
        if batch.statuses:
            self.status_at = time.time()
            self._status_due = time.monotonic() + STATUS_EVERY
        return True


def _retry_after(resp: Response) -> float:
    """``Retry-After`` in seconds (RFC 9110 §10.2.3), bounded; 1 s when absent or not a number."""
    raw = resp.headers.get("retry-after", "")
    return min(float(raw), 30.0) if raw.isascii() and raw.isdigit() else 1.0


def _head(status: dict[str, Any]) -> int | None:
    """The event-log head a daemon reports with its status (read after the snapshot)."""
    try:
        return int(status["runtime"]["eventLog"]["head"])
    except (KeyError, TypeError, ValueError):
        return None
