"""Daemon API: /v1/status against Kea's status-get, long-poll delivery, RSS.

One healthcheck daemon (a real ``routerd daemon`` process) and one kea-dhcp4
(in a lab namespace, on a veth end, with its Unix control socket) run side by
side for the whole module, so every figure is a ratio taken in one run:

1. ``GET /v1/status`` requests/s and p50/p99 latency, 1 and 8 concurrent
   client *processes*: one request per connection (``UnixClient``, what
   routerctl does), HTTP/1.1 keep-alive (``http.client`` over AF_UNIX), and
   Kea's control socket answering ``{"command": "status-get"}`` (one command
   per connection, which is all Kea offers). ``GET /v1/healthz`` (new
   connection each) runs alongside to split the HTTP stack's share from the
   cost of building the status.
2. Long-poll delivery: N parked ``/v1/events?wait=25s`` waiters (separate
   processes), one ``POST /v1/commands/reload``; per waiter, the wall time at
   which the response was read minus the event's own ``time``.
3. RSS (VmRSS) of the daemon (idle, then after 1 and 2) and of kea-dhcp4.
"""

from __future__ import annotations

from collections.abc import Callable
import contextlib
import http.client
import json
import math
import multiprocessing as mp
from multiprocessing.connection import Connection
import os
from pathlib import Path
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import common
from routerd.client import UnixClient
from routerd.testing.daemon import DaemonProcess
from routerd.testing.netns import Lab
from routerd.testing.servers import KeaDhcp4
from routerd.testing.servers import kea_command
from routerd.timefmt import parse_rfc3339

NAME = "api"
TOPIC = "routerd.daemon.command.received"
KINDS = ("ours-close", "ours-keepalive", "ours-healthz", "kea")
KIND_LABEL = {
    "ours-healthz": "routerd /v1/healthz, new connection per request",
    "ours-close": "routerd /v1/status, new connection per request",
    "ours-keepalive": "routerd /v1/status, keep-alive",
    "kea": "kea-dhcp4 status-get (control socket)",
}
# fork: the workers start in milliseconds and need nothing re-imported; the
# parent has no threads when they are forked.
CTX = mp.get_context("fork")


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over AF_UNIX (keep-alive: one connection, many requests)."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        super().__init__("routerd", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def _worker_signals() -> None:
    """Workers die on SIGTERM (Pool.terminate, ended by PID) and leave ^C to the parent."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _request_fn(kind: str, path: str) -> Callable[[], bool]:
    """One request of ``kind``; returns whether the answer was a success."""
    if kind == "ours-close":
        client = UnixClient(path, timeout=10.0)

        def close_req() -> bool:
            resp = client.get("/v1/status")
            return resp.status == 200 and "daemon" in resp.json()

        return close_req
    if kind == "ours-healthz":
        hz_client = UnixClient(path, timeout=10.0)

        def healthz_req() -> bool:
            resp = hz_client.get("/v1/healthz")
            return resp.status == 200 and resp.json() == {"status": "ok"}

        return healthz_req
    if kind == "ours-keepalive":
        conn = UnixHTTPConnection(path)

        def keepalive_req() -> bool:
            conn.request("GET", "/v1/status", headers={"Accept": "application/json"})
            resp = conn.getresponse()
            body = json.loads(resp.read())
            return resp.status == 200 and "daemon" in body

        return keepalive_req
    if kind == "kea":

        def kea_req() -> bool:
            return kea_command(path, "status-get", timeout=10.0).get("result") == 0

        return kea_req
    raise ValueError(kind)


def _throughput_worker(args: tuple[str, str, float, float]) -> tuple[list[float], int]:
    """Requests back to back until ``end_at`` (wall clock); latencies of those
    finishing inside [start_at, end_at] (earlier ones are the warm-up)."""
    kind, path, start_at, end_at = args
    request = _request_fn(kind, path)
    latencies: list[float] = []
    errors = 0
    while True:
        t0 = time.perf_counter()
        try:
            ok = request()
        except Exception:
            ok = False
            if kind == "ours-keepalive":
                request = _request_fn(kind, path)  # reconnect
        t1 = time.perf_counter()
        now = time.time()
        if now >= end_at:
            break
        if now >= start_at:
            if ok:
                latencies.append(t1 - t0)
            else:
                errors += 1
    return latencies, errors


def measure_throughput(kind: str, path: str, clients: int, duration: float) -> dict[str, Any]:
    start_at = time.time() + 0.3  # fork, connect and warm up first
    end_at = start_at + duration
    with CTX.Pool(clients, initializer=_worker_signals) as pool:
        parts = pool.map(_throughput_worker, [(kind, path, start_at, end_at)] * clients)
    latencies = [x for lat, _ in parts for x in lat]
    errors = sum(e for _, e in parts)
    return {
        "kind": kind,
        "clients": clients,
        "duration_s": duration,
        "requests": len(latencies),
        "errors": errors,
        "rps": len(latencies) / duration,
        **common.summary_ms(latencies),
        "_latencies": latencies,
    }


def throughput(
    result: dict[str, Any], daemon: DaemonProcess, kea_socket: str, smoke: bool
) -> dict[str, Any]:
    duration = 0.4 if smoke else 3.0
    reps = 1 if smoke else 3
    paths = {
        "ours-close": str(daemon.socket_path),
        "ours-keepalive": str(daemon.socket_path),
        "ours-healthz": str(daemon.socket_path),
        "kea": kea_socket,
    }
    runs: list[dict[str, Any]] = []
    # Interleaved (A B C A B C ...) so that drift on a noisy VM hits all alike.
    for clients in (1, 8):
        for _rep in range(reps):
            for kind in KINDS:
                runs.append(measure_throughput(kind, paths[kind], clients, duration))
    rows: list[list[object]] = []
    summary: dict[str, dict[str, Any]] = {}
    for clients in (1, 8):
        for kind in KINDS:
            mine = [r for r in runs if r["kind"] == kind and r["clients"] == clients]
            lat = [x for r in mine for x in r["_latencies"]]
            entry = {
                "rps_median": common.median([r["rps"] for r in mine]),
                "rps_runs": [round(r["rps"], 1) for r in mine],
                "errors": sum(r["errors"] for r in mine),
                **common.summary_ms(lat),
            }
            summary[f"{kind}/c{clients}"] = entry
        kea_rps = summary[f"kea/c{clients}"]["rps_median"]
        for kind in KINDS:
            e = summary[f"{kind}/c{clients}"]
            e["ratio_vs_kea"] = common.ratio(e["rps_median"], kea_rps)
            rows.append(
                [
                    KIND_LABEL[kind],
                    clients,
                    e["rps_median"],
                    e["p50_ms"],
                    e["p99_ms"],
                    e["ratio_vs_kea"],
                    e["errors"],
                ]
            )
    for r in runs:
        del r["_latencies"]
    common.emit_table(
        result,
        f"GET /v1/status vs Kea status-get ({reps} x {duration:g} s per cell, median req/s)",
        ["server / client", "clients", "req/s", "p50 ms", "p99 ms", "x Kea", "errors"],
        rows,
    )
    return {"runs": runs, "summary": summary}


# -- long-poll delivery ----------------------------------------------------------------
def _waiter(conn: Connection, path: str) -> None:
    """A parked long-poll per ``since`` received; answers (read time, status, event time)."""
    _worker_signals()
    client = UnixClient(path, timeout=40.0)
    while True:
        since = conn.recv()
        if since is None:
            return
        try:
            resp = client.get("/v1/events", since=since, wait="25s", topic=TOPIC)
            received = time.time()
            events = resp.json().get("events", []) if resp.status == 200 else []
            event_time = events[0]["time"] if events else ""
            conn.send((received, resp.status, event_time))
        except Exception as exc:
            conn.send((math.nan, -1, repr(exc)))


class Waiters:
    """Persistent waiter processes (fork), each driven through a pipe; ended by PID."""

    def __init__(self, count: int, path: str) -> None:
        self.procs: list[mp.process.BaseProcess] = []
        self.conns: list[Connection] = []
        for _ in range(count):
            parent, child = CTX.Pipe()
            proc = CTX.Process(target=_waiter, args=(child, path), daemon=True)
            proc.start()
            child.close()
            self.procs.append(proc)
            self.conns.append(parent)

    def close(self) -> None:
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.send(None)
        for p in self.procs:
            p.join(2.0)
            if p.is_alive():
                p.kill()
                p.join(2.0)
        for c in self.conns:
            c.close()


def long_poll(result: dict[str, Any], daemon: DaemonProcess, smoke: bool) -> dict[str, Any]:
    counts = (1, 10, 12)  # 12: the daemon's cap (routerd.daemon.listen.MAX_WAITERS)
    rounds = 2 if smoke else 15
    waiters = Waiters(max(counts), str(daemon.socket_path))
    out: dict[str, Any] = {}
    rows: list[list[object]] = []
    try:
        for n in counts:
            latencies: list[float] = []
            last_per_round: list[float] = []
            errors = 0
            for _ in range(rounds):
                head = daemon.head()
                for c in waiters.conns[:n]:
                    c.send(head)
                daemon.wait_for_long_polls(n, timeout=15.0)
                resp = daemon.command("reload")
                if resp.status != 200:
                    raise RuntimeError(f"reload answered {resp.status}: {resp.error_text()}")
                this_round: list[float] = []
                for c in waiters.conns[:n]:
                    if not c.poll(35.0):
                        raise RuntimeError("a waiter did not answer within 35 s")
                    received, status, event_time = c.recv()
                    if status != 200 or not event_time:
                        errors += 1
                        continue
                    this_round.append(received - parse_rfc3339(event_time))
                latencies.extend(this_round)
                if this_round:
                    last_per_round.append(max(this_round))
                # The next round parks only when these are gone.
                daemon.wait_for_long_polls(0, timeout=15.0)
            s = common.summary_ms(latencies)
            s["last_waiter_median_ms"] = common.median(last_per_round) * 1e3
            s["rounds"] = rounds
            s["errors"] = errors
            out[str(n)] = s
            rows.append(
                [
                    n,
                    rounds,
                    s["count"],
                    s["p50_ms"],
                    s["p99_ms"],
                    s["max_ms"],
                    s["last_waiter_median_ms"],
                    errors,
                ]
            )
    finally:
        waiters.close()
    common.emit_table(
        result,
        "Long-poll delivery: event time -> response read by each parked waiter",
        [
            "waiters",
            "rounds",
            "samples",
            "p50 ms",
            "p99 ms",
            "max ms",
            "last waiter ms (median)",
            "errors",
        ],
        rows,
    )
    return out


# -- RSS ------------------------------------------------------------------------------
def python_baseline_rss() -> int:
    """RSS of a bare interpreter (same venv python) doing nothing, for scale."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; sys.stdout.write('up\\n'); sys.stdout.flush(); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        return common.rss_kib(proc.pid)
    finally:
        proc.kill()
        proc.wait(5)


def start_kea(lab: Lab, workdir: Path) -> KeaDhcp4:
    server, client = lab.netns(), lab.netns()
    lab.veth(client, "c0", server, "srv0")
    server.addr_add("srv0", "192.0.2.1/24")
    # INFO: Kea only says DHCP4_STARTED at INFO (it also logs each command there).
    kea = KeaDhcp4(server, "srv0", workdir, log_severity="INFO", log_debuglevel=0)
    lab.add_cleanup(kea.stop)
    return kea.start()


def main(smoke: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    with (
        common.temp_dir("rdb-api-") as base,
        common.tcp_listener() as port,
        Lab() as lab,
        common.healthcheck_daemons(base, 1, port) as daemons,
    ):
        daemon = daemons[0]
        kea = start_kea(lab, base / "kea")
        assert kea.pid is not None
        kea_socket = str(kea.control_socket_path)
        common.settle(0.3 if smoke else 2.0)
        rss: dict[str, Any] = {
            "daemon_idle_kib": common.rss_kib(daemon.pid),
            "daemon_threads": common.threads_of(daemon.pid),
            "kea_idle_kib": common.rss_kib(kea.pid),
            "python_baseline_kib": python_baseline_rss(),
        }
        result["status"] = throughput(result, daemon, kea_socket, smoke)
        result["long_poll"] = long_poll(result, daemon, smoke)
        rss["daemon_after_kib"] = common.rss_kib(daemon.pid)
        rss["kea_after_kib"] = common.rss_kib(kea.pid)
        rss["daemon_vs_kea_idle"] = common.ratio(rss["daemon_idle_kib"], rss["kea_idle_kib"])
        result["rss"] = rss
        mib = 1024.0
        common.emit_table(
            result,
            "RSS (VmRSS, MiB)",
            ["process", "idle", "after benchmarks 1-2", "x kea-dhcp4 (idle)"],
            [
                [
                    f"routerd healthcheck daemon ({rss['daemon_threads']} threads)",
                    rss["daemon_idle_kib"] / mib,
                    rss["daemon_after_kib"] / mib,
                    rss["daemon_vs_kea_idle"],
                ],
                [
                    "kea-dhcp4 (1 subnet, 1 interface)",
                    rss["kea_idle_kib"] / mib,
                    rss["kea_after_kib"] / mib,
                    1.0,
                ],
                [
                    "python -c 'sleep' (same interpreter, baseline)",
                    rss["python_baseline_kib"] / mib,
                    math.nan,
                    common.ratio(rss["python_baseline_kib"], rss["kea_idle_kib"]),
                ],
            ],
        )
        if not daemon.alive():
            raise RuntimeError(f"the daemon died during the benchmark:\n{daemon.log_tail()}")
    return result


if __name__ == "__main__":
    os.environ.setdefault("ROUTERD_PLUGINS", "healthcheck")
    common.run_standalone(NAME, main)
