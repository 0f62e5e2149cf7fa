"""routerd serve end to end: real daemons, real SQLite, real sockets."""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import pytest
from routerd.client import UnixClient
from routerd.testing.daemon import pids_holding
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.serve import ServeProcess

ENV = {"ROUTERD_PLUGINS": "healthcheck"}


@pytest.fixture
def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def check(name: str, port: int, interval: str = "500ms") -> dict[str, Any]:
    return resource(
        "HealthCheck",
        name,
        {
            "protocol": "tcp",
            "target": "127.0.0.1",
            "port": port,
            "interval": interval,
            "timeout": "300ms",
            "healthyThreshold": 1,
            "unhealthyThreshold": 1,
        },
    )


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    made: list[ServeProcess] = []
    with tempfile.TemporaryDirectory(prefix="rds-") as short:
        base = Path(short)

        def start(*resources: dict[str, Any], wait: bool = True) -> ServeProcess:
            config = write_config(tmp_path / "router.yaml", router_config(*resources))
            sp = ServeProcess(config, base / "run", base / "state", tmp_path / "serve.log", env=ENV)
            made.append(sp)
            return sp.start(wait=wait)

        yield start
        failures = []
        for sp in made:
            try:
                sp.stop()
            except AssertionError as exc:
                failures.append(str(exc))
        # Nothing routerd started may outlive the test: exec'd daemons name
        # the runtime dir in their command line, forked ones hold their
        # event logs open in the state dir.
        leftover = subprocess.run(
            ["pgrep", "-f", f"--runtime-dir {base}/run"], capture_output=True, text=True
        )
        pids = {int(pid) for pid in leftover.stdout.split()} | set(pids_holding(base / "state"))
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        assert not failures, failures
        assert not pids, f"daemons outlived routerd serve: {sorted(pids)}"


def cursors(sp: ServeProcess, source: str) -> list[int]:
    db = sqlite3.connect(sp.state_dir / "routerd.db")
    try:
        rows = db.execute(
            "SELECT cursor FROM events WHERE source = ? AND cursor > 0 ORDER BY id", (source,)
        ).fetchall()
    finally:
        db.close()
    return [r[0] for r in rows]


def daemon_cursors(sp: ServeProcess, source: str) -> list[int]:
    """Every cursor the daemon's own log holds (cursors may skip after a crash)."""
    daemon_kind, name = source.split("/")
    client = UnixClient(str(sp.runtime_dir / daemon_kind / f"{name}.sock"))
    found: list[int] = []
    since = "0"
    while True:
        body = client.get("/v1/events", since=since, limit=1000).json()
        found += [int(e["cursor"]) for e in body["events"]]
        if not body.get("more"):
            return found
        since = body["cursor"]


def assert_no_dup_no_gap(sp: ServeProcess, source: str, timeout: float = 10) -> list[int]:
    """Every event in the daemon's log is stored once, in order (waiting for ingestion)."""
    logged = daemon_cursors(sp, source)
    assert logged, f"no events in {source}'s log"
    poll(lambda: len(cursors(sp, source)) >= len(logged), timeout, f"{source} to be ingested")
    seen = cursors(sp, source)
    assert seen[: len(logged)] == logged, f"{source}: stored {seen}, logged {logged}"
    assert seen == sorted(set(seen)), f"{source}: duplicates in {seen}"
    return seen


def test_events_and_status_through_the_api(serve: Any, tcp_listener: int, closed_port: int) -> None:
    sp = serve(check("up", tcp_listener), check("down", closed_port))
    sp.wait_for_phase("HealthCheck", "up", "Healthy")
    sp.wait_for_phase("HealthCheck", "down", "Unhealthy")
    status = sp.status()
    assert status["kind"] == "RouterStatus" and status["config"]["generation"] == 1
    assert {d["phase"] for d in status["daemons"]} == {"Healthy", "Unhealthy"}
    assert [p["distribution"] for p in status["plugins"]] == ["routerd-plugin-healthcheck"]
    items = sp.get("resources").json()["items"]
    assert [(i["resource"]["name"], i["phase"]) for i in items] == [
        ("up", "Healthy"),
        ("down", "Unhealthy"),
    ]
    assert items[0]["spec"]["port"] == tcp_listener

    ev = sp.events(topic="routerd.healthcheck.state.*", resource="HealthCheck/up")["items"]
    assert [e["topic"] for e in ev] == ["routerd.healthcheck.state.healthy"]
    assert ev[0]["attributes"]["resource.name"] == "up"
    newest = sp.events(limit=5)["items"]
    assert [int(e["id"]) for e in newest] == sorted((int(e["id"]) for e in newest), reverse=True)
    after = sp.events(since=0, limit=5)["items"]
    assert [int(e["id"]) for e in after] == sorted(int(e["id"]) for e in after)
    detail = sp.get("resources/HealthCheck/down").json()
    assert detail["phase"] == "Unhealthy" and detail["recentEvents"]
    assert sp.get("resources/HealthCheck/nope").status == 404
    assert sp.get("events", topic="Bad..glob").status == 400
    assert sp.get("events", resource="nokind").status == 400


def test_long_poll_follow_and_forwarded_command(serve: Any, tcp_listener: int) -> None:
    sp = serve(check("up", tcp_listener, interval="1h"))
    sp.wait_for_phase("HealthCheck", "up", "Healthy")
    head = sp.events(limit=1)["cursor"]
    got: dict[str, Any] = {}

    def follow() -> None:
        t0 = time.monotonic()
        got["body"] = sp.get(
            "events", since=head, wait="10s", topic="routerd.healthcheck.probe.*"
        ).json()
        got["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=follow)
    t.start()
    resp = sp.post("resources/HealthCheck/up/commands/renew")
    assert resp.status == 200 and resp.json()["result"]["probe"]["ok"] is True
    t.join(15)
    assert [e["topic"] for e in got["body"]["items"]] == ["routerd.healthcheck.probe.succeeded"]
    assert got["elapsed"] < 5
    assert sp.post("resources/HealthCheck/up/commands/bogus").status == 404
    assert sp.post("resources/HealthCheck/nope/commands/renew").status == 404


def test_status_socket_is_get_only_and_modes(serve: Any, tcp_listener: int) -> None:
    sp = serve(check("up", tcp_listener))
    ro = sp.client(status_socket=True)
    assert ro.get("/api/control.routerd.net/v1alpha1/status").status == 200
    resp = ro.post("/api/control.routerd.net/v1alpha1/reload")
    assert resp.status == 405 and resp.json()["title"]
    assert (
        ro.post("/api/control.routerd.net/v1alpha1/resources/HealthCheck/up/commands/renew").status
        == 405
    )
    assert stat.S_IMODE(sp.socket_path.stat().st_mode) == 0o660
    assert stat.S_IMODE(sp.status_socket_path.stat().st_mode) == 0o666


def test_sigkill_daemon_is_restarted_without_duplicates_or_gaps(
    serve: Any, tcp_listener: int
) -> None:
    sp = serve(check("up", tcp_listener))
    sp.wait_for_phase("HealthCheck", "up", "Healthy")
    old = sp.daemon("HealthCheck", "up")
    os.kill(old["pid"], signal.SIGKILL)
    new = poll(
        lambda: (
            (d := sp.daemon("HealthCheck", "up"))["restarts"] == 1 and d["state"] == "Running" and d
        ),
        10,
        "a restart after SIGKILL",
    )
    assert new["pid"] != old["pid"] and new["lastExit"] == -signal.SIGKILL
    # The restarted daemon's own start-up events reach the store.
    poll(
        lambda: any(
            e["attributes"].get("pid") == new["pid"]
            for e in sp.events(topic="routerd.daemon.lifecycle.started")["items"]
        ),
        10,
        "the restarted daemon's started event",
    )
    assert_no_dup_no_gap(sp, "healthcheck/up")


def test_sigkill_routerd_adopts_daemons_and_resumes_ingestion(
    serve: Any, tcp_listener: int
) -> None:
    sp = serve(check("up", tcp_listener, interval="1h"))
    sp.wait_for_phase("HealthCheck", "up", "Healthy")
    pid = sp.daemon("HealthCheck", "up")["pid"]
    before = assert_no_dup_no_gap(sp, "healthcheck/up")
    sp.kill()  # SIGKILL routerd: its daemons keep running (and holding leases)
    daemon = UnixClient(str(sp.runtime_dir / "healthcheck" / "up.sock"))
    for _ in range(3):
        assert daemon.post("/v1/commands/renew").status == 200  # events while routerd is down
    sp.start()
    d = sp.daemon("HealthCheck", "up")
    assert d["pid"] == pid and d["adopted"] is True, d
    after = assert_no_dup_no_gap(sp, "healthcheck/up")
    assert len(after) >= len(before) + 9  # 3 renews x (received, probe, executed)
    assert sp.status()["store"]["duplicatesDropped"] == 0


def test_reload_adds_and_removes_and_refuses_broken_config(serve: Any, tcp_listener: int) -> None:
    sp = serve(check("a", tcp_listener), check("b", tcp_listener))
    pids = {d["resource"]["name"]: d["pid"] for d in sp.status()["daemons"]}
    write_config(sp.config_path, router_config(check("a", tcp_listener), check("c", tcp_listener)))
    result = sp.post("reload").json()
    assert result["started"] == ["HealthCheck/c"] and result["stopped"] == ["HealthCheck/b"]
    assert result["unchanged"] == ["HealthCheck/a"] and result["generation"] == 2
    sp.wait_ready()
    names = {d["resource"]["name"]: d["pid"] for d in sp.status()["daemons"]}
    assert set(names) == {"a", "c"} and names["a"] == pids["a"]
    assert not (sp.runtime_dir / "healthcheck" / "b.sock").exists()

    changed = check("a", tcp_listener, interval="2s")
    write_config(sp.config_path, router_config(changed, check("c", tcp_listener)))
    reload = sp.post("reload").json()
    assert reload["reloaded"] == ["HealthCheck/a"], str(reload)
    assert sp.daemon("HealthCheck", "a")["pid"] == pids["a"], "applied live, not restarted"

    sp.config_path.write_text(
        "apiVersion: routerd.net/v1alpha1\nkind: Router\nspec:\n  resources:\n"
        "    - {apiVersion: net.routerd.net/v1alpha1, kind: HealthCheck, metadata: {name: x},"
        " spec: {protocol: tcp, target: 127.0.0.1}}\n"
        "    - {apiVersion: net.routerd.net/v1alpha1, kind: Nope, metadata: {name: y}}\n"
    )
    resp = sp.post("reload")
    assert resp.status == 409
    text = resp.json()["description"]
    assert "HealthCheck/x" in text and "port is required" in text and "unknown kind 'Nope'" in text
    assert {d["resource"]["name"]: d["pid"] for d in sp.status()["daemons"]} == names
    assert sp.status()["config"]["generation"] == 3


def test_stopped_daemon_stays_stopped_until_started(serve: Any, tcp_listener: int) -> None:
    sp = serve(check("up", tcp_listener))
    assert sp.post("resources/HealthCheck/up/commands/stop").status == 200
    poll(lambda: sp.daemon("HealthCheck", "up")["state"] == "Stopped", 10, "the daemon to stop")
    # A crash would be restarted after 1 s: watch for 2 s that nothing restarts it.
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        d = sp.daemon("HealthCheck", "up")
        assert d["state"] == "Stopped" and d["pid"] is None and d["restarts"] == 0
        time.sleep(0.1)
    resp = sp.post("resources/HealthCheck/up/commands/start")
    assert resp.status == 200
    sp.wait_ready()
    assert sp.daemon("HealthCheck", "up")["state"] == "Running"


def test_foreign_socket_is_left_alone(serve: Any, tcp_listener: int, tmp_path: Path) -> None:
    sp = serve(check("up", tcp_listener), wait=False)
    sp.stop()  # make the dirs, then serve the socket ourselves
    path = sp.runtime_dir / "healthcheck" / "up.sock"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    foreign = socket.socket(socket.AF_UNIX)
    foreign.bind(str(path))
    foreign.listen(8)
    try:
        sp.start(wait=False)
        sp.wait_up()
        d = poll(
            lambda: (x := sp.daemon("HealthCheck", "up"))["state"] == "Foreign" and x, 10, "Foreign"
        )
        assert d["pid"] is None
        assert sp.post("resources/HealthCheck/up/commands/renew").status == 409
    finally:
        foreign.close()


def test_invalid_config_refused_at_start(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        "apiVersion: routerd.net/v1alpha1\nkind: Router\nspec:\n  resources:\n"
        "    - {apiVersion: net.routerd.net/v1alpha1, kind: HealthCheck, metadata: {name: x}, spec: {protocol: tcp}}\n"
        "    - {apiVersion: net.routerd.net/v1alpha1, kind: HealthCheck, metadata: {name: y},"
        " spec: {protocol: tcp, target: 127.0.0.1}}\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "routerd",
            "serve",
            "--config",
            str(cfg),
            "--runtime-dir",
            str(tmp_path / "r"),
            "--state-dir",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
        timeout=30,
    )
    assert proc.returncode == 1
    assert "HealthCheck/x: spec.target" in proc.stderr
    assert "HealthCheck/y" in proc.stderr and "port is required" in proc.stderr
    assert "2 problem(s)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_sigterm_stops_every_daemon_in_parallel(serve: Any, tcp_listener: int) -> None:
    sp = serve(*(check(f"c{i}", tcp_listener) for i in range(4)))
    pids = [d["pid"] for d in sp.status()["daemons"]]
    t0 = time.monotonic()
    assert sp.stop() == 0
    assert time.monotonic() - t0 < 6
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
        )
    assert not sp.socket_path.exists() and not sp.status_socket_path.exists()
