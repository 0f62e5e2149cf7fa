"""The /v1 app through falcon's TestClient (no sockets): status codes and bodies."""

from __future__ import annotations

import json
from pathlib import Path
import threading
import time
from typing import Any

import falcon.testing
import pytest
from routerd.daemon.api import WaiterSlots
from routerd.daemon.api import create_app
from routerd.daemon.eventlog import EventLog
from routerd.daemon.eventlog import QueryResult
from routerd.errors import CommandRejected
from routerd.errors import UnknownCommand
from routerd.model import CommandResult
from routerd.model import DaemonInfo
from routerd.model import DaemonStatus
from routerd.model import ResourceRef
from routerd.model import ResourceStatus
from routerd.topics import TopicFilter


class Backend:
    def __init__(self) -> None:
        self.eventlog = EventLog(None)
        self.waiters = WaiterSlots(2)
        self.stopping = False
        self.healthy = (True, None)

    def healthz(self) -> tuple[bool, str | None]:
        return self.healthy

    def status(self) -> DaemonStatus:
        ref = ResourceRef("net.routerd.net/v1alpha1", "Widget", "w")
        return DaemonStatus(
            DaemonInfo("widget", "widget-w", 1, "0", time.time()),
            "Running",
            (ResourceStatus(ref, "Pending", time.time(), (), {"n": [1, 2]}),),
        )

    def status_json(self) -> bytes:
        return json.dumps(self.status().to_dict()).encode()

    def run_command(self, name: str, args: dict[str, Any]) -> CommandResult:
        if name == "busy":
            raise CommandRejected("no lease to release")
        if name == "crash":
            raise RuntimeError("bug")
        if name != "renew":
            raise UnknownCommand(f"no command {name!r}")
        return CommandResult(name, True, "ok", {"args": args})


@pytest.fixture
def backend() -> Backend:
    return Backend()


@pytest.fixture
def client(backend: Backend) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(backend))  # type: ignore[arg-type]


def error(resp: falcon.testing.Result, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = resp.json
    assert set(body) == {"title", "description"}
    return body


def test_healthz_ok_and_failed(client: falcon.testing.TestClient, backend: Backend) -> None:
    assert client.simulate_get("/v1/healthz").json == {"status": "ok"}
    backend.healthy = (False, "engine thread is not running")
    resp = client.simulate_get("/v1/healthz")
    assert resp.status_code == 503
    assert resp.json == {"status": "failed", "reason": "engine thread is not running"}


def test_status_observed_keeps_json_types(client: falcon.testing.TestClient) -> None:
    body = client.simulate_get("/v1/status").json
    assert body["resources"][0]["observed"] == {"n": [1, 2]}


def test_events_params(client: falcon.testing.TestClient, backend: Backend) -> None:
    for i in range(3):
        backend.eventlog.append(f"a.b{i}", reason="R", message=str(i))
    body = client.simulate_get("/v1/events", params={"since": "1", "limit": "1"}).json
    assert [e["cursor"] for e in body["events"]] == ["2"] and body["more"] is True
    body = client.simulate_get("/v1/events", query_string="topic=a.b0&topic=a.b2").json
    assert [e["topic"] for e in body["events"]] == ["a.b0", "a.b2"]
    body = client.simulate_get("/v1/events", query_string="topic=a.b0,a.b1").json
    assert [e["topic"] for e in body["events"]] == ["a.b0", "a.b1"]
    assert client.simulate_get("/v1/events", params={"tail": "true"}).json == {
        "cursor": "3",
        "events": [],
        "more": False,
    }
    big = client.simulate_get("/v1/events", params={"limit": "5000"}).json
    assert len(big["events"]) == 3, "limit above the maximum is capped, not an error"
    huge = client.simulate_get("/v1/events", params={"limit": "9" * 5000, "since": "0" * 30})
    assert len(huge.json["events"]) == 3, "however many digits"
    top = client.simulate_get("/v1/events", params={"since": str(2**63 - 1)}).json
    assert top["reset"] is True and len(top["events"]) == 3, "the largest cursor is a cursor"


@pytest.mark.parametrize(
    ("qs", "param"),
    [
        ("since=x", "since"),
        ("since=99999999999999999999999", "since"),
        ("wait=1y", "wait"),
        ("limit=-3", "limit"),
        ("topic=a..b", "topic"),
        ("topic=", "topic"),
        ("tail=yesno", "tail"),
        # str.isdigit() takes these; int() takes the second: strict ASCII refuses both
        ("since=%C2%B2", "since"),
        ("since=%D9%A3", "since"),
        ("limit=%C2%B2", "limit"),
        ("limit=%EF%BC%91", "limit"),
        ("wait=%D9%A3", "wait"),
        ("since=9223372036854775808", "since"),  # 2**63: beyond SQLite's INTEGER
        ("since=" + "9" * 5000, "since"),  # int() refuses over 4300 digits
        ("limit=0", "limit"),
        ("topic=" + ".".join(["**"] * 33), "topic"),  # over 32 segments
        ("topic=" + "a" * 257, "topic"),  # over 256 characters
        ("topic=" + ",".join(["a.*"] * 33), "topic"),  # over 32 globs
        ("topic=" + "&topic=".join(["a.*"] * 33), "topic"),
    ],
)
def test_bad_params(client: falcon.testing.TestClient, qs: str, param: str) -> None:
    body = error(client.simulate_get("/v1/events", query_string=qs), 400)
    assert param in body["description"]


def test_wait_is_capped_at_30s(client: falcon.testing.TestClient, backend: Backend) -> None:
    backend.eventlog.append("a.b", reason="R")
    t0 = time.monotonic()
    body = client.simulate_get("/v1/events", params={"wait": "1h", "since": "0"}).json
    assert body["events"] and time.monotonic() - t0 < 1


def test_waiter_cap(client: falcon.testing.TestClient, backend: Backend) -> None:
    backend.waiters.active = 2
    resp = client.simulate_get("/v1/events", params={"wait": "1"})
    error(resp, 429)
    assert resp.headers["retry-after"] == "1"
    assert backend.waiters.rejected == 1


def test_errors_are_json_even_for_xml_clients(client: falcon.testing.TestClient) -> None:
    error(client.simulate_get("/v1/nothing", headers={"Accept": "application/xml"}), 404)
    body = error(client.simulate_post("/v1/status"), 405)
    assert "POST" in body["description"]
    error(client.simulate_put("/v1/commands/renew"), 405)


def test_commands(client: falcon.testing.TestClient, backend: Backend) -> None:
    ok = client.simulate_post("/v1/commands/renew", json={"reason": "test"}).json
    assert ok["kind"] == "CommandResult" and ok["result"] == {"args": {"reason": "test"}}
    assert "no lease" in error(client.simulate_post("/v1/commands/busy"), 409)["description"]
    error(client.simulate_post("/v1/commands/zap"), 404)
    error(
        client.simulate_post(
            "/v1/commands/renew", body="{bad", headers={"Content-Type": "application/json"}
        ),
        400,
    )
    error(
        client.simulate_post(
            "/v1/commands/renew", body="[1]", headers={"Content-Type": "application/json"}
        ),
        400,
    )
    error(client.simulate_post("/v1/commands/renew", body="x" * 70000), 413)
    for nested in ("[" * 30_000 + "]" * 30_000, '{"a":' * 10_000 + "1" + "}" * 10_000):
        body = error(client.simulate_post("/v1/commands/renew", body=nested), 400)
        assert "deeper than 32" in body["description"], "no RecursionError, no 500"
    deep = {"a": 1}
    for _ in range(31):
        deep = {"a": deep}
    ok = client.simulate_post("/v1/commands/renew", json=deep)
    assert ok.status_code == 200, "32 levels are fine"
    body = error(client.simulate_post("/v1/commands/renew", json={"a": deep}), 400)
    assert "deeper than 32" in body["description"]
    body = error(client.simulate_post("/v1/commands/crash"), 500)
    assert "bug" not in body["description"], "internals are not echoed"
    backend.stopping = True
    error(client.simulate_post("/v1/commands/renew"), 503)


def test_a_pathological_glob_costs_linear_time(
    client: falcon.testing.TestClient, backend: Backend
) -> None:
    for i in range(1000):
        backend.eventlog.append(f"routerd.widget.client.lease.n{i % 9}.renewed", reason="R")
    glob = ".".join(["**"] * 31) + ".zzz"  # 32 segments: the most a glob may have
    t0 = time.monotonic()
    body = client.simulate_get("/v1/events", params={"topic": glob}).json
    elapsed = time.monotonic() - t0
    assert body["events"] == [] and body["cursor"] == "1000"
    # A backtracking matcher took 12 s for 26 '**' over a few hundred events.
    assert elapsed < 1.0, f"{elapsed:.2f} s for one query"


class BlockingFilter(TopicFilter):
    """Matches every topic, but only once the test lets it: a slow filter."""

    def __init__(self, entered: threading.Event, release: threading.Event) -> None:
        super().__init__()
        object.__setattr__(self, "entered", entered)
        object.__setattr__(self, "release", release)

    def matches(self, topic: str) -> bool:
        self.entered.set()  # type: ignore[attr-defined]
        assert self.release.wait(10)  # type: ignore[attr-defined]
        return True


def test_a_query_never_filters_under_the_append_lock(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.jsonl", ring_size=10)
    log.restore()
    for i in range(30):  # the oldest 20 are only in the file
        log.append(f"a.b{i}", reason="R")
    for since in (None, 25):  # from the file, and from the ring
        entered, release = threading.Event(), threading.Event()
        results: list[QueryResult] = []
        reader = threading.Thread(
            target=lambda s, f, out: out.append(log._query(s, f, 1000)),
            args=(since, BlockingFilter(entered, release), results),
        )
        reader.start()
        try:
            assert entered.wait(5), "the query started filtering"
            # While the reader is inside its filter, writers and status go on.
            t0 = time.monotonic()
            appended = log.append("a.c", reason="R")
            stats = log.stats()
            assert time.monotonic() - t0 < 0.5
            assert stats["head"] == str(appended.cursor)
        finally:
            release.set()
            reader.join(5)
        first = 1 if since is None else since + 1
        assert [e.cursor for e in results[0].events] == list(range(first, appended.cursor))
        assert results[0].cursor == appended.cursor - 1, "the snapshot's head, not the new one"
