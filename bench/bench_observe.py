"""The observers side by side with the tools they are checked against, in one lab.

- flow recording: a burst of short UDP flows (N NEW events, then every
  DESTROY at once by ``conntrack -F``) and a paced rate of flows created and
  destroyed, recorded by our FlowLog and by ulogd2 (NFCT, same 16 MiB
  buffer) in the same router namespace;
- DNS capture: queries per second sent to dnsmasq; answered (counted by the
  sender) against matched records of our DNSQueryLog;
- ``connections?limit=100`` on a table of 100,000 entries against
  ``conntrack -L | head -100``;
- ``traffic-flows`` query latency over 1,000,000 stored flows;
- RSS of each observer daemon.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import os
from pathlib import Path
import random
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import common  # noqa: E402
from routerd.testing.daemon import resource  # noqa: E402
from routerd.testing.daemon import router_config  # noqa: E402
from routerd.testing.daemon import write_config  # noqa: E402
from routerd.testing.netns import Lab  # noqa: E402
from routerd.testing.serve import ServeProcess  # noqa: E402
from routerd_observe import records  # noqa: E402
from routerd_observe import testlab  # noqa: E402
from routerd_observe.flows import FlowRecord  # noqa: E402
from routerd_observe.store import ObserverStore  # noqa: E402
from routerd_observe.store import Retention  # noqa: E402

NAME = "observe"

FLOWS = textwrap.dedent(
    """
    import socket, sys, time
    dst = sys.argv[1]; first = int(sys.argv[2]); n = int(sys.argv[3]); rate = float(sys.argv[4])
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
    t0 = time.monotonic()
    for i in range(n):
        socks[i % 8].sendto(b"f", (dst, first + i // 8))
        if rate and i % 64 == 0:
            ahead = t0 + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    print(time.monotonic() - t0)
    """
)

DNS_LOAD = textwrap.dedent(
    """
    import socket, struct, sys, threading, time
    server = sys.argv[1]; n = int(sys.argv[2]); rate = float(sys.argv[3])
    name = b"".join(bytes([len(p)]) + p for p in b"www.example.test".split(b".")) + b"\\0"
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(8)]
    got = [0]
    def recv(s):
        s.settimeout(1.0)
        while True:
            try:
                s.recv(4096); got[0] += 1
            except OSError:
                return
    threads = [threading.Thread(target=recv, args=(s,)) for s in socks]
    for t in threads: t.start()
    t0 = time.monotonic()
    for i in range(n):
        q = struct.pack("!HHHHHH", i & 0xffff, 0x0100, 1, 0, 0, 0) + name + b"\\0\\x01\\0\\x01"
        socks[i % 8].sendto(q, (server, 53))
        if i % 32 == 0:
            ahead = t0 + i / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    sent_for = time.monotonic() - t0
    for t in threads: t.join()
    print(got[0], sent_for)
    """
)


def _flow_rows(count: int, now: float) -> list[tuple[Any, ...]]:
    rng = random.Random(7)
    rows = []
    for i in range(count):
        start = now - 86400 + i * (86000 / count)
        rec = FlowRecord(
            uid=f"bench-{i}",
            start=start,
            end=start + rng.uniform(0.01, 60),
            family="ipv4",
            protocol=rng.choice(("tcp", "udp", "tcp", "icmp")),
            client=f"192.168.{50 + i % 4}.{2 + i % 200}",
            client_port=1024 + i % 60000,
            peer=f"203.0.{i % 250}.{(i // 250) % 250}",
            peer_port=rng.choice((443, 80, 53, 123)),
            nat_address=testlab.WAN_ROUTER,
            nat_port=1024 + i % 60000,
            bytes_out=rng.randint(60, 100_000),
            bytes_in=rng.randint(60, 10_000_000),
            packets_out=rng.randint(1, 100),
            packets_in=rng.randint(1, 10_000),
            state=None,
            end_reason="destroy",
            counter_resets=0,
            mark=0,
            conntrack_id=i,
        )
        rows.append(records.flow_row(rec, now))
    return rows


def prefill(state_dir: Path, count: int) -> float:
    """Write ``count`` synthetic flows into the FlowLog's store before it starts."""
    path = state_dir / "flow-log" / "lan" / "observe.db"
    store = ObserverStore(path, records.FLOWS, Retention(30 * 86400, 50_000_000, 64 << 30))
    store.start()
    t0 = time.monotonic()
    now = time.time()
    for first in range(0, count, 50_000):
        store.put(_flow_rows(min(50_000, count - first), now))
        store.flush(120)
    store.close()
    return time.monotonic() - t0


def _settle(count: Callable[[], int], quiet: float = 1.5, limit: float = 60.0) -> int:
    """Wait until ``count()`` stops growing for ``quiet`` seconds."""
    deadline = time.monotonic() + limit
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = count()
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.2)
    return last


class StatusProbe:
    """``GET status`` on the main API every 20 ms while a load runs."""

    def __init__(self, serve: ServeProcess) -> None:
        self.serve = serve
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            t0 = time.monotonic()
            self.serve.get("status")
            self.latencies.append(time.monotonic() - t0)

    def __enter__(self) -> StatusProbe:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def p99_ms(self) -> float:
        return round(common.percentile(self.latencies, 99) * 1e3, 1)


class Bench:
    def __init__(self, rl: testlab.RouterLab, serve: ServeProcess, state: Path) -> None:
        self.rl = rl
        self.serve = serve
        self.flow_db = state / "flow-log" / "lan" / "observe.db"
        self.dns_db = state / "dns-query-log" / "lan-dns" / "observe.db"
        self.port = 2000

    def ours_destroyed(self, first: int, last: int, reason: str = "destroy") -> int:
        with sqlite3.connect(self.flow_db) as conn:
            row = conn.execute(
                "SELECT count(*) FROM flows WHERE client = ? AND peer_port >= ? AND peer_port < ? "
                "AND end_reason = ? AND protocol = 'udp'",
                (testlab.LAN_HOST, first, last, reason),
            ).fetchone()
        return int(row[0])

    def ulogd_destroyed(self, first: int, last: int) -> int:
        n = 0
        for r in self.rl.ulogd_records("flows"):
            port = r.get("orig.l4.dport")
            if (
                r.get("src_ip") == testlab.LAN_HOST
                and isinstance(port, int)
                and first <= port < last
            ):
                n += 1
        return n

    def flows(self, n: int, rate: float, flush_every: float | None) -> dict[str, Any]:
        first = self.port
        span = n // 8 + 1
        self.port += span + 10
        script = self.rl.workdir / "flows.py"
        script.write_text(FLOWS)
        flusher = None
        if flush_every is not None:
            # Destroy as fast as they are made: a flush loop in the router.
            flusher = self.rl.router.popen(
                ["sh", "-c", f"while true; do conntrack -F 2>/dev/null; sleep {flush_every}; done"],
                self.rl.workdir / "flusher.log",
            )
        with StatusProbe(self.serve) as probe:
            try:
                out = self.rl.lan.run(
                    ["python3", str(script), testlab.WAN_HOST, str(first), str(n), str(rate)],
                    timeout=300,
                )
            finally:
                if flusher is not None:
                    flusher.stop()
            seconds = float(out.stdout.strip().splitlines()[-1])
            self.rl.router.run(["conntrack", "-F"], timeout=60)
            last = first + span
            ours = _settle(lambda: self.ours_destroyed(first, last))
        theirs = _settle(lambda: self.ulogd_destroyed(first, last), quiet=1.0, limit=10)
        missed = self.ours_destroyed(first, last, "missed-destroy")
        return {
            "statusP99Ms": probe.p99_ms(),
            "missedDestroy": missed,
            "flows": n,
            "sendSeconds": round(seconds, 3),
            "rate": round(n / seconds) if seconds else None,
            "ours": ours,
            "ulogd": theirs,
            "oursLossPct": round(100 * (n - ours) / n, 2),
            "ulogdLossPct": round(100 * (n - theirs) / n, 2),
            "ratio": round(ours / theirs, 3) if theirs else None,
        }

    def dns(self, n: int, rate: float) -> dict[str, Any]:
        script = self.rl.workdir / "dnsload.py"
        script.write_text(DNS_LOAD)
        t0 = time.time()
        with StatusProbe(self.serve) as probe:
            out = self.rl.lan.run(
                ["python3", str(script), testlab.LAN_ROUTER, str(n), str(rate)], timeout=300
            )
        answered_s, seconds_s = out.stdout.split()
        answered, seconds = int(answered_s), float(seconds_s)

        def matched() -> int:
            with sqlite3.connect(self.dns_db) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM dns WHERE time >= ? AND qname = 'www.example.test' "
                    "AND rcode IS NOT NULL",
                    (t0 - 1,),
                ).fetchone()
            return int(row[0])

        ours = _settle(matched)
        return {
            "queries": n,
            "rate": round(n / seconds),
            "dnsmasqAnswered": answered,
            "oursMatched": ours,
            "oursVsDnsmasq": round(ours / answered, 4) if answered else None,
            "statusP99Ms": probe.p99_ms(),
        }

    def connections(self, entries: int, reps: int) -> dict[str, Any]:
        self.rl.router.run(["conntrack", "-F"], timeout=60)
        # Unreplied UDP entries live 30 s by default: long enough to measure.
        self.rl.router.run(["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_udp_timeout=600"])
        script = self.rl.workdir / "flows.py"
        script.write_text(FLOWS)
        self.rl.lan.run(
            ["python3", str(script), testlab.WAN_HOST, "3000", str(entries), "0"], timeout=300
        )
        count = self.serve.get("connections", count=1, limit=1).json()["count"]
        time.sleep(1.0)  # the FlowLog reads the NEW events first: not what is measured
        results: dict[str, Any] = {"entries": count}

        def api(**query: Any) -> list[float]:
            out = []
            for _ in range(reps):
                t0 = time.monotonic()
                resp = self.serve.get("connections", **query)
                out.append(time.monotonic() - t0)
                assert resp.status == 200, resp.error_text()
            return out

        def tool(cmd: str) -> list[float]:
            out = []
            for _ in range(reps):
                t0 = time.monotonic()
                self.rl.router.run(["sh", "-c", cmd], timeout=120)
                out.append(time.monotonic() - t0)
            return out

        results["api_limit100"] = common.summary_ms(api(limit=100))
        results["conntrack_head100"] = common.summary_ms(
            tool("conntrack -L 2>/dev/null | head -100 >/dev/null")
        )
        results["api_udp_limit100"] = common.summary_ms(api(limit=100, protocol="udp"))
        results["conntrack_grep_nomatch"] = common.summary_ms(
            tool("conntrack -L 2>/dev/null | grep -c 'port=1 ' >/dev/null; true")
        )
        results["api_port_nomatch"] = common.summary_ms(api(limit=100, port=1))
        results["entriesAfter"] = self.serve.get("connections", count=1, limit=1).json()["count"]
        self.rl.router.run(["conntrack", "-F"], timeout=60)
        self.rl.router.run(["sysctl", "-q", "-w", "net.netfilter.nf_conntrack_udp_timeout=30"])
        return results

    def queries(self, reps: int) -> dict[str, Any]:
        cases: dict[str, dict[str, Any]] = {
            "newest 100": {"limit": 100},
            "client, 100": {"client": "192.168.51.7", "limit": 100},
            "peer, 100": {"peer": "203.0.7.3"},
            "protocol udp, 1000": {"protocol": "udp", "limit": 1000},
            "from 1h ago, 100": {"since": "1h"},
            "peer-suffix (names)": {"peer-suffix": "example.test"},
            "agg=1 last 10 min": {"agg": 1, "since": "10m"},
        }
        out: dict[str, Any] = {}
        for name, query in cases.items():
            times = []
            for _ in range(reps):
                t0 = time.monotonic()
                resp = self.serve.get("traffic-flows", **query)
                times.append(time.monotonic() - t0)
                assert resp.status == 200, resp.error_text()
            out[name] = common.summary_ms(times)
        return out


def main(smoke: bool) -> dict[str, Any]:
    result: dict[str, Any] = {}
    stored = 20_000 if smoke else 1_000_000
    with common.temp_dir("rdb-observe-") as base, Lab() as lab:
        rl = testlab.build(lab, base / "lab")
        state = base / "state"
        fill_s = prefill(state, stored)
        testlab.start_ulogd(rl)
        config = router_config(
            resource(
                "FlowLog",
                "lan",
                {
                    "lanNetworks": ["192.168.50.0/24"],
                    "receiveBuffer": "16MiB",
                    "retention": {"maxRecords": 50_000_000, "maxAge": "30d", "maxSize": "8GiB"},
                },
            ),
            resource("DNSQueryLog", "lan-dns", {"interfaces": ["lan0"]}),
            resource("FirewallLog", "fw", {"group": testlab.OUR_GROUP}),
        )
        serve = ServeProcess(
            write_config(base / "router.yaml", config),
            base / "run",
            state,
            base / "serve.log",
            env={**os.environ, "ROUTERD_PLUGINS": "observe"},
            netns=rl.router.name,
        )
        serve.start(timeout=60)
        try:
            b = Bench(rl, serve, state)
            bursts = [500] if smoke else [2_000, 10_000, 30_000, 60_000]
            rows = []
            result["flow_bursts"] = []
            for n in bursts:
                r = b.flows(n, 0, None)
                result["flow_bursts"].append(r)
                rows.append(
                    [
                        n,
                        r["ours"],
                        r["missedDestroy"],
                        r["ulogd"],
                        r["oursLossPct"],
                        r["ulogdLossPct"],
                        r["ratio"],
                        r["statusP99Ms"],
                    ]
                )
            common.emit_table(
                result,
                "Flow burst: N flows, then every DESTROY at once (conntrack -F); 16 MiB buffers",
                [
                    "flows",
                    "ours (DESTROY)",
                    "ours (missed-destroy)",
                    "ulogd2",
                    "ours loss %",
                    "ulogd2 loss %",
                    "ours/ulogd2",
                    "status p99 ms",
                ],
                rows,
            )
            rates = [1000] if smoke else [1_000, 3_000, 10_000, 30_000]
            seconds = 1 if smoke else 3
            rows = []
            result["flow_rates"] = []
            for rate in rates:
                r = b.flows(int(rate * seconds), rate, 0.2)
                result["flow_rates"].append(r)
                rows.append(
                    [
                        rate,
                        r["rate"],
                        r["ours"],
                        r["missedDestroy"],
                        r["ulogd"],
                        r["oursLossPct"],
                        r["ulogdLossPct"],
                        r["ratio"],
                        r["statusP99Ms"],
                    ]
                )
            common.emit_table(
                result,
                f"Short flows at a rate for {seconds} s (created, destroyed every 0.2 s)",
                [
                    "target/s",
                    "achieved/s",
                    "ours (DESTROY)",
                    "ours (missed-destroy)",
                    "ulogd2",
                    "ours loss %",
                    "ulogd2 loss %",
                    "ours/ulogd2",
                    "status p99 ms",
                ],
                rows,
            )
            dns_rates = [500] if smoke else [500, 2_000, 5_000, 10_000]
            rows = []
            result["dns"] = []
            for rate in dns_rates:
                r = b.dns(int(rate * seconds), rate)
                result["dns"].append(r)
                rows.append(
                    [
                        rate,
                        r["rate"],
                        r["dnsmasqAnswered"],
                        r["oursMatched"],
                        r["oursVsDnsmasq"],
                        r["statusP99Ms"],
                    ]
                )
            common.emit_table(
                result,
                f"DNS capture for {seconds} s: queries answered by dnsmasq vs matched by the observer",
                [
                    "target q/s",
                    "sent q/s",
                    "dnsmasq answered",
                    "ours matched",
                    "ours/dnsmasq",
                    "status p99 ms",
                ],
                rows,
            )
            entries = 5_000 if smoke else 100_000
            c = b.connections(entries, 5 if smoke else 20)
            result["connections"] = c
            common.emit_table(
                result,
                f"connections on a table of {c['entries']} entries (ms)",
                ["query", "p50", "p99"],
                [
                    [
                        "API connections?limit=100",
                        c["api_limit100"]["p50_ms"],
                        c["api_limit100"]["p99_ms"],
                    ],
                    [
                        "conntrack -L | head -100",
                        c["conntrack_head100"]["p50_ms"],
                        c["conntrack_head100"]["p99_ms"],
                    ],
                    [
                        "API ?protocol=udp&limit=100 (kernel filter)",
                        c["api_udp_limit100"]["p50_ms"],
                        c["api_udp_limit100"]["p99_ms"],
                    ],
                    [
                        "API ?port=1 (no match: whole table)",
                        c["api_port_nomatch"]["p50_ms"],
                        c["api_port_nomatch"]["p99_ms"],
                    ],
                    [
                        "conntrack -L | grep (whole table)",
                        c["conntrack_grep_nomatch"]["p50_ms"],
                        c["conntrack_grep_nomatch"]["p99_ms"],
                    ],
                ],
            )
            q = b.queries(10 if smoke else 50)
            result["flow_queries"] = {"stored": stored, "prefillSeconds": round(fill_s, 1), **q}
            common.emit_table(
                result,
                f"traffic-flows over {stored:,} stored flows, through the main API (ms)",
                ["query", "p50", "p99"],
                [[name, v["p50_ms"], v["p99_ms"]] for name, v in q.items()],
            )
            rss = []
            result["rss_kib"] = {}
            for d in serve.status()["daemons"]:
                kib = common.rss_kib(d["pid"])
                result["rss_kib"][d["daemonKind"]] = kib
                rss.append([d["daemonKind"], round(kib / 1024, 1)])
            if rl.ulogd is not None:
                rss.append(["ulogd2 (NFCT + NFLOG)", round(common.rss_kib(rl.ulogd.pid) / 1024, 1)])
            common.emit_table(result, "RSS after the runs (MiB)", ["process", "RSS MiB"], rss)
        finally:
            serve.stop()
            subprocess.run(["true"], check=False)
    json.dumps(result)
    return result


if __name__ == "__main__":
    common.run_standalone(NAME, main)
