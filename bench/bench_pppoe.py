"""PPPoE client: routerd (``kernel`` and ``tun`` backends) against pppd + rp-pppoe.so.

Everything runs against one access concentrator: ``pppoe-server`` 3.15 +
``pppd`` 2.4.9 in the qemu test VM (docs/testing.md), listening on a bridge
that joins a veth to a client namespace inside the VM (routerd's ``kernel``
backend, and ``pppd`` with ``rp-pppoe.so``, the C anchor) and the VM's NIC,
whose tap is in a host namespace (routerd's ``tun`` backend, on the host: the
host kernel has no PPP). Timings are client-neutral, from a ``tcpdump`` on
the AC's bridge (the VM's clock):

- set-up: the first PADI to the last IPCP Configure-Ack;
- redial: the AC hangs up (its session ``pppd`` killed by PID: Terminate-Request
  and PADT), from that PADT to the next session's last IPCP Configure-Ack;
- throughput (``tun`` only): iperf3 from the host through the session to the AC,
  against the same tap without PPPoE; CPU seconds of the routerd daemon per
  Gbit forwarded;
- RSS of each client once up.

The VM is emulated (TCG, one vCPU): absolute throughput is the VM's, not the
client's. ``--smoke`` does one run of each and a 1 s iperf3; without the VM's
prerequisites (root, qemu, the kernel under ``.tools/vm``) it prints why and
skips, in smoke mode and out of it.
"""

from __future__ import annotations

from collections.abc import Iterator
import contextlib
import functools
import json
import os
from pathlib import Path
import signal
import sys
import time
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import common  # noqa: E402
from routerd.testing.daemon import DaemonProcess  # noqa: E402
from routerd.testing.daemon import resource  # noqa: E402
from routerd.testing.daemon import router_config  # noqa: E402
from routerd.testing.daemon import write_config  # noqa: E402
from routerd.testing.netns import Netns  # noqa: E402
from routerd.testing.vm import QemuVM  # noqa: E402
from routerd.testing.vm import vm_prereq_problem  # noqa: E402
from routerd.testing.vm_fixtures import VM_TOOLS_PPPOE  # noqa: E402
from routerd.testing.vm_pppoe import IpUp  # noqa: E402
from routerd.testing.vm_pppoe import PacketCapture  # noqa: E402
from routerd.testing.vm_pppoe import PppdClient  # noqa: E402
from routerd.testing.vm_pppoe import VMPppoeLab  # noqa: E402
from routerd.testing.vm_routerd import VMRouterd  # noqa: E402
from routerd.testing.vm_routerd import wait_until  # noqa: E402

NAME = "pppoe"
USER = "bench"
PASSWORD = "bench-pw-41c9"
BRIDGE = "br0"
AC_ADDR = "10.64.0.1"
PLAIN_AC, PLAIN_HOST = "192.168.77.1", "192.168.77.2"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, qemu's tap)"
    problem = vm_prereq_problem((*VM_TOOLS_PPPOE, "iperf3"))
    return None if problem is None else f"test VM not available: {problem}"


def _bridge_the_nic(lab: VMPppoeLab) -> None:
    """Put the VM's NIC and the lab's ``ac0`` on one bridge in the AC namespace."""
    vm = lab.vm
    links = json.loads(vm.run(["ip", "-j", "link"]).stdout)
    (nic,) = [x["ifname"] for x in links if x.get("address") == vm.nic_mac]
    vm.sh(
        "set -e\n"
        f"ip link set {nic} netns {lab.ac_ns}\n"
        f"ip -n {lab.ac_ns} link set {nic} name nic0\n"
        f"ip -n {lab.ac_ns} link add {BRIDGE} type bridge\n"
        f"ip -n {lab.ac_ns} link set ac0 master {BRIDGE}\n"
        f"ip -n {lab.ac_ns} link set nic0 master {BRIDGE}\n"
        f"ip -n {lab.ac_ns} link set nic0 up\n"
        f"ip -n {lab.ac_ns} link set {BRIDGE} up\n"
        f"ip -n {lab.ac_ns} addr add {PLAIN_AC}/24 dev {BRIDGE}\n"
    )
    # pppoe-server and the capture listen on the bridge, not on a port of it
    # (a bridge port's frames go to the bridge before any packet socket bound
    # to the port's ethertype sees them).
    lab.ac_if = BRIDGE


def _span(capture: PacketCapture, start_pattern: str, since: float, until: float) -> float:
    """From the first *start_pattern* frame after *since* to the last IPCP
    Configure-Ack up to *until*: both Acks of the exchange must be in, and
    tcpdump in the emulated VM can lag the session by a moment."""

    def found() -> float | None:
        starts = [t for t in capture.times(start_pattern) if t >= since]
        acks = [t for t in capture.ipcp_ack_times() if starts and starts[0] <= t <= until]
        return acks[-1] - starts[0] if len(acks) >= 2 else None

    value: float = wait_until(found, 30, f"the capture of {start_pattern} .. IPCP up")
    return value


def _setup_times(capture: PacketCapture, since: float, until: float) -> float:
    return _span(capture, r"\bPADI\b", since, until)


def _redial_time(capture: PacketCapture, since: float, until: float) -> float:
    return _span(capture, r"\bPADT\b", since, until)


def _ac_session_pppd(lab: VMPppoeLab) -> int:
    pids = [
        pid
        for pid in lab.netns_pids(lab.ac_ns)
        if lab.vm.read_file(f"/proc/{pid}/comm").decode().strip() == "pppd"
    ]
    if len(pids) != 1:
        raise RuntimeError(f"expected one AC session pppd, found {pids}")
    return pids[0]


def _hang_up(lab: VMPppoeLab) -> float:
    """Kill the AC's session pppd by PID (it sends Terminate-Request, its pppoe a PADT)."""
    at = lab.vm.time()
    lab.vm.call("signal", pid=_ac_session_pppd(lab), sig=int(signal.SIGTERM))
    return at


def _vm_rss_kib(vm: QemuVM, pid: int) -> int:
    for line in vm.read_file(f"/proc/{pid}/status").decode().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _settle_no_session(lab: VMPppoeLab) -> None:
    wait_until(
        lambda: (
            not any(
                lab.vm.read_file(f"/proc/{p}/comm").decode().strip() == "pppd"
                for p in lab.netns_pids(lab.ac_ns)
            )
        ),
        20,
        "the AC's session pppd to end",
    )


# -- the three clients ----------------------------------------------------------------------


def run_kernel(lab: VMPppoeLab, capture: PacketCapture, runs: int) -> dict[str, Any]:
    vm = lab.vm
    password_file = lab.path("isp.password")
    vm.write_file(password_file, PASSWORD + "\n", 0o600)
    spec = {
        "interface": lab.client_if,
        "username": USER,
        "passwordFile": password_file,
        "backend": "kernel",
        "holdoff": "200ms",
    }
    setup: list[float] = []
    redial: list[float] = []
    rss = 0
    daemon = VMRouterd(lab, "wan", spec)
    for i in range(runs):
        since = vm.time()
        daemon.start()
        daemon.wait_phase("Up", 60)
        setup.append(_setup_times(capture, since, vm.time()))
        if i == 0:
            assert daemon.process is not None
            rss = _vm_rss_kib(vm, daemon.process.pid)
            cursor = len(daemon.events("routerd.pppoe.client.session.up"))
            hung = _hang_up(lab)
            daemon.wait_event("routerd.pppoe.client.session.up", 60, after=cursor)
            redial.append(_redial_time(capture, hung, vm.time()))
        daemon.command("stop")
        assert daemon.process is not None
        daemon.process.wait(15)
        _settle_no_session(lab)
    return {"setup_s": setup, "redial_s": redial, "rss_kib": rss}


def _later_ip_ups(client: PppdClient) -> list[IpUp]:
    return client.ip_ups()[1:]


def run_pppd(
    lab: VMPppoeLab, capture: PacketCapture, runs: int, redial_too: bool = True
) -> dict[str, Any]:
    vm = lab.vm
    setup: list[float] = []
    redial: list[float] = []
    rss = 0
    for i in range(runs):
        since = vm.time()
        # persist/holdoff 0/maxfail 0 after the lab's "maxfail 1": pppd's
        # fastest redial, for the redial figure.
        client = lab.start_pppd(USER, PASSWORD, extra_options=["persist", "holdoff 0", "maxfail 0"])
        up = client.wait_up(60)
        setup.append(_setup_times(capture, since, up.time + 0.5))
        if i == 0:
            assert client.process is not None
            rss = _vm_rss_kib(vm, client.process.pid)
        if i == 0 and redial_too:
            hung = _hang_up(lab)
            second: list[IpUp] = wait_until(
                functools.partial(_later_ip_ups, client), 60, "pppd's redial"
            )
            redial.append(_redial_time(capture, hung, second[0].time + 0.5))
        client.stop()
        _settle_no_session(lab)
    return {"setup_s": setup, "redial_s": redial, "rss_kib": rss}


@contextlib.contextmanager
def _host_daemon(host: Netns, base: Path) -> Iterator[DaemonProcess]:
    password_file = base / "isp.password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    spec = {
        "interface": QemuVM.NIC_TAP,
        "username": USER,
        "passwordFile": str(password_file),
        "backend": "tun",
        "holdoff": "200ms",
        "defaultRoute": False,
    }
    config_path = write_config(
        base / "router.yaml", router_config(resource("PPPoESession", "wan", spec))
    )
    daemon = DaemonProcess(
        daemon_kind="pppoe-client",
        resource="wan",
        config_path=config_path,
        runtime_dir=base / "run",
        state_dir=base / "state",
        log_path=base / "pppoe.log",
        netns=host.name,
        env={"ROUTERD_PLUGINS": "pppoe"},
    )
    try:
        yield daemon
    finally:
        with contextlib.suppress(Exception):
            daemon.stop(5.0)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _iperf(
    lab: VMPppoeLab, host: Netns, server: str, seconds: float, pid: int | None
) -> dict[str, float]:
    proc = lab.spawn(
        ["iperf3", "-s", "-1", "--forceflush"], lab.path(f"iperf-{server}.log"), netns=lab.ac_ns
    )
    proc.wait_for_log("Server listening", 20)
    cpu0 = _cpu_seconds(pid) if pid else 0.0
    res = host.run(
        ["iperf3", "-c", server, "-t", str(seconds), "-J"], timeout=seconds + 60, check=True
    )
    cpu = (_cpu_seconds(pid) - cpu0) if pid else 0.0
    data = json.loads(res.stdout)
    bps = float(data["end"]["sum_received"]["bits_per_second"])
    gbit = bps * seconds / 1e9
    with contextlib.suppress(Exception):
        proc.stop()
    return {"mbit_s": bps / 1e6, "cpu_s_per_gbit": (cpu / gbit) if pid and gbit else 0.0}


def _tun_forwarding(
    lab: VMPppoeLab, host: Netns, daemon: DaemonProcess, seconds: float
) -> dict[str, float]:
    """UDP at a rate above what the VM's AC takes: what the tun forwarder sends.

    TCP through the session measures the AC (user-space ``pppoe`` and ``pppd``
    on a pty, in an emulated CPU); a UDP sender does not wait for it, so the
    daemon's own transmit rate and CPU show the forwarder's cost.
    """
    proc = lab.spawn(
        ["iperf3", "-s", "-1", "--forceflush"], lab.path("iperf-udp.log"), netns=lab.ac_ns
    )
    proc.wait_for_log("Server listening", 20)
    before = daemon.resource_status()["observed"]["traffic"]
    cpu0, t0 = _cpu_seconds(daemon.pid), time.monotonic()
    host.run(
        ["iperf3", "-c", AC_ADDR, "-u", "-b", "2G", "-l", "1400", "-t", str(seconds)],
        timeout=seconds + 60,
        check=False,
    )
    cpu, elapsed = _cpu_seconds(daemon.pid) - cpu0, time.monotonic() - t0
    after = daemon.resource_status()["observed"]["traffic"]
    with contextlib.suppress(Exception):
        proc.stop()
    bits = (after["txBytes"] - before["txBytes"]) * 8
    return {
        "tx_mbit_s": bits / elapsed / 1e6,
        "tx_kpps": (after["txPackets"] - before["txPackets"]) / elapsed / 1e3,
        "cpu_share": cpu / elapsed,
        "cpu_s_per_gbit": cpu / (bits / 1e9) if bits else 0.0,
    }


def run_tun(
    lab: VMPppoeLab,
    host: Netns,
    capture: PacketCapture,
    runs: int,
    base: Path,
    iperf_s: float,
    tcp: bool = True,
) -> dict[str, Any]:
    vm = lab.vm
    setup: list[float] = []
    redial: list[float] = []
    rss = 0
    through: dict[str, float] = {}
    plain: dict[str, float] = {}
    udp: dict[str, float] = {}
    with _host_daemon(host, base) as daemon:
        for i in range(runs):
            since = vm.time()
            daemon.start()
            daemon.wait_for_phase("Up", 30)
            setup.append(_setup_times(capture, since, vm.time()))
            if i == 0:
                rss = common.rss_kib(daemon.pid)
                cursor = daemon.head()
                hung = _hang_up(lab)
                daemon.wait_for_event("routerd.pppoe.client.session.up", since=cursor, timeout=30)
                redial.append(_redial_time(capture, hung, vm.time()))
            daemon.command("stop")
            daemon.wait_exit(10)
            _settle_no_session(lab)
        # Last: the flood of data frames makes the AC's tcpdump lag.
        daemon.start()
        daemon.wait_for_phase("Up", 30)
        if tcp:
            through = _iperf(lab, host, AC_ADDR, iperf_s, daemon.pid)
            plain = _iperf(lab, host, PLAIN_AC, iperf_s, None)
        udp = _tun_forwarding(lab, host, daemon, iperf_s)
    return {
        "setup_s": setup,
        "redial_s": redial,
        "rss_kib": rss,
        "iperf_ppp": through,
        "iperf_plain": plain,
        "udp_forwarding": udp,
    }


def main(smoke: bool) -> dict[str, Any]:
    reason = _skip_reason()
    if reason is not None:
        print(f"bench_pppoe skipped: {reason}\n")
        return {"skipped": reason}
    runs = 1 if smoke else 3
    iperf_s = 1.0 if smoke else 5.0
    results: dict[str, Any] = {}
    with (
        common.temp_dir("rdb-pppoe-") as base,
        Netns("rdb-vm") as host,
        QemuVM(host_netns=host.name) as vm,
    ):
        host.link_set(vm.NIC_TAP, True)
        host.run(["ip", "addr", "add", f"{PLAIN_HOST}/24", "dev", vm.NIC_TAP])
        with VMPppoeLab(vm) as lab:
            _bridge_the_nic(lab)
            lab.start_ac(auth="chap", accounts={USER: PASSWORD})
            capture = lab.capture()
            # Smoke (CI, about a minute on a loaded 2-core machine otherwise):
            # no pppd redial (always 3.1 s, see docs) and no TCP iperf3.
            results["pppd"] = run_pppd(lab, capture, runs, redial_too=not smoke)
            results["kernel"] = run_kernel(lab, capture, runs)
            results["tun"] = run_tun(lab, host, capture, runs, base, iperf_s, tcp=not smoke)
    rows = []
    for name, label in (
        ("kernel", "routerd kernel (in VM)"),
        ("tun", "routerd tun (host)"),
        ("pppd", "pppd + rp-pppoe.so (in VM)"),
    ):
        r = results[name]
        setup_ms = common.summary_ms(r["setup_s"])
        rows.append(
            [
                label,
                f"{setup_ms['p50_ms']:.0f}",
                f"{min(r['setup_s']) * 1000:.0f}-{max(r['setup_s']) * 1000:.0f}",
                f"{r['redial_s'][0] * 1000:.0f}" if r["redial_s"] else "-",
                f"{r['rss_kib'] / 1024:.1f}",
            ]
        )
    common.emit_table(
        results,
        f"PADI to IPCP up, redial after the AC's PADT ({runs} run(s); CHAP; pppoe-server 3.15)",
        ["client", "setup p50 ms", "range ms", "redial ms", "RSS MiB"],
        rows,
    )
    tun = results["tun"]
    ratio = common.ratio(tun["iperf_ppp"].get("mbit_s", 0.0), tun["iperf_plain"].get("mbit_s", 0.0))
    if tun["iperf_ppp"]:
        common.emit_table(
            results,
            f"iperf3 host -> AC in the VM ({iperf_s:g} s)",
            ["path", "Mbit/s", "routerd CPU s per Gbit"],
            [
                [
                    "through the PPPoE session (tun)",
                    f"{tun['iperf_ppp']['mbit_s']:.0f}",
                    f"{tun['iperf_ppp']['cpu_s_per_gbit']:.1f}",
                ],
                ["same tap, no PPPoE", f"{tun['iperf_plain']['mbit_s']:.0f}", "-"],
                ["ratio", f"{ratio:.2f}", ""],
            ],
        )
    udp = tun["udp_forwarding"]
    common.emit_table(
        results,
        f"tun forwarder, host -> session, UDP 1400 B offered at 2 Gbit/s ({iperf_s:g} s)",
        ["sent into the session Mbit/s", "kpps", "routerd CPU (cores)", "CPU s per Gbit"],
        [
            [
                f"{udp['tx_mbit_s']:.0f}",
                f"{udp['tx_kpps']:.1f}",
                f"{udp['cpu_share']:.2f}",
                f"{udp['cpu_s_per_gbit']:.1f}",
            ]
        ],
    )
    results["ratio"] = ratio
    return results


if __name__ == "__main__":
    common.run_standalone(NAME, main)
