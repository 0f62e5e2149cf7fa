"""The observers against independent tools on real traffic through a NAT router.

One lab per module: a LAN host, a router namespace (forwarding, nftables
masquerade, two NFLOG groups, dnsmasq) running ``routerd serve`` with the
three observers, a WAN server, and ulogd2 beside ours in the router.

- ``connections`` matches ``conntrack -L -o xml`` entry for entry;
- ``traffic-flows`` after the flows end matches ulogd2's NFCT records;
- ``firewall-logs`` matches ulogd2's NFLOG records for the same drops;
- ``dns-queries`` matches dnsmasq's ``--log-queries`` for the same dig load;
- hostile DNS frames, a DNS flood and a conntrack burst are counted as drops.
"""

from __future__ import annotations

from collections.abc import Iterator
import json
import os
import re
import signal
import textwrap
import time
from typing import Any
import xml.etree.ElementTree as ET

import pytest
from routerd.client import UnixClient
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.netns import Lab
from routerd.testing.netns import require_netns_prereqs
from routerd.testing.serve import ServeProcess
from routerd_observe import testlab
from routerd_observe.testlab import LAN_HOST
from routerd_observe.testlab import LAN_ROUTER
from routerd_observe.testlab import WAN_HOST

pytestmark = pytest.mark.netns

SERVERS = textwrap.dedent(
    """
    import socket, threading, sys
    def tcp(port, size):
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((sys.argv[1], port)); s.listen(64)
        while True:
            c, _ = s.accept()
            try:
                c.recv(4096); c.sendall(b"x" * size)
            finally:
                c.close()
    def udp(port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], port))
        while True:
            data, peer = s.recvfrom(4096); s.sendto(data * 2, peer)
    def tcp6(port):
        s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((sys.argv[2], port)); s.listen(64)
        while True:
            c, _ = s.accept()
            try:
                c.recv(4096); c.sendall(b"6" * 3000)
            finally:
                c.close()
    threading.Thread(target=tcp, args=(8080, 20000), daemon=True).start()
    threading.Thread(target=tcp6, args=(8086,), daemon=True).start()
    threading.Thread(target=udp, args=(5353,), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
    """
)

#: LAN-side traffic: TCP downloads, UDP exchanges, ICMP echoes; argv[1] = first source port.
CLIENT = textwrap.dedent(
    """
    import socket, struct, sys
    base = int(sys.argv[1]); wan = sys.argv[2]
    for i in range(3):
        s = socket.socket(); s.bind(("", base + i)); s.connect((wan, 8080))
        s.sendall(b"GET " + b"y" * (100 * (i + 1))); got = 0
        while True:
            d = s.recv(65536)
            if not d: break
            got += len(d)
        s.close()
    s = socket.socket(socket.AF_INET6); s.bind(("", base + 20)); s.connect((sys.argv[3], 8086))
    s.sendall(b"v6"); got = 0
    while True:
        d = s.recv(65536)
        if not d: break
        got += len(d)
    s.close()
    for i in range(3):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("", base + 10 + i))
        u.settimeout(2); u.sendto(b"z" * (50 * (i + 1)), (wan, 5353)); u.recvfrom(4096); u.close()
    def csum(b):
        if len(b) % 2: b += b"\\0"
        s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
        return ~s & 0xffff
    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); r.settimeout(2)
    ident = base & 0xffff
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"p" * 32
    pkt = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    r.sendto(pkt, (wan, 0)); r.recvfrom(4096)
    print("done")
    """
)


def _serve_config() -> dict[str, Any]:
    return router_config(
        resource(
            "FlowLog",
            "lan",
            {"lanNetworks": ["192.168.50.0/24"], "interim": "2s", "receiveBuffer": "1MiB"},
        ),
        resource("FirewallLog", "fw", {"group": testlab.OUR_GROUP, "receiveBuffer": "1MiB"}),
        resource("DNSQueryLog", "lan-dns", {"interfaces": ["lan0"], "matchTimeout": "1s"}),
    )


class ObserveLab:
    def __init__(self, rl: testlab.RouterLab, serve: ServeProcess) -> None:
        self.rl = rl
        self.serve = serve
        self._port = 20000

    def get(self, path: str, **query: Any) -> dict[str, Any]:
        resp = self.serve.get(path, **query)
        assert resp.status == 200, resp.error_text()
        body: dict[str, Any] = resp.json()
        return body

    def traffic(self) -> int:
        """One round of LAN traffic from fresh source ports; returns the first port."""
        self._port += 100
        script = self.rl.workdir / "client.py"
        script.write_text(CLIENT)
        out = self.rl.lan.run(
            ["python3", str(script), str(self._port), WAN_HOST, testlab.WAN_HOST6], timeout=30
        )
        assert "done" in out.stdout, out.stderr
        return self._port

    def observed(self, daemon_kind: str, name: str) -> dict[str, Any]:
        """The observer's own status, fresh (serve refreshes its copy every 30 s)."""
        sock = self.serve.runtime_dir / daemon_kind / f"{name}.sock"
        resp = UnixClient(str(sock), timeout=10).get("/v1/status")
        assert resp.status == 200, resp.error_text()
        res = resp.json()["resources"][0]
        assert res["phase"] == "Up", res
        observed: dict[str, Any] = res["observed"]
        return observed


@pytest.fixture(scope="module")
def olab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObserveLab]:
    require_netns_prereqs(["ip", "nft", "dnsmasq", "conntrack", "ulogd", "dig"])
    workdir = tmp_path_factory.mktemp("observe")
    with Lab() as lab:
        rl = testlab.build(lab, workdir)
        testlab.start_ulogd(rl)
        (workdir / "servers.py").write_text(SERVERS)
        srv = rl.wan.popen(
            ["python3", str(workdir / "servers.py"), WAN_HOST, testlab.WAN_HOST6],
            workdir / "servers.log",
        )
        srv.wait_for_log("ready")
        serve = ServeProcess(
            write_config(workdir / "router.yaml", _serve_config()),
            workdir / "run",
            workdir / "state",
            workdir / "serve.log",
            env={"ROUTERD_PLUGINS": "observe"},
            netns=rl.router.name,
        )
        serve.start(timeout=30)
        try:
            ol = ObserveLab(rl, serve)
            for kind, name in (
                ("FlowLog", "lan"),
                ("FirewallLog", "fw"),
                ("DNSQueryLog", "lan-dns"),
            ):
                serve.wait_for_phase(kind, name, "Up")
            yield ol
        finally:
            serve.stop()


# -- connections --------------------------------------------------------------------
def _conntrack_xml(ns: Any) -> list[dict[str, Any]]:
    out = ns.run(["conntrack", "-L", "-o", "xml,id"], timeout=20).stdout
    flows = []
    for flow in ET.fromstring(out).iter("flow"):
        entry: dict[str, Any] = {}
        for meta in flow.iter("meta"):
            direction = meta.get("direction")
            if direction in ("original", "reply"):
                l3, l4 = meta.find("layer3"), meta.find("layer4")
                assert l3 is not None and l4 is not None
                side: dict[str, Any] = {"src": l3.findtext("src"), "dst": l3.findtext("dst")}
                entry["protocol"] = l4.get("protoname")
                if l4.find("sport") is not None:
                    side["sport"] = int(l4.findtext("sport") or 0)
                    side["dport"] = int(l4.findtext("dport") or 0)
                counters = meta.find("counters")
                if counters is not None:
                    side["packets"] = int(counters.findtext("packets") or 0)
                    side["bytes"] = int(counters.findtext("bytes") or 0)
                entry[direction] = side
            elif direction == "independent":
                entry["state"] = meta.findtext("state")
                entry["mark"] = int(meta.findtext("mark") or 0)
                entry["id"] = int(meta.findtext("id") or 0)
                entry["assured"] = meta.find("assured") is not None
        flows.append(entry)
    return flows


def _ours_as_conntrack(item: dict[str, Any]) -> dict[str, Any]:
    def side(t: dict[str, Any], d: str) -> dict[str, Any]:
        out = {"src": t["src"], "dst": t["dst"]}
        if "sport" in t:
            out["sport"], out["dport"] = t["sport"], t["dport"]
        if item["packets"] is not None:
            out["packets"], out["bytes"] = item["packets"][d], item["bytes"][d]
        return out

    return {
        "protocol": item["protocol"],
        "original": side(item["original"], "original"),
        "reply": side(item["reply"], "reply"),
        "state": item["state"],
        "mark": item["mark"],
        "id": item["id"],
        "assured": item["assured"],
    }


def test_connections_match_conntrack(olab: ObserveLab) -> None:
    olab.traffic()
    # Both read the table at nearly the same moment; a packet in between
    # would change a counter, so compare a quiet table (the traffic is over).
    ours = olab.get("connections", limit=5000, count=1)
    theirs = _conntrack_xml(olab.rl.router)
    key = lambda e: (e["id"],)  # noqa: E731
    mine = sorted((_ours_as_conntrack(i) for i in ours["items"]), key=key)
    assert sorted(theirs, key=key) == mine
    assert ours["count"] == len(theirs)
    protocols = {i["protocol"] for i in ours["items"]}
    assert {"tcp", "udp", "icmp"} <= protocols
    assert {i["family"] for i in ours["items"]} == {"ipv4", "ipv6"}
    nat = [i["nat"] for i in ours["items"] if i["protocol"] == "tcp" and i["family"] == "ipv4"]
    assert nat and all(n == {"src": testlab.WAN_ROUTER, "sport": n["sport"]} for n in nat)
    assert all(i["nat"] is None for i in ours["items"] if i["family"] == "ipv6")  # no NAT66


def test_connections_filters(olab: ObserveLab) -> None:
    base = olab.traffic()
    tcp = olab.get("connections", protocol="tcp", limit=5000)["items"]
    assert tcp and all(i["protocol"] == "tcp" for i in tcp)
    port = olab.get("connections", port=base + 10)["items"]
    assert [i["original"]["sport"] for i in port] == [base + 10]
    limited = olab.get("connections", limit=2)
    assert len(limited["items"]) == 2 and limited["more"] is True
    v6 = olab.get("connections", family="ipv6")["items"]
    assert all(i["family"] == "ipv6" for i in v6)
    addr = olab.get("connections", address=testlab.WAN_ROUTER, limit=5000)["items"]
    assert addr and all(
        testlab.WAN_ROUTER in (i["reply"]["dst"], i["original"]["src"]) for i in addr
    )
    state = olab.get("connections", state="time_wait", limit=5000)["items"]
    assert state and all(i["state"] == "TIME_WAIT" for i in state)
    bad = olab.serve.get("connections", state="bogus")
    assert bad.status == 400 and "state" in bad.error_text()


# -- traffic flows vs ulogd2 ------------------------------------------------------------
def _ulogd_flows(olab: ObserveLab) -> dict[tuple[Any, ...], dict[str, Any]]:
    out = {}
    for r in olab.rl.ulogd_records("flows"):
        key = (
            r.get("src_ip"),
            r.get("orig.l4.sport"),
            r.get("dest_ip"),
            r.get("orig.l4.dport"),
            r.get("orig.ip.protocol"),
        )
        out[key] = r
    return out


def _epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def test_traffic_flows_match_ulogd(olab: ObserveLab) -> None:
    base = olab.traffic()
    ports = {base + i for i in (0, 1, 2, 10, 11, 12)}
    # The flows end: flushing the table sends each one's DESTROY event with
    # its final counters to both listeners.
    olab.rl.router.run(["conntrack", "-F"], timeout=10)

    def ended() -> list[dict[str, Any]] | None:
        items = olab.get("traffic-flows", client=LAN_HOST, limit=5000)["items"]
        mine = [i for i in items if i["clientPort"] in ports and not i["open"]]
        theirs = [k for k in _ulogd_flows(olab) if k[1] in ports]
        return mine if len(mine) == len(ports) and len(theirs) == len(ports) else None

    mine = poll(ended, 15, "both flow logs to record the ended flows")
    theirs = _ulogd_flows(olab)
    for item in mine:
        proto = {"tcp": 6, "udp": 17}[item["protocol"]]
        u = theirs[(item["client"], item["clientPort"], item["peer"], item["peerPort"], proto)]
        # Counted from the same DESTROY event: equal here; the contract is
        # "within a packet" (a retransmission between two reads).
        assert abs(item["bytesOut"] - u["orig.raw.pktlen"]) <= 1500, (item, u)
        assert abs(item["bytesIn"] - u["reply.raw.pktlen"]) <= 1500, (item, u)
        assert abs(item["packetsOut"] - u["orig.raw.pktcount"]) <= 1
        assert abs(item["packetsIn"] - u["reply.raw.pktcount"]) <= 1
        assert item["natAddress"] == u["reply.ip.daddr.str"] == testlab.WAN_ROUTER
        assert item["endReason"] == "destroy"
        # Both take the kernel's timestamps (nf_conntrack_timestamp).
        start = u["flow.start.sec"] + u["flow.start.usec"] / 1e6
        end = u["flow.end.sec"] + u["flow.end.usec"] / 1e6
        assert abs(_epoch(item["start"]) - start) < 0.001
        assert abs(_epoch(item["end"]) - end) < 0.001
        assert item["durationSeconds"] is not None and item["durationSeconds"] >= 0
    tcp = [i for i in mine if i["protocol"] == "tcp"]
    assert all(i["bytesIn"] > 20000 for i in tcp)


def test_flows_carry_the_dns_name_the_client_looked_up(olab: ObserveLab) -> None:
    out = olab.rl.lan.run(["dig", "+short", f"@{LAN_ROUTER}", "api.example.test"]).stdout
    assert WAN_HOST in out
    olab.traffic()
    poll(
        lambda: olab.get("traffic-flows", peer=WAN_HOST, limit=1)["items"] or None,
        10,
        "a flow to the WAN host",
    )
    item = olab.get("traffic-flows", peer=WAN_HOST, limit=1)["items"][0]
    assert item["peerName"] in ("www.example.test", "api.example.test")
    by_name = olab.get("traffic-flows", **{"peer-suffix": "example.test", "limit": 5000})["items"]
    assert by_name and all(i["peer"] == WAN_HOST for i in by_name)
    agg = olab.get("traffic-flows", agg=1)["aggregates"][0]
    assert agg["flows"] >= 1
    assert any(g["key"] == LAN_HOST for g in agg["byClient"])
    assert {g["key"] for g in agg["byProtocol"]} >= {"tcp", "udp"}


def test_long_flows_get_interim_records(olab: ObserveLab) -> None:
    script = "import socket,time,sys\ns=socket.socket();s.connect((sys.argv[1],8080));s.sendall(b'hold');time.sleep(6)"
    proc = olab.rl.lan.popen(["python3", "-c", script, WAN_HOST], olab.rl.workdir / "long.log")
    try:

        def interim() -> dict[str, Any] | None:
            for i in olab.get("traffic-flows", client=LAN_HOST, protocol="tcp", limit=50)["items"]:
                if i["open"] and i["bytesIn"] >= 20000:
                    return i
            return None

        item = poll(interim, 10, "an open flow with counters (an interim record)")
        assert item["end"] is None and item["peer"] == WAN_HOST
    finally:
        proc.stop()


# -- firewall logs vs ulogd2 -------------------------------------------------------------
def test_firewall_logs_match_ulogd(olab: ObserveLab) -> None:
    probe = (
        "import socket,sys\nfor p in range(3):\n s=socket.socket();s.settimeout(0.3)\n"
        f" try: s.connect((sys.argv[1], {testlab.DROP_PORT}))\n except OSError: pass\n"
    )
    before = len(olab.get("firewall-logs", prefix=testlab.DROP_PREFIX, limit=5000)["items"])
    olab.rl.lan.run(["python3", "-c", probe, WAN_HOST], timeout=20)

    def logged() -> list[dict[str, Any]] | None:
        mine = olab.get("firewall-logs", prefix=testlab.DROP_PREFIX, limit=5000)["items"]
        theirs = olab.rl.ulogd_records("firewall")
        return mine if len(mine) >= before + 3 and len(theirs) == len(mine) else None

    mine = poll(logged, 10, "both firewall logs to record the probes")
    theirs = olab.rl.ulogd_records("firewall")
    ours_keyed = sorted(
        (i["src"], i["sport"], i["dst"], i["dport"], i["prefix"], i["in"], i["out"], i["length"])
        for i in mine
    )
    their_keyed = sorted(
        (
            u["src_ip"],
            u["src_port"],
            u["dest_ip"],
            u["dest_port"],
            u["oob.prefix"].strip(),
            u["oob.in"],
            u["oob.out"],
            u["ip.totlen"],
        )
        for u in theirs
    )
    assert ours_keyed == their_keyed
    assert all(i["action"] == "drop" and i["prefix"] == testlab.DROP_PREFIX for i in mine)
    assert all(i["protocol"] == "tcp" and "SYN" in i["tcpFlags"] for i in mine)
    filtered = olab.get("firewall-logs", action="drop", dst=WAN_HOST, prefix="drop: telnet")[
        "items"
    ]
    assert len(filtered) == len(mine)
    assert olab.get("firewall-logs", action="accept")["items"] == []


# -- DNS vs dnsmasq -------------------------------------------------------------------------
_QUERY = re.compile(r"query\[(\w+)\] (\S+) from (\S+)")
_REPLY = re.compile(r"(?:config|reply|cached) (\S+) is (\S+)")


def test_dns_queries_match_dnsmasq(olab: ObserveLab) -> None:
    assert olab.rl.dnsmasq is not None
    mark = olab.rl.dnsmasq.mark()
    started = time.time()
    names = [
        ("www.example.test", "A"),
        ("other.test", "A"),
        ("missing.example.test", "A"),
        ("www.example.test", "AAAA"),
    ]
    for name, qtype in names:
        olab.rl.lan.run(["dig", "+tries=1", "+time=2", f"@{LAN_ROUTER}", name, qtype])
    olab.rl.lan.run(
        ["dig", "+tcp", "+tries=1", "+time=2", f"@{LAN_ROUTER}", "api.example.test", "A"]
    )
    olab.rl.lan.run(["dig", "+tries=1", "+time=2", "@fd00:50::1", "other.test", "A"])
    log = olab.rl.dnsmasq.log_text()[mark:]
    theirs = [(m.group(2), m.group(1), m.group(3)) for m in _QUERY.finditer(log)]
    answers = {}
    for m in _REPLY.finditer(log):
        answers.setdefault(m.group(1), set()).add(m.group(2))

    def seen() -> list[dict[str, Any]] | None:
        items = olab.get("dns-queries", since=repr(started - 0.5), limit=5000)["items"]
        mine = [i for i in items if i["client"] in (LAN_HOST, testlab.LAN_HOST6)]
        return mine if len(mine) >= len(theirs) else None

    mine = poll(seen, 10, "the DNS observer to record the queries")
    assert {i["server"] for i in mine} == {LAN_ROUTER, "fd00:50::1"}
    assert sorted((i["qname"], i["qtype"], i["client"]) for i in mine) == sorted(theirs)
    for item in mine:
        shown = {a["data"] for a in item["answers"] if a["type"] in ("A", "AAAA")}
        expected = {a for a in answers.get(item["qname"], set()) if a[0].isdigit() or ":" in a}
        if item["rcode"] == "NOERROR" and item["qtype"] == "A":
            assert shown == expected, (item, expected)
        assert item["latencyMs"] is not None and item["latencyMs"] >= 0
    rcodes = {(i["qname"], i["qtype"]): i["rcode"] for i in mine}
    assert rcodes[("missing.example.test", "A")] == "NXDOMAIN"
    assert rcodes[("www.example.test", "A")] == "NOERROR"
    assert any(i["transport"] == "tcp" for i in mine)
    suffix = olab.get(
        "dns-queries", **{"qname-suffix": "example.test", "since": "1m", "limit": 5000}
    )["items"]
    assert suffix and all(i["qname"].endswith("example.test") for i in suffix)
    agg = olab.get("dns-queries", agg=1, since="1m")["aggregates"][0]
    assert agg["queries"] >= len(theirs)
    assert {g["key"] for g in agg["byRcode"]} >= {"NOERROR", "NXDOMAIN"}
    assert agg["latencyMs"]["p50"] is not None


# -- hostile input and bursts -------------------------------------------------------------------
HOSTILE = textwrap.dedent(
    """
    import socket, sys, os
    dst = sys.argv[1]; n = int(sys.argv[2])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    junk = [b"", b"\\x00", b"\\xff" * 12, os.urandom(40), b"\\x12\\x34\\x01\\x00\\x00\\x01" + b"\\x00" * 6 + b"\\xc0\\x0c"]
    for i in range(len(junk)):
        s.sendto(junk[i], (dst, 53))
    # A flood of well-formed queries.
    q = b"\\xab\\xcd\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x05flood\\x04test\\x00\\x00\\x01\\x00\\x01"
    for i in range(n):
        s.sendto(q[:0] + bytes([i >> 8 & 255, i & 255]) + q[2:], (dst, 53))
    print("sent")
    """
)


def test_malformed_dns_and_a_flood_are_counted_never_fatal(olab: ObserveLab) -> None:
    before = olab.observed("dns-query-log", "lan-dns")
    (olab.rl.workdir / "hostile.py").write_text(HOSTILE)
    # The flood runs while the main API is asked for its status.
    sender = olab.rl.lan.popen(
        ["python3", str(olab.rl.workdir / "hostile.py"), LAN_ROUTER, "3000"],
        olab.rl.workdir / "hostile.log",
    )
    latencies: list[float] = []

    def settled() -> dict[str, Any] | None:
        t0 = time.monotonic()
        resp = olab.serve.get("status")
        latencies.append(time.monotonic() - t0)
        assert resp.status == 200
        obs = olab.observed("dns-query-log", "lan-dns")
        last.append(obs)
        seen = obs["source"]["frames"] + obs["kernelDrops"]
        enough = seen >= before["source"]["frames"] + before["kernelDrops"] + 3005
        return obs if enough and not sender.alive() else None

    last: list[dict[str, Any]] = []
    try:
        obs = poll(settled, 20, "the observer to read the flood")
    except AssertionError:
        raise AssertionError(f"{before}\n{last[-1]}") from None
    malformed = (
        obs["dropped"].get("malformed", 0)
        + obs["dropped"].get("no-single-question", 0)
        + obs["dropped"].get("truncated", 0)
    )
    before_malformed = sum(
        before["dropped"].get(k, 0) for k in ("malformed", "no-single-question", "truncated")
    )
    assert malformed - before_malformed >= 4
    queries = obs["source"]["queries"] + obs["kernelDrops"]
    assert queries - before["source"]["queries"] - before["kernelDrops"] >= 3000
    assert sender.returncode == 0
    # Still observing: a new query is matched.
    olab.rl.lan.run(["dig", "+tries=1", f"@{LAN_ROUTER}", "www.example.test"])
    poll(
        lambda: (
            any(
                i["qname"] == "www.example.test" and i["rcode"] == "NOERROR"
                for i in olab.get("dns-queries", since="5s", limit=50)["items"]
            )
            or None
        ),
        10,
        "a query after the flood",
    )
    assert max(latencies) < 2.0


BURST = textwrap.dedent(
    """
    import socket, sys
    dst = sys.argv[1]; first = int(sys.argv[2]); n = int(sys.argv[3])
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    for i in range(n):
        socks[i % 4].sendto(b"b", (dst, first + i // 4))
    print("sent")
    """
)


def test_a_lost_burst_is_counted_and_its_flows_closed(olab: ObserveLab) -> None:
    """ENOBUFS: events lost while the observer could not read are counted,
    and the flows whose DESTROY was lost are closed by the resync dump."""
    script = olab.rl.workdir / "burst.py"
    script.write_text(BURST)
    pid = olab.serve.daemon("FlowLog", "lan")["pid"]
    # 400 flows the observer knows (from its next table dump, every 2 s here).
    olab.rl.lan.run(["python3", str(script), WAN_HOST, "30000", "400"], timeout=60)
    poll(
        lambda: olab.observed("flow-log", "lan")["source"]["openFlows"] >= 400 or None,
        10,
        "the flow log to know the 400 flows",
    )
    before = olab.observed("flow-log", "lan")
    os.kill(pid, signal.SIGSTOP)  # the observer stalls; the kernel queues, then drops
    try:
        # A burst, then every DESTROY at once: far more than the 1 MiB buffer.
        olab.rl.lan.run(["python3", str(script), WAN_HOST, "31000", "20000"], timeout=60)
        olab.rl.router.run(["conntrack", "-F"], timeout=20)
    finally:
        os.kill(pid, signal.SIGCONT)
    latencies: list[float] = []

    def settled() -> dict[str, Any] | None:
        t0 = time.monotonic()
        assert olab.serve.get("status").status == 200
        latencies.append(time.monotonic() - t0)
        obs = olab.observed("flow-log", "lan")
        done = (
            obs["enobufs"] > before["enobufs"]
            and obs["source"]["missedDestroys"] - before["source"]["missedDestroys"] >= 100
        )
        return obs if done else None

    obs = poll(settled, 30, "the flow log to count the loss and resync")
    assert obs["kernelDrops"] > before["kernelDrops"]
    assert obs["source"]["missedDestroys"] - before["source"]["missedDestroys"] >= 100
    lost = olab.get("traffic-flows", client=LAN_HOST, protocol="udp", limit=5000)["items"]
    assert any(i["endReason"] == "missed-destroy" and 30000 <= i["peerPort"] < 30100 for i in lost)
    assert max(latencies) < 2.0
    # Still recording: a new flow after the burst ends with its DESTROY.
    base = olab.traffic()
    olab.rl.router.run(
        ["conntrack", "-D", "-p", "tcp", "--orig-port-src", str(base)], timeout=10, check=False
    )
    poll(
        lambda: (
            any(
                i["clientPort"] == base and i["endReason"] == "destroy"
                for i in olab.get("traffic-flows", client=LAN_HOST, protocol="tcp", limit=50)[
                    "items"
                ]
            )
            or None
        ),
        10,
        "a flow recorded after the burst",
    )


def test_records_survive_in_the_api_and_bad_input_is_a_400(olab: ObserveLab) -> None:
    for path, query in (
        ("traffic-flows", {"client": "192.168.50"}),
        ("traffic-flows", {"limit": "0"}),
        ("dns-queries", {"since": "yesterday"}),
        ("firewall-logs", {"action": "maybe"}),
        ("connections", {"mark": "-1"}),
        ("connections", {"port": "70000"}),
    ):
        resp = olab.serve.get(path, **query)
        assert resp.status == 400, (path, query, resp.status)
        assert set(resp.json()) == {"title", "description"}
    big = olab.get("traffic-flows", limit=999999)
    assert len(big["items"]) <= 5000


def test_the_status_socket_refuses_the_observer_endpoints(olab: ObserveLab) -> None:
    """Every local user may read the status socket; what LAN hosts do is not for them."""
    client = olab.serve.client(status_socket=True)
    for path in ("connections", "traffic-flows", "firewall-logs", "dns-queries"):
        resp = client.get(f"/api/control.routerd.net/v1alpha1/{path}")
        assert resp.status == 403, path
        assert "main socket" in resp.json()["description"]
    assert client.get("/api/control.routerd.net/v1alpha1/status").status == 200


def test_routerctl_lists_what_the_router_sees(olab: ObserveLab) -> None:
    import subprocess
    import sys

    olab.rl.lan.run(["dig", "+tries=1", f"@{LAN_ROUTER}", "www.example.test"])
    olab.traffic()
    routerctl = [sys.executable, "-m", "routerctl", "--runtime-dir", str(olab.serve.runtime_dir)]

    def run(*args: str) -> str:
        out = subprocess.run([*routerctl, *args], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout

    table = run("get", "connections", "--protocol", "tcp", "--count")
    assert "ESTABLISHED" in table or "TIME_WAIT" in table
    flows = json.loads(run("get", "flows", "-o", "json", "--client", LAN_HOST))
    assert flows["items"] and all(i["client"] == LAN_HOST for i in flows["items"])
    assert "www.example.test" in run("get", "dns-queries", "--qname-suffix", "example.test")
    assert "NOERROR" in run("get", "dns-queries", "--agg", "-o", "yaml")
    run("get", "firewall-logs", "--action", "drop", "-o", "yaml")
    bad = subprocess.run(
        [*routerctl, "get", "flows", "--client", "nope"], capture_output=True, text=True, timeout=30
    )
    assert bad.returncode != 0 and "client" in bad.stderr


FLOOD = textwrap.dedent(
    """
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for i in range(int(sys.argv[2])):
        s.sendto(b"f", (sys.argv[1], int(sys.argv[3])))
    """
)


def test_a_lost_firewall_log_burst_is_counted(olab: ObserveLab) -> None:
    """Packets the kernel could not queue for the stalled observer show as
    sequence gaps (kernel-queue) and ENOBUFS; the rest are recorded."""
    script = olab.rl.workdir / "flood.py"
    script.write_text(FLOOD)
    pid = olab.serve.daemon("FirewallLog", "fw")["pid"]
    before = olab.observed("firewall-log", "fw")
    sent = 20000
    os.kill(pid, signal.SIGSTOP)
    try:
        olab.rl.lan.run(
            ["python3", str(script), WAN_HOST, str(sent), str(testlab.FLOOD_PORT)], timeout=60
        )
    finally:
        os.kill(pid, signal.SIGCONT)

    def counted() -> tuple[int, int, dict[str, Any]]:
        obs = olab.observed("firewall-log", "fw")
        got = obs["source"]["packets"] - before["source"]["packets"]
        gaps = obs["source"]["sequenceGaps"] - before["source"]["sequenceGaps"]
        return got, gaps, obs

    def drained() -> tuple[int, int, dict[str, Any]]:
        """Counts that no longer move (status is published every second)."""
        last: list[int] = [-1]

        def same() -> tuple[int, int, dict[str, Any]] | None:
            got, gaps, obs = counted()
            if got + gaps == last[0]:
                return got, gaps, obs
            last[0] = got + gaps
            return None

        result: tuple[int, int, dict[str, Any]] = poll(
            same, 30, "the counts to settle", interval=1.5
        )
        return result

    drained()
    # A loss at the end of the burst shows as a gap before the next packet.
    olab.rl.lan.run(["python3", str(script), WAN_HOST, "1", str(testlab.FLOOD_PORT)], timeout=10)
    got, gaps, obs = drained()
    assert got + gaps == sent + 1, obs
    assert gaps > 0 and obs["dropped"]["kernel-queue"] >= gaps
    assert obs["enobufs"] > before["enobufs"] or obs["kernelDrops"] > before["kernelDrops"]
    recorded = olab.get("firewall-logs", prefix=testlab.FLOOD_PREFIX, limit=5000, since="1m")
    assert recorded["items"] and all(i["dport"] == testlab.FLOOD_PORT for i in recorded["items"])


def test_each_observer_answers_a_query_command_without_serve_api(olab: ObserveLab) -> None:
    """The daemons' own ``query`` command: records without the main API."""
    olab.traffic()
    olab.rl.router.run(["conntrack", "-F"], timeout=10)
    for daemon_kind, name, args in (
        ("flow-log", "lan", {"client": LAN_HOST, "limit": 3}),
        ("dns-query-log", "lan-dns", {"limit": 2}),
        ("firewall-log", "fw", {"action": "drop", "limit": 2}),
    ):
        sock = olab.serve.runtime_dir / daemon_kind / f"{name}.sock"

        def answered(sock: Any = sock, args: Any = args) -> dict[str, Any] | None:
            resp = UnixClient(str(sock), timeout=10).post("/v1/commands/query", args)
            assert resp.status == 200, resp.error_text()
            result: dict[str, Any] = resp.json()["result"]
            return result if result["items"] else None

        if daemon_kind == "firewall-log":
            probe = f"import socket\ns=socket.socket();s.settimeout(0.3)\ntry: s.connect(('{WAN_HOST}', {testlab.DROP_PORT}))\nexcept OSError: pass\n"
            olab.rl.lan.run(["python3", "-c", probe], timeout=10)
        if daemon_kind == "dns-query-log":
            olab.rl.lan.run(["dig", "+tries=1", f"@{LAN_ROUTER}", "www.example.test"])
        result = poll(answered, 10, f"{daemon_kind} records")
        assert 1 <= len(result["items"]) <= args["limit"]
        bad = UnixClient(str(sock), timeout=10).post("/v1/commands/query", {"limit": "many"})
        assert bad.status == 400 and "limit" in bad.error_text()
    flows = UnixClient(str(olab.serve.runtime_dir / "flow-log" / "lan.sock"), timeout=10).post(
        "/v1/commands/query", {"client": LAN_HOST, "limit": 50}
    )
    assert all(i["client"] == LAN_HOST for i in flows.json()["result"]["items"])
