"""EventRule and DerivedEvent end to end: a real routerd serve, real health-check daemons,
a loopback TCP service the test opens and closes, SIGKILL of serve mid-stream."""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
from typing import Any

import pytest
from routerd.client import UnixClient
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.serve import ServeProcess

ENV = {"ROUTERD_PLUGINS": "healthcheck"}
RULES = "rules.routerd.net/v1alpha1"


class Service:
    """A loopback TCP service on a fixed port that the test takes down and brings back."""

    def __init__(self) -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port: int = probe.getsockname()[1]
        probe.close()
        self.sock: socket.socket | None = None

    def up(self) -> None:
        if self.sock is None:
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", self.port))
            sock.listen(4096)  # the kernel completes handshakes; nobody needs to accept
            self.sock = sock

    def down(self) -> None:
        if self.sock is not None:
            self.sock.close()  # connections are refused from now on
            self.sock = None


def check(name: str, port: int, interval: str = "400ms") -> dict[str, Any]:
    return resource(
        "HealthCheck",
        name,
        {
            "protocol": "tcp",
            "target": "127.0.0.1",
            "port": port,
            "interval": interval,
            # As long as the interval: a loaded machine must not fail a loopback connect.
            "timeout": interval if interval != "1h" else "1s",
            "healthyThreshold": 1,
            "unhealthyThreshold": 1,
        },
    )


def rule(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": RULES, "kind": kind, "metadata": {"name": name}, "spec": spec}


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    made: list[ServeProcess] = []
    with tempfile.TemporaryDirectory(prefix="rdr-") as short:
        base = Path(short)

        def start(*resources: dict[str, Any]) -> ServeProcess:
            config = write_config(tmp_path / "router.yaml", router_config(*resources))
            sp = ServeProcess(config, base / "run", base / "state", tmp_path / "serve.log", env=ENV)
            made.append(sp)
            return sp.start()

        yield start
        failures = []
        for sp in made:
            try:
                sp.stop()
            except AssertionError as exc:
                failures.append(str(exc))
        leftover = subprocess.run(
            ["pgrep", "-f", f"--runtime-dir {base}/run"], capture_output=True, text=True
        )
        for pid in leftover.stdout.split():
            os.kill(int(pid), signal.SIGKILL)
        assert not failures, failures
        assert not leftover.stdout.strip(), f"daemons outlived routerd serve: {leftover.stdout}"


def virtual(sp: ServeProcess) -> list[dict[str, Any]]:
    """Virtual events through the control API, oldest first."""
    items: list[dict[str, Any]] = []
    for glob in ("routerd.rules.**", "routerd.derived.**"):
        items += sp.events(topic=glob, since=0, limit=1000)["items"]
    return sorted(items, key=lambda e: int(e["id"]))


def test_flapping_check_fires_a_window_and_wan_ready_follows_it(serve: Any) -> None:
    internet, gateway = Service(), Service()
    internet.up()
    gateway.up()
    try:
        sp = serve(
            check("internet", internet.port),
            check("gateway", gateway.port),
            rule(
                "EventRule",
                "flapping",
                {
                    "pattern": {
                        "window": {
                            "match": "routerd.healthcheck.state.unhealthy",
                            "threshold": 3,
                            "within": "1m",
                        }
                    },
                    "correlateBy": ["resource.name"],
                    "emit": {
                        "topic": "routerd.rules.wan.flapping",
                        "severity": "warning",
                        "message": "${resource.name} went unhealthy ${count} times",
                    },
                },
            ),
            rule(
                "DerivedEvent",
                "wan-ready",
                {
                    "topic": "routerd.derived.wan.ready",
                    "inputs": [
                        {
                            "name": "internet",
                            "value": "${HealthCheck/internet.status.phase}",
                            "equals": "Healthy",
                        },
                        {"value": "${HealthCheck/gateway.status.phase}", "equals": "Healthy"},
                    ],
                },
            ),
        )
        sp.wait_for_phase("DerivedEvent", "wan-ready", "Asserted")
        head = sp.events(limit=1)["cursor"]
        for _ in range(3):  # three outages within a minute
            internet.down()
            sp.wait_for_phase("DerivedEvent", "wan-ready", "Retracted")
            internet.up()
            sp.wait_for_phase("DerivedEvent", "wan-ready", "Asserted")
        # The third unhealthy fired the window; the long-poll from before sees it.
        got = sp.get("events", since=head, wait="10s", topic="routerd.rules.**").json()["items"]
        assert [(e["topic"], e["source"], e["attributes"]["count"]) for e in got] == [
            ("routerd.rules.wan.flapping", "rules", 3)
        ], sp.events(topic="routerd.healthcheck.state.*", since=head)["items"]
        assert got[0]["message"] == "internet went unhealthy 3 times"
        assert got[0]["severity"] == "warning"

        topics = [e["topic"].rsplit(".", 1)[1] for e in virtual(sp) if "derived" in e["topic"]]
        assert topics == ["asserted"] + ["retracted", "asserted"] * 3, topics
        ready = sp.get("resources/DerivedEvent/wan-ready").json()
        assert ready["daemonKind"] == "rules" and ready["observed"]["transitions"] == 7
        assert ready["recentEvents"][0]["topic"] == "routerd.derived.wan.ready.asserted"
        # An EventRule's counters are stored at most every second.
        flapping = poll(
            lambda: (
                (body := sp.get("resources/EventRule/flapping").json())["observed"]["fireCount"]
                and body
            ),
            5,
            "the rule's fire count",
        )
        assert flapping["phase"] == "Installed"
        assert flapping["observed"]["fireCount"] == 1 and flapping["observed"]["keys"] == 0

        # routerctl shows them like any resource.
        out = subprocess.run(
            [sys.executable, "-m", "routerctl", "--runtime-dir", str(sp.runtime_dir), "status"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "EventRule/flapping" in out and "DerivedEvent/wan-ready" in out
        described = subprocess.run(
            [
                *(sys.executable, "-m", "routerctl", "--runtime-dir", str(sp.runtime_dir)),
                *("describe", "DerivedEvent/wan-ready"),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert "Engine:     routerd serve (rules)" in described, described
        assert "None" not in described.split("Spec:")[0], described  # no daemon, no pid

        # They have no commands: a clear refusal, not "no resource".
        for ref, command in (("EventRule/flapping", "renew"), ("DerivedEvent/wan-ready", "stop")):
            resp = sp.post(f"resources/{ref}/commands/{command}")
            body = resp.json()
            assert resp.status == 404 and body["title"] == "Unknown command", body
            assert f"{ref} takes no commands" in body["description"], body
        assert sp.post("resources/EventRule/nope/commands/renew").json()["title"] == (
            "Unknown resource"
        )
    finally:
        internet.down()
        gateway.down()


def stored_virtual(sp: ServeProcess, source: str) -> list[tuple[int, int]]:
    db = sqlite3.connect(sp.state_dir / "routerd.db")
    try:
        rows = db.execute(
            "SELECT cursor, json_extract(attributes, '$.count') FROM events "
            "WHERE source = ? ORDER BY id",
            (source,),
        ).fetchall()
    finally:
        db.close()
    return [(int(c), int(n)) for c, n in rows]


def test_sigkill_mid_stream_neither_repeats_nor_misses(serve: Any) -> None:
    service = Service()
    service.up()
    try:
        sp = serve(
            check("internet", service.port, interval="1h"),
            rule(
                "EventRule",
                "renews",
                {
                    "pattern": {
                        "count": {
                            "match": {
                                "topic": "routerd.healthcheck.probe.*",
                                "where": {"attributes.trigger": "renew"},
                            },
                            "every": 1,
                        }
                    },
                    "emit": {"topic": "routerd.rules.renewed"},
                },
            ),
        )
        sp.wait_for_phase("EventRule", "renews", "Installed")
        daemon = UnixClient(str(sp.runtime_dir / "healthcheck" / "internet.sock"), timeout=10)
        probes = 0
        stop = threading.Event()

        def renew_until_stopped() -> None:
            nonlocal probes
            while not stop.is_set():
                resp = daemon.post("/v1/commands/renew")
                if resp.status == 200 and resp.json()["result"].get("probe"):
                    probes += 1

        for _ in range(2):  # two kills, each in the middle of the stream
            renewer = threading.Thread(target=renew_until_stopped)
            renewer.start()
            try:
                poll(
                    lambda: len(stored_virtual(sp, "rules")) >= probes // 2 + 5,
                    20,
                    "virtual events",
                )
                sp.kill()  # SIGKILL: the daemon keeps probing, its events wait in its log
                want = probes + 10
                poll(lambda: probes >= want, 20, "probes while routerd serve is down")  # noqa: B023
                sp.start()
            finally:
                stop.set()
                renewer.join(20)
                stop.clear()

        def caught_up() -> bool:
            body = sp.get("resources/EventRule/renews").json()
            return bool(body["observed"]["fireCount"] == probes)

        poll(caught_up, 20, f"all {probes} probes through the rule")
        stored = stored_virtual(sp, "rules")
        assert stored == [(i, i) for i in range(1, probes + 1)], "a duplicate or a gap"
        assert probes > 30
    finally:
        service.down()


def test_a_daemon_that_stays_down_retracts_a_derived_event_as_input_stale(serve: Any) -> None:
    internet, gateway = Service(), Service()
    internet.up()
    gateway.up()
    try:
        sp = serve(
            check("internet", internet.port),
            check("gateway", gateway.port),
            rule(
                "DerivedEvent",
                "wan-ready",
                {
                    "topic": "routerd.derived.wan.ready",
                    "inputs": [
                        {
                            "name": "internet",
                            "value": "${HealthCheck/internet.status.phase}",
                            "equals": "Healthy",
                        },
                        {"value": "${HealthCheck/gateway.status.phase}", "equals": "Healthy"},
                    ],
                },
            ),
        )
        sp.wait_for_phase("DerivedEvent", "wan-ready", "Asserted")
        # An operator's SIGTERM: the daemon exits 0 and stays Stopped. Its last stored
        # status still says Healthy; serve serves it as Unknown, and so must the rule.
        pid = sp.daemon("HealthCheck", "internet")["pid"]
        os.kill(pid, signal.SIGTERM)
        ready = sp.wait_for_phase("DerivedEvent", "wan-ready", "Retracted")
        hc = sp.get("resources/HealthCheck/internet").json()
        assert hc["phase"] == "Unknown" and hc["stale"]["reason"] == "DaemonNotRunning", hc
        assert hc["lastKnown"]["phase"] == "Healthy"
        (cond,) = ready["conditions"]
        assert cond["reason"] == "InputStale" and "DaemonNotRunning" in cond["message"], cond
        internet_view = ready["observed"]["inputs"][0]
        assert internet_view["ok"] is None and internet_view["got"] is None, internet_view
        last = [e for e in virtual(sp) if e["topic"].startswith("routerd.derived")][-1]
        assert (last["topic"], last["reason"]) == (
            "routerd.derived.wan.ready.retracted",
            "InputStale",
        )
        assert last["attributes"]["unknownInputs"] == 1
        assert last["attributes"]["input.internet"] is None

        # Started again: current and Healthy, so asserted again.
        assert sp.post("resources/HealthCheck/internet/commands/start").status == 200
        sp.wait_for_phase("DerivedEvent", "wan-ready", "Asserted")
        topics = [e["topic"].rsplit(".", 1)[1] for e in virtual(sp) if "derived" in e["topic"]]
        assert topics == ["asserted", "retracted", "asserted"], topics
    finally:
        internet.down()
        gateway.down()
