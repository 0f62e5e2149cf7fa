"""A health check on a full disk keeps probing, and never shows a stale verdict.

Hardening issue 8, class 1: with the state dir on a full tmpfs the event-log
write raised ENOSPC inside the probe accounting, the pending probe never
completed and every later probe was skipped, while the phase stayed Healthy.
"""

from __future__ import annotations

from collections.abc import Callable
import errno
import json
import logging
import os
from pathlib import Path
import socket
import threading
import time
from typing import Any

import pytest
from routerd.daemon.loop import EngineLoop
from routerd.daemon.resource import ResourceState
from routerd.daemon.statefile import StateFile
from routerd.model import ResourceRef
from routerd.model import Scalar
from routerd.testing.daemon import DaemonFactory
from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.tmpfs import fill
from routerd.testing.tmpfs import require_mount_prereqs
from routerd.testing.tmpfs import small_tmpfs
from routerd_healthcheck.engine import HealthCheckEngine
from routerd_healthcheck.probes import ProbeResult
from routerd_healthcheck.spec import HealthCheckSpec

ENV = {"ROUTERD_PLUGINS": "healthcheck"}


class Listener:
    """A loopback TCP service the test can take down and bring back on its port."""

    def __init__(self) -> None:
        self.port = 0
        self._srv: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.up()

    def up(self) -> None:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(64)
        self.port = srv.getsockname()[1]
        self._srv = srv
        self._thread = threading.Thread(target=self._accept, args=(srv,), daemon=True)
        self._thread.start()

    def _accept(self, srv: socket.socket) -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.close()

    def down(self) -> None:
        if self._srv is not None:
            self._srv.shutdown(socket.SHUT_RDWR)
            self._srv.close()
            self._srv = None
        if self._thread is not None:
            self._thread.join(5)


def _observed(d: DaemonProcess) -> dict[str, Any]:
    res: dict[str, Any] = d.resource_status()["observed"]
    return res


def _condition(d: DaemonProcess, type_: str) -> dict[str, Any]:
    for cond in d.resource_status()["conditions"]:
        if cond["type"] == type_:
            return dict(cond)
    return {"status": "absent"}


def test_full_disk_keeps_probing_reports_it_and_flushes_the_backlog(
    routerd_daemon: DaemonFactory,
) -> None:
    require_mount_prereqs()
    target = Listener()
    spec = {
        "protocol": "tcp",
        "target": "127.0.0.1",
        "port": target.port,
        "interval": "200ms",
        "timeout": "150ms",
        "healthyThreshold": 2,
        "unhealthyThreshold": 2,
    }
    config = router_config(resource("HealthCheck", "disk", spec))
    d: DaemonProcess | None = None
    with small_tmpfs(routerd_daemon.state_dir, "1m") as fs:
        try:
            d = routerd_daemon("healthcheck", config, "disk", env=ENV)
            d.wait_for_phase("Healthy")
            filler = fill(fs)
            base, head_at_fill = _observed(d)["totalProbes"], d.head()
            poll(
                lambda: _observed(d)["totalProbes"] >= base + 15,
                15,
                "probes to go on with the disk full",
            )
            cond = poll(
                lambda: (c := _condition(d, "PersistenceDegraded"))["status"] == "True" and c,
                10,
                "PersistenceDegraded=True",
            )
            assert cond["reason"] == "NoSpace"
            assert "events.jsonl" in cond["message"] or "events.cursor" in cond["message"]
            assert "ENOSPC" in cond["message"]
            assert d.resource_status()["phase"] == "Healthy"
            assert d.get("/v1/healthz").status == 200
            renew = d.command("renew")
            assert renew.status == 200, renew.error_text()
            assert renew.json()["result"]["probe"]["ok"] is True
            # The verdict still follows the target, disk or no disk.
            target.down()
            d.wait_for_phase("Unhealthy", timeout=10)
            target.up()
            d.wait_for_phase("Healthy", timeout=10)
            log_stats = d.status()["runtime"]["eventLog"]
            assert log_stats["pending"] > 0 and log_stats["dropped"] == 0
            head = d.head()
            seen = [int(e["cursor"]) for e in d.events(since=head_at_fill, limit=1000)["events"]]
            assert seen == list(range(head_at_fill + 1, head + 1)), "accepted events are readable"
            buffered = log_stats["pending"]

            t0 = time.monotonic()
            filler.unlink()
            poll(
                lambda: (
                    _condition(d, "PersistenceDegraded")["status"] == "False"
                    and d.status()["runtime"]["eventLog"]["pending"] == 0
                ),
                15,
                "the backlog written once the space is back",
            )
            recovered_in = time.monotonic() - t0
            after = d.status()["runtime"]
            assert after["eventLog"]["dropped"] == 0
            assert after["eventLog"]["writtenLate"] >= buffered
            total = _observed(d)["totalProbes"]
            state_dir = d.resource_state_dir
            poll(
                lambda: (
                    json.loads((state_dir / "state.json").read_text())["checker"]["totalProbes"]
                    >= total
                ),
                10,
                "state.json to catch up",
            )
            data = (state_dir / "events.jsonl").read_bytes()
            assert data.endswith(b"\n")
            cursors = [int(json.loads(line)["cursor"]) for line in data.splitlines()]
            assert cursors == list(range(1, len(cursors) + 1)), "no gap, no torn line"
            assert cursors[-1] >= head
            log_lines = [
                line for line in d.log_text().splitlines() if "event log: cannot write" in line
            ]
            assert len(log_lines) == 1, log_lines  # one line per state change
            print(
                f"\nfull disk: {after['eventLog']['writtenLate']} events written late "
                f"({buffered} waiting when space returned), 0 dropped, "
                f"{total - base} probes while full, recovered {recovered_in:.2f} s after "
                "space returned"
            )
            assert d.stop() == 0
        finally:
            target.down()
            if d is not None:
                d.kill()  # only if still running: the tmpfs must be free to unmount


# -- the engine, with a fault-injecting context ---------------------------------


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Ctx:
    """A :class:`~routerd.daemon.engine.DaemonContext` whose ``emit`` can fail."""

    def __init__(self, spec: HealthCheckSpec, tmp_path: Path) -> None:
        self.resource = ResourceRef("net.routerd.net/v1alpha1", "HealthCheck", "t")
        self.spec = spec
        self.clock = ManualClock()
        self.loop = EngineLoop(clock=self.clock)
        self.status = ResourceState(self.resource, time.time)
        self.state = StateFile(tmp_path / "state.json")
        self.wall = time.time
        self.log = logging.getLogger("test.healthcheck")
        self.topics: list[str] = []
        self.emit_failures = 0

    def emit(
        self,
        topic: str,
        *,
        reason: str,
        message: str = "",
        severity: str = "info",
        **attributes: Scalar,
    ) -> None:
        if self.emit_failures:
            self.emit_failures -= 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.topics.append(topic)


def _run_until(ctx: Ctx, cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        ctx.loop.run_once()


@pytest.fixture
def ctx(tmp_path: Path, tcp_listener: int) -> Any:
    spec = HealthCheckSpec.model_validate(
        {
            "protocol": "tcp",
            "target": "127.0.0.1",
            "port": tcp_listener,
            "interval": 10,
            "timeout": 2,
            "healthyThreshold": 2,
        }
    )
    c = Ctx(spec, tmp_path)
    yield c
    c.loop.close()


def test_an_accounting_failure_does_not_stop_probing(ctx: Ctx) -> None:
    engine = HealthCheckEngine(ctx)  # type: ignore[arg-type]
    ctx.emit_failures = 1  # the first probe's event cannot be written
    engine.start(ctx)  # type: ignore[arg-type]
    _run_until(ctx, lambda: ctx.loop.callback_errors == 1, "the failed accounting")
    for n in (2, 3):
        ctx.clock.now += 10
        _run_until(ctx, lambda n=n: engine.checker.total == n, f"probe {n} accounted")
    assert engine.skipped == 0, "later probes run; none is skipped behind the first"
    assert ctx.status.phase == "Healthy"


def test_a_stalled_probe_is_not_reported_as_current(ctx: Ctx) -> None:
    engine = HealthCheckEngine(ctx)  # type: ignore[arg-type]
    gate = threading.Event()

    def probe(spec: Any, seq: int = 0) -> ProbeResult:
        if seq >= 3:
            gate.wait(30)  # a probe stuck far past its timeout (a hung resolver)
        return ProbeResult(True, 0.001, "connected")

    engine.run_probe = probe
    engine.start(ctx)  # type: ignore[arg-type]
    _run_until(ctx, lambda: engine.checker.total == 1, "probe 1")
    ctx.clock.now += 10
    _run_until(ctx, lambda: engine.checker.total == 2, "probe 2")
    assert ctx.status.phase == "Healthy"
    ctx.clock.now += 10  # probe 3 starts and hangs
    ctx.loop.run_once()
    ctx.clock.now += 10  # 10 s later: still running, skipped; not yet stale
    ctx.loop.run_once()
    assert ctx.status.phase == "Healthy" and engine.skipped == 1
    ctx.clock.now += 10  # 20 s > timeout + interval: the verdict is stale
    ctx.loop.run_once()
    assert ctx.status.phase == "Error"
    ready = ctx.status.condition("ProbeReady")
    reachable = ctx.status.condition("TargetReachable")
    assert ready is not None and (ready.status, ready.reason) == ("False", "ProbeStalled")
    assert reachable is not None and reachable.status == "Unknown"
    gate.set()
    _run_until(ctx, lambda: engine.checker.total == 3, "the stuck probe to finish")
    assert ctx.status.phase == "Pending", "fresh results again; thresholds start over"
    ready = ctx.status.condition("ProbeReady")
    assert ready is not None and ready.status == "True"
    ctx.clock.now += 10
    _run_until(ctx, lambda: engine.checker.total == 4, "probe 4")
    assert ctx.status.phase == "Healthy"
