"""The dhcpv4-client daemon against real servers (Kea DHCPv4, dnsmasq).

Every test runs the daemon inside the client namespace of ``dhcp4_pair``
(``wan0`` ↔ ``srv0`` 192.0.2.1/24 in the server namespace) and waits on
phases and events through the daemon's own API, never on bare sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
import os
from pathlib import Path
import re
import signal
import sys
from typing import Any

import pytest
from routerd.testing.daemon import DaemonFactory
from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.lab_fixtures import Dhcp4Pair
from routerd.testing.netns import ManagedProcess
from routerd.testing.netns import require_netns_prereqs
from routerd.testing.servers import Dnsmasq
from routerd.testing.servers import KeaDhcp4

pytestmark = pytest.mark.netns

ENV = {"ROUTERD_PLUGINS": "dhcpv4"}
# A burst of undecodable DHCP frames (UDP 67 -> 68) to one MAC, from one
# packet socket: ``FLOOD IFNAME MAC COUNT``.
FLOOD = r"""
import socket, sys
from routerd_dhcpv4.codec import build_frame
ifname, mac, count = sys.argv[1], bytes.fromhex(sys.argv[2].replace(":", "")), int(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0x0800))
frame = build_frame(b"\x02\x01\x06\x00" + b"\xee" * 50, src_mac=s.getsockname()[4],
    dst_mac=mac, src_ip="192.0.2.99", dst_ip="255.255.255.255", sport=67, dport=68)
for _ in range(count):
    s.send(frame)
print("sent", count)
"""
POOL = ("192.0.2.100", "192.0.2.200")
ROGUE = Path(__file__).with_name("rogue_server.py")


def conditions(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in res["conditions"]}


def client_spec(pair: Dhcp4Pair, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "interface": pair.client_if,
        "hostname": "edge01",
        "routeMetric": 123,
        "dnsFile": str(tmp_path / "resolv.conf"),
    }
    spec.update(extra)
    return spec


def start_client(
    routerd_daemon: DaemonFactory, pair: Dhcp4Pair, tmp_path: Path, **extra: Any
) -> DaemonProcess:
    config = router_config(resource("DHCPv4Client", "wan", client_spec(pair, tmp_path, **extra)))
    return routerd_daemon("dhcpv4-client", config, "wan", netns=pair.client.name, env=ENV)


def addresses(pair: Dhcp4Pair) -> list[str]:
    return [
        f"{a['local']}/{a['prefixlen']}"
        for a in pair.client.addresses(pair.client_if, 4)
        if a.get("scope") == "global"
    ]


def default_routes(pair: Dhcp4Pair) -> list[dict[str, Any]]:
    return [r for r in pair.client.routes() if r.get("dst") == "default"]


def assert_applied(pair: Dhcp4Pair, res: dict[str, Any], metric: int = 123) -> str:
    """The lease in ``observed`` is on the interface with its default route."""
    cidr: str = res["observed"]["address"]
    assert cidr in addresses(pair)
    routes = default_routes(pair)
    assert [(r["gateway"], r.get("metric"), r["dev"]) for r in routes] == [
        ("192.0.2.1", metric, pair.client_if)
    ], routes
    assert routes[0].get("protocol") == "dhcp"
    conds = conditions(res)
    for name in ("LinkReady", "LeaseAcquired", "AddressApplied", "RoutesInstalled"):
        assert conds[name]["status"] == "True", conds[name]
    return cidr


@pytest.fixture
def kea_factory(dhcp4_pair: Dhcp4Pair, tmp_path: Path) -> Iterator[Any]:
    require_netns_prereqs(["kea-dhcp4"])
    servers: list[KeaDhcp4] = []

    def make(**kwargs: Any) -> KeaDhcp4:
        kwargs.setdefault("pool", POOL)
        kea = KeaDhcp4(dhcp4_pair.server, dhcp4_pair.server_if, tmp_path / "kea", **kwargs)
        servers.append(kea)
        return kea.start()

    yield make
    for kea in servers:
        kea.stop()


@pytest.fixture
def kea(kea_factory: Any) -> KeaDhcp4:
    server: KeaDhcp4 = kea_factory()
    return server


@pytest.fixture
def dnsmasq(dhcp4_pair: Dhcp4Pair, tmp_path: Path) -> Iterator[Dnsmasq]:
    require_netns_prereqs(["dnsmasq"])
    server = Dnsmasq(
        dhcp4_pair.server,
        dhcp4_pair.server_if,
        tmp_path / "dnsmasq",
        dns_port=0,
        extra_args=(
            "--dhcp-option=option:dns-server,192.0.2.53",
            "--dhcp-option=option:domain-search,lab.test,example.test",
            "--dhcp-option=option:mtu,1400",
            "--dhcp-rapid-commit",
        ),
    ).start()
    yield server
    server.stop()


# -- acquire and apply ---------------------------------------------------------


def test_kea_acquire_and_apply(
    dhcp4_pair: Dhcp4Pair, kea: KeaDhcp4, routerd_daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = start_client(routerd_daemon, dhcp4_pair, tmp_path)
    res = d.wait_for_phase("Applied", timeout=15)
    cidr = assert_applied(dhcp4_pair, res)
    obs = res["observed"]
    assert obs["state"] == "BOUND"
    assert obs["serverId"] == "192.0.2.1"
    assert obs["leaseTime"] == 120
    assert obs["routers"] == ["192.0.2.1"] and obs["dns"] == ["192.0.2.1"]
    assert obs["t1"] == 60 and obs["t2"] == 105, "Kea defaults: T1 0.5, T2 0.875"
    for key in ("t1At", "t2At", "expiresAt", "acquiredAt"):
        assert obs[key].endswith("Z"), obs[key]
    assert obs["counters"]["sent"] >= 2 and obs["counters"]["received"] >= 2
    assert (tmp_path / "resolv.conf").read_text().splitlines()[1:] == ["nameserver 192.0.2.1"]
    ip = cidr.split("/")[0]
    leases = {x["address"]: x for x in kea.leases(active_only=True)}
    assert ip in leases and leases[ip]["hostname"].startswith("edge01")
    bound = d.wait_for_event("routerd.dhcpv4.client.lease.bound")
    assert bound["attributes"]["address"] == cidr
    assert bound["attributes"]["serverId"] == "192.0.2.1"
    debug = d.events(topic="routerd.dhcpv4.client.*.sent")["events"]
    assert [e["attributes"]["messageType"] for e in debug][:2] == ["DISCOVER", "REQUEST"]
    assert all(e["severity"] == "debug" for e in debug)
    # A stop without keepOnStop removes everything it applied.
    d.stop()
    assert cidr not in addresses(dhcp4_pair)
    assert default_routes(dhcp4_pair) == []
    assert not (tmp_path / "resolv.conf").exists()


def test_dnsmasq_acquire_with_rapid_commit_mtu_and_search(
    dhcp4_pair: Dhcp4Pair, dnsmasq: Dnsmasq, routerd_daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = start_client(routerd_daemon, dhcp4_pair, tmp_path, rapidCommit=True, routeMetric=50)
    res = d.wait_for_phase("Applied", timeout=15)
    cidr = assert_applied(dhcp4_pair, res, metric=50)
    obs = res["observed"]
    assert obs["mtu"] == 1400 and dhcp4_pair.client.link("wan0")["mtu"] == 1400
    assert obs["searchList"] == ["lab.test", "example.test"]
    assert (tmp_path / "resolv.conf").read_text().splitlines()[1:] == [
        "search lab.test example.test",
        "nameserver 192.0.2.53",
    ]
    sent = obs["counters"]["sentByType"]
    assert sent == {"DISCOVER": 1}, f"rapid commit: DISCOVER → ACK, no REQUEST ({sent})"
    ip = cidr.split("/")[0]
    assert ip in [x["address"] for x in dnsmasq.leases()]
    d.stop()
    assert dhcp4_pair.client.link("wan0")["mtu"] == 1500, "the original MTU is restored"


@pytest.mark.parametrize("ipv6", [True, False], ids=["ipv6-on", "ipv6-off"])
def test_mtu_576_never_takes_ipv6_off_the_wan(
    ipv6: bool, dhcp4_pair: Dhcp4Pair, routerd_daemon: DaemonFactory, tmp_path: Path
) -> None:
    # Some ISPs send option 26 = 576. Linux removes IPv6 (and the link-local
    # address DHCPv6 needs) from an interface below 1280, so with IPv6 on the
    # MTU stops at 1280, as systemd-networkd does.
    require_netns_prereqs(["dnsmasq"])
    client = dhcp4_pair.client
    if not ipv6:
        client.sysctl({"net.ipv6.conf.wan0.disable_ipv6": "1"})
    link_local = client.link_local("wan0")
    assert (link_local is not None) == ipv6
    server = Dnsmasq(
        dhcp4_pair.server,
        dhcp4_pair.server_if,
        tmp_path / "dnsmasq",
        dns_port=0,
        extra_args=("--dhcp-option=option:mtu,576",),
    ).start()
    try:
        d = start_client(routerd_daemon, dhcp4_pair, tmp_path)
        res = d.wait_for_phase("Applied", timeout=15)
        assert_applied(dhcp4_pair, res)
        obs = res["observed"]
        assert obs["mtu"] == 576, "observed.mtu is what the server sent"
        if ipv6:
            assert client.link("wan0")["mtu"] == 1280
            assert client.link_local("wan0") == link_local, "the link-local address stays"
        cond = conditions(res)["MtuApplied"]
        if ipv6:
            assert obs["applied"]["mtu"] == 1280 and obs["mtuClamped"] is True
            assert (cond["status"], cond["reason"]) == ("True", "ClampedForIPv6")
            assert "576" in cond["message"] and "1280" in cond["message"]
            (clamped,) = d.events(topic="routerd.dhcpv4.client.mtu.clamped")["events"]
            assert clamped["severity"] == "warning"
            assert (clamped["attributes"]["mtu"], clamped["attributes"]["appliedMtu"]) == (
                576,
                1280,
            )
        else:
            assert client.link("wan0")["mtu"] == 576, "no IPv6 on wan0: nothing to protect"
            assert obs["applied"]["mtu"] == 576 and obs["mtuClamped"] is False
            assert (cond["status"], cond["reason"]) == ("True", "Applied")
            assert d.events(topic="routerd.dhcpv4.client.mtu.clamped")["events"] == []
        d.stop()
        assert client.link("wan0")["mtu"] == 1500, "the original MTU is restored"
    finally:
        server.stop()


# -- timers: renew at T1, outage, expiry, recovery -------------------------------


def states_since(d: DaemonProcess, since: int) -> list[str]:
    events = d.events(since=since, topic="routerd.dhcpv4.client.state.changed")["events"]
    return [e["attributes"]["new"] for e in events]


def test_kea_renew_at_t1_then_outage_rebinding_expiry_and_recovery(
    dhcp4_pair: Dhcp4Pair, kea_factory: Any, routerd_daemon: DaemonFactory, tmp_path: Path
) -> None:
    kea: KeaDhcp4 = kea_factory(valid_lifetime=12, renew_timer=4, rebind_timer=8)
    d = start_client(routerd_daemon, dhcp4_pair, tmp_path)
    res = d.wait_for_phase("Applied", timeout=15)
    cidr = assert_applied(dhcp4_pair, res)
    ip = cidr.split("/")[0]
    assert (res["observed"]["t1"], res["observed"]["t2"]) == (4, 8)
    mark = kea.mark()

    # T1: a unicast REQUEST from the leased address, ACKed: lease.renewed.
    renewed = d.wait_for_event("routerd.dhcpv4.client.lease.renewed", timeout=10)
    assert renewed["attributes"]["address"] == cidr
    assert renewed["attributes"]["previousAddress"] == cidr
    line = kea.wait_for_log(
        re.compile(rf"DHCPREQUEST .* from {re.escape(ip)} to 192\.0\.2\.1"), since=mark, timeout=2
    )
    assert "DHCP4_PACKET_RECEIVED" in line
    assert cidr in addresses(dhcp4_pair)

    # Server gone: RENEWING at T1, REBINDING at T2, expiry removes everything.
    head = d.head()
    kea.stop()
    expired = d.wait_for_event("routerd.dhcpv4.client.lease.expired", since=head, timeout=20)
    assert expired["severity"] == "warning"
    assert expired["attributes"]["address"] == cidr
    res = d.wait_for_phase("Pending", timeout=5)
    seen = states_since(d, head)
    assert seen[:3] == ["RENEWING", "REBINDING", "INIT"], seen
    assert conditions(res)["LeaseAcquired"]["status"] == "False"
    assert conditions(res)["AddressApplied"]["status"] == "False"
    assert addresses(dhcp4_pair) == []
    assert default_routes(dhcp4_pair) == []
    requests = d.events(since=head, topic="routerd.dhcpv4.client.request.sent")["events"]
    assert {e["attributes"]["broadcast"] for e in requests} == {False, True}, (
        "RENEWING unicasts, REBINDING broadcasts"
    )

    # Server back: a new lease is acquired and applied.
    head = d.head()
    kea.start()
    d.wait_for_event("routerd.dhcpv4.client.lease.bound", since=head, timeout=20)
    res = d.wait_for_phase("Applied", timeout=5)
    assert_applied(dhcp4_pair, res)


def test_kea_nak_after_reservation_moves_the_client(
    dhcp4_pair: Dhcp4Pair, kea: KeaDhcp4, routerd_daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = start_client(routerd_daemon, dhcp4_pair, tmp_path)
    res = d.wait_for_phase("Applied", timeout=15)
    old = assert_applied(dhcp4_pair, res)
    mac = dhcp4_pair.client.link_mac(dhcp4_pair.client_if)
    kea.reconfigure(reservations={mac: "192.0.2.150"})
    head = d.head()
    resp = d.command("renew")
    assert resp.status == 200, resp.error_text()
    nak = d.wait_for_event("routerd.dhcpv4.client.lease.nak", since=head, timeout=10)
    assert nak["attributes"]["address"] == old
    assert nak["attributes"]["serverId"] == "192.0.2.1"
    bound = d.wait_for_event("routerd.dhcpv4.client.lease.bound", since=head, timeout=15)
    assert bound["attributes"]["address"] == "192.0.2.150/24"
    res = d.wait_for_phase("Applied", timeout=5)
    assert assert_applied(dhcp4_pair, res) == "192.0.2.150/24"
    assert old not in addresses(dhcp4_pair), "the NAKed address was removed"


# -- restart ---------------------------------------------------------------------


def test_sigkill_restart_init_reboot_keeps_the_address(
    dhcp4_pair: Dhcp4Pair, kea: KeaDhcp4, routerd_daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = start_client(routerd_daemon, dhcp4_pair, tmp_path)
    res = d.wait_for_phase("Applied", timeout=15)
    cidr = assert_applied(dhcp4_pair, res)
    monitor: ManagedProcess = dhcp4_pair.lab.spawn(
        dhcp4_pair.client,
        ["ip", "-o", "-4", "monitor", "address", "route"],
        tmp_path / "monitor.log",
    )
    # `ip monitor` prints nothing until something changes: prove it listens.
    for i in range(10, 60):
        dhcp4_pair.client.addr_add("lo", f"127.0.0.{i}/8")
        try:
            monitor.wait_for_log(f"127.0.0.{i}/", timeout=0.2)
            break
        except TimeoutError:
            continue
    else:
        pytest.fail(f"ip monitor never reported a change: {monitor.log_text()}")
    d.kill()
    assert cidr in addresses(dhcp4_pair)
    mark = kea.mark()
    head = d.head() if d.alive() else None
    assert head is None
    d.start()
    # Right after the restart, before the ACK is certain: the address is there.
    assert cidr in addresses(dhcp4_pair)
    bound = d.wait_for_event("routerd.dhcpv4.client.lease.bound", timeout=10)
    events = d.events(topic="routerd.dhcpv4.client.**")["events"]
    restart_at = max(
        int(e["cursor"]) for e in d.events(topic="routerd.daemon.lifecycle.started")["events"]
    )
    after = [e for e in events if int(e["cursor"]) > restart_at]
    news = [e["attributes"]["new"] for e in after if e["topic"].endswith("state.changed")]
    assert news[:3] == ["INIT-REBOOT", "REBOOTING", "BOUND"], news
    bound = next(e for e in after if e["topic"].endswith("lease.bound"))
    assert bound["attributes"]["previousAddress"] == cidr == bound["attributes"]["address"]
    res = d.wait_for_phase("Applied", timeout=5)
    assert assert_applied(dhcp4_pair, res) == cidr
    assert "DHCPDISCOVER" not in kea.log_text()[mark:], "INIT-REBOOT: no discovery"
    kea.wait_for_log("DHCPREQUEST", since=mark, timeout=1)
    monitor.stop()
    deleted = [ln for ln in monitor.log_text().splitlines() if ln.startswith("Deleted")]
    assert not [ln for ln in deleted if cidr.split("/")[0] in ln and "inet" in ln], deleted
    assert not [ln for ln in deleted if ln.startswith("Deleted default")], deleted


# -- commands and release ----------------------------------------------------------


def test_release_renew_and_rebind_commands(
    dhcp4_pair: Dhcp4Pair, kea: KeaDhcp4, routerd_daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = start_client(routerd_daemon, dhcp4_pair, tmp_path)
    res = d.wait_for_phase("Applied", timeout=15)
    cidr = assert_applied(dhcp4_pair, res)
    head = d.head()
    resp = d.command("rebind")
    assert resp.status == 200, resp.error_text()
    rebound = d.wait_for_event("routerd.dhcpv4.client.lease.rebound", since=head, timeout=10)
    assert rebound["attributes"]["address"] == cidr

    resp = d.command("release")
    assert resp.status == 200 and resp.json()["result"]["state"] == "STOPPED"
    d.wait_for_event("routerd.dhcpv4.client.lease.released", since=head, timeout=5)
    res = d.wait_for_phase("Pending", timeout=5)
    assert conditions(res)["LeaseAcquired"]["reason"] == "Released"
    assert addresses(dhcp4_pair) == [] and default_routes(dhcp4_pair) == []
    ip = cidr.split("/")[0]
    poll(
        lambda: ip not in [x["address"] for x in kea.leases(active_only=True)],
        5,
        "Kea to record the release",
    )
    for name in ("release", "rebind"):
        resp = d.command(name)
        assert resp.status == 409, (name, resp.status)
        assert "no lease" in resp.json()["description"]

    resp = d.command("renew")
    assert resp.status == 200 and resp.json()["message"] == "acquiring a lease"
    res = d.wait_for_phase("Applied", timeout=10)
    assert_applied(dhcp4_pair, res)


@pytest.mark.parametrize("server", ["kea", "dnsmasq"])
def test_release_on_stop_is_seen_by_the_server(
    server: str,
    dhcp4_pair: Dhcp4Pair,
    request: pytest.FixtureRequest,
    routerd_daemon: DaemonFactory,
    tmp_path: Path,
) -> None:
    srv = request.getfixturevalue(server if server == "kea" else "dnsmasq")
    d = start_client(routerd_daemon, dhcp4_pair, tmp_path, releaseOnStop=True)
    res = d.wait_for_phase("Applied", timeout=15)
    ip = assert_applied(dhcp4_pair, res, metric=123).split("/")[0]

    def active() -> list[str]:
        if isinstance(srv, KeaDhcp4):
            return [x["address"] for x in srv.leases(active_only=True)]
        return [x["address"] for x in srv.leases()]

    assert ip in active()
    mark = srv.mark()
    assert d.stop() == 0
    srv.wait_for_log("RELEASE", since=mark, timeout=5)
    poll(lambda: ip not in active(), 5, f"{server} to drop the released lease")
    assert addresses(dhcp4_pair) == []
    lines = (d.resource_state_dir / "events.jsonl").read_text()
    assert "routerd.dhcpv4.client.lease.released" in lines


# -- hostile network -----------------------------------------------------------------


def test_rogue_responder_does_not_disturb_the_lease(
    dhcp4_pair: Dhcp4Pair, kea: KeaDhcp4, routerd_daemon: DaemonFactory, tmp_path: Path
) -> None:
    mac = dhcp4_pair.client.link_mac(dhcp4_pair.client_if)
    rogue = dhcp4_pair.lab.spawn(
        dhcp4_pair.server,
        [sys.executable, "-u", str(ROGUE), dhcp4_pair.server_if, mac, "6"],
        tmp_path / "rogue.log",
    )
    rogue.wait_for_log("ready", timeout=10)
    d = start_client(routerd_daemon, dhcp4_pair, tmp_path)
    res = d.wait_for_phase("Applied", timeout=15)
    cidr = assert_applied(dhcp4_pair, res)
    assert not cidr.startswith("192.0.2.66/")
    head = d.head()
    assert d.command("renew").status == 200
    d.wait_for_event("routerd.dhcpv4.client.lease.renewed", since=head, timeout=10)
    assert rogue.wait(15) == 0
    sent = [ln for ln in rogue.log_text().splitlines() if ln.startswith("{")]
    assert sent, rogue.log_text()
    res = d.resource_status()
    assert res["phase"] == "Applied" and res["observed"]["address"] == cidr
    assert res["observed"]["serverId"] == "192.0.2.1"
    dropped = res["observed"]["counters"]["droppedByReason"]
    for reason in ("xid_mismatch", "chaddr_mismatch", "decode_error", "bad_frame"):
        assert dropped.get(reason, 0) >= 1, dropped
    assert d.get("/v1/healthz").status == 200
    assert d.status()["runtime"]["engine"]["callbackErrors"] == 0
    assert addresses(dhcp4_pair) == [cidr]


def test_hostile_server_mask_and_routers_are_not_installed(
    dhcp4_pair: Dhcp4Pair, routerd_daemon: DaemonFactory, tmp_path: Path
) -> None:
    # The only server on the link sends a subnet mask of 0.0.0.0 and routers
    # 0.0.0.0, 127.0.0.1, 224.0.0.1 before a usable one.
    mac = dhcp4_pair.client.link_mac(dhcp4_pair.client_if)
    hostile = dhcp4_pair.lab.spawn(
        dhcp4_pair.server,
        [sys.executable, "-u", str(ROGUE), "--serve", dhcp4_pair.server_if, mac, "30"],
        tmp_path / "hostile.log",
    )
    hostile.wait_for_log("ready", timeout=10)
    d = start_client(routerd_daemon, dhcp4_pair, tmp_path)
    res = d.wait_for_phase("Applied", timeout=15)
    hostile.wait_for_log("served", timeout=1)
    assert addresses(dhcp4_pair) == ["192.0.2.66/24"], "classful, never a /0"
    routes = [
        (r.get("dst"), r.get("gateway"), r["dev"], r.get("protocol"))
        for r in dhcp4_pair.client.routes()
    ]
    assert ("default", "192.0.2.1", "wan0", "dhcp") in routes
    assert [r for r in routes if r[0] == "default"] == [("default", "192.0.2.1", "wan0", "dhcp")]
    assert not [r for r in routes if "127." in str(r) or "224." in str(r)], routes
    obs = res["observed"]
    assert obs["address"] == "192.0.2.66/24" and obs["routers"] == ["192.0.2.1"]
    counters = obs["counters"]
    assert counters["rejected"] == 4
    assert counters["rejectedByOption"] == {"subnetMask": 1, "routers": 3}
    warnings = d.events(topic="routerd.dhcpv4.client.option.rejected")["events"]
    got = {e["attributes"]["optionName"]: e for e in warnings}
    assert set(got) == {"subnetMask", "routers"}
    assert all(e["severity"] == "warning" for e in warnings)
    assert got["routers"]["attributes"]["value"] == "0.0.0.0,127.0.0.1,224.0.0.1"
    assert got["routers"]["attributes"]["why"] == "unspecified,loopback,multicast"
    assert got["subnetMask"]["attributes"]["why"] == "zero_mask"
    assert got["routers"]["attributes"]["serverId"] == "192.0.2.99"
    d.stop()
    hostile.stop()


def test_kernel_drops_of_a_burst_are_counted(
    dhcp4_pair: Dhcp4Pair, routerd_daemon: DaemonFactory, tmp_path: Path
) -> None:
    # The daemon cannot read (SIGSTOP) while a burst arrives: its packet
    # socket's buffer fills and the kernel drops the rest. Every frame must
    # show up, read and dropped as undecodable, or in kernelDrops.
    d = start_client(routerd_daemon, dhcp4_pair, tmp_path)
    res = d.wait_for_phase("Pending", timeout=10)
    assert res["observed"]["linkReady"] and res["observed"]["counters"]["kernelDrops"] == 0
    mac = dhcp4_pair.client.link_mac(dhcp4_pair.client_if)
    burst = 5000
    os.kill(d.pid, signal.SIGSTOP)
    try:
        out = dhcp4_pair.server.run([sys.executable, "-c", FLOOD, "srv0", mac, str(burst)])
    finally:
        os.kill(d.pid, signal.SIGCONT)
    assert out.stdout.split() == ["sent", str(burst)]

    def accounted() -> dict[str, int] | None:
        counters = d.resource_status()["observed"]["counters"]
        read = counters["droppedByReason"].get("decode_error", 0)
        drops = counters["kernelDrops"]
        return {"read": read, "kernelDrops": drops} if read + drops >= burst else None

    seen = poll(accounted, 15, f"{burst} frames read or counted as kernel drops")
    assert seen["kernelDrops"] > 0 and seen["read"] + seen["kernelDrops"] == burst, seen
    print(f"burst of {burst}: {seen['read']} read, {seen['kernelDrops']} dropped by the kernel")
    assert d.get("/v1/healthz").status == 200


# -- the link --------------------------------------------------------------------------


def test_link_down_and_up_keeps_then_reconfirms_the_lease(
    dhcp4_pair: Dhcp4Pair, kea: KeaDhcp4, routerd_daemon: DaemonFactory, tmp_path: Path
) -> None:
    d = start_client(routerd_daemon, dhcp4_pair, tmp_path)
    res = d.wait_for_phase("Applied", timeout=15)
    cidr = assert_applied(dhcp4_pair, res)
    head = d.head()
    dhcp4_pair.server.link_set(dhcp4_pair.server_if, False)  # carrier loss on wan0
    down = d.wait_for_event("routerd.dhcpv4.client.link.down", since=head, timeout=5)
    assert down["severity"] == "warning"
    res = d.wait_for_phase("Pending", timeout=5)
    assert conditions(res)["LinkReady"]["status"] == "False"
    assert conditions(res)["LinkReady"]["reason"] == "NoCarrier"
    assert res["observed"]["state"] == "INIT-REBOOT"
    assert cidr in addresses(dhcp4_pair), "the lease is kept while the link is down"

    head = d.head()
    dhcp4_pair.server.link_set(dhcp4_pair.server_if, True)
    d.wait_for_event("routerd.dhcpv4.client.link.up", since=head, timeout=5)
    bound = d.wait_for_event("routerd.dhcpv4.client.lease.bound", since=head, timeout=15)
    assert bound["attributes"]["previousAddress"] == cidr == bound["attributes"]["address"]
    assert "REBOOTING" in states_since(d, head)
    res = d.wait_for_phase("Applied", timeout=5)
    assert assert_applied(dhcp4_pair, res) == cidr


def test_missing_interface_waits_then_acquires(
    dhcp4_pair: Dhcp4Pair, kea: KeaDhcp4, routerd_daemon: DaemonFactory, tmp_path: Path
) -> None:
    client = dhcp4_pair.client
    client.link_set("wan0", False)
    client.ip("link", "set", "dev", "wan0", "name", "hidden0")
    d = start_client(routerd_daemon, dhcp4_pair, tmp_path)
    res = d.wait_for_phase("Pending", timeout=5)
    cond = conditions(res)["LinkReady"]
    assert (cond["status"], cond["reason"]) == ("False", "InterfaceMissing")
    assert d.get("/v1/healthz").status == 200
    assert d.command("renew").status == 409
    client.ip("link", "set", "dev", "hidden0", "name", "wan0")
    client.link_set("wan0", True)
    res = d.wait_for_phase("Applied", timeout=15)
    assert_applied(dhcp4_pair, res)


def test_decline_on_conflict_after_arp_probe(
    dhcp4_pair: Dhcp4Pair, kea: KeaDhcp4, routerd_daemon: DaemonFactory, tmp_path: Path
) -> None:
    # Another host already uses the first pool address Kea hands out.
    dhcp4_pair.server.addr_add(dhcp4_pair.server_if, "192.0.2.100/24")
    d = start_client(routerd_daemon, dhcp4_pair, tmp_path, declineOnConflict=True)
    conflict = d.wait_for_event("routerd.dhcpv4.client.address.conflict", timeout=15)
    assert conflict["attributes"]["address"] == "192.0.2.100"
    assert conflict["attributes"]["conflictingMac"] == dhcp4_pair.server.link_mac("srv0")
    d.wait_for_event("routerd.dhcpv4.client.lease.declined", timeout=2)
    assert "192.0.2.100/24" not in addresses(dhcp4_pair), "never applied"
    kea.wait_for_log("DHCPDECLINE", timeout=5)
    res = d.wait_for_phase("Applied", timeout=30)
    cidr = assert_applied(dhcp4_pair, res)
    assert cidr != "192.0.2.100/24"
