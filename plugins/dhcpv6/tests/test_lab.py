"""The dhcpv6-client daemon against Kea DHCPv6 in network namespaces.

Topology (``dhcp6_pair``): client namespace ``wan0`` ↔ ``srv0`` in the server
namespace (Kea, 2001:db8:1::1/64), and client ``lan0`` ↔ ``eth0`` in a LAN
host namespace. The daemon runs in the client namespace. Kea delegates /60s
from 2001:db8:100::/48 with preferred 8 s, valid 12 s, T1 3 s, T2 5 s
(conftest.py). Every wait is on a state, an event or a log line.
"""

from __future__ import annotations

from collections.abc import Callable
import ipaddress
import json
import os
import re
import signal
import sys
from typing import Any

import pytest
from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import poll
from routerd_dhcpv6.codec import ClientId
from routerd_dhcpv6.codec import IaPd
from routerd_dhcpv6.codec import IaPrefix
from routerd_dhcpv6.codec import Message
from routerd_dhcpv6.codec import ServerId
from routerd_dhcpv6.codec import encode
from routerd_dhcpv6.constants import MsgType
from routerd_dhcpv6.duid import duid_ll
from routerd_dhcpv6.duid import iaid_from_name
from routerd_dhcpv6.duid import parse_duid

pytestmark = pytest.mark.netns

Conditions = Callable[[dict[str, Any]], dict[str, dict[str, Any]]]
#: conftest.PdLab (conftest modules are not importable under --import-mode=importlib).
PdLab = Any

# An ICMPv6 echo from inside a namespace: prints the reply type (129 echo
# reply, 1 destination unreachable) or "timeout". No ping binary needed.
PING = r"""
import os, socket, struct, sys, time
dst = sys.argv[1]
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
s.settimeout(2)
ident = os.getpid() & 0xFFFF
s.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, 1) + b"routerd", (dst, 0))
end = time.monotonic() + 2
while time.monotonic() < end:
    try:
        data, addr = s.recvfrom(2048)
    except TimeoutError:
        break
    if data[0] == 129 and struct.unpack("!H", data[4:6])[0] == ident:
        print(129, addr[0]); sys.exit(0)
    if data[0] == 1:
        print(1, addr[0]); sys.exit(0)
print("timeout")
"""

# Send datagrams to the client's port 546 from given source ports.
ROGUE = r"""
import json, socket, sys
spec = json.load(sys.stdin)
index = socket.if_nametoindex(spec["ifname"])
for item in spec["datagrams"]:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((spec["source"], item["sport"]))
    s.sendto(bytes.fromhex(item["hex"]), (spec["client"], 546, 0, index))
    s.close()
print("sent", len(spec["datagrams"]))
"""


# A burst of one-byte (undecodable) datagrams from port 547 to the client's
# port 546, from one socket: ``FLOOD SOURCE CLIENT IFNAME COUNT``.
FLOOD = r"""
import socket, sys
source, client, ifname, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((source, 547))
dest = (client, 546, 0, socket.if_nametoindex(ifname))
for _ in range(count):
    s.sendto(b"\x07", dest)
print("sent", count)
"""


def lan_addresses(lab: PdLab) -> list[str]:
    return [
        f"{a['local']}/{a['prefixlen']}"
        for a in lab.pair.client.addresses(lab.pair.client_lan_if, 6)
        if a.get("scope") == "global"
    ]


def unreachable_routes(lab: PdLab) -> list[str]:
    return [r["dst"] for r in lab.pair.client.routes(6) if r.get("type") == "unreachable"]


def held_prefix(res: dict[str, Any]) -> str:
    prefixes = res["observed"]["prefixes"]
    assert len(prefixes) == 1, prefixes
    return str(prefixes[0]["prefix"])


def events_since(d: DaemonProcess, head: int, topic: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = d.events(since=head, topic=topic)["events"]
    return events


def sent_types(d: DaemonProcess, head: int) -> list[str]:
    return [
        e["attributes"]["messageType"]
        for e in events_since(d, head, "routerd.dhcpv6.client.message.sent")
    ]


def test_acquire_apply_renew_and_serve_the_lan(pd_lab: PdLab, conditions: Conditions) -> None:
    lab, pair = pd_lab, pd_lab.pair
    d = lab.daemon()
    res = d.wait_for_phase("Applied", timeout=10)
    obs = res["observed"]
    prefix = held_prefix(res)
    net = ipaddress.IPv6Network(prefix)
    assert net.prefixlen == 60 and net.subnet_of(ipaddress.IPv6Network("2001:db8:100::/48"))
    subnet = list(net.subnets(new_prefix=64))[1]
    address = f"{subnet.network_address + 1}"
    assert obs["assigned"] == [
        {"interface": "lan0", "prefix": prefix, "subnet": str(subnet), "address": address}
    ]
    cond = conditions(res)
    assert cond["PrefixDelegated"]["status"] == "True"
    assert (
        cond["PrefixAssigned"]["status"] == "True" and address in cond["PrefixAssigned"]["message"]
    )
    assert cond["LinkReady"]["status"] == "True"
    assert obs["state"] == "BOUND" and obs["t1"] == 3 and obs["t2"] == 5
    assert obs["prefixes"][0]["validLifetime"] == 12
    assert obs["prefixes"][0]["preferredLifetime"] == 8
    assert obs["prefixes"][0]["validUntil"].endswith("Z")
    assert obs["serverDuid"] == lab.kea.server_duid.replace(":", "")
    mac = pair.client.link_mac("wan0")
    assert obs["clientDuid"] == duid_ll(mac).hex() and obs["duidType"] == "ll"
    assert obs["iaid"] == iaid_from_name("wan0")
    assert obs["dns"] == ["2001:db8:1::1"] and obs["domains"] == ["lab.example"]
    assert obs["counters"]["sent"] == {"solicit": 1, "request": 1}
    # Kea's lease is ours: our DUID and IAID.
    (lease,) = [x for x in lab.kea.leases(active_only=True) if x["lease_type"] == "IA_PD"]
    assert f"{lease['address']}/{lease['prefix_len']}" == prefix
    assert lease["duid"] == duid_ll(mac).hex(":") and lease["iaid"] == obs["iaid"]

    # Host state: the address with the delegated lifetimes, the unreachable route.
    (info,) = [a for a in pair.client.addresses("lan0", 6) if a["local"] == address]
    assert info["prefixlen"] == 64 and 0 < info["valid_life_time"] <= 12
    assert 0 < info["preferred_life_time"] <= 8
    assert unreachable_routes(lab) == [prefix]

    # The LAN host reaches the router's address, and traffic to the unassigned
    # rest of the prefix is answered with "unreachable" by the router.
    pair.client.sysctl({"net.ipv6.conf.all.forwarding": "1"})
    pair.lan.addr_add("eth0", f"{subnet.network_address + 2}/64", "nodad")
    pair.lan.ip("-6", "route", "add", "default", "via", address)
    reply = pair.lan.run([sys.executable, "-c", PING, address]).stdout.split()
    assert reply == ["129", address]
    other = str(list(net.subnets(new_prefix=64))[5].network_address + 1)
    reply = pair.lan.run([sys.executable, "-c", PING, other]).stdout.split()
    assert reply == ["1", address], "the unreachable route answers for the unassigned subnets"

    # Renew at T1 (3 s), seen by both sides.
    mark = lab.kea.mark()
    head = d.head()
    event = d.wait_for_event("routerd.dhcpv6.client.prefix.renewed", since=head, timeout=8)
    assert event["attributes"]["prefix"] == prefix and event["severity"] == "info"
    lab.kea.wait_for_log("DHCP6_PD_LEASE_RENEW", since=mark, timeout=5)
    assert "RENEW (type 5)" in lab.kea.log_text()[mark:]
    assert sent_types(d, head)[:1] == ["RENEW"]

    # A downstream link flap flushes the address; the daemon puts it back.
    head = d.head()
    pair.client.link_set("lan0", False)
    poll(lambda: address not in str(lan_addresses(lab)), 5, "address flushed by link down")
    pair.client.link_set("lan0", True)
    d.wait_for_event("routerd.dhcpv6.client.downstream.assigned", since=head, timeout=5)
    poll(lambda: f"{address}/64" in lan_addresses(lab), 5, "address re-applied after link up")
    assert d.resource_status()["phase"] == "Applied"

    # Identity and binding are on disk: the DUID in its own file.
    duid_file = json.loads((d.resource_state_dir / "duid.json").read_text())
    assert duid_file["duid"] == obs["clientDuid"] and duid_file["type"] == "ll"
    state = json.loads((d.resource_state_dir / "state.json").read_text())
    assert [p["prefix"] for p in state["binding"]["prefixes"]] == [prefix]
    assert state["binding"]["prefixes"][0]["validUntil"] > 1.7e9, "wall-clock times"


def test_server_gone_rebind_expiry_then_back(pd_lab: PdLab, conditions: Conditions) -> None:
    lab = pd_lab
    d = lab.daemon()
    prefix = held_prefix(d.wait_for_phase("Applied", timeout=10))
    head = d.head()
    lab.kea.stop()
    # T1: Renew unanswered until T2, then Rebind until the valid lifetime ends.
    expired = d.wait_for_event("routerd.dhcpv6.client.prefix.expired", since=head, timeout=16)
    assert expired["attributes"]["prefix"] == prefix
    assert expired["attributes"]["cause"] == "ValidLifetime"
    assert expired["severity"] == "warning"
    types = sent_types(d, head)
    assert types[:2] == ["RENEW", "REBIND"], types
    res = d.wait_for_phase("Pending", timeout=3)
    cond = conditions(res)
    assert cond["PrefixDelegated"]["status"] == "False"
    assert cond["PrefixAssigned"]["status"] == "False"
    assert res["observed"]["prefixes"] == [] and res["observed"]["assigned"] == []
    poll(lambda: lan_addresses(lab) == [], 3, "lan0 address removed")
    assert unreachable_routes(lab) == []
    removed = events_since(d, head, "routerd.dhcpv6.client.downstream.removed")
    assert [e["attributes"]["interface"] for e in removed] == ["lan0"]
    phases = [
        e["attributes"]["phase"] for e in events_since(d, head, "routerd.resource.phase.changed")
    ]
    assert phases == ["Pending"]

    head = d.head()
    mark = lab.kea.mark()
    lab.kea.start()
    res = d.wait_for_phase("Applied", timeout=12)
    assert "SOLICIT (type 1)" in lab.kea.log_text()[mark:]
    bound = events_since(d, head, "routerd.dhcpv6.client.prefix.bound")
    assert len(bound) == 1
    assert bound[0]["attributes"]["prefix"] == held_prefix(res)
    phases = [
        e["attributes"]["phase"] for e in events_since(d, head, "routerd.resource.phase.changed")
    ]
    assert phases == ["Bound", "Applied"]
    assert len(lan_addresses(lab)) == 1


def test_carrier_loss_and_return_rebinds_the_same_prefix(
    pd_lab: PdLab, conditions: Conditions
) -> None:
    lab, pair = pd_lab, pd_lab.pair
    d = lab.daemon()
    prefix = held_prefix(d.wait_for_phase("Applied", timeout=10))
    address = lan_addresses(lab)
    head = d.head()
    mark = lab.kea.mark()
    pair.server.link_set("srv0", False)  # wan0 loses carrier
    down = d.wait_for_event("routerd.dhcpv6.client.link.down", since=head, timeout=5)
    assert down["attributes"]["prefixHeld"] is True
    res = d.resource_status()
    assert conditions(res)["LinkReady"]["status"] == "False"
    assert conditions(res)["LinkReady"]["reason"] == "NoCarrier"
    assert res["observed"]["state"] == "LINK_DOWN"
    assert res["phase"] == "Applied", "a valid prefix stays applied while the link is down"
    assert lan_addresses(lab) == address
    assert d.command("renew").status == 409, "nothing can be sent without a link"

    pair.server.link_set("srv0", True)
    up = d.wait_for_event("routerd.dhcpv6.client.link.up", since=head, timeout=5)
    assert up["attributes"]["prefixHeld"] is True
    rebound = d.wait_for_event("routerd.dhcpv6.client.prefix.rebound", since=head, timeout=8)
    assert rebound["attributes"]["prefix"] == prefix
    lab.kea.wait_for_log("REBIND (type 6)", since=mark, timeout=2)
    kea_log = lab.kea.log_text()[mark:]
    assert "SOLICIT (type 1)" not in kea_log
    assert "SOLICIT" not in sent_types(d, head)
    assert "REBIND" in sent_types(d, head)
    res = d.wait_for_phase("Applied", timeout=2)
    assert held_prefix(res) == prefix
    assert conditions(res)["LinkReady"]["status"] == "True"
    assert res["observed"]["counters"]["linkChanges"] == 2
    assert lan_addresses(lab) == address


def test_renumbering_withdraws_the_old_prefix_and_binds_the_new(pd_lab: PdLab) -> None:
    # Kea no longer serves the held prefix: its Reply to the Renew gives it
    # lifetimes 0 and delegates one from the new pool (RFC 9915 §18.3.4).
    lab = pd_lab
    d = lab.daemon()
    old = held_prefix(d.wait_for_phase("Applied", timeout=10))
    head = d.head()
    lab.kea.reconfigure(pd_pool=("2001:db8:200::", 48, 60))
    assert d.command("renew").status == 200
    changed = d.wait_for_event("routerd.dhcpv6.client.prefix.changed", since=head, timeout=8)
    new = changed["attributes"]["prefix"]
    assert ipaddress.IPv6Network(new).subnet_of(ipaddress.IPv6Network("2001:db8:200::/48"))
    assert changed["attributes"]["oldPrefix"] == old
    assert changed["message"] == f"prefix changed from {old} to {new}"
    (expired,) = events_since(d, head, "routerd.dhcpv6.client.prefix.expired")
    assert (expired["attributes"]["prefix"], expired["attributes"]["cause"]) == (old, "Withdrawn")
    (bound,) = events_since(d, head, "routerd.dhcpv6.client.prefix.bound")
    assert bound["attributes"]["prefix"] == new
    assert events_since(d, head, "routerd.dhcpv6.client.prefix.renewed") == []
    # The status is published at the end of the step that emitted the events.
    poll(
        lambda: [p["prefix"] for p in d.resource_status()["observed"]["prefixes"]] == [new],
        2,
        f"status holding only {new}",
    )
    d.wait_for_phase("Applied", timeout=2)
    subnet = list(ipaddress.IPv6Network(new).subnets(new_prefix=64))[1]
    assert lan_addresses(lab) == [f"{subnet.network_address + 1}/64"]
    assert unreachable_routes(lab) == [new]


@pytest.mark.parametrize("how", ["mtu", "sysctl"])
def test_wan_without_link_local_leaves_applied_and_recovers(
    how: str, pd_lab: PdLab, conditions: Conditions
) -> None:
    # An MTU below 1280 (a DHCPv4 server's option 26 applied by another
    # client) or disable_ipv6 takes IPv6 and the link-local address off the
    # WAN: nothing can be sent (ENETUNREACH) while the carrier stays up.
    lab, pair = pd_lab, pd_lab.pair
    d = lab.daemon()
    prefix = held_prefix(d.wait_for_phase("Applied", timeout=10))
    address = lan_addresses(lab)
    head = d.head()
    if how == "mtu":
        pair.client.ip("link", "set", "dev", "wan0", "mtu", "576")
    else:
        pair.client.sysctl({"net.ipv6.conf.wan0.disable_ipv6": "1"})
    assert pair.client.link_local("wan0") is None
    res = d.wait_for_phase("Error", timeout=5)
    (error,) = events_since(d, head, "routerd.resource.phase.changed")
    assert (error["attributes"]["previousPhase"], error["reason"]) == (
        "Applied",
        "NoLinkLocal",
    )
    cond = conditions(res)
    assert (cond["LinkLocalAvailable"]["status"], cond["LinkLocalAvailable"]["reason"]) == (
        "False",
        "IPv6Disabled",
    )
    assert ("576" in cond["LinkLocalAvailable"]["message"]) == (how == "mtu")
    assert cond["LinkReady"]["status"] == "True", "the carrier is still there"
    # The phase can be published a moment before the step's observed fields.
    res = poll(
        lambda: r if (r := d.resource_status())["observed"]["state"] == "LINK_DOWN" else None,
        5,
        "observed state LINK_DOWN",
    )
    assert res["observed"]["linkLocal"] is None
    assert held_prefix(res) == prefix and lan_addresses(lab) == address, "kept until valid ends"
    (lost,) = events_since(d, head, "routerd.dhcpv6.client.linklocal.lost")
    assert lost["severity"] == "warning" and lost["attributes"]["cause"] == "IPv6Disabled"
    assert lost["attributes"]["prefixHeld"] is True
    resp = d.command("renew")
    assert resp.status == 409 and "IPv6" in resp.json()["description"]
    sent_while_down = len(sent_types(d, head))

    # IPv6 back: the link-local returns and the held prefix is rebound.
    head2 = d.head()
    if how == "mtu":
        pair.client.ip("link", "set", "dev", "wan0", "mtu", "1500")
    else:
        pair.client.sysctl({"net.ipv6.conf.wan0.disable_ipv6": "0"})
    back = d.wait_for_event("routerd.dhcpv6.client.linklocal.available", since=head2, timeout=5)
    assert back["attributes"]["address"] == pair.client.wait_for_link_local("wan0")
    rebound = d.wait_for_event("routerd.dhcpv6.client.prefix.rebound", since=head2, timeout=8)
    assert rebound["attributes"]["prefix"] == prefix
    res = d.wait_for_phase("Applied", timeout=2)
    ll_cond = conditions(res)["LinkLocalAvailable"]
    assert (ll_cond["status"], ll_cond["reason"]) == ("True", "Available")
    assert back["attributes"]["address"] in ll_cond["message"]
    assert sent_while_down == 0, "nothing was sent without a source address"
    assert res["observed"]["counters"]["sendErrors"] == {}


def test_start_without_link_local_is_pending_until_ipv6_is_on(
    pd_lab: PdLab, conditions: Conditions
) -> None:
    lab, pair = pd_lab, pd_lab.pair
    pair.client.sysctl({"net.ipv6.conf.wan0.disable_ipv6": "1"})
    d = lab.daemon()
    lost = d.wait_for_event("routerd.dhcpv6.client.linklocal.lost", timeout=5)
    assert lost["attributes"]["prefixHeld"] is False
    res = d.wait_for_phase("Pending", timeout=1)
    assert res["observed"]["counters"]["sendErrors"] == {}, "it waits instead of failing"
    assert res["observed"]["counters"]["sent"] == {} and res["observed"]["state"] == "LINK_DOWN"
    cond = conditions(res)["LinkLocalAvailable"]
    assert (cond["status"], cond["reason"]) == ("False", "IPv6Disabled")
    pair.client.sysctl({"net.ipv6.conf.wan0.disable_ipv6": "0"})
    res = d.wait_for_phase("Applied", timeout=10)
    assert conditions(res)["LinkLocalAvailable"]["status"] == "True"
    assert res["observed"]["counters"]["sendErrors"] == {}


def test_sigkill_and_restart_keeps_the_prefix_without_solicit(pd_lab: PdLab) -> None:
    lab, pair = pd_lab, pd_lab.pair
    d = lab.daemon()
    res = d.wait_for_phase("Applied", timeout=10)
    prefix, duid = held_prefix(res), res["observed"]["clientDuid"]
    (address,) = lan_addresses(lab)
    monitor = lab.pair.lab.spawn(
        pair.client, ["ip", "-6", "monitor", "address"], lab.tmp_path / "monitor.log"
    )
    d.kill()
    mark = lab.kea.mark()
    d.start()
    head = 0
    rebound = d.wait_for_event("routerd.dhcpv6.client.prefix.rebound", since=head, timeout=8)
    assert rebound["attributes"]["prefix"] == prefix
    lab.kea.wait_for_log("REBIND (type 6)", since=mark, timeout=2)
    assert "SOLICIT (type 1)" not in lab.kea.log_text()[mark:]
    assert "REQUEST (type 3)" not in lab.kea.log_text()[mark:]
    res = d.wait_for_phase("Applied", timeout=2)
    assert held_prefix(res) == prefix and res["observed"]["clientDuid"] == duid
    assert lan_addresses(lab) == [address]
    # The address was refreshed in place, never deleted.
    monitor.stop()
    assert not re.search(rf"Deleted.*{re.escape(address.split('/')[0])}", monitor.log_text())


def test_torn_state_file_keeps_the_duid(pd_lab: PdLab) -> None:
    lab = pd_lab
    d = lab.daemon(duid={"type": "llt"})
    res = d.wait_for_phase("Applied", timeout=10)
    duid = res["observed"]["clientDuid"]
    assert duid.startswith("00010001") and res["observed"]["duidType"] == "llt"
    created = d.events(topic="routerd.dhcpv6.client.duid.created")["events"]
    assert [e["attributes"]["duid"] for e in created] == [duid]
    assert d.stop() == 0
    (d.resource_state_dir / "state.json").write_text('{"version": 1, "binding": {"pref')
    d.start()
    res = d.wait_for_phase("Applied", timeout=10)
    # A DUID-LLT carries its creation time: regenerated, it would differ.
    assert res["observed"]["clientDuid"] == duid
    assert (d.resource_state_dir / "state.json.corrupt").exists()
    assert d.status()["runtime"]["stateFile"]["corruptFiles"] == 1
    created = d.events(topic="routerd.dhcpv6.client.duid.created")["events"]
    assert len(created) == 1, "the DUID was made once"


def test_release_and_renew_commands_then_release_on_stop(pd_lab: PdLab) -> None:
    lab = pd_lab
    d = lab.daemon()
    prefix = held_prefix(d.wait_for_phase("Applied", timeout=10))
    head = d.head()
    resp = d.command("release")
    assert resp.status == 200, resp.error_text()
    released = d.wait_for_event("routerd.dhcpv6.client.prefix.released", since=head, timeout=3)
    assert released["attributes"]["prefix"] == prefix
    res = d.wait_for_phase("Pending", timeout=3)
    assert res["observed"]["state"] in ("RELEASE", "INIT")
    assert lan_addresses(lab) == [] and unreachable_routes(lab) == []
    lab.kea.wait_for_log("DHCP6_RELEASE_PD", timeout=3)
    assert d.command("release").status == 409, "nothing left to release"
    assert d.command("rebind").status == 409

    resp = d.command("renew")  # idle after a release: solicit again
    assert resp.status == 200, resp.error_text()
    res = d.wait_for_phase("Applied", timeout=8)
    prefix = held_prefix(res)
    mark = lab.kea.mark()
    assert d.stop() == 0
    lab.kea.wait_for_log("DHCP6_RELEASE_PD", since=mark, timeout=3)
    leases = [
        x
        for x in lab.kea.leases()
        if x["lease_type"] == "IA_PD" and f"{x['address']}/{x['prefix_len']}" == prefix
    ]
    # Kea 2.2's memfile appends a row with lifetimes 0 for a released lease.
    assert all(x["valid_lifetime"] == 0 or x["state"] != 0 for x in leases), leases
    assert not lab.kea.leases(active_only=True)
    assert lan_addresses(lab) == [] and unreachable_routes(lab) == []
    state = json.loads((d.resource_state_dir / "state.json").read_text())
    assert state["binding"] is None and state["applied"] == []


def test_keep_on_stop_leaves_the_prefix_and_does_not_release(pd_lab: PdLab) -> None:
    lab = pd_lab
    d = lab.daemon(keepOnStop=True)
    prefix = held_prefix(d.wait_for_phase("Applied", timeout=10))
    mark = lab.kea.mark()
    assert d.stop() == 0
    assert "RELEASE" not in lab.kea.log_text()[mark:]
    assert [f"{x['address']}/{x['prefix_len']}" for x in lab.kea.leases(active_only=True)] == [
        prefix
    ]
    assert len(lan_addresses(lab)) == 1 and unreachable_routes(lab) == [prefix]


def test_rogue_replies_do_not_disturb_the_binding(pd_lab: PdLab) -> None:
    lab, pair = pd_lab, pd_lab.pair
    d = lab.daemon()
    res = d.wait_for_phase("Applied", timeout=10)
    prefix = held_prefix(res)
    client_duid = bytes.fromhex(res["observed"]["clientDuid"])
    iaid = res["observed"]["iaid"]
    # Kea hears nothing now: the client stays in RENEW with a known xid.
    pair.server.nft_block(proto="udp", dport=547)
    head = d.head()
    assert d.command("renew").status == 200
    sent = d.wait_for_event("routerd.dhcpv6.client.message.sent", since=head, timeout=3)
    assert sent["attributes"]["messageType"] == "RENEW"
    xid = int(sent["attributes"]["xid"], 16)

    evil = IaPd(iaid, 100, 200, (IaPrefix(300, 600, "2001:db8:dead::/48"),))
    server = ServerId(parse_duid(bytes.fromhex("000300010200005e0001")))

    def reply(tid: int, cid: bytes) -> str:
        msg = Message(MsgType.REPLY, tid, (ClientId(parse_duid(cid)), server, evil))
        return encode(msg).hex()

    other_client = bytes.fromhex("00030001020000000bad")
    datagrams = [
        {"sport": 547, "hex": "07"},  # truncated header
        {"sport": 547, "hex": "07abcdef0001ffff"},  # option overruns the message
        {"sport": 547, "hex": reply(xid ^ 0x1, client_duid)},  # wrong transaction id
        {"sport": 547, "hex": reply(xid, other_client)},  # wrong client id
        {"sport": 5470, "hex": reply(xid, client_duid)},  # not from port 547
    ]
    rogue_source = "2001:db8:1::99"  # an address Kea did not bind at start
    pair.server.addr_add("srv0", f"{rogue_source}/64", "nodad")
    client_ll = pair.client.link_local("wan0")
    spec = {"ifname": "srv0", "source": rogue_source, "client": client_ll, "datagrams": datagrams}
    out = pair.server.run([sys.executable, "-c", ROGUE], input=json.dumps(spec))
    assert out.stdout.split() == ["sent", "5"]

    def dropped() -> dict[str, int]:
        counts: dict[str, int] = d.resource_status()["observed"]["counters"]["dropped"]
        return counts

    want = {"malformed": 2, "xid_mismatch": 1, "client_id_mismatch": 1, "bad_source_port": 1}
    poll(lambda: all(dropped().get(k, 0) >= n for k, n in want.items()), 5, f"drops {want}")
    res = d.resource_status()
    assert res["phase"] == "Applied" and held_prefix(res) == prefix
    assert res["observed"]["state"] == "RENEW"
    assert "dead" not in str(lan_addresses(lab)) and "dead" not in str(unreachable_routes(lab))
    assert d.get("/v1/healthz").status == 200

    # Kea back: the Renew (or the Rebind at T2) completes with the same prefix.
    pair.server.nft_unblock()
    done = d.wait_for_event("routerd.dhcpv6.client.prefix.*", since=head, timeout=10)
    assert done["topic"] in (
        "routerd.dhcpv6.client.prefix.renewed",
        "routerd.dhcpv6.client.prefix.rebound",
    )
    res = d.wait_for_phase("Applied", timeout=2)
    assert held_prefix(res) == prefix


def test_kernel_drops_of_a_burst_are_counted(pd_lab: PdLab) -> None:
    # The daemon cannot read (SIGSTOP) while a burst arrives: its socket's
    # buffer fills and the kernel drops the rest. Every datagram must show
    # up, read and dropped as malformed, or in kernelDrops.
    lab, pair = pd_lab, pd_lab.pair
    d = lab.daemon()
    res = d.wait_for_phase("Applied", timeout=10)
    assert res["observed"]["counters"]["kernelDrops"] == 0
    source = "2001:db8:1::99"
    pair.server.addr_add("srv0", f"{source}/64", "nodad")
    client_ll = pair.client.link_local("wan0")
    assert client_ll is not None
    burst = 5000
    os.kill(d.pid, signal.SIGSTOP)
    try:
        out = pair.server.run([sys.executable, "-c", FLOOD, source, client_ll, "srv0", str(burst)])
    finally:
        os.kill(d.pid, signal.SIGCONT)
    assert out.stdout.split() == ["sent", str(burst)]

    def accounted() -> dict[str, int] | None:
        counters = d.resource_status()["observed"]["counters"]
        read = counters["dropped"].get("malformed", 0)
        drops = counters["kernelDrops"]
        return {"read": read, "kernelDrops": drops} if read + drops >= burst else None

    seen = poll(accounted, 15, f"{burst} datagrams read or counted as kernel drops")
    assert seen["kernelDrops"] > 0 and seen["read"] + seen["kernelDrops"] == burst, seen
    print(f"burst of {burst}: {seen['read']} read, {seen['kernelDrops']} dropped by the kernel")
    res = d.wait_for_phase("Applied", timeout=2)
    assert d.get("/v1/healthz").status == 200


def test_missing_downstream_is_an_error_until_it_appears(
    pd_lab: PdLab, conditions: Conditions
) -> None:
    lab, pair = pd_lab, pd_lab.pair
    d = lab.daemon(
        downstream=[
            {"interface": "lan0", "subnetId": 1},
            {"interface": "lan9", "subnetId": 2, "addressSuffix": "::53"},
        ]
    )
    res = d.wait_for_phase("Error", timeout=10)
    cond = conditions(res)["PrefixAssigned"]
    assert cond["status"] == "False" and cond["reason"] == "InterfaceMissing"
    assert "lan9" in cond["message"]
    assert conditions(res)["PrefixDelegated"]["status"] == "True"
    assert "lan9" in res["observed"]["lastError"]
    assert len(lan_addresses(lab)) == 1, "the other downstream is served"
    failed = d.wait_for_event("routerd.dhcpv6.client.downstream.failed", since=0, timeout=2)
    assert failed["severity"] == "error"

    pair.lab.veth(pair.client, "lan9", pair.lan, "eth9")
    subnets = list(ipaddress.IPv6Network(held_prefix(res)).subnets(new_prefix=64))
    want = f"{subnets[2].network_address + 0x53}/64"

    def lan9() -> list[str]:
        return [
            f"{a['local']}/{a['prefixlen']}"
            for a in pair.client.addresses("lan9", 6)
            if a.get("scope") == "global"
        ]

    poll(lambda: lan9() == [want], 5, f"{want} on lan9")
    res = d.wait_for_phase("Applied", timeout=2)
    assert conditions(res)["PrefixAssigned"]["status"] == "True"


def test_wan_missing_at_start_waits_pending(pd_lab: PdLab, conditions: Conditions) -> None:
    lab, pair = pd_lab, pd_lab.pair
    pair.client.link_set("wan0", False)
    pair.client.ip("link", "set", "dev", "wan0", "name", "wan-x")
    d = lab.daemon()
    res = d.wait_for_phase("Pending", timeout=5)
    cond = conditions(res)["LinkReady"]
    assert cond["status"] == "False" and cond["reason"] == "InterfaceMissing"
    assert res["observed"]["clientDuid"] is None, "no MAC, no DUID yet"
    assert d.command("renew").status == 409
    pair.client.ip("link", "set", "dev", "wan-x", "name", "wan0")
    poll(
        lambda: conditions(d.resource_status())["LinkReady"]["reason"] == "AdminDown",
        5,
        "wan0 seen, administratively down",
    )
    assert d.resource_status()["phase"] == "Pending"
    pair.client.link_set("wan0", True)
    res = d.wait_for_phase("Applied", timeout=8)
    assert conditions(res)["LinkReady"]["status"] == "True"
    assert res["observed"]["clientDuid"] == duid_ll(pair.client.link_mac("wan0")).hex()


def test_reload_moves_the_subnet_live_and_refuses_an_interface_change(pd_lab: PdLab) -> None:
    lab = pd_lab
    d = lab.daemon()
    prefix = held_prefix(d.wait_for_phase("Applied", timeout=10))
    subnets = list(ipaddress.IPv6Network(prefix).subnets(new_prefix=64))
    config = lab.config(downstream=[{"interface": "lan0", "subnetId": 7, "addressSuffix": "::1:1"}])
    d.config_path.write_text(json.dumps(config))
    resp = d.command("reload")
    assert resp.status == 200, resp.error_text()
    assert "downstream" in resp.json()["message"]
    assert lan_addresses(lab) == [f"{subnets[7].network_address + 0x10001}/64"]
    assert d.resource_status()["phase"] == "Applied"
    assert held_prefix(d.resource_status()) == prefix, "no new exchange for a downstream change"

    d.config_path.write_text(json.dumps(lab.config(interface="lan0", downstream=[])))
    resp = d.command("reload")
    assert resp.status == 409 and "restart" in resp.json()["description"]
    assert len(lan_addresses(lab)) == 1
