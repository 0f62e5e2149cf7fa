"""routerd serve under faults: a full disk under its database, status/event
consistency while phases flap, resources removed and added back by reload.

Real processes throughout: ``routerd serve`` and its daemons, a real tmpfs
filled to the last byte, real Kea in namespaces for the DHCP kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterator
import contextlib
import errno
import json
import os
from pathlib import Path
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from typing import Any

import pytest
from routerd.client import UnixClient
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.netns import Lab
from routerd.testing.netns import require_netns_prereqs
from routerd.testing.serve import ServeProcess
from routerd.testing.servers import KeaDhcp4
from routerd.testing.servers import KeaDhcp6
from routerd.timefmt import parse_rfc3339

ENV = {"ROUTERD_PLUGINS": "healthcheck"}
PHASE_CHANGED = "routerd.resource.phase.changed"


def check(name: str, port: int, interval: str = "500ms", timeout: str = "300ms") -> dict[str, Any]:
    return resource(
        "HealthCheck",
        name,
        {
            "protocol": "tcp",
            "target": "127.0.0.1",
            "port": port,
            "interval": interval,
            "timeout": timeout,
            "healthyThreshold": 1,
            "unhealthyThreshold": 1,
        },
    )


def require_root() -> None:
    if os.geteuid() == 0:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true and this test needs root (it mounts a tmpfs)")
    pytest.skip("needs root (mounts a tmpfs)")


@contextlib.contextmanager
def small_tmpfs(size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on a fresh directory, unmounted whatever happens."""
    require_root()
    where = Path(tempfile.mkdtemp(prefix="rdfull-"))
    tag = f"rdt-full-{secrets.token_hex(3)}"
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", tag, str(where)], check=True
    )
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], check=False)
        shutil.rmtree(where, ignore_errors=True)


def fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last byte; returns the filler file."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        chunk = 1 << 20
        while chunk:
            try:
                os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                chunk //= 2
    finally:
        os.close(fd)
    assert os.statvfs(directory).f_bfree == 0
    return filler


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Start routerd serve; ``state`` may be given (a tmpfs). Every process ends by PID."""
    made: list[ServeProcess] = []
    with tempfile.TemporaryDirectory(prefix="rdf-") as short:
        base = Path(short)

        def start(
            *resources: dict[str, Any],
            state: Path | None = None,
            env: dict[str, str] | None = None,
            netns: str | None = None,
        ) -> ServeProcess:
            config = write_config(tmp_path / "router.yaml", router_config(*resources))
            sp = ServeProcess(
                config,
                base / "run",
                state or base / "state",
                tmp_path / "serve.log",
                env=env or ENV,
                netns=netns,
            )
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


def stored(db_path: Path, source: str) -> list[int]:
    db = sqlite3.connect(db_path)
    try:
        rows = db.execute(
            "SELECT cursor FROM events WHERE source = ? AND cursor > 0 ORDER BY id", (source,)
        ).fetchall()
    finally:
        db.close()
    return [r[0] for r in rows]


def daemon_client(sp: ServeProcess, source: str) -> UnixClient:
    daemon_kind, name = source.split("/")
    return UnixClient(str(sp.runtime_dir / daemon_kind / f"{name}.sock"))


def daemon_head(sp: ServeProcess, source: str) -> int:
    return int(daemon_client(sp, source).get("/v1/events", tail="true").json()["cursor"])


def daemon_cursors(sp: ServeProcess, source: str) -> list[int]:
    """Every cursor the daemon's own log holds (cursors may skip after a crash)."""
    client = daemon_client(sp, source)
    found: list[int] = []
    since = "0"
    while True:
        body = client.get("/v1/events", since=since, limit=1000).json()
        found += [int(e["cursor"]) for e in body["events"]]
        if not body.get("more"):
            return found
        since = body["cursor"]


def assert_stored_once(sp: ServeProcess, source: str, timeout: float = 15) -> list[int]:
    """Every event in the daemon's log is in the store exactly once, in order."""
    db = sp.state_dir / "routerd.db"
    logged = daemon_cursors(sp, source)
    assert logged, f"no events in {source}'s log"
    poll(lambda: len(stored(db, source)) >= len(logged), timeout, f"{source} to be ingested")
    seen = stored(db, source)
    assert seen[: len(logged)] == logged, f"{source}: stored {seen}, logged {logged}"
    assert seen == sorted(set(seen)), f"{source}: duplicates in {seen}"
    return seen


# -- class 1: the store on a full disk ------------------------------------------------


def test_full_disk_under_the_store_loses_nothing_and_logs_bounded(
    serve: Callable[..., ServeProcess], tcp_listener: int, tmp_path: Path
) -> None:
    names = ("a", "b", "c")
    with small_tmpfs("4m") as state:
        # Serve's database and daemon registry are on the small filesystem;
        # the daemons' own state and event logs stay on a normal disk.
        normal = tmp_path / "normal-state" / "healthcheck"
        normal.mkdir(parents=True)
        (state / "healthcheck").symlink_to(normal)
        sp = serve(
            *(check(n, tcp_listener, interval="100ms", timeout="100ms") for n in names),
            state=state,
        )
        try:
            for n in names:
                sp.wait_for_phase("HealthCheck", n, "Healthy")
            db_path = state / "routerd.db"
            log_before = len(sp.log_path.read_text().splitlines())
            heads_before = {n: daemon_head(sp, f"healthcheck/{n}") for n in names}

            filler = fill(state)
            t_full = time.monotonic()
            degraded = poll(
                lambda: (s := sp.status())["store"]["state"] == "Degraded" and s,
                15,
                "the store to report the full disk",
            )
            store = degraded["store"]
            assert store["lastError"] and "full" in store["lastError"], store
            assert store["degradedSince"] is not None
            cond = {c["type"]: c for c in degraded["conditions"]}["PersistenceDegraded"]
            assert cond["status"] == "True", cond
            # While the writes fail, a resource's last phase is not served as current.
            items = sp.get("resources").json()["items"]
            assert {i["phase"] for i in items} == {"Unknown"}, items
            assert {i["stale"]["reason"] for i in items} == {"PersistenceDegraded"}
            assert {i["lastKnown"]["phase"] for i in items} == {"Healthy"}
            # Let the daemons emit for a while; the writer must keep retrying quietly.
            renews = 0
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                for n in names:
                    assert sp.post(f"resources/HealthCheck/{n}/commands/renew").status == 200
                    renews += 1
            during = sp.status()["store"]
            assert during["state"] == "Degraded" and during["pending"] > 0, during
            heads_full = {n: daemon_head(sp, f"healthcheck/{n}") for n in names}
            outage_events = sum(heads_full[n] - heads_before[n] for n in names)
            assert outage_events > 3 * renews  # received, probe, executed per renew, plus probes
            # A daemon crashing now is restarted; its registry entry cannot be written yet.
            old_pid = sp.daemon("HealthCheck", "c")["pid"]
            os.kill(old_pid, signal.SIGKILL)
            new_pid = poll(
                lambda: (
                    (d := sp.daemon("HealthCheck", "c"))["state"] == "Running"
                    and d["pid"] not in (None, old_pid)
                    and d["pid"]
                ),
                15,
                "the crashed daemon's restart",
            )
            cond = {c["type"]: c for c in sp.status()["conditions"]}["PersistenceDegraded"]
            assert "children.json" in cond["message"] and "store" in cond["message"], cond

            filler.unlink()
            t_free = time.monotonic()
            recovered = poll(
                lambda: (s := sp.status())["store"]["state"] == "Ok" and s,
                15,
                "the store to recover once space is back",
            )
            recovery = time.monotonic() - t_free
            registry = state / "serve" / "children.json"
            poll(
                lambda: json.loads(registry.read_text())["HealthCheck/c"]["pid"] == new_pid,
                15,
                "the daemon registry to be written again",
            )
            poll(
                lambda: (
                    {c["type"]: c for c in sp.status()["conditions"]}["PersistenceDegraded"][
                        "status"
                    ]
                    == "False"
                ),
                5,
                "PersistenceDegraded to clear",
            )
            outage_lines = sp.log_path.read_text().splitlines()[log_before:]

            # Every event the daemons emitted is stored exactly once, in order.
            for n in names:
                seen = assert_stored_once(sp, f"healthcheck/{n}")
                assert set(range(heads_before[n] + 1, heads_full[n] + 1)) <= set(seen)
            status = sp.status()
            db = sqlite3.connect(db_path)
            try:
                rows = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            finally:
                db.close()
            assert status["store"]["inserted"] == rows, "inserted counts committed rows"
            assert status["store"]["duplicatesDropped"] == 0
            for n in names:
                sp.wait_for_phase("HealthCheck", n, "Healthy")
            store_lines = [line for line in outage_lines if "routerd.store" in line]
            registry_lines = [line for line in outage_lines if "children.json" in line]
            assert "Traceback" not in "\n".join(outage_lines)
            assert len(store_lines) == 2, store_lines  # degraded, recovered
            assert len(registry_lines) == 2, registry_lines  # cannot write, wrote again
            # With the crash and restart of one daemon (supervisor and follower lines).
            assert len(outage_lines) <= 12, outage_lines
            print(
                f"\nfull disk: {outage_events} events emitted during "
                f"{t_free - t_full:.1f} s of outage, {during['pending']} pending at peak sample, "
                f"{len(outage_lines)} serve log lines ({len(store_lines)} from the store), "
                f"recovered {recovery:.2f} s after space was freed, writeErrors "
                f"{recovered['store']['writeErrors']}, dropped {recovered['store']['dropped']}"
            )
        finally:
            sp.stop()  # before the tmpfs goes: nothing may write under its mount point


def test_a_status_routerd_cannot_refresh_is_not_served_as_current(
    serve: Callable[..., ServeProcess], tcp_listener: int
) -> None:
    sp = serve(check("up", tcp_listener))
    before = sp.wait_for_phase("HealthCheck", "up", "Healthy")
    assert before["stale"] is None
    assert sp.post("resources/HealthCheck/up/commands/stop").status == 200
    poll(lambda: sp.daemon("HealthCheck", "up")["state"] == "Stopped", 10, "the daemon to stop")
    item = sp.get("resources/HealthCheck/up").json()
    assert item["phase"] == "Unknown", item
    assert item["stale"]["reason"] == "DaemonNotRunning", item["stale"]
    assert item["lastKnown"]["phase"] == "Healthy"
    assert item["lastKnown"]["since"] == before["since"]
    assert item["conditions"] == [
        {
            "type": "StatusCurrent",
            "status": "False",
            "reason": "DaemonNotRunning",
            "message": item["stale"]["message"],
            "lastTransitionTime": item["stale"]["since"],
        }
    ]
    assert item["observed"] == {}
    daemon = sp.daemon("HealthCheck", "up")
    assert daemon["phase"] == "Unknown" and daemon["stale"]["reason"] == "DaemonNotRunning"
    assert sp.post("resources/HealthCheck/up/commands/start").status == 200
    after = sp.wait_for_phase("HealthCheck", "up", "Healthy")
    assert after["stale"] is None and "lastKnown" not in after


# -- class 9: a stored status comes with the events that announce it -------------


class Flapper:
    """A loopback TCP port that accepts for a while, then refuses, and so on."""

    def __init__(self, period: float) -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port: int = probe.getsockname()[1]
        probe.close()
        self.period = period
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flapper", daemon=True)

    def _run(self) -> None:
        while not self._halt.is_set():
            srv = socket.socket()
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            srv.bind(("127.0.0.1", self.port))
            srv.listen(64)
            srv.settimeout(0.02)
            until = time.monotonic() + self.period
            while time.monotonic() < until and not self._halt.is_set():
                try:
                    conn, _ = srv.accept()
                    conn.close()
                except TimeoutError:
                    pass
            srv.close()
            self._halt.wait(self.period)

    def __enter__(self) -> Flapper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._halt.set()
        self._thread.join(5)


def test_status_never_shows_a_phase_before_its_event(serve: Callable[..., ServeProcess]) -> None:
    names = ("f1", "f2")
    violations: list[str] = []
    checked = {"n": 0}
    halt = threading.Event()

    with Flapper(0.3) as flap:
        sp = serve(*(check(n, flap.port, interval="100ms", timeout="100ms") for n in names))

        def reader() -> None:
            while not halt.is_set():
                items = sp.get("resources").json()["items"]
                for item in items:
                    phase, name = item["phase"], item["resource"]["name"]
                    if phase not in ("Healthy", "Unhealthy"):
                        continue
                    since = parse_rfc3339(item["since"])
                    # The runtime's phase event and the health check's own verdict event.
                    state_topic = f"routerd.healthcheck.state.{phase.lower()}"
                    events = sp.events(
                        topic=[PHASE_CHANGED, state_topic],
                        resource=f"HealthCheck/{name}",
                        limit=100,
                    )["items"]
                    checked["n"] += 1
                    announced = {
                        e["topic"]
                        for e in events
                        if e["attributes"].get("phase", phase.lower()) in (phase, phase.lower())
                        and parse_rfc3339(e["time"]) >= since - 1e-6
                    }
                    if announced != {PHASE_CHANGED, state_topic}:
                        violations.append(
                            f"{name} shows {phase} since {item['since']}; stored: {sorted(announced)}"
                        )

        threads = [threading.Thread(target=reader, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        changes = poll(
            lambda: len(sp.events(topic=PHASE_CHANGED, limit=1000)["items"]) >= 60 and True,
            30,
            "sixty phase changes",
            interval=0.2,
        )
        halt.set()
        for t in threads:
            t.join(10)
    assert changes and checked["n"] > 100, checked
    assert not violations, f"{len(violations)} of {checked['n']}: {violations[:5]}"


# -- class 10: remove and add back through reload --------------------------------


def cycle(
    sp: ServeProcess,
    keep: list[dict[str, Any]],
    cycled: list[dict[str, Any]],
    ready_phase: dict[str, str],
    timeout: float = 20.0,
) -> None:
    """Remove ``cycled`` by reload, add them back, twice; each must run and be ingested."""
    refs = sorted(f"{r['kind']}/{r['metadata']['name']}" for r in cycled)
    for _ in range(2):
        write_config(sp.config_path, router_config(*keep))
        resp = sp.post("reload")
        assert resp.status == 200, resp.error_text()
        assert sorted(resp.json()["stopped"]) == refs
        remaining = {
            f"{d['resource']['kind']}/{d['resource']['name']}" for d in sp.status()["daemons"]
        }
        assert not remaining & set(refs)

        write_config(sp.config_path, router_config(*keep, *cycled))
        resp = sp.post("reload")
        assert resp.status == 200, resp.error_text()
        assert sorted(resp.json()["started"]) == refs
        sp.wait_ready(timeout)
        for r in cycled:
            kind, name = r["kind"], r["metadata"]["name"]
            pid = sp.daemon(kind, name)["pid"]
            poll(
                lambda kind=kind, name=name, pid=pid: any(
                    e["attributes"].get("pid") == pid
                    for e in sp.events(
                        topic="routerd.daemon.lifecycle.started", resource=f"{kind}/{name}"
                    )["items"]
                ),
                timeout,
                f"the re-added {kind}/{name}'s events in the store",
            )
            sp.wait_for_phase(kind, name, ready_phase[kind], timeout=timeout)
    for r in cycled:
        source = f"{r['kind']}/{r['metadata']['name']}"
        assert sp.status()["store"]["duplicatesDropped"] == 0, source


def test_reload_removes_and_adds_back_a_health_check(
    serve: Callable[..., ServeProcess], tcp_listener: int
) -> None:
    keep, cycled = check("a", tcp_listener), check("b", tcp_listener)
    sp = serve(keep, cycled)
    cycle(sp, [keep], [cycled], {"HealthCheck": "Healthy"})
    assert_stored_once(sp, "healthcheck/b")


@pytest.mark.netns
def test_reload_removes_and_adds_back_every_dhcp_kind(
    lab: Lab, serve: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    require_netns_prereqs(["kea-dhcp4", "kea-dhcp6"])
    isp, rtr, lan = lab.netns("rdt-isp"), lab.netns("rdt-rtr"), lab.netns("rdt-lan")
    lab.veth(rtr, "wan0", isp, "isp0")
    lab.veth(rtr, "lan0", lan, "eth0")
    isp.addr_add("isp0", "192.0.2.1/24")
    isp.addr_add("isp0", "2001:db8:1::1/64")
    isp.wait_for_link_local("isp0")
    rtr.wait_for_link_local("wan0")
    KeaDhcp4(isp, "isp0", tmp_path / "kea4", valid_lifetime=600).start()
    KeaDhcp6(
        isp, "isp0", tmp_path / "kea6", preference=255, preferred_lifetime=300, valid_lifetime=600
    ).start()
    v4 = resource("DHCPv4Client", "wan", {"interface": "wan0"})
    pd = resource(
        "DHCPv6PrefixDelegation",
        "wan-pd",
        {
            "interface": "wan0",
            "prefixLength": 60,
            "downstream": [{"interface": "lan0", "subnetId": 1}],
        },
    )
    ping = resource(
        "HealthCheck",
        "isp-ping",
        {"protocol": "icmp", "target": "192.0.2.1", "interval": "500ms", "timeout": "300ms"},
    )
    sp = serve(v4, pd, ping, env={"ROUTERD_PLUGINS": "healthcheck,dhcpv4,dhcpv6"}, netns=rtr.name)
    lab.add_cleanup(sp.stop)
    sp.wait_for_phase("DHCPv4Client", "wan", "Applied", timeout=30)
    sp.wait_for_phase("DHCPv6PrefixDelegation", "wan-pd", "Applied", timeout=30)
    cycle(
        sp,
        [ping],
        [v4, pd],
        {"DHCPv4Client": "Applied", "DHCPv6PrefixDelegation": "Applied"},
        timeout=30,
    )
    for source in ("dhcpv4-client/wan", "dhcpv6-client/wan-pd"):
        assert_stored_once(sp, source)
