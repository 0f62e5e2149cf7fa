"""The ``kernel`` backend against real ``pppoe-server`` + ``pppd`` in the test VM.

The daemon runs inside the VM (the Debian kernel with ``ppp_generic`` and
``pppoe``; docs/testing.md, "The test VM") in the lab's client namespace,
with the repository's own venv; the access concentrator is rp-pppoe's
``pppoe-server`` 3.15 starting one ``pppd`` 2.4.9 per session. What the AC
saw is read from its ``pppd`` log and a ``tcpdump`` on its side.
"""

from __future__ import annotations

import json
from pathlib import Path
import re
import signal
from typing import Any

import pytest
from routerd.testing.daemon import DaemonFactory
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.netns import require_netns_prereqs
from routerd.testing.servers import KeaDhcp6
from routerd.testing.vm import QemuVM
from routerd.testing.vm_fixtures import VMHostPppoe
from routerd.testing.vm_pppoe import PacketCapture
from routerd.testing.vm_pppoe import VMPppoeLab
from routerd.testing.vm_routerd import VMRouterd
from routerd.testing.vm_routerd import wait_until

pytestmark = pytest.mark.vm

PASSWORD = "pw-7f3c9a1e-kernel"
USER = "alice"
PPP_IF = "ppp-wan"
ARPHRD_PPP = 512


def kernel_spec(lab: VMPppoeLab, **extra: Any) -> dict[str, Any]:
    password_file = lab.path("isp.password")
    lab.vm.write_file(password_file, PASSWORD + "\n", 0o600)
    spec: dict[str, Any] = {
        "interface": lab.client_if,
        "username": USER,
        "passwordFile": password_file,
        "backend": "kernel",
        "dnsFile": lab.path("resolv.conf"),
        "holdoff": "200ms",
        "routeMetric": 321,
    }
    spec.update(extra)
    return spec


def links(lab: VMPppoeLab) -> list[str]:
    out = lab.vm.run(["ip", "-j", "link"], netns=lab.client_ns).stdout
    return [x["ifname"] for x in json.loads(out)]


def ping(lab: VMPppoeLab, address: str) -> None:
    res = lab.vm.run(["ping", "-c", "1", "-W", "5", address], netns=lab.client_ns, check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def padts(capture: PacketCapture, sid: int, src: str) -> list[float]:
    """When a PADT for session *sid* from MAC *src* reached the AC."""
    return capture.times(rf"^\S+ {re.escape(src)} > .*PADT \[ses 0x{sid:x}\]")


def assert_no_secret(daemon: VMRouterd) -> None:
    vm = daemon.vm
    assert daemon.process is not None
    outputs = {
        "status": json.dumps(daemon.get("/v1/status")),
        "events": json.dumps(daemon.get("/v1/events", limit=1000)),
        "log": daemon.log_text(),
        "state": vm.read_file(daemon.state_file).decode(errors="replace"),
    }
    if daemon.process.alive():
        outputs["cmdline"] = vm.read_file(f"/proc/{daemon.process.pid}/cmdline").decode()
    assert [k for k, v in outputs.items() if PASSWORD in v] == []


def test_kernel_backend_pap_session_ping_and_stop_sends_terminate_and_padt(
    vm_pppoe_lab: VMPppoeLab,
) -> None:
    lab, vm = vm_pppoe_lab, vm_pppoe_lab.vm
    ac = lab.start_ac(auth="pap", accounts={USER: PASSWORD})
    capture = lab.capture()
    daemon = VMRouterd(lab, "wan", kernel_spec(lab, ipv6=True)).start()
    res = daemon.wait_phase("Up")
    obs = res["observed"]
    assert (obs["backend"], obs["state"], obs["authMethod"]) == ("kernel", "RUNNING", "pap")
    assert (obs["localAddress"], obs["peerAddress"]) == ("10.64.0.100", "10.64.0.1")
    assert obs["dns"] == ["10.64.0.53", "10.64.0.54"]
    assert obs["acName"] == "routerd-test-ac"
    # ppp-wan is a unit of the kernel's ppp_generic, not a TUN device.
    sysfs_type = vm.run(["cat", f"/sys/class/net/{PPP_IF}/type"], netns=lab.client_ns).stdout
    assert sysfs_type.strip() == str(ARPHRD_PPP)
    (link,) = json.loads(
        vm.run(["ip", "-d", "-j", "link", "show", PPP_IF], netns=lab.client_ns).stdout
    )
    assert link["linkinfo"]["info_kind"] == "ppp" and link["mtu"] == 1492
    (addr,) = json.loads(
        vm.run(["ip", "-j", "-4", "addr", "show", PPP_IF], netns=lab.client_ns).stdout
    )[0]["addr_info"]
    assert (addr["local"], addr["address"], addr["prefixlen"]) == ("10.64.0.100", "10.64.0.1", 32)
    routes = json.loads(
        vm.run(["ip", "-j", "route", "show", "default"], netns=lab.client_ns).stdout
    )
    assert [(r["dev"], r.get("metric")) for r in routes] == [(PPP_IF, 321)]
    ping(lab, "10.64.0.1")
    # IPv6CP on the unit fd, IPv6 passed by the unit (PPPIOCSNPMODE) once it opens.
    v6 = wait_until(
        lambda: (o := daemon.status()["observed"])["ipv6PeerLinkLocal"] and o, 15, "IPv6CP"
    )
    assert v6["ipv6LinkLocal"].startswith("fe80::")
    ping(lab, f"{v6['ipv6PeerLinkLocal']}%{PPP_IF}")
    traffic = daemon.status()["observed"]["traffic"]
    assert traffic["txPackets"] >= 1 and traffic["rxPackets"] >= 1
    assert "PAP peer authentication succeeded for alice" in ac.pppd_log_text()
    assert_no_secret(daemon)

    mac = obs["mac"]
    code, _ = daemon.command("stop")
    assert code == 200
    assert daemon.process is not None and daemon.process.wait(10) == 0
    wait_until(lambda: padts(capture, obs["sessionId"], mac), 10, "the PADT at the AC")
    log = ac.pppd_log_text()
    assert "rcvd [LCP TermReq" in log, log[-2000:]
    assert PPP_IF not in links(lab)
    assert not vm.file_exists(lab.path("resolv.conf"))


def test_kernel_backend_chap_sigkill_then_restart_closes_the_stale_session(
    vm_pppoe_lab: VMPppoeLab,
) -> None:
    lab, vm = vm_pppoe_lab, vm_pppoe_lab.vm
    ac = lab.start_ac(auth="chap", accounts={USER: PASSWORD})
    capture = lab.capture()
    daemon = VMRouterd(lab, "wan", kernel_spec(lab, authMethod="chap")).start()
    obs = daemon.wait_phase("Up")["observed"]
    assert obs["authMethod"] == "chap"
    assert "sent [CHAP Success" in ac.pppd_log_text()
    ping(lab, "10.64.0.1")
    old, mac = obs["sessionId"], obs["mac"]
    daemon.kill()
    # Closing the killed process's files removed the unit; no PADT went out.
    wait_until(lambda: PPP_IF not in links(lab), 10, f"{PPP_IF} to go")
    assert padts(capture, old, mac) == []
    restarted = vm.time()
    daemon.start()
    stale = daemon.wait_event("routerd.pppoe.client.stale.closed")
    assert stale["attributes"]["sessionId"] == old
    new = daemon.wait_phase("Up")["observed"]
    assert new["sessionId"] != old
    (padt,) = padts(capture, old, mac)
    first_padi = next(t for t in capture.padi_times() if t >= restarted)
    assert padt <= first_padi
    ping(lab, new["peerAddress"])


def test_kernel_backend_wrong_password_is_peer_auth_failed(vm_pppoe_lab: VMPppoeLab) -> None:
    lab = vm_pppoe_lab
    ac = lab.start_ac(auth="pap", accounts={USER: "not-" + PASSWORD})
    daemon = VMRouterd(lab, "wan", kernel_spec(lab)).start()
    failed = daemon.wait_event("routerd.pppoe.client.auth.failed")
    assert failed["attributes"]["exitReason"] == "PEER_AUTH_FAILED"
    redial = daemon.wait_event("routerd.pppoe.client.redial.scheduled")
    assert redial["attributes"]["delay"] >= 54  # 60 s +/- 10 %: an ISP may lock the account
    res = daemon.wait_phase("Error")
    conds = {c["type"]: c for c in res["conditions"]}
    assert conds["Authenticated"]["reason"] == "AuthFailed"
    assert "PAP peer authentication failed for alice" in ac.pppd_log_text()
    assert PPP_IF not in links(lab)
    assert_no_secret(daemon)


def ac_session_pppds(lab: VMPppoeLab) -> list[int]:
    """PIDs of the AC's per-session ``pppd`` processes (``pppoe-server``'s children)."""
    return [
        pid
        for pid in lab.netns_pids(lab.ac_ns)
        if lab.vm.read_file(f"/proc/{pid}/comm").decode().strip() == "pppd"
    ]


def test_tun_backend_on_the_host_through_the_vm_ac_and_redial_when_the_ac_hangs_up(
    vm_pppoe_host_lab: VMHostPppoe, routerd_daemon: DaemonFactory, tmp_path: Path
) -> None:
    side = vm_pppoe_host_lab
    lab = side.lab
    ac = lab.start_ac(auth="chap", accounts={USER: PASSWORD})
    password_file = tmp_path / "isp.password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    spec = {
        "interface": side.client_if,
        "username": USER,
        "passwordFile": str(password_file),
        "backend": "tun",
        "holdoff": "200ms",
    }
    config = router_config(resource("PPPoESession", "wan", spec))
    daemon = routerd_daemon(
        "pppoe-client", config, "wan", netns=side.host.name, env={"ROUTERD_PLUGINS": "pppoe"}
    )
    obs = daemon.wait_for_phase("Up", timeout=30)["observed"]
    assert (obs["backend"], obs["authMethod"]) == ("tun", "chap")
    assert (obs["localAddress"], obs["peerAddress"]) == ("10.64.0.100", "10.64.0.1")
    res = side.host.run(["ping", "-c", "1", "-W", "5", "10.64.0.1"], check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    # The AC hangs up: its pppd, killed by PID, sends Terminate-Request and
    # the user-space pppoe under it a PADT; the client dials again.
    cursor = daemon.head()
    (pppd,) = ac_session_pppds(lab)
    lab.vm.call("signal", pid=pppd, sig=int(signal.SIGTERM))
    down = daemon.wait_for_event("routerd.pppoe.client.session.down", since=cursor, timeout=15)
    assert down["attributes"]["exitReason"] == "HANGUP", down
    up = daemon.wait_for_event("routerd.pppoe.client.session.up", since=cursor, timeout=30)
    assert up["attributes"]["redialCount"] == 1
    assert up["attributes"]["sessionId"] != obs["sessionId"]
    wait_until(lambda: len(ac.ip_ups()) == 2, 10, "the AC's second ip-up")
    res = side.host.run(["ping", "-c", "1", "-W", "5", "10.64.0.1"], check=False)
    assert res.returncode == 0, res.stdout + res.stderr


def ac_ppp_link_local(lab: VMPppoeLab, ifname: str) -> bool:
    """Make the AC's ppp link-local address one Kea can bind; True once there is one.

    pppd adds it point-to-point (``fe80::a peer fe80::b``), and for such an
    IPv6 address ``getifaddrs`` names the *peer* as the address: Kea then
    fails to bind its socket (``DHCPSRV_OPEN_SOCKET_FAIL``, EADDRNOTAVAIL).
    The same address as a plain /64 (no DAD: pppd's is unique by IPv6CP)
    is what Kea needs; a BNG's DHCPv6 server has no such problem.
    """
    res = lab.vm.run(
        ["ip", "-j", "-6", "addr", "show", "dev", ifname], netns=lab.ac_ns, check=False
    )
    if res.returncode != 0 or not res.stdout.strip():
        return False
    infos = [a for x in json.loads(res.stdout) for a in x.get("addr_info", [])]
    link = [a for a in infos if a.get("scope") == "link"]
    for a in link:
        if a.get("address"):
            lab.vm.sh(
                f"ip -6 addr del {a['local']}/{a['prefixlen']} peer {a['address']} dev {ifname}\n"
                f"ip -6 addr add {a['local']}/64 dev {ifname} nodad",
                netns=lab.ac_ns,
            )
    return bool(link)


def test_dhcpv6_pd_over_pppoe_rebinds_the_same_prefix_after_the_ac_hangs_up(
    vm_pppoe_host_lab: VMHostPppoe, routerd_daemon: DaemonFactory, tmp_path: Path
) -> None:
    # The case users report most (dhcpcd, odhcp6c, OpenWrt): the delegated
    # prefix does not come back after the PPPoE session resets. Here the AC's
    # pppd is killed, the session redials, ppp-wan goes and comes back, and
    # the DHCPv6 client Rebinds (RFC 9915 §18.2.12) and keeps its prefix.
    require_netns_prereqs(["kea-dhcp6"])
    side = vm_pppoe_host_lab
    lab, vm = side.lab, side.lab.vm
    ac = lab.start_ac(auth="pap", accounts={USER: PASSWORD})
    password_file = tmp_path / "isp.password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    pppoe = routerd_daemon(
        "pppoe-client",
        router_config(
            resource(
                "PPPoESession",
                "wan",
                {
                    "interface": side.client_if,
                    "username": USER,
                    "passwordFile": str(password_file),
                    "backend": "tun",
                    "ipv6": True,
                    "holdoff": "200ms",
                },
            )
        ),
        "wan",
        netns=side.host.name,
        env={"ROUTERD_PLUGINS": "pppoe"},
    )
    pppoe.wait_for_phase("Up", timeout=30)
    wait_until(
        lambda: pppoe.resource_status()["observed"]["ipv6LinkLocal"], 15, "IPv6CP on ppp-wan"
    )
    ac_if = wait_until(lambda: ac.ip_ups(), 10, "the AC's ip-up")[-1].interface
    wait_until(lambda: ac_ppp_link_local(lab, ac_if), 10, f"a link-local address on {ac_if}")

    # Kea DHCPv6 on the AC's end of the session, as an ISP's BNG serves PD.
    kea = KeaDhcp6(
        side.host,
        ac_if,
        tmp_path / "kea",
        pool=None,
        pd_pool=("2001:db8:100::", 48, 60),
        preferred_lifetime=120,
        valid_lifetime=180,
        renew_timer=60,
        rebind_timer=100,
        preference=255,
        control_socket=False,
    )
    config = kea.config()
    config["Dhcp6"]["lease-database"]["name"] = lab.path("kea-leases6.csv")
    vm.write_file(lab.path("kea-dhcp6.json"), json.dumps(config), 0o644)
    kea_proc = lab.spawn(
        ["kea-dhcp6", "-c", lab.path("kea-dhcp6.json")],
        lab.path("kea-dhcp6.log"),
        netns=lab.ac_ns,
        env={"KEA_PIDFILE_DIR": lab.dir, "KEA_LOCKFILE_DIR": lab.dir},
    )
    kea_proc.wait_for_log("DHCP6_STARTED", 30)

    # ppp-wan has no MAC: the client makes a DUID-UUID (no DUID-LL possible).
    pd_spec = {"interface": "ppp-wan", "prefixLength": 60}
    pd = routerd_daemon(
        "dhcpv6-client",
        router_config(resource("DHCPv6PrefixDelegation", "wan-pd", pd_spec)),
        "wan-pd",
        netns=side.host.name,
        env={"ROUTERD_PLUGINS": "dhcpv6"},
    )
    try:
        res = pd.wait_for_phase("Applied", timeout=30)
    except AssertionError as e:
        dump = vm.run(
            ["timeout", "12", "tcpdump", "-n", "-i", ac_if, "-c", "2"], netns=lab.ac_ns, check=False
        )
        dump2 = vm.run(
            ["timeout", "3", "tcpdump", "-n", "-e", "-i", "ac0", "-c", "5"],
            netns=lab.ac_ns,
            check=False,
        )
        raise AssertionError(
            f"{e}\nKea: {[x for x in kea_proc.log_text().splitlines() if 'TIMER' not in x and 'RECLAM' not in x]}\ntcpdump: {dump.stdout}{dump.stderr}"
            f"\nac0: {dump2.stdout}\nAC: {ac.pppd_log_text()[-2500:]}\n"
            f"{json.dumps(pd.resource_status()['observed'])[:2500]}\n"
            f"{json.dumps(pppoe.resource_status()['observed']['counters'])}"
        ) from None
    prefix = res["observed"]["prefixes"][0]["prefix"]
    assert prefix.startswith("2001:db8:100:") and prefix.endswith("/60")
    assert res["observed"]["duidType"] == "uuid"
    assert res["observed"]["clientDuid"].startswith("0004")

    head = pd.head()
    cursor = pppoe.head()
    mark = len(kea_proc.log_text())
    (pppd,) = ac_session_pppds(lab)
    vm.call("signal", pid=pppd, sig=int(signal.SIGTERM))
    pppoe.wait_for_event("routerd.pppoe.client.session.down", since=cursor, timeout=15)
    pppoe.wait_for_event("routerd.pppoe.client.session.up", since=cursor, timeout=30)
    ups = wait_until(lambda: ac.ip_ups()[1:], 15, "the AC's second ip-up")
    wait_until(lambda: ac_ppp_link_local(lab, ups[-1].interface), 10, "the new AC link-local")
    # Kea binds its sockets to the interfaces it finds at configuration:
    # SIGHUP makes it configure again and find the session's new ppp unit.
    kea_proc.signal(signal.SIGHUP)
    rebound = pd.wait_for_event("routerd.dhcpv6.client.prefix.rebound", since=head, timeout=40)
    assert rebound["attributes"]["prefix"] == prefix
    kea_log = kea_proc.log_text()[mark:]
    assert "REBIND" in kea_log and "SOLICIT" not in kea_log, kea_log[-3000:]
    res = pd.wait_for_phase("Applied", timeout=10)
    assert res["observed"]["prefixes"][0]["prefix"] == prefix


def test_kernel_backend_redials_after_the_ac_hangs_up_and_after_an_echo_timeout(
    vm_pppoe_lab: VMPppoeLab,
) -> None:
    lab, vm = vm_pppoe_lab, vm_pppoe_lab.vm
    lab.start_ac(auth="chap", accounts={USER: PASSWORD})
    spec = kernel_spec(lab, lcpEchoInterval="1s", lcpEchoFailure=2, acName="routerd-test-ac")
    daemon = VMRouterd(lab, "wan", spec).start()
    first = daemon.wait_phase("Up")["observed"]["sessionId"]
    ups = len(daemon.events("routerd.pppoe.client.session.up"))
    # The AC hangs up: its pppd (SIGTERM) sends Terminate-Request, its pppoe a PADT.
    (pppd,) = ac_session_pppds(lab)
    vm.call("signal", pid=pppd, sig=int(signal.SIGTERM))
    down = daemon.wait_event("routerd.pppoe.client.session.down")
    assert down["attributes"]["exitReason"] == "HANGUP", down
    up = daemon.wait_event("routerd.pppoe.client.session.up", after=ups)
    assert up["attributes"]["sessionId"] != first and up["attributes"]["redialCount"] == 1
    ping(lab, "10.64.0.1")
    # The AC goes silent (its pppd stopped): no Echo-Reply, PEER_DEAD, redial.
    wait_until(lambda: len(ac_session_pppds(lab)) == 1, 10, "one AC session")
    (silent,) = ac_session_pppds(lab)
    vm.call("signal", pid=silent, sig=int(signal.SIGSTOP))
    timeout = daemon.wait_event("routerd.pppoe.client.echo.timeout", 20)
    assert timeout["attributes"]["missed"] == 2
    dead = daemon.wait_event("routerd.pppoe.client.session.down", after=1)
    assert dead["attributes"]["exitReason"] == "PEER_DEAD", dead
    vm.call("signal", pid=silent, sig=int(signal.SIGKILL))
    third = daemon.wait_event("routerd.pppoe.client.session.up", 30, after=ups + 1)
    assert third["attributes"]["redialCount"] == 2
    ping(lab, "10.64.0.1")


def test_ac_name_filter_against_pppoe_server(
    vm_pppoe_host_lab: VMHostPppoe, routerd_daemon: DaemonFactory, tmp_path: Path
) -> None:
    side = vm_pppoe_host_lab
    side.lab.start_ac(auth="pap", accounts={USER: PASSWORD}, ac_name="isp-ac-1")
    password_file = tmp_path / "isp.password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    spec = {
        "interface": side.client_if,
        "username": USER,
        "passwordFile": str(password_file),
        "backend": "tun",
        "acName": "isp-ac-2",
        "discoveryTimeout": "200ms",
        "discoveryAttempts": 2,
        "holdoff": "200ms",
    }
    config = router_config(resource("PPPoESession", "wan", spec))
    daemon = routerd_daemon(
        "pppoe-client", config, "wan", netns=side.host.name, env={"ROUTERD_PLUGINS": "pppoe"}
    )
    failed = daemon.wait_for_event("routerd.pppoe.client.session.failed", timeout=15)
    assert (failed["attributes"]["exitReason"], failed["attributes"]["detail"]) == (
        "CONNECT_FAILED",
        "no_pado",
    )
    dropped = daemon.resource_status()["observed"]["counters"]["droppedByReason"]
    assert dropped.get("pado_ac_name", 0) >= 1, dropped


def test_a_host_lab_leaves_the_nic_so_that_a_vm_lab_follows(ppp_vm: QemuVM) -> None:
    # The host-side lab moves the VM's NIC into its AC namespace as ac0; when
    # it closes, the NIC must not come back as ac0, or the next lab's veth
    # "ac0" cannot be made (this order of tests failed with EEXIST).
    with VMPppoeLab(ppp_vm, host_client=True):
        pass
    with VMPppoeLab(ppp_vm) as lab:
        assert lab.netns_pids(lab.ac_ns) == []
    names = [x["ifname"] for x in json.loads(ppp_vm.run(["ip", "-j", "link"]).stdout)]
    assert "ac0" not in names
