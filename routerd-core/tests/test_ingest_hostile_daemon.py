"""serve's ingestion against a daemon that answers garbage.

A follower must outlive every malformed answer: a page that is not an object,
a non-numeric ``Retry-After``, an event that is not an object. Each is
counted or retried with backoff, and the good events around them are stored.
The peer is a scripted socket server, since no real daemon misbehaves on
demand.
"""

from __future__ import annotations

from collections.abc import Iterator
import json
from pathlib import Path
import socket
import threading

import pytest
from routerd.serve.ingest import Follower
from routerd.serve.store import EventStore
from routerd.testing.daemon import poll

GOOD_EVENT = {
    "cursor": "2",
    "time": "2026-01-01T00:00:02.000000Z",
    "topic": "routerd.test.thing.happened",
    "severity": "info",
    "reason": "Happened",
    "message": "",
    "attributes": {"resource.kind": "Thing", "resource.name": "x", "daemon.kind": "thing"},
}


def _answer(status: int, body: object, headers: str = "") -> bytes:
    data = json.dumps(body).encode()
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{headers}"
    return head.encode() + f"Content-Length: {len(data)}\r\n\r\n".encode() + data


class ScriptedDaemon:
    """Answers ``/v1/events`` from a script, then empty pages; ``/v1/status`` with 503."""

    def __init__(self, path: Path, script: list[bytes]) -> None:
        self.script = script
        self.requests = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self._halt = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._halt.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"GET /v1/status"):
                    conn.sendall(_answer(503, {"title": "Unavailable"}))
                    continue
                self.requests += 1
                if self.script:
                    conn.sendall(self.script.pop(0))
                else:
                    self._halt.wait(0.05)
                    conn.sendall(_answer(200, {"cursor": "2", "events": [], "more": False}))

    def close(self) -> None:
        self._halt.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    s = EventStore(tmp_path / "routerd.db")
    s.start()
    yield s
    s.close()


def test_a_follower_outlives_malformed_answers(tmp_path: Path, store: EventStore) -> None:
    path = tmp_path / "thing.sock"
    bad_event_page = {"cursor": "2", "events": [7, GOOD_EVENT], "more": False}
    peer = ScriptedDaemon(
        path,
        [
            _answer(200, ["not", "a", "page"]),  # a list where an object belongs
            _answer(429, {"title": "Too many"}, "Retry-After: abc\r\n"),
            _answer(200, {"cursor": "zz", "events": []}),  # a cursor that is not one
            _answer(200, bad_event_page),
        ],
    )
    follower = Follower("thing/x", str(path), "thing", store)
    follower.start()
    try:
        poll(lambda: store.count() == 1, 15, "the good event is stored")
        poll(lambda: peer.requests >= 6, 10, "the follower to keep following")
        assert follower.is_alive()
        assert follower.malformed_events == 1
        assert store.cursor_of("thing/x") == (0, 2)
        stored = store.query(limit=10)
        assert [e["topic"] for e in stored] == ["routerd.test.thing.happened"]
    finally:
        follower.stop()
        follower.join(5)
        peer.close()
    assert not follower.is_alive()
