"""The pppoe-client daemon (``tun`` backend) against the scapy access
concentrator in a network namespace.

One namespace pair and one AC process serve the whole module (scapy takes a
second to import); each test resets the AC, starts its own daemon in the
client namespace, and waits on phases and events through the daemon's API,
never on bare sleeps. Real pppd and the ``kernel`` backend are tested in the
qemu VM (docs/pppoe.md, "Tests").
"""

from __future__ import annotations

from collections.abc import Iterator
import json
from pathlib import Path
import subprocess
from typing import Any

import pytest
from routerd.testing.daemon import DaemonFactory
from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config

pytestmark = pytest.mark.netns

ENV = {"ROUTERD_PLUGINS": "pppoe"}
PASSWORD = "Pw-7f3a-correct-horse"
USERNAME = "user@isp.example"
PPP_IF = "ppp-wan"
AC2_MAC = "02:00:00:00:ac:02"


def spec(password_file: Path, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "interface": "wan0",
        "username": USERNAME,
        "passwordFile": str(password_file),
        "backend": "tun",
        "dnsFile": str(tmp_path / "resolv.conf"),
        "holdoff": "200ms",
        "discoveryTimeout": "200ms",
        "discoveryAttempts": 3,
        "routeMetric": 321,
    }
    base.update(extra)
    return base


def start(
    routerd_daemon: DaemonFactory, pair: Any, spec_: dict[str, Any], *, start: bool = True
) -> DaemonProcess:
    config = router_config(resource("PPPoESession", "wan", spec_))
    return routerd_daemon(
        "pppoe-client", config, "wan", netns=pair.client.name, env=ENV, start=start
    )


def conditions(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in res["conditions"]}


def events(daemon: DaemonProcess, topic: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = daemon.events(topic=topic)["events"]
    return found


def ppp_addresses(pair: Any) -> list[dict[str, Any]]:
    return [a for a in pair.client.addresses(PPP_IF, 4)]


def assert_no_secret(daemon: DaemonProcess, tmp_path: Path) -> None:
    """The password is in no output of the daemon (DESIGN §9)."""
    needle = PASSWORD
    outputs = {
        "status": json.dumps(daemon.status()),
        "events": json.dumps(daemon.events(limit=1000)),
        "log": daemon.log_text(),
    }
    if daemon.alive():
        outputs["cmdline"] = (
            Path(f"/proc/{daemon.pid}/cmdline").read_bytes().decode(errors="replace")
        )
        outputs["environ"] = (
            Path(f"/proc/{daemon.pid}/environ").read_bytes().decode(errors="replace")
        )
    for path in daemon.resource_state_dir.rglob("*"):
        if path.is_file():
            outputs[str(path)] = path.read_bytes().decode(errors="replace")
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "isp.password":
            outputs[str(path)] = path.read_bytes().decode(errors="replace")
    leaked = [name for name, text in outputs.items() if needle in text]
    assert leaked == [], f"the password appears in {leaked}"
    assert len(outputs) >= 5


def ping(pair: Any, address: str) -> subprocess.CompletedProcess[str]:
    return pair.client.run(["ping", "-c", "1", "-W", "2", address], check=False)


# -- sessions up --------------------------------------------------------------------------


def test_pap_session_up_applied_and_ping_through_it(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path))
    res = daemon.wait_for_phase("Up", timeout=15)
    obs = res["observed"]
    assert obs["state"] == "RUNNING" and obs["backend"] == "tun"
    assert (obs["localAddress"], obs["peerAddress"]) == ("198.51.100.7", "198.51.100.1")
    assert obs["dns"] == ["192.0.2.53", "192.0.2.54"]
    assert (obs["mtu"], obs["mru"], obs["authMethod"]) == (1492, 1492, "pap")
    assert obs["acName"] == "scapy-ac" and obs["acMac"] == "02:00:00:00:ac:01"
    assert obs["sessionId"] == ac.log()["sessions"][-1]["sid"]
    conds = conditions(res)
    for name in ("LinkReady", "Discovered", "Authenticated", "NetworkUp"):
        assert conds[name]["status"] == "True", conds[name]
    # The address with its peer, the MTU, the default route with the metric.
    (addr,) = ppp_addresses(pair)
    assert (addr["local"], addr.get("address"), addr["prefixlen"]) == (
        "198.51.100.7",
        "198.51.100.1",
        32,
    )
    assert pair.client.link(PPP_IF)["mtu"] == 1492
    routes = [r for r in pair.client.routes() if r.get("dst") == "default"]
    assert [(r["dev"], r.get("metric")) for r in routes] == [(PPP_IF, 321)]
    assert (tmp_path / "resolv.conf").read_text().splitlines()[1:] == [
        "nameserver 192.0.2.53",
        "nameserver 192.0.2.54",
    ]
    # Packets flow through the session: the AC answers ICMP echo inside PPP.
    result = ping(pair, "198.51.100.1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert ac.log()["icmp_echo"] >= 1
    traffic = daemon.resource_status()["observed"]["traffic"]
    assert traffic["txPackets"] >= 1 and traffic["rxPackets"] >= 1
    up = events(daemon, "routerd.pppoe.client.session.up")[-1]
    assert up["attributes"]["setupMs"] > 0
    assert_no_secret(daemon, tmp_path)


def test_chap_session_up(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    ac.configure(auth="chap")
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path, authMethod="chap"))
    res = daemon.wait_for_phase("Up", timeout=15)
    assert res["observed"]["authMethod"] == "chap"
    log = ac.log()
    assert log["chap_responses"] == 1 and log["auth_ok"] == 1 and log["pap_requests"] == 0
    assert ping(pair, "198.51.100.1").returncode == 0


def test_ac_that_starts_lcp_late_costs_no_restart_interval(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    # pppd-based ACs start LCP about a second after the PADS and lose the
    # client's first Configure-Request; resending it when the AC's own
    # request arrives saves the 3 s Restart timer.
    ac.configure(lcp_delay=0.5)
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path))
    daemon.wait_for_phase("Up", timeout=15)
    up = events(daemon, "routerd.pppoe.client.session.up")[-1]
    assert 500 <= up["attributes"]["setupMs"] < 2500, up


# -- discovery faults ----------------------------------------------------------------------


def test_no_pado_fails_with_connect_failed_and_redials(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    ac.configure(respond_padi=False)
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path))
    failed = daemon.wait_for_event("routerd.pppoe.client.session.failed", timeout=10)
    assert failed["attributes"]["exitReason"] == "CONNECT_FAILED"
    assert failed["attributes"]["detail"] == "no_pado"
    res = daemon.wait_for_phase("Error", timeout=5)
    assert res["phase"] == "Error" and conditions(res)["Discovered"]["status"] == "False"
    redial = daemon.wait_for_event("routerd.pppoe.client.redial.scheduled", timeout=5)
    assert redial["attributes"]["exitReason"] == "CONNECT_FAILED"
    assert ac.log()["padi"] == 0  # nothing answered, nothing counted by the silent AC
    # The AC comes back: the next redial gets a session.
    ac.configure(respond_padi=True)
    res = daemon.wait_for_phase("Up", timeout=15)
    assert res["observed"]["redialCount"] >= 1


def test_two_acs_first_wins_and_ac_name_picks_the_other(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    ac.configure(acs=[{"name": "ac-one", "mac": None}, {"name": "ac-two", "mac": AC2_MAC}])
    first = start(routerd_daemon, pair, spec(password_file, tmp_path))
    res = first.wait_for_phase("Up", timeout=15)
    assert res["observed"]["acName"] == "ac-one"
    first.stop()
    ac.call("reset")
    ac.configure(
        password=PASSWORD,
        acs=[{"name": "ac-one", "mac": None}, {"name": "ac-two", "mac": AC2_MAC}],
    )
    second = start(routerd_daemon, pair, spec(password_file, tmp_path, acName="ac-two"))
    res = second.wait_for_phase("Up", timeout=15)
    assert (res["observed"]["acName"], res["observed"]["acMac"]) == ("ac-two", AC2_MAC)
    assert ac.log()["padr_to"] == ["ac-two"]
    ignored = events(second, "routerd.pppoe.client.offer.ignored")
    assert ignored and ignored[0]["attributes"]["why"] == "ac_name"


def test_ac_cookie_and_relay_session_id_are_echoed(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    cookie, relay = "c0ffee" * 6, "0102030405"
    ac.configure(cookie=cookie, relay_session_id=relay)
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path))
    daemon.wait_for_phase("Up", timeout=15)
    log = ac.log()
    assert log["padr_cookie"] == [cookie] and log["padr_relay"] == [relay]


def test_pads_service_name_error_is_reported(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    ac.configure(pads_error="no such service here")
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path))
    error = daemon.wait_for_event("routerd.pppoe.client.discovery.error", timeout=10)
    assert error["attributes"]["tag"] == "SERVICE_NAME_ERROR"
    assert error["attributes"]["text"] == "no such service here"
    failed = daemon.wait_for_event("routerd.pppoe.client.session.failed", timeout=5)
    assert failed["attributes"]["detail"] == "pads_error"


# -- session faults ----------------------------------------------------------------------------


def test_padt_mid_session_redials(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path))
    first = daemon.wait_for_phase("Up", timeout=15)["observed"]["sessionId"]
    cursor = daemon.head()
    assert ac.call("padt")["sids"] == [first]
    down = daemon.wait_for_event("routerd.pppoe.client.session.down", since=cursor, timeout=5)
    assert down["attributes"]["exitReason"] == "HANGUP" and down["attributes"]["detail"] == "padt"
    up = daemon.wait_for_event("routerd.pppoe.client.session.up", since=cursor, timeout=10)
    assert up["attributes"]["sessionId"] != first and up["attributes"]["redialCount"] == 1
    assert ping(pair, "198.51.100.1").returncode == 0


def test_silent_ac_echo_timeout_then_redial(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    daemon = start(
        routerd_daemon,
        pair,
        spec(password_file, tmp_path, lcpEchoInterval="300ms", lcpEchoFailure=2),
    )
    daemon.wait_for_phase("Up", timeout=15)
    cursor = daemon.head()
    ac.configure(silent=True)
    timeout = daemon.wait_for_event("routerd.pppoe.client.echo.timeout", since=cursor, timeout=5)
    assert timeout["attributes"]["missed"] == 2
    down = daemon.wait_for_event("routerd.pppoe.client.session.down", since=cursor, timeout=5)
    assert down["attributes"]["exitReason"] == "PEER_DEAD"
    assert not (tmp_path / "resolv.conf").exists()
    ac.configure(silent=False)
    daemon.wait_for_event("routerd.pppoe.client.session.up", since=cursor, timeout=10)
    # The dead session got a PADT from us.
    assert ac.log()["padt_received"]


def test_wrong_password_is_an_error_with_a_long_backoff(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    ac.configure(password="something-else")
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path))
    failed = daemon.wait_for_event("routerd.pppoe.client.auth.failed", timeout=10)
    assert failed["attributes"]["exitReason"] == "PEER_AUTH_FAILED"
    assert failed["attributes"]["peerMessage"] == "Authentication failure"
    redial = daemon.wait_for_event("routerd.pppoe.client.redial.scheduled", timeout=10)
    assert redial["attributes"]["exitReason"] == "PEER_AUTH_FAILED"
    assert redial["attributes"]["delay"] >= 54  # 60 s +/- 10 %, holdoff is 0.2 s
    res = daemon.wait_for_phase("Error", timeout=5)
    assert res["conditions"] and conditions(res)["Authenticated"]["reason"] == "AuthFailed"
    assert daemon.resource_status()["phase"] == "Error"
    log = ac.wait("the PADT", lambda log: log["padt_received"])
    assert log["pap_requests"] == 1 and log["auth_failed"] == 1
    assert_no_secret(daemon, tmp_path)


def test_lcp_naks_and_rejects_both_ways(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    ac.configure(
        nak_mru=1400,
        reject_magic=True,
        extra_lcp_options=[[2, "00000000"], [7, ""], [8, ""]],  # ACCM, PFC, ACFC
    )
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path))
    res = daemon.wait_for_phase("Up", timeout=15)
    log = ac.log()
    first, last = log["client_lcp_requests"][0], log["client_lcp_requests"][-1]
    assert [t for t, _ in first] == [1, 5]
    assert last == [[1, "0578"]]  # MRU 1400 after the Nak, no magic after the Reject
    # We rejected the options RFC 2516 §7 keeps off PPPoE, exactly those.
    assert log["client_lcp_rejects"][0] == [[2, "00000000"], [7, ""], [8, ""]]
    assert res["observed"]["mru"] == 1400


def test_malformed_and_truncated_frames_are_counted(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path))
    daemon.wait_for_phase("Up", timeout=15)
    assert ac.call("inject")["frames"] == 7

    wanted = {
        "runt": 1,  # 2 bytes of PPPoE header
        "malformed_discovery": 3,  # LENGTH past the frame, VER/TYPE, a tag past the packet
        "malformed_session": 1,  # LENGTH past the frame
        "lcp_malformed": 2,  # Length < 4, Length past the frame
    }

    def counted() -> dict[str, int] | None:
        dropped: dict[str, int] = daemon.resource_status()["observed"]["counters"][
            "droppedByReason"
        ]
        return dropped if all(dropped.get(k, 0) >= n for k, n in wanted.items()) else None

    dropped = poll(counted, 5, f"the malformed frames counted as {wanted}")
    assert {k: dropped[k] for k in wanted} == wanted
    res = daemon.resource_status()
    assert res["phase"] == "Up" and daemon.alive()
    assert ping(pair, "198.51.100.1").returncode == 0


def test_stop_sends_terminate_and_padt_and_removes_everything(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path))
    sid = daemon.wait_for_phase("Up", timeout=15)["observed"]["sessionId"]
    assert (tmp_path / "resolv.conf").exists()
    assert daemon.command("stop").status == 200
    assert daemon.wait_exit(5) == 0
    log = ac.wait("the PADT", lambda log: log["padt_received"])
    assert log["terminate_requests"] >= 1
    assert [p["sid"] for p in log["padt_received"]] == [sid]
    assert PPP_IF not in pair.client.links()
    assert not (tmp_path / "resolv.conf").exists()
    assert [r for r in pair.client.routes() if r.get("dst") == "default"] == []


def test_sigkill_then_restart_closes_the_stale_session_first(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path))
    old = daemon.wait_for_phase("Up", timeout=15)["observed"]["sessionId"]
    daemon.kill()
    # The kernel removed the TUN device with the process; the AC still has the session.
    poll(lambda: PPP_IF not in pair.client.links(), 5, f"{PPP_IF} to go")
    assert old in ac.call("status")["sessions"]
    assert (tmp_path / "resolv.conf").exists()  # left behind by the killed run
    daemon.start()
    stale = daemon.wait_for_event("routerd.pppoe.client.stale.closed", timeout=10)
    assert stale["attributes"]["sessionId"] == old
    res = daemon.wait_for_phase("Up", timeout=15)
    log = ac.log()
    (padt,) = log["padt_received"]
    assert padt["sid"] == old
    new = [s for s in log["sessions"] if s["sid"] == res["observed"]["sessionId"]]
    assert padt["at"] < new[0]["at"]  # the PADT went out before the new session's PADR


def test_carrier_loss_ends_the_session_and_carrier_redials(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path))
    daemon.wait_for_phase("Up", timeout=15)
    cursor = daemon.head()
    pair.acns.link_set("ac0", False)  # the cable: wan0 loses carrier
    try:
        down = daemon.wait_for_event("routerd.pppoe.client.session.down", since=cursor, timeout=5)
        assert down["attributes"]["exitReason"] == "HANGUP"
        assert down["attributes"]["detail"] == "carrier_lost"
        res = daemon.wait_for_phase("Pending", timeout=5)
        assert res["observed"]["state"] == "LINK_DOWN"
        assert PPP_IF not in pair.client.links()
    finally:
        pair.acns.link_set("ac0", True)
    daemon.wait_for_event("routerd.pppoe.client.session.up", since=cursor, timeout=10)


def test_ppp_max_payload_gives_mtu_1500_on_a_1508_ethernet(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    # RFC 4638: with PPP-Max-Payload echoed and an Ethernet MTU of 1508, a
    # full 1500-byte IP packet goes through the session unfragmented.
    ac.configure(max_payload=True)
    for ns, ifname in ((pair.client, "wan0"), (pair.acns, "ac0")):
        ns.ip("link", "set", "dev", ifname, "mtu", "1508")
    try:
        daemon = start(routerd_daemon, pair, spec(password_file, tmp_path, mtu=1500))
        res = daemon.wait_for_phase("Up", timeout=15)
        obs = res["observed"]
        assert (obs["maxPayload"], obs["mtu"], obs["mru"]) == (1500, 1500, 1500)
        assert ac.log()["padr_max_payload"] == [1500]
        assert pair.client.link(PPP_IF)["mtu"] == 1500
        result = pair.client.run(
            ["ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1472", "198.51.100.1"], check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        daemon.stop()
    finally:
        for ns, ifname in ((pair.client, "wan0"), (pair.acns, "ac0")):
            ns.ip("link", "set", "dev", ifname, "mtu", "1500")
    # Back on a 1500 Ethernet the same spec asks for no more than 1492.
    ac.call("reset")
    ac.configure(password=PASSWORD, max_payload=True)
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path, mtu=1500))
    obs = daemon.wait_for_phase("Up", timeout=15)["observed"]
    assert (obs["maxPayload"], obs["mtu"]) == (None, 1492)
    assert ac.log()["padr_max_payload"] == [None]


# -- configuration and ownership ---------------------------------------------------------------


def test_world_readable_password_file_is_refused(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    password_file.chmod(0o644)
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path))
    res = daemon.wait_for_phase("Error", timeout=10)
    assert res["phase"] == "Error"
    phase = events(daemon, "routerd.resource.phase.changed")[-1]
    assert phase["reason"] == "PasswordFileRefused"
    assert "readable by every user" in phase["message"] and "0644" in phase["message"]
    assert ac.log()["padi"] == 0
    assert daemon.command("renew").status == 409
    # Fixed, then renew: it reads the file again and dials.
    password_file.chmod(0o600)
    assert daemon.command("renew").status == 200
    daemon.wait_for_phase("Up", timeout=15)
    assert_no_secret(daemon, tmp_path)


def test_existing_interface_that_is_not_ours_blocks_the_start(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    pair.client.ip("link", "add", PPP_IF, "type", "bridge")
    try:
        daemon = start(routerd_daemon, pair, spec(password_file, tmp_path))
        res = daemon.wait_for_phase("Error", timeout=10)
        assert events(daemon, "routerd.resource.phase.changed")[-1]["reason"] == "InterfaceInUse"
        assert ac.log()["padi"] == 0
        assert pair.client.link(PPP_IF).get("linkinfo", {}).get("info_kind", "bridge") == "bridge"
        assert res["observed"]["state"] == "STOPPED"
    finally:
        pair.client.ip("link", "del", PPP_IF, check=False)
    daemon.wait_for_phase("Up", timeout=15)


def test_ipv6cp_and_renew_and_reconnect(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path, ipv6=True))
    res = daemon.wait_for_phase("Up", timeout=15)
    poll(
        lambda: daemon.resource_status()["observed"]["ipv6LinkLocal"],
        5,
        "IPv6CP to open",
    )
    obs = daemon.resource_status()["observed"]
    assert obs["ipv6LinkLocal"] == "fe80::ff:fe00:1"  # modified EUI-64 of 02:00:00:00:00:01
    assert obs["ipv6PeerLinkLocal"] == "fe80::200:0:0:1"  # the AC's 0200:0000:0000:0001
    assert ac.log()["ipv6cp_requests"][0] == "010a000000fffe000001"
    six = [a["local"] for a in pair.client.addresses(PPP_IF, 6)]
    assert "fe80::ff:fe00:1" in six
    first = res["observed"]["sessionId"]
    renew = daemon.command("renew").json()
    assert renew["result"]["echoed"] is True and renew["result"]["rttMs"] >= 0
    cursor = daemon.head()
    assert daemon.command("reconnect").status == 200
    up = daemon.wait_for_event("routerd.pppoe.client.session.up", since=cursor, timeout=10)
    assert up["attributes"]["sessionId"] != first
    down = events(daemon, "routerd.pppoe.client.session.down")[-1]
    assert down["attributes"]["exitReason"] == "USER_REQUEST"
    assert [p["sid"] for p in ac.log()["padt_received"]] == [first]


def test_setup_time_figure(
    routerd_daemon: DaemonFactory, pair: Any, ac: Any, password_file: Path, tmp_path: Path
) -> None:
    """PADI -> IPCP up against the scapy AC on the tun backend (the figure in docs/pppoe.md)."""
    daemon = start(routerd_daemon, pair, spec(password_file, tmp_path))
    daemon.wait_for_phase("Up", timeout=15)
    times = []
    for _ in range(9):
        cursor = daemon.head()
        daemon.command("reconnect")
        up = daemon.wait_for_event("routerd.pppoe.client.session.up", since=cursor, timeout=10)
        times.append(up["attributes"]["setupMs"])
    times.sort()
    print(
        f"\nPADI -> IPCP up (tun, scapy AC): median {times[2]:.1f} ms, min {times[0]:.1f}, max {times[-1]:.1f}"
    )
    assert times[2] < 2000


@pytest.fixture(autouse=True)
def _no_leftover_ppp_interface(pair: Any) -> Iterator[None]:
    # Autouse: set up before routerd_daemon, so this runs after every daemon
    # of the test has stopped. The next test must not find our interface.
    yield
    poll(lambda: PPP_IF not in pair.client.links(), 5, f"{PPP_IF} removed after the test")
