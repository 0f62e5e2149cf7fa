"""The daemon conformance suite: DESIGN.md §4-6 checked against a real daemon.

Use it from a plugin's tests::

    from routerd.testing.conformance import ConformanceTarget, DaemonConformance

    class TestMyDaemon(DaemonConformance):
        @pytest.fixture
        def conformance_target(self, tmp_path):
            return ConformanceTarget("my-kind", router_config(...), "res", env={...})

Every test starts its own daemon process through the ``routerd_daemon``
fixture, so the suite exercises start-up, restart and shutdown for real.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
import datetime as dt
import json
import os
import signal
import threading
import time
from typing import Any

import pytest

from routerd.client import UnixClient
from routerd.model import DAEMON_PHASES
from routerd.model import PHASES
from routerd.model import SEVERITIES
from routerd.testing.daemon import ConfigLike
from routerd.testing.daemon import DaemonFactory
from routerd.testing.daemon import DaemonProcess

STOP_WITHIN = 2.0


@dataclass
class ConformanceTarget:
    """How to start the daemon under test.

    :ivar settle_within: seconds within which the resource must leave
        ``Pending`` (a lease bound, a first probe done, a session up). None
        only for a kind whose resource cannot progress in the test's setting
        (no server to talk to); say why next to it.
    """

    daemon_kind: str
    config: ConfigLike
    resource: str
    netns: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: ``fork`` (as routerd serve starts daemons) or ``exec`` (``routerd daemon``).
    launch: str = "fork"
    settle_within: float | None = 15.0


def _is_rfc3339(text: str) -> bool:
    try:
        value = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return False
    return value.year > 2000


def _assert_no_engine_errors(daemon: DaemonProcess, what: str) -> None:
    """The engine raised nothing but CommandRejected (a 409 by design is fine; a crash is not)."""
    engine = daemon.status()["runtime"]["engine"]
    assert engine.get("commandErrors", 0) == 0, (
        f"{what}: the engine raised instead of returning a CommandOutcome or raising "
        f"CommandRejected ({engine.get('commandErrors')} time(s)); see the daemon's log"
    )


def _assert_clean_teardown(daemon: DaemonProcess) -> None:
    """The last event says the engine's ``stop()`` finished (within ~1 s, without raising)."""
    lines = (daemon.resource_state_dir / "events.jsonl").read_text().splitlines()
    last = json.loads(lines[-1])
    assert last["topic"] == "routerd.daemon.lifecycle.stopped"
    teardown = last["attributes"].get("teardown")
    assert teardown == "complete", (
        f"engine teardown was {teardown!r}: stop() must finish within about a second "
        "without raising (the runtime gave up on it)"
    )


def _assert_json_error(resp: Any, status: int, mention: str | None = None) -> None:
    assert resp.status == status, f"expected {status}, got {resp.status}: {resp.body[:300]!r}"
    assert resp.headers.get("content-type", "").startswith("application/json")
    body = resp.json()
    assert set(body) >= {"title", "description"}, body
    assert isinstance(body["title"], str) and body["title"]
    if mention is not None:
        assert mention in body["description"], body


class DaemonConformance:
    """Subclass and provide a ``conformance_target`` fixture."""

    @pytest.fixture
    def daemon(
        self, conformance_target: ConformanceTarget, routerd_daemon: DaemonFactory
    ) -> DaemonProcess:
        # conformance_target first: its lab (servers, namespaces) is torn
        # down after the daemon has stopped gracefully, not before.
        t = conformance_target
        return routerd_daemon(
            t.daemon_kind, t.config, t.resource, netns=t.netns, env=t.env, launch=t.launch
        )

    # -- liveness and status ---------------------------------------------------
    def test_healthz(self, daemon: DaemonProcess) -> None:
        resp = daemon.get("/v1/healthz")
        assert resp.status == 200
        assert resp.json() == {"status": "ok"}

    def test_status_shape(
        self, daemon: DaemonProcess, conformance_target: ConformanceTarget
    ) -> None:
        st = daemon.status()
        assert st["apiVersion"] == "daemon.routerd.net/v1alpha1"
        assert st["kind"] == "DaemonStatus"
        assert st["daemon"]["kind"] == conformance_target.daemon_kind
        assert st["daemon"]["pid"] > 0
        assert _is_rfc3339(st["daemon"]["startedAt"])
        assert st["phase"] in DAEMON_PHASES
        assert st["phase"] == "Running"
        assert len(st["resources"]) == 1
        res = st["resources"][0]
        assert res["resource"]["name"] == conformance_target.resource
        assert set(res["resource"]) == {"apiVersion", "kind", "name"}
        assert res["phase"] in PHASES
        assert _is_rfc3339(res["since"])
        assert isinstance(res["conditions"], list)
        for cond in res["conditions"]:
            assert set(cond) == {"type", "status", "reason", "message", "lastTransitionTime"}
            assert cond["status"] in ("True", "False", "Unknown")
            assert _is_rfc3339(cond["lastTransitionTime"])
        assert isinstance(res["observed"], dict)
        json.dumps(st)  # plain JSON all the way down

    def test_openapi_document(self, daemon: DaemonProcess) -> None:
        """``/v1/openapi.json`` is routerd's document of the daemon API, with the kind's commands."""
        from routerd.openapi import daemon_document

        resp = daemon.get("/v1/openapi.json")
        assert resp.status == 200
        doc = resp.json()
        assert doc == daemon_document(doc.get("x-routerd-commands", ()))
        assert {"reload", "renew", "stop"} <= set(doc["x-routerd-commands"])

    def test_status_has_no_side_effects(self, daemon: DaemonProcess) -> None:
        head = daemon.head()
        for _ in range(5):
            daemon.status()
        after = daemon.events(since=head, topic="routerd.daemon.**")
        assert after["events"] == [], "reading status must not emit events"

    # -- events ----------------------------------------------------------------
    def test_every_event_is_well_formed(
        self, daemon: DaemonProcess, conformance_target: ConformanceTarget
    ) -> None:
        daemon.command("reload")
        body = daemon.events()
        topics = [e["topic"] for e in body["events"]]
        assert "routerd.daemon.lifecycle.started" in topics
        assert "routerd.daemon.lifecycle.ready" in topics
        cursors = [int(e["cursor"]) for e in body["events"]]
        assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
        for e in body["events"]:
            assert set(e) == {
                "cursor",
                "time",
                "topic",
                "severity",
                "reason",
                "message",
                "attributes",
            }
            assert e["severity"] in SEVERITIES
            assert _is_rfc3339(e["time"])
            attrs = e["attributes"]
            assert attrs["daemon.kind"] == conformance_target.daemon_kind
            assert attrs["resource.name"] == conformance_target.resource
            assert "resource.kind" in attrs
            for value in attrs.values():
                assert value is None or isinstance(value, str | int | float | bool)

    def test_events_since_limit_and_cursor(self, daemon: DaemonProcess) -> None:
        start = daemon.head()
        for _ in range(3):
            assert daemon.command("reload").status == 200
        body = daemon.events(since=start, topic="routerd.daemon.command.*")
        assert len(body["events"]) == 6  # received + executed, three times
        assert all(int(e["cursor"]) > start for e in body["events"])
        assert body["cursor"] == body["events"][-1]["cursor"]
        assert body["more"] is False
        page = daemon.events(since=start, topic="routerd.daemon.command.*", limit=2)
        assert len(page["events"]) == 2 and page["more"] is True
        assert page["cursor"] == page["events"][-1]["cursor"]
        rest = daemon.events(since=page["cursor"], topic="routerd.daemon.command.*")
        assert [e["cursor"] for e in page["events"] + rest["events"]] == [
            e["cursor"] for e in body["events"]
        ]
        none = daemon.events(since=daemon.head(), topic="routerd.daemon.command.*")
        assert none["events"] == [] and none["cursor"] == str(daemon.head())

    def test_events_absent_since_starts_at_oldest(self, daemon: DaemonProcess) -> None:
        body = daemon.events()
        assert body["events"][0]["topic"] == "routerd.daemon.lifecycle.started"

    def test_events_topic_globs(self, daemon: DaemonProcess) -> None:
        start = daemon.head()
        daemon.command("reload")
        one = daemon.events(since=start, topic="routerd.daemon.command.*")
        assert {e["topic"] for e in one["events"]} == {
            "routerd.daemon.command.received",
            "routerd.daemon.command.executed",
        }
        deep = daemon.events(since=start, topic="routerd.**")
        assert len(deep["events"]) >= 2
        zero = daemon.events(since=start, topic="routerd.daemon.command.received.**")
        assert {e["topic"] for e in zero["events"]} == {"routerd.daemon.command.received"}
        star_too_short = daemon.events(since=start, topic="routerd.*")
        assert star_too_short["events"] == []
        both = (
            daemon.client()
            .get(
                "/v1/events",
                since=start,
                topic=["routerd.daemon.command.received", "routerd.daemon.command.executed"],
            )
            .json()
        )
        assert [e["topic"] for e in both["events"]] == [e["topic"] for e in one["events"]]

    def test_events_tail(self, daemon: DaemonProcess) -> None:
        body = daemon.events(tail="true")
        assert body["events"] == [] and body["more"] is False
        last = daemon.events()["events"][-1]["cursor"]
        assert int(body["cursor"]) >= int(last)

    def test_events_wait_returns_as_soon_as_an_event_matches(self, daemon: DaemonProcess) -> None:
        head = daemon.head()
        result: dict[str, Any] = {}

        def waiter() -> None:
            t0 = time.monotonic()
            resp = daemon.client(20).get(
                "/v1/events", since=head, wait="10s", topic="routerd.daemon.command.received"
            )
            result["elapsed"] = time.monotonic() - t0
            result["body"] = resp.json()

        thread = threading.Thread(target=waiter)
        thread.start()
        daemon.wait_for_long_polls(1)
        assert thread.is_alive(), "the long-poll returned before any event"
        t0 = time.monotonic()
        daemon.command("reload")
        thread.join(10)
        assert not thread.is_alive()
        assert [e["topic"] for e in result["body"]["events"]][:1] == [
            "routerd.daemon.command.received"
        ]
        assert time.monotonic() - t0 < 2.0
        assert result["elapsed"] < 9.0

    def test_events_wait_times_out_with_head_cursor(self, daemon: DaemonProcess) -> None:
        t0 = time.monotonic()
        body = daemon.events(wait="500ms", topic="no.such.topic", since=daemon.head())
        elapsed = time.monotonic() - t0
        assert 0.45 <= elapsed < 3.0
        assert body["events"] == []
        assert body["cursor"] == str(daemon.head())

    def test_reset_when_cursor_is_ahead(self, daemon: DaemonProcess) -> None:
        body = daemon.events(since=daemon.head() + 1000)
        assert body.get("reset") is True
        assert body["events"], "a reset returns what the daemon has"

    def test_waiter_cap_gives_429_and_healthz_stays_fast(self, daemon: DaemonProcess) -> None:
        head = daemon.head()
        topic = "routerd.daemon.command.received"
        statuses: list[int] = []

        def park() -> None:
            resp = daemon.client(30).get("/v1/events", since=head, wait="15s", topic=topic)
            statuses.append(resp.status)

        # The cap the daemon reports (routerd's own daemons: 12 of 16 threads).
        cap = daemon.status()["runtime"]["longPolls"]["max"]
        assert cap >= 1
        with ThreadPoolExecutor(cap) as pool:
            futures = [pool.submit(park) for _ in range(cap)]
            daemon.wait_for_long_polls(cap)
            resp = daemon.client(5).get("/v1/events", since=head, wait="15s", topic=topic)
            _assert_json_error(resp, 429)
            assert daemon.status()["runtime"]["longPolls"]["rejected"] >= 1
            assert resp.headers.get("retry-after") == "1"
            t0 = time.monotonic()
            assert daemon.get("/v1/healthz").status == 200
            assert time.monotonic() - t0 < 0.5
            assert daemon.get("/v1/status").status == 200
            daemon.command("reload")  # wakes every parked waiter
            for fut in futures:
                fut.result(timeout=10)
        assert statuses.count(200) == cap

    # -- errors ----------------------------------------------------------------
    @pytest.mark.parametrize(
        ("query", "param"),
        [
            ({"since": "abc"}, "since"),
            ({"since": "-1"}, "since"),
            ({"wait": "soon"}, "wait"),
            ({"wait": "-1"}, "wait"),
            ({"limit": "0"}, "limit"),
            ({"limit": "many"}, "limit"),
            ({"topic": "Bad..topic"}, "topic"),
            ({"tail": "maybe"}, "tail"),
        ],
    )
    def test_bad_parameters_are_400(
        self, daemon: DaemonProcess, query: dict[str, str], param: str
    ) -> None:
        _assert_json_error(daemon.get("/v1/events", **query), 400, param)

    def test_unknown_path_and_wrong_method(self, daemon: DaemonProcess) -> None:
        client = daemon.client()
        _assert_json_error(client.get("/v1/nope"), 404)
        _assert_json_error(client.get("/"), 404)
        _assert_json_error(client.post("/v1/status"), 405)
        _assert_json_error(client.request("DELETE", "/v1/events"), 405)
        _assert_json_error(client.get("/v1/commands/renew"), 405)
        _assert_json_error(client.post("/v1/commands/no-such-command"), 404, "no-such-command")

    def test_bad_command_body_is_400(self, daemon: DaemonProcess) -> None:
        raw = UnixClient(str(daemon.socket_path))
        resp = raw.request("POST", "/v1/commands/renew", body=None)
        assert resp.status in (200, 409)
        import socket as _socket

        sock = _socket.socket(_socket.AF_UNIX)
        sock.connect(str(daemon.socket_path))
        payload = b"{not json"
        sock.sendall(
            b"POST /v1/commands/reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(payload)).encode()
            + b"\r\n\r\n"
            + payload
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        sock.close()
        assert data.startswith(b"HTTP/1.1 400"), data[:200]
        assert daemon.get("/v1/healthz").status == 200

    def test_reload_with_broken_config_is_409_and_keeps_running(
        self, daemon: DaemonProcess
    ) -> None:
        good = daemon.config_path.read_text()
        before = daemon.resource_status()
        daemon.config_path.write_text(good + "\n  bogus: [unclosed\n")
        try:
            _assert_json_error(daemon.command("reload"), 409)
            assert daemon.get("/v1/healthz").status == 200
            assert daemon.resource_status()["resource"] == before["resource"]
        finally:
            daemon.config_path.write_text(good)
        resp = daemon.command("reload")
        assert resp.status == 200, resp.error_text()

    # -- phases ----------------------------------------------------------------
    def test_resource_leaves_pending(
        self, daemon: DaemonProcess, conformance_target: ConformanceTarget
    ) -> None:
        """The resource gets somewhere: a phase other than Pending within ``settle_within``."""
        within = conformance_target.settle_within
        if within is None:
            pytest.skip("the target says its resource cannot leave Pending in this setting")
        settled = tuple(p for p in PHASES if p != "Pending")
        res = daemon.wait_for_phase(settled, timeout=within)
        assert res["phase"] in settled
        assert res["conditions"], "a phase comes with the conditions that explain it"

    # -- commands --------------------------------------------------------------
    def test_renew(self, daemon: DaemonProcess) -> None:
        resp = daemon.command("renew")
        assert resp.status in (200, 409), resp.error_text()
        body = resp.json()
        if resp.status == 200:
            assert body["kind"] == "CommandResult"
            assert body["apiVersion"] == "daemon.routerd.net/v1alpha1"
            assert body["command"] == "renew" and body["accepted"] is True
            assert isinstance(body["result"], dict)
        else:
            assert body["title"] and body["description"]
        _assert_no_engine_errors(daemon, "renew")

    def test_reload_unchanged(self, daemon: DaemonProcess) -> None:
        head = daemon.head()
        resp = daemon.command("reload")
        assert resp.status == 200
        assert resp.json()["command"] == "reload"
        # Filtered: a live daemon's protocol events may interleave.
        events = daemon.events(since=head, topic="routerd.daemon.command.*")["events"]
        topics = [e["topic"] for e in events]
        assert topics == ["routerd.daemon.command.received", "routerd.daemon.command.executed"]

    def test_sighup_reloads(self, daemon: DaemonProcess) -> None:
        head = daemon.head()
        os.kill(daemon.pid, signal.SIGHUP)
        event = daemon.wait_for_event("routerd.daemon.command.executed", since=head, timeout=10)
        assert event["attributes"]["command"] == "reload"
        assert daemon.get("/v1/healthz").status == 200

    def test_stop_command_exits_within_2s_and_removes_socket(self, daemon: DaemonProcess) -> None:
        t0 = time.monotonic()
        resp = daemon.command("stop")
        assert resp.status == 200 and resp.json()["accepted"] is True
        assert daemon.wait_exit(STOP_WITHIN + 1) == 0
        assert time.monotonic() - t0 < STOP_WITHIN
        assert not daemon.socket_path.exists()
        _assert_clean_teardown(daemon)

    def test_sigterm_stops_within_2s_with_longpoll_open(self, daemon: DaemonProcess) -> None:
        head = daemon.head()
        answered: list[int] = []

        def park() -> None:
            answered.append(
                daemon.client(30).get("/v1/events", since=head, wait="25s", topic="x.y").status
            )

        thread = threading.Thread(target=park)
        thread.start()
        daemon.wait_for_long_polls(1)
        t0 = time.monotonic()
        os.kill(daemon.pid, signal.SIGTERM)
        assert daemon.wait_exit(STOP_WITHIN + 1) == 0
        assert time.monotonic() - t0 < STOP_WITHIN
        thread.join(5)
        assert answered == [200], "the open long-poll is answered, not cut"
        assert not daemon.socket_path.exists()
        _assert_clean_teardown(daemon)

    # -- persistence -----------------------------------------------------------
    # An event is visible once the cursor high-water mark on disk covers it, and
    # a daemon writes that mark on a thread (at start, and ahead of need): a
    # reader waits for an event (long-poll), it does not read once and expect it.
    def test_cursor_continues_across_restart(self, daemon: DaemonProcess) -> None:
        daemon.command("reload")
        daemon.wait_for_event("routerd.daemon.command.executed")
        before = daemon.head()
        daemon.stop()
        daemon.start()
        started = daemon.wait_for_event("routerd.daemon.lifecycle.started", since=before)
        body = daemon.events(since=before)
        assert body.get("reset") is not True
        cursors = [int(e["cursor"]) for e in body["events"]]
        assert cursors[0] == before + 1, "the restart continues at the old head + 1"
        assert cursors == list(range(before + 1, before + 1 + len(cursors))), cursors
        assert before < int(started["cursor"]) <= cursors[-1]
        old = daemon.events(since=0, limit=1)
        assert old["events"][0]["cursor"] == "1", "events before the restart are still served"

    def test_sigkill_then_restart_keeps_events_and_replaces_stale_socket(
        self, daemon: DaemonProcess
    ) -> None:
        daemon.command("reload")
        daemon.wait_for_event("routerd.daemon.command.executed")
        before = daemon.head()
        daemon.kill()
        assert daemon.socket_path.exists(), "SIGKILL leaves the socket behind"
        daemon.start()
        body = daemon.events(since=before - 1)
        assert int(body["events"][0]["cursor"]) == before
        assert daemon.head() > before

    def test_torn_event_line_is_skipped_and_counted(self, daemon: DaemonProcess) -> None:
        before = daemon.head()
        daemon.stop()
        with (daemon.resource_state_dir / "events.jsonl").open("a") as f:
            f.write('{"cursor": "99999", "time": "garbage"}\n{"cursor": "1000')
        daemon.start()
        stats = daemon.status()["runtime"]["eventLog"]
        assert stats["tornLines"] >= 2
        assert daemon.head() > before
        assert daemon.head() < 99999
