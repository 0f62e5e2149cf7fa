"""The network-namespace lab and the real servers that routerd's tests use.

Everything runs inside namespaces these tests create; nothing touches the
host's network.
"""

from __future__ import annotations

from collections.abc import Iterator
import ipaddress
import os
from pathlib import Path
import re
import signal
import subprocess
import sys

import pytest
from routerd.testing import netns as netns_mod
from routerd.testing.lab_fixtures import Dhcp4Pair
from routerd.testing.lab_fixtures import Dhcp6Pair
from routerd.testing.netns import Lab
from routerd.testing.netns import ManagedProcess
from routerd.testing.netns import Netns
from routerd.testing.netns import ProcessExitedError
from routerd.testing.netns import require_netns_prereqs
from routerd.testing.servers import Dnsmasq
from routerd.testing.servers import KeaCommandError
from routerd.testing.servers import KeaDhcp4
from routerd.testing.servers import KeaDhcp6
from routerd.testing.servers import ServerError
from routerd.testing.servers import kea_command

CLIENT_V4 = "192.0.2.10/24"

# Sent from inside a namespace with this venv's python: a raw DNS A query.
DNS_QUERY = """
import socket, sys
import dpkt
q = dpkt.dns.DNS(id=0x4242, qd=[dpkt.dns.DNS.Q(name=sys.argv[2], type=dpkt.dns.DNS_A)])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(bytes(q), (sys.argv[1], 53))
r = dpkt.dns.DNS(s.recv(4096))
print(r.id, r.rcode, *(socket.inet_ntoa(a.rdata) for a in r.an if a.type == dpkt.dns.DNS_A))
"""

TCP_LISTEN = """
import socket, sys
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    s.accept()[0].close()
"""

TCP_CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("connected")
except OSError as e:
    print("failed", type(e).__name__)
"""

SIGTERM_IGNORER = """
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
while True:
    signal.pause()
"""


def netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def py(ns: Netns, script: str, *args: str, timeout: float = 10) -> str:
    """Run *script* with this venv's python inside *ns*; return its stdout."""
    return ns.run([sys.executable, "-c", script, *args], timeout=timeout).stdout.strip()


def dhclient(ns: Netns, workdir: Path, *extra: str, ifname: str = "wan0") -> ManagedProcess:
    """Start ISC dhclient in the foreground, once, configuring nothing."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = ["dhclient", "-d", "-1", "-v", "-sf", "/bin/true"]
    argv += ["-lf", str(workdir / "dhclient.leases"), "-pf", str(workdir / "dhclient.pid")]
    return ns.popen([*argv, *extra, ifname], workdir / "dhclient.log")


@pytest.fixture
def vanished_netns() -> Iterator[list[str]]:
    """Collect namespace names; after the later fixtures' teardown, none exists.

    Requested *before* ``lab``, so its teardown runs after the lab's.
    """
    names: list[str] = []
    yield names
    assert names
    assert not (set(names) & netns_list())


# -- prerequisites ---------------------------------------------------------------


def test_missing_tool_skips_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="root"):
        require_netns_prereqs(["ip"])
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_netns_prereqs(["ip"])


@pytest.mark.netns
def test_missing_tool_named_in_skip_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    require_netns_prereqs(["ip"])
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-tool-rdt"):
        require_netns_prereqs(["no-such-tool-rdt"])


# -- namespaces and processes ----------------------------------------------------


@pytest.mark.netns
def test_namespaces_unique_and_removed_at_fixture_teardown(
    vanished_netns: list[str], lab: Lab
) -> None:
    a, b = lab.netns(), lab.netns()
    vanished_netns += [a.name, b.name]
    assert a.name != b.name
    for ns in (a, b):
        assert re.fullmatch(r"rdt-[0-9a-f]{8}", ns.name)
        assert len(ns.name) <= 15
        assert "UP" in ns.link("lo")["flags"]
    assert {a.name, b.name} <= netns_list()


@pytest.mark.netns
def test_lab_tears_down_when_the_body_raises(tmp_path: Path) -> None:
    require_netns_prereqs(["ip", "sysctl"])
    with pytest.raises(RuntimeError, match="boom"), Lab() as lab:
        ns = lab.netns()
        proc = lab.spawn(ns, ["sleep", "300"], tmp_path / "sleep.log")
        raise RuntimeError("boom")
    assert ns.name not in netns_list()
    assert ns.deleted and lab.closed
    assert not proc.alive()
    assert not netns_mod._pid_alive(proc.pid)


@pytest.mark.netns
def test_atexit_safety_net_closes_open_labs(monkeypatch: pytest.MonkeyPatch) -> None:
    require_netns_prereqs(["ip", "sysctl"])
    # A registry of its own, so labs of other tests are left alone.
    monkeypatch.setattr(netns_mod, "_registry", netns_mod._Registry())
    lab = Lab()
    ns = lab.netns()
    bare = Netns()
    assert {ns.name, bare.name} <= set(netns_mod.open_namespaces())
    netns_mod.close_all()
    assert lab.closed and bare.deleted
    assert not ({ns.name, bare.name} & netns_list())


@pytest.mark.netns
def test_processes_are_ended_by_pid(lab: Lab, tmp_path: Path) -> None:
    ns = lab.netns()

    polite = ns.popen(["sleep", "300"], tmp_path / "polite.log")
    # `ip netns exec` enters the namespace just after the fork: poll for it.
    assert netns_mod._wait_until(lambda: polite.pid in ns.pids(), 5)
    assert polite.stop() == -signal.SIGTERM
    assert polite.stop() == -signal.SIGTERM  # idempotent

    stubborn = ns.popen([sys.executable, "-c", SIGTERM_IGNORER], tmp_path / "stubborn.log")
    assert stubborn.wait_for_log("ready") == "ready"
    assert stubborn.stop(timeout=0.3) == -signal.SIGKILL
    assert not netns_mod._pid_alive(stubborn.pid)

    # A daemonized grandchild is not ours to wait for; delete() finds it by
    # `ip netns pids` and kills it by PID.
    spawner = ns.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"])
    orphan = int(spawner.stdout)
    assert orphan in ns.pids()
    ns.delete()
    assert not netns_mod._pid_alive(orphan)
    assert ns.name not in netns_list()
    ns.delete()  # idempotent


@pytest.mark.netns
def test_wait_for_log_reports_exit_and_timeout_with_tail(lab: Lab, tmp_path: Path) -> None:
    ns = lab.netns()
    quick = ns.popen(["sh", "-c", "echo first line; exit 3"], tmp_path / "quick.log")
    with pytest.raises(ProcessExitedError, match=r"exited with 3(.|\n)*first line"):
        quick.wait_for_log("never printed", timeout=5)
    slow = ns.popen(["sh", "-c", "echo hello; exec sleep 300"], tmp_path / "slow.log")
    assert slow.wait_for_log(re.compile(r"h.llo")) == "hello"
    with pytest.raises(TimeoutError, match=r"within 0.1s(.|\n)*hello"):
        slow.wait_for_log("never printed", timeout=0.1)
    assert slow.alive()
    assert slow.kill() == -signal.SIGKILL
    assert slow.log_text() == "hello\n"


# -- links -----------------------------------------------------------------------


@pytest.mark.netns
def test_veth_helpers_and_carrier(lab: Lab) -> None:
    client, server = lab.netns(), lab.netns()
    lab.veth(client, "wan0", server, "srv0", mac_a="02:00:00:00:00:0a")
    assert client.link_mac("wan0") == "02:00:00:00:00:0a"
    assert client.links() == ["lo", "wan0"]
    server.addr_add("srv0", "192.0.2.1/24")
    [v4] = server.addresses("srv0", 4)
    assert (v4["local"], v4["prefixlen"]) == ("192.0.2.1", 24)
    assert {"dst": "192.0.2.0/24", "dev": "srv0"}.items() <= server.routes(4)[0].items()

    # DAD is off in lab namespaces: the link-local address is usable at once.
    client.wait_for_ipv6_dad("wan0", timeout=1)
    assert client.wait_for_link_local("wan0").startswith("fe80::")

    assert netns_mod._wait_until(lambda: client.has_carrier("wan0"), 5)
    server.link_set("srv0", False)
    assert netns_mod._wait_until(lambda: not client.has_carrier("wan0"), 5)
    server.link_set("srv0", True)
    assert netns_mod._wait_until(lambda: client.has_carrier("wan0"), 5)


@pytest.mark.netns
def test_wait_for_dad_when_dad_is_kept(lab: Lab) -> None:
    a, b = lab.netns(dad=True), lab.netns(dad=True)
    lab.veth(a, "eth0", b, "eth0")
    a.addr_add("eth0", "2001:db8:9::1/64")
    a.wait_for_ipv6_dad("eth0", timeout=10)
    infos = a.addresses("eth0", 6)
    assert {i["local"] for i in infos} >= {"2001:db8:9::1"}
    assert not any(i.get("tentative") for i in infos)


@pytest.mark.netns
def test_nft_block_and_unblock(dhcp4_pair: Dhcp4Pair, tmp_path: Path) -> None:
    require_netns_prereqs(["nft"])
    client, server = dhcp4_pair.client, dhcp4_pair.server
    client.addr_add(dhcp4_pair.client_if, CLIENT_V4)
    listener = server.popen(
        [sys.executable, "-c", TCP_LISTEN, dhcp4_pair.server_addr, "8080"], tmp_path / "l.log"
    )
    listener.wait_for_log("listening")

    def connect() -> str:
        return py(client, TCP_CONNECT, dhcp4_pair.server_addr, "8080", "0.5")

    assert connect() == "connected"
    # Server side: the SYN is dropped on input, so the client times out.
    server.nft_block(proto="tcp", dport=8080)
    assert connect() == "failed TimeoutError"
    server.nft_unblock()
    assert connect() == "connected"
    # Client side: the SYN is dropped on output (EPERM, which TCP retries).
    client.nft_block(daddr=dhcp4_pair.server_addr)
    assert connect() == "failed TimeoutError"
    client.nft_unblock()
    client.nft_unblock()  # no table: still fine
    assert connect() == "connected"


# -- real servers ----------------------------------------------------------------


@pytest.mark.netns
def test_dnsmasq_answers_dns_and_leases_dhcp4(dhcp4_pair: Dhcp4Pair, tmp_path: Path) -> None:
    require_netns_prereqs(["dnsmasq", "dhclient"])
    client = dhcp4_pair.client
    dnsmasq = Dnsmasq(
        dhcp4_pair.server,
        dhcp4_pair.server_if,
        tmp_path / "dnsmasq",
        dns_records={"router.test": "192.0.2.53"},
    ).start()

    client.addr_add(dhcp4_pair.client_if, CLIENT_V4)
    assert py(client, DNS_QUERY, dhcp4_pair.server_addr, "router.test") == "16962 0 192.0.2.53"
    dnsmasq.wait_for_log("query[A] router.test from 192.0.2.10")

    dhc = dhclient(client, tmp_path / "dhclient")
    bound = dhc.wait_for_log("bound to", timeout=15)
    address = bound.split()[2]
    assert ipaddress.ip_address(address) in ipaddress.ip_network("192.0.2.0/24")
    dnsmasq.wait_for_log(f"DHCPACK({dhcp4_pair.server_if}) {address}")
    mac = client.link_mac(dhcp4_pair.client_if)
    assert netns_mod._wait_until(lambda: bool(dnsmasq.leases()), 5)
    [lease] = dnsmasq.leases()
    assert (lease["address"], lease["hwaddr"]) == (address, mac)
    assert dnsmasq.stop() == 0


@pytest.mark.netns
def test_kea_dhcp4_leases_and_answers_status_get(dhcp4_pair: Dhcp4Pair, tmp_path: Path) -> None:
    require_netns_prereqs(["kea-dhcp4", "dhclient"])
    kea = KeaDhcp4(dhcp4_pair.server, dhcp4_pair.server_if, tmp_path / "kea4").start()

    status = kea_command(kea.control_socket_path, "status-get")
    assert status["result"] == 0
    assert status["arguments"]["pid"] == kea.pid

    dhc = dhclient(dhcp4_pair.client, tmp_path / "dhclient")
    address = dhc.wait_for_log("bound to", timeout=15).split()[2]
    kea.wait_for_log(f"lease {address} has been allocated")
    kea.wait_for_log("DHCPREQUEST (type 3) received")
    mac = dhcp4_pair.client.link_mac(dhcp4_pair.client_if)
    [lease] = kea.leases(active_only=True)
    assert (lease["address"], lease["hwaddr"], lease["valid_lifetime"]) == (address, mac, 120)

    # New settings through config-reload, same process. A shrunk pool alone
    # makes Kea 2.2 drop the rebooting client's request; a reservation
    # elsewhere makes it NAK, and the client then gets the reserved address.
    dhc.stop()
    mark = kea.mark()
    kea.reconfigure(pool=("192.0.2.210", "192.0.2.220"), reservations={mac: "192.0.2.215"})
    pools = kea.command("config-get")["arguments"]["Dhcp4"]["subnet4"][0]["pools"]
    assert pools[0]["pool"] == "192.0.2.210-192.0.2.220"
    assert kea.command("status-get")["arguments"]["pid"] == kea.pid
    dhc = dhclient(dhcp4_pair.client, tmp_path / "dhclient")
    dhc.wait_for_log("DHCPNAK from 192.0.2.1", timeout=10)
    assert dhc.wait_for_log("bound to", timeout=15).split()[2] == "192.0.2.215"
    kea.wait_for_log("DHCPNAK (type 6)", since=mark)
    assert [x["address"] for x in kea.leases(active_only=True)] == ["192.0.2.215"]


@pytest.mark.netns
def test_kea_dhcp6_delegates_a_prefix(dhcp6_pair: Dhcp6Pair, tmp_path: Path) -> None:
    require_netns_prereqs(["kea-dhcp6", "dhclient"])
    kea = KeaDhcp6(
        dhcp6_pair.server, dhcp6_pair.server_if, tmp_path / "kea6", preference=255
    ).start()
    assert kea.command("status-get")["result"] == 0

    dhc = dhclient(dhcp6_pair.client, tmp_path / "dhclient6", "-6", "-P")
    dhc.wait_for_log("Bound to lease", timeout=15)
    kea.wait_for_log("DHCP6_PD_LEASE_ALLOC")
    [lease] = kea.leases(active_only=True)
    assert lease["lease_type"] == "IA_PD"
    assert lease["prefix_len"] == 60
    prefix = ipaddress.IPv6Network(f"{lease['address']}/{lease['prefix_len']}")
    assert prefix.subnet_of(ipaddress.IPv6Network("2001:db8:100::/48"))
    client_leases = (tmp_path / "dhclient6" / "dhclient.leases").read_text()
    assert f"iaprefix {prefix}" in client_leases
    # dhclient writes the server-id option without leading zeros per byte.
    server_id = ":".join(f"{b:x}" for b in bytes.fromhex(kea.server_duid.replace(":", "")))
    assert f"option dhcp6.server-id {server_id};" in client_leases

    # Restart keeps the memfile, and the socket answers the new process.
    old_pid = kea.pid
    kea.restart()
    assert kea.pid != old_pid
    assert kea.command("status-get")["arguments"]["pid"] == kea.pid
    assert [x["address"] for x in kea.leases(active_only=True)] == [lease["address"]]


def test_kea_command_unreachable_socket(tmp_path: Path) -> None:
    with pytest.raises(KeaCommandError, match="status-get"):
        kea_command(tmp_path / "missing.sock", "status-get", timeout=0.5)


@pytest.mark.netns
def test_server_that_dies_at_start_raises_with_its_log(
    dhcp4_pair: Dhcp4Pair, tmp_path: Path
) -> None:
    require_netns_prereqs(["kea-dhcp4"])
    kea = KeaDhcp4(
        dhcp4_pair.server,
        dhcp4_pair.server_if,
        tmp_path / "kea4",
        pool=("198.51.100.10", "198.51.100.20"),  # outside the subnet
    )
    with pytest.raises(ServerError, match=r"exited with 1(.|\n)*DHCP4_CONFIG_LOAD_FAIL"):
        kea.start()
    assert not kea.alive()


@pytest.mark.netns
def test_kea_control_socket_survives_a_deep_workdir(dhcp4_pair: Dhcp4Pair, tmp_path: Path) -> None:
    require_netns_prereqs(["kea-dhcp4"])
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    kea = KeaDhcp4(dhcp4_pair.server, dhcp4_pair.server_if, deep).start()
    sock = kea.control_socket_path
    assert len(str(sock)) <= 107 and not str(sock).startswith(str(deep))
    assert kea_command(sock, "status-get")["result"] == 0
    kea.stop()
    assert not sock.parent.exists()
