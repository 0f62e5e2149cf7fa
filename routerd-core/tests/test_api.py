"""The /v1 app through falcon's TestClient (no sockets): status codes and bodies."""

from __future__ import annotations

import time
from typing import Any

import falcon.testing
import pytest
from routerd.daemon.api import WaiterSlots
from routerd.daemon.api import create_app
from routerd.daemon.eventlog import EventLog
from routerd.errors import CommandRejected
from routerd.errors import UnknownCommand
from routerd.model import CommandResult
from routerd.model import DaemonInfo
from routerd.model import DaemonStatus
from routerd.model import ResourceRef
from routerd.model import ResourceStatus


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
    body = error(client.simulate_post("/v1/commands/crash"), 500)
    assert "bug" not in body["description"], "internals are not echoed"
    backend.stopping = True
    error(client.simulate_post("/v1/commands/renew"), 503)
