"""routerctl on top of ``routerd serve``: the router at a glance, get, describe, wait, commands."""

from __future__ import annotations

from collections.abc import Iterator
import json
from pathlib import Path
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from click.testing import CliRunner
from click.testing import Result
import pytest
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.serve import ServeProcess


def check(name: str, port: int) -> dict[str, Any]:
    spec = {
        "protocol": "tcp",
        "target": "127.0.0.1",
        "port": port,
        "interval": "500ms",
        "timeout": "250ms",
    }
    return resource("HealthCheck", name, spec)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port bound but not listening: connections to it are refused."""
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    yield holder.getsockname()[1]
    holder.close()


@pytest.fixture
def served(tmp_path: Path, tcp_listener: int, closed_port: int) -> Iterator[ServeProcess]:
    closed = closed_port
    with tempfile.TemporaryDirectory(prefix="rdc-") as short:
        base = Path(short)
        config = write_config(
            tmp_path / "router.yaml",
            router_config(check("up", tcp_listener), check("down", closed)),
        )
        sp = ServeProcess(
            config,
            base / "run",
            base / "state",
            tmp_path / "serve.log",
            env={"ROUTERD_PLUGINS": "healthcheck"},
        )
        sp.start()
        sp.wait_for_phase("HealthCheck", "up", "Healthy")
        sp.wait_for_phase("HealthCheck", "down", "Unhealthy")
        yield sp
        sp.stop()


def ctl(sp: ServeProcess, *args: str) -> Result:
    from routerctl.cli import main

    return CliRunner().invoke(main, ["--runtime-dir", str(sp.runtime_dir), *args])


def test_status_is_the_router_at_a_glance(served: ServeProcess, tcp_listener: int) -> None:
    res = ctl(served, "status")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].startswith("routerd 0.1.0") and "config generation 1" in lines[0]
    up = next(line for line in lines if line.startswith("HealthCheck/up"))
    down = next(line for line in lines if line.startswith("HealthCheck/down"))
    assert "Healthy" in up and f"tcp 127.0.0.1:{tcp_listener} " in up and "Running" in up
    assert "Unhealthy" in down
    doc = json.loads(ctl(served, "status", "-o", "json").output)
    # FACTS is what the kind says (DaemonKind.facts, computed by serve), not routerctl's guess.
    facts = {r["resource"]["name"]: r["facts"] for r in doc["resources"]}
    assert facts["up"].startswith(f"tcp 127.0.0.1:{tcp_listener} ") and facts["up"].endswith(" ms")
    assert {r["resource"]["name"]: r["phase"] for r in doc["resources"]} == {
        "up": "Healthy",
        "down": "Unhealthy",
    }


def test_get_resources_events_daemons(served: ServeProcess) -> None:
    items = json.loads(ctl(served, "get", "resources", "-o", "json").output)
    assert [i["resource"]["name"] for i in items] == ["up", "down"]
    events = ctl(
        served,
        "get",
        "events",
        "--topic",
        "routerd.healthcheck.state.*",
        "--resource",
        "HealthCheck/down",
    )
    assert events.exit_code == 0, events.output
    rows = events.output.splitlines()[1:]
    assert rows and all(
        "routerd.healthcheck.state.unhealthy" in r and "HealthCheck/down" in r for r in rows
    )
    daemons = ctl(served, "get", "daemons")
    assert daemons.exit_code == 0 and daemons.output.count("Running") == 2


def test_describe(served: ServeProcess, tcp_listener: int) -> None:
    res = ctl(served, "describe", "HealthCheck/up")
    assert res.exit_code == 0, res.output
    assert "Phase:      Healthy" in res.output
    assert f"port: {tcp_listener}" in res.output
    assert "TargetReachable" in res.output and "Recent events:" in res.output
    assert ctl(served, "describe", "HealthCheck/nope").exit_code == 1
    assert ctl(served, "describe", "healthcheck/up").exit_code == 2


def test_wait_returns_at_once_or_times_out(served: ServeProcess) -> None:
    t0 = time.monotonic()
    ok = ctl(served, "wait", "HealthCheck/up", "--for", "phase=Healthy", "--timeout", "10s")
    assert ok.exit_code == 0 and time.monotonic() - t0 < 2
    cond = ctl(
        served, "wait", "HealthCheck/up", "--for", "condition=TargetReachable", "--timeout", "5s"
    )
    assert cond.exit_code == 0, cond.output
    t0 = time.monotonic()
    late = ctl(served, "wait", "HealthCheck/down", "--for", "phase=Healthy", "--timeout", "1s")
    assert late.exit_code == 1 and "timed out after 1 s" in late.output
    assert time.monotonic() - t0 < 4
    assert ctl(served, "wait", "HealthCheck/up", "--for", "colour=blue").exit_code == 2


def test_wait_wakes_on_the_phase_change(served: ServeProcess, closed_port: int) -> None:
    result: dict[str, Any] = {}

    def waiter() -> None:
        t0 = time.monotonic()
        result["res"] = ctl(
            served, "wait", "HealthCheck/up", "--for", "phase=Unhealthy", "--timeout", "20s"
        )
        result["elapsed"] = time.monotonic() - t0

    thread = threading.Thread(target=waiter)
    thread.start()
    # Point "up" at the closed port: a different target starts Pending, then fails.
    write_config(
        served.config_path, router_config(check("up", closed_port), check("down", closed_port))
    )
    assert ctl(served, "reload").exit_code == 0
    thread.join(25)
    assert result["res"].exit_code == 0, result["res"].output
    assert result["res"].output.strip() == "HealthCheck/up: phase Unhealthy"
    # About 1.5 s of failing probes; a status stored after its phase event cost a 5 s slice.
    assert 0.5 < result["elapsed"] < 4, "returned on the change, not at once or a slice later"


def test_commands_through_routerd(served: ServeProcess) -> None:
    renew = ctl(served, "renew", "HealthCheck/up")
    assert renew.exit_code == 0 and renew.output.startswith("probe ok")
    reload = ctl(served, "reload")
    assert reload.exit_code == 0 and "config generation 2" in reload.output
    stop = ctl(served, "stop", "HealthCheck/up")
    assert stop.exit_code == 0, stop.output
    daemons = json.loads(ctl(served, "get", "daemons", "-o", "json").output)
    assert {d["resource"]["name"]: d["state"] for d in daemons}["up"] == "Stopped"
    bogus = ctl(served, "command", "HealthCheck/down", "fly")
    assert bogus.exit_code == 1 and "Traceback" not in bogus.output


def test_events_follow_through_routerd(served: ServeProcess) -> None:
    argv = [sys.executable, "-m", "routerctl.cli", "--runtime-dir", str(served.runtime_dir)]
    proc = subprocess.Popen(
        [*argv, "events", "--follow", "--topic", "routerd.daemon.command.*", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in proc.stdout or []], daemon=True
    ).start()
    try:
        # The follower starts at the head: renew until one of its events shows up.
        deadline = time.monotonic() + 15
        seen: dict[str, Any] | None = None
        while seen is None and time.monotonic() < deadline:
            ctl(served, "renew", "HealthCheck/up")
            try:
                seen = json.loads(lines.get(timeout=2))
            except queue.Empty:
                continue
        assert seen is not None, "routerctl events --follow printed nothing"
        assert seen["topic"].startswith("routerd.daemon.command.")
        assert seen["attributes"]["resource.name"] == "up"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0
    assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")


def test_routerd_not_running_is_one_line(tmp_path: Path) -> None:
    from routerctl.cli import main

    res = CliRunner().invoke(main, ["--runtime-dir", str(tmp_path), "status"])
    assert res.exit_code == 1
    assert (
        res.output.strip()
        == f"routerctl: routerd serve is not running (no socket at {tmp_path}/routerd-status.sock)"
    )


def test_facts_column_shows_only_what_the_kind_said() -> None:
    """Before: routerctl picked keys (address, prefixes, verdict) out of ``observed`` itself."""
    from routerctl.router import resources_table

    item = {
        "resource": {"kind": "Widget", "name": "w"},
        "phase": "Bound",
        "observed": {"address": "192.0.2.9/24", "verdict": "x", "target": "t"},
        "facts": "",
    }
    row = resources_table([item], time.time()).splitlines()[1]
    assert "192.0.2.9" not in row
    row = resources_table([{**item, "facts": "widget spins"}], time.time()).splitlines()[1]
    assert row.rstrip().endswith("widget spins")
