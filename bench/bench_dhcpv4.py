"""DHCPv4 time to lease: routerd's dhcpv4-client against dhclient and udhcpc.

One namespace pair (client ``wan0`` ↔ server ``srv0``) and one kea-dhcp4 for
the whole run, so every figure is a ratio taken side by side:

- routerd cold: process start (``ip netns exec … routerd daemon``, fresh
  state dir, so no saved lease) → phase ``Applied`` (address and default
  route on the interface), polled on ``/v1/status`` every 5 ms.
- routerd warm: the daemon runs; ``release`` (DHCPRELEASE, address removed),
  then ``renew`` → ``routerd.dhcpv4.client.lease.bound`` (a long-poll wakes
  on the event): a full DISCOVER/OFFER/REQUEST/ACK, no process start.
- ``dhclient -1 -d -sf /bin/true`` (fresh lease file each run): start →
  its "bound to" line; it configures nothing (``-sf /bin/true``).
- ``udhcpc -f -q -n -s /bin/true`` (busybox): start → exit after the lease.

Medians of ≥ 5 runs (1 in smoke mode); the daemon's RSS once bound.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common
from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.netns import Lab
from routerd.testing.netns import Netns
from routerd.testing.servers import KeaDhcp4
from routerd.timefmt import parse_rfc3339

NAME = "dhcpv4"
ENV = {"ROUTERD_PLUGINS": "dhcpv4"}
TOOLS = ("kea-dhcp4", "dhclient", "udhcpc")


def _flush(client: Netns) -> None:
    client.ip("-4", "addr", "flush", "dev", "wan0", "scope", "global")
    client.ip("-4", "route", "flush", "dev", "wan0", "proto", "dhcp", check=False)


def _daemon(base: Path, client: Netns, run: int) -> DaemonProcess:
    spec = {"interface": "wan0", "routeMetric": 100}
    config = write_config(
        base / "router.yaml", router_config(resource("DHCPv4Client", "wan", spec), name="bench")
    )
    return DaemonProcess(
        daemon_kind="dhcpv4-client",
        resource="wan",
        config_path=config,
        runtime_dir=base / "run",
        state_dir=base / f"state-{run}",  # fresh: no saved lease, no INIT-REBOOT
        log_path=base / "daemon.log",
        netns=client.name,
        env=ENV,
    )


def _phase(d: DaemonProcess) -> str | None:
    try:
        resp = d.client(1.0).get("/v1/status")
    except Exception:
        return None
    if resp.status != 200:
        return None
    phase: str = resp.json()["resources"][0]["phase"]
    return phase


def _protocol_time(d: DaemonProcess) -> tuple[float, float]:
    """(process start → first DISCOVER, first DISCOVER → lease.bound) from event times."""
    events = d.events(topic="routerd.dhcpv4.client.**")["events"]
    started = d.events(topic="routerd.daemon.lifecycle.started")["events"][-1]
    t_start = parse_rfc3339(started["time"])
    t_disc = next(parse_rfc3339(e["time"]) for e in events if e["topic"].endswith("discover.sent"))
    t_bound = next(parse_rfc3339(e["time"]) for e in events if e["topic"].endswith("lease.bound"))
    return t_disc - t_start, t_bound - t_disc


def routerd_cold(base: Path, client: Netns) -> tuple[float, DaemonProcess]:
    """One cold start; returns (seconds, the still-running daemon)."""
    _flush(client)
    d = _daemon(base, client, int(time.monotonic() * 1000))
    t0 = time.monotonic()
    d.start(wait=False)
    while _phase(d) != "Applied":
        if not d.alive():
            raise RuntimeError(f"daemon exited:\n{d.log_tail()}")
        if time.monotonic() - t0 > 30:
            raise RuntimeError(f"no lease in 30 s:\n{d.log_tail()}")
        time.sleep(0.005)
    return time.monotonic() - t0, d


def routerd_warm(d: DaemonProcess) -> float:
    resp = d.command("release")
    if resp.status != 200:
        raise RuntimeError(f"release: {resp.status} {resp.body[:200]!r}")
    head = d.head()
    t0 = time.monotonic()
    resp = d.command("renew")
    if resp.status != 200:
        raise RuntimeError(f"renew: {resp.status} {resp.body[:200]!r}")
    d.wait_for_event("routerd.dhcpv4.client.lease.bound", since=head, timeout=30)
    return time.monotonic() - t0


def dhclient(base: Path, client: Netns) -> float:
    lease_file, pid_file = base / "dhclient.leases", base / "dhclient.pid"
    lease_file.unlink(missing_ok=True)
    argv = ["ip", "netns", "exec", client.name, common.find_program("dhclient") or "dhclient"]
    argv += ["-1", "-d", "-sf", "/bin/true", "-lf", str(lease_file), "-pf", str(pid_file), "wan0"]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("bound to"):
                return time.monotonic() - t0
        raise RuntimeError(f"dhclient exited {proc.wait()} without a lease")
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def udhcpc(client: Netns) -> float:
    argv = ["ip", "netns", "exec", client.name, common.find_program("udhcpc") or "udhcpc"]
    argv += ["-f", "-q", "-n", "-s", "/bin/true", "-i", "wan0"]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    took = time.monotonic() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"udhcpc failed ({proc.returncode}): {proc.stderr[-300:]}")
    return took


def _runs(n: int, fn: Callable[[], float]) -> list[float]:
    return [fn() for _ in range(n)]


def main(smoke: bool) -> dict[str, Any]:
    missing = [t for t in TOOLS if common.find_program(t) is None]
    import os

    if os.geteuid() != 0 or missing:
        why = "needs root" if os.geteuid() != 0 else f"missing: {', '.join(missing)}"
        print(f"skipped: {why}")
        return {"skipped": why}
    runs = 1 if smoke else 7
    result: dict[str, Any] = {"runs": runs}
    with common.temp_dir("rdb-d4-") as base, Lab() as lab:
        client, server = lab.netns(), lab.netns()
        lab.veth(client, "wan0", server, "srv0")
        server.addr_add("srv0", "192.0.2.1/24")
        KeaDhcp4(server, "srv0", base / "kea", log_severity="INFO").start()
        times: dict[str, list[float]] = {
            "dhclient": [],
            "udhcpc": [],
            "cold": [],
            "warm": [],
            "engine_start": [],
            "exchange": [],
        }
        daemon: DaemonProcess | None = None
        rss_kib = None
        try:
            # Interleave the clients so drift on a noisy machine hits all alike.
            for _ in range(runs):
                _flush(client)
                times["dhclient"].append(dhclient(base, client))
                _flush(client)
                times["udhcpc"].append(udhcpc(client))
                took, daemon = routerd_cold(base, client)
                times["cold"].append(took)
                engine_start, exchange = _protocol_time(daemon)
                times["engine_start"].append(engine_start)
                times["exchange"].append(exchange)
                rss_kib = common.rss_kib(daemon.pid)
                times["warm"].append(routerd_warm(daemon))
                times["warm"].append(routerd_warm(daemon))
                daemon.stop(5.0)
                daemon = None
        finally:
            if daemon is not None:
                daemon.stop(5.0)
        med = {k: common.median(v) for k, v in times.items()}
        result["seconds"] = times
        result["median_ms"] = {k: v * 1e3 for k, v in med.items()}
        result["rss_kib"] = rss_kib
        result["warm_vs_dhclient"] = common.ratio(med["warm"], med["dhclient"])
        result["cold_vs_dhclient"] = common.ratio(med["cold"], med["dhclient"])
        rows = [
            (
                "dhclient -1 (cold, no lease file)",
                med["dhclient"] * 1e3,
                len(times["dhclient"]),
                1.0,
            ),
            (
                "udhcpc -q (cold)",
                med["udhcpc"] * 1e3,
                len(times["udhcpc"]),
                common.ratio(med["udhcpc"], med["dhclient"]),
            ),
            (
                "routerd cold: start → Applied",
                med["cold"] * 1e3,
                len(times["cold"]),
                result["cold_vs_dhclient"],
            ),
            (
                "  of which: 'started' event → first DISCOVER",
                med["engine_start"] * 1e3,
                len(times["engine_start"]),
                common.ratio(med["engine_start"], med["dhclient"]),
            ),
            (
                "  of which: first DISCOVER → lease.bound",
                med["exchange"] * 1e3,
                len(times["exchange"]),
                common.ratio(med["exchange"], med["dhclient"]),
            ),
            (
                "routerd warm: release, renew → bound",
                med["warm"] * 1e3,
                len(times["warm"]),
                result["warm_vs_dhclient"],
            ),
        ]
        common.emit_table(
            result,
            "DHCPv4 time to lease (Kea 2.2, veth)",
            ["client", "median ms", "runs", "x dhclient"],
            rows,
        )
        common.emit_table(
            result,
            "dhcpv4-client daemon RSS",
            ["process", "VmRSS MiB"],
            [("routerd dhcpv4-client (bound)", (rss_kib or 0) / 1024.0)],
        )
        goals = {
            "warm no slower than dhclient": result["warm_vs_dhclient"] <= 1.0,
            "cold within 2x dhclient": result["cold_vs_dhclient"] <= 2.0,
        }
        result["goals"] = goals
        print("goals: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in goals.items()))
    return result


if __name__ == "__main__":
    common.run_standalone(NAME, main)
