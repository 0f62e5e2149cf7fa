"""Follow each daemon's ``/v1/events`` and store what arrives.

A follower long-polls from the cursor stored in the database and hands each
answer to the writer as one batch with its cursor; it waits for the commit
before asking again, so the stored cursor is always exactly the last stored
event. A ``reset`` from a daemon (its log was lost or rotated past us) is
recorded as a ``routerd.serve.ingest.reset`` event under a new epoch, never
skipped silently.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from routerd.client import UnixClient
from routerd.errors import ClientError
from routerd.model import Event
from routerd.serve.store import Batch
from routerd.serve.store import EventStore
from routerd.serve.store import StatusUpdate

log = logging.getLogger("routerd.ingest")
POLL_WAIT = "25s"
STATUS_EVERY = 30.0
TOPIC_RESET = "routerd.serve.ingest.reset"
_REFRESH_TOPICS = ("routerd.resource.phase.changed", "routerd.daemon.lifecycle.ready")


class Follower(threading.Thread):
    """Ingestion of one daemon's events and status."""

    def __init__(self, source: str, socket_path: str, daemon_kind: str, store: EventStore) -> None:
        super().__init__(name=f"follow-{source}", daemon=True)
        self.source = source
        self.socket_path = socket_path
        self.daemon_kind = daemon_kind
        self.store = store
        self._stop = threading.Event()
        self.finish_when_gone = False
        self.batches = 0
        self.resets = 0
        self.last_error: str | None = None
        self._last_status = 0.0

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        stored = self.store.cursor_of(self.source)
        epoch, cursor = stored if stored is not None else (0, None)
        backoff = 0.2
        while not self._stop.is_set():
            client = UnixClient(self.socket_path, timeout=35.0)
            try:
                query: dict[str, Any] = {"wait": POLL_WAIT, "limit": 1000}
                if cursor is not None:
                    query["since"] = cursor
                resp = client.get("/v1/events", **query)
            except ClientError as exc:
                self.last_error = str(exc)
                if self.finish_when_gone:
                    return
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            self.last_error = None
            if resp.status == 429:
                self._stop.wait(float(resp.headers.get("retry-after", "1")))
                continue
            if resp.status != 200:
                self.last_error = resp.error_text()
                self._stop.wait(1.0)
                continue
            epoch, cursor = self._store_answer(resp.json(), epoch, cursor, client)
            self._maybe_refresh_status(client)

    def _store_answer(
        self, body: dict[str, Any], epoch: int, cursor: int | None, client: UnixClient
    ) -> tuple[int, int | None]:
        events: list[Event] = []
        for raw in body.get("events", []):
            try:
                events.append(Event.from_dict(raw))
            except (KeyError, ValueError, TypeError):
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
        if not events and new_cursor == cursor:
            return epoch, cursor
        if any(e.topic in _REFRESH_TOPICS for e in events):
            # Queue the status first: whoever wakes on the phase event reads
            # the new phase, never the old one (the writer keeps queue order).
            self._last_status = 0.0
            self._maybe_refresh_status(client, wait=False)
        commit = self.store.submit(Batch(self.source, epoch, new_cursor, events))
        commit.wait()
        if not commit.ok:
            return epoch, cursor  # not stored: ask again from the old cursor
        self.batches += 1
        return epoch, new_cursor

    def _maybe_refresh_status(self, client: UnixClient, wait: bool = True) -> None:
        if time.monotonic() - self._last_status < STATUS_EVERY:
            return
        try:
            resp = client.get("/v1/status")
        except ClientError:
            return
        if resp.status != 200:
            return
        self._last_status = time.monotonic()
        for res in resp.json().get("resources", []):
            ref = res.get("resource", {})
            kind, name = str(ref.get("kind", "")), str(ref.get("name", ""))
            commit = self.store.submit(
                StatusUpdate(
                    f"{kind}/{name}",
                    kind,
                    name,
                    self.daemon_kind,
                    str(res.get("phase")),
                    str(res.get("since")),
                    res,
                )
            )
            if wait:
                commit.wait()
