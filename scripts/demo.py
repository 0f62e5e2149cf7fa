"""`make demo`: routerd serve running a small router in a namespace lab with real servers.

Three network namespaces: `isp` runs Kea DHCPv4, Kea DHCPv6 (prefix
delegation), dnsmasq (DNS) and an HTTP server; `router` runs `routerd serve`
with a DHCPv4 client and a DHCPv6 prefix-delegation client on wan0 and three
health checks, plus a DerivedEvent `wan-ready` (the delegated prefix applied
and the ISP answering pings) and an EventRule; `lan` is a host behind the
router's lan0. The demo shows the router through routerctl, makes an outage
with an nftables drop rule in the ISP namespace (wan-ready retracts), lifts it
(wan-ready asserts again), and tears everything down. `--hold` keeps the lab
up until Ctrl-C.

The router also forwards an IPv4 LAN with NAT and runs the observers
(docs/observe.md: FlowLog, FirewallLog, DNSQueryLog): the LAN host fetches
the ISP's web server by name, through the DNS server the router learned by
DHCP, and probes a port a logged nftables rule drops; routerctl then shows
its connections, DNS queries, the logged drop and its flows with the names.

When the qemu test VM can run (docs/testing.md), a second uplink: a PPPoE
access concentrator (`pppoe-server` + `pppd`, and Kea DHCPv6 on its end of
the session) in the VM, whose NIC's tap is in the router namespace; routerd's
`pppoe-client` (the `tun` backend) dials it and a DHCPv6 prefix-delegation
client runs on `ppp-isp2`. The AC then hangs up: the session redials and the
delegated prefix is kept (Rebind, RFC 9915 §18.2.12).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.netns import Lab
from routerd.testing.netns import Netns
from routerd.testing.serve import ServeProcess
from routerd.testing.servers import Dnsmasq
from routerd.testing.servers import KeaDhcp4
from routerd.testing.servers import KeaDhcp6
from routerd.testing.vm import QemuVM
from routerd.testing.vm import VMProcess
from routerd.testing.vm import vm_prereq_problem
from routerd.testing.vm_fixtures import VM_TOOLS_PPPOE
from routerd.testing.vm_pppoe import PppoeServer
from routerd.testing.vm_pppoe import VMPppoeLab

VENV_BIN = Path(sys.executable).parent
CHECK_TIMING = {
    "interval": "1s",
    "timeout": "500ms",
    "healthyThreshold": 2,
    "unhealthyThreshold": 3,
}


def resources(dns_file: Path) -> list[dict[str, Any]]:
    return [
        resource(
            "DHCPv4Client",
            "wan",
            {
                "interface": "wan0",
                "hostname": "demo-router",
                "routeMetric": 100,
                "dnsFile": str(dns_file),
            },
        ),
        resource(
            "DHCPv6PrefixDelegation",
            "wan-pd",
            {
                "interface": "wan0",
                "prefixLength": 60,
                "downstream": [{"interface": "lan0", "subnetId": 1}],
            },
        ),
        resource(
            "HealthCheck", "isp-ping", {"protocol": "icmp", "target": "192.0.2.1", **CHECK_TIMING}
        ),
        resource(
            "HealthCheck",
            "isp-dns",
            {"protocol": "dns", "target": "192.0.2.1", "dnsName": "www.lab.test", **CHECK_TIMING},
        ),
        resource(
            "HealthCheck",
            "isp-web",
            {
                "protocol": "http",
                "target": "192.0.2.1",
                "port": 8080,
                "expectStatus": "2xx",
                **CHECK_TIMING,
            },
        ),
        # Virtual events (docs/rules.md), run by routerd serve itself.
        {
            "apiVersion": "rules.routerd.net/v1alpha1",
            "kind": "DerivedEvent",
            "metadata": {"name": "wan-ready"},
            "spec": {
                "topic": "routerd.derived.wan.ready",
                "inputs": [
                    {
                        "name": "prefix",
                        "value": "${DHCPv6PrefixDelegation/wan-pd.status.phase}",
                        "equals": "Applied",
                    },
                    {
                        "name": "ping",
                        "value": "${HealthCheck/isp-ping.status.phase}",
                        "equals": "Healthy",
                    },
                ],
                "retractedSeverity": "warning",
            },
        },
        {
            "apiVersion": "rules.routerd.net/v1alpha1",
            "kind": "EventRule",
            "metadata": {"name": "isp-down"},
            "spec": {
                "pattern": {
                    "all_of": {
                        "of": [
                            {
                                "topic": "routerd.healthcheck.state.unhealthy",
                                "where": {"resource.name": name},
                            }
                            for name in ("isp-ping", "isp-dns", "isp-web")
                        ],
                        "within": "1m",
                    }
                },
                "emit": {
                    "topic": "routerd.rules.isp.down",
                    "severity": "error",
                    "message": "ping, DNS and HTTP to the ISP all failed within a minute",
                },
            },
        },
    ]


PPPOE_USER, PPPOE_PASSWORD = "demo@isp2.example", "demo-ppp-7c41"


def pppoe_resources(password_file: Path) -> list[dict[str, Any]]:
    return [
        resource(
            "PPPoESession",
            "isp2",
            {
                "interface": QemuVM.NIC_TAP,
                "username": PPPOE_USER,
                "passwordFile": str(password_file),
                "backend": "tun",
                "ipv6": True,
                "defaultRoute": False,
                "usePeerDNS": False,
                "holdoff": "500ms",
            },
        ),
        resource(
            "DHCPv6PrefixDelegation",
            "isp2-pd",
            {
                "interface": "ppp-isp2",
                "prefixLength": 60,
            },
        ),
    ]


def _ac_ppp_ready(ppp: VMPppoeLab, ifname: str) -> bool:
    """The AC's ppp link-local re-added as a plain /64, which Kea can bind (pppd's
    has a peer, and getifaddrs then names the peer's address)."""
    res = ppp.vm.run(
        ["ip", "-j", "-6", "addr", "show", "dev", ifname], netns=ppp.ac_ns, check=False
    )
    if res.returncode != 0 or not res.stdout.strip():
        return False
    infos = [a for x in json.loads(res.stdout) for a in x.get("addr_info", [])]
    link = [a for a in infos if a.get("scope") == "link"]
    for a in link:
        if a.get("address"):
            ppp.vm.sh(
                f"ip -6 addr del {a['local']}/{a['prefixlen']} peer {a['address']} dev {ifname}\n"
                f"ip -6 addr add {a['local']}/64 dev {ifname} nodad",
                netns=ppp.ac_ns,
            )
    return bool(link)


def _poll(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not within {timeout} s")
        time.sleep(0.2)


def _ac_session_pppd(ppp: VMPppoeLab) -> int:
    pids = [
        pid
        for pid in ppp.netns_pids(ppp.ac_ns)
        if ppp.vm.read_file(f"/proc/{pid}/comm").decode().strip() == "pppd"
    ]
    if len(pids) != 1:
        raise RuntimeError(f"expected one session pppd at the AC, found {pids}")
    return pids[0]


def start_ppp_kea(ppp: VMPppoeLab, ac: PppoeServer, router: Netns, base: Path) -> VMProcess:
    """Kea DHCPv6 (PD from 2001:db8:200::/48) on the AC's end of the session, in the VM."""
    ac_if = _poll(ac.ip_ups, 15, "the AC's ip-up")[-1].interface
    _poll(lambda: _ac_ppp_ready(ppp, ac_if), 15, f"a link-local address on the AC's {ac_if}")
    kea = KeaDhcp6(
        router,  # only for its config: this Kea runs in the VM
        ac_if,
        base / "kea6-ppp",
        pool=None,
        pd_pool=("2001:db8:200::", 48, 60),
        preferred_lifetime=300,
        valid_lifetime=600,
        control_socket=False,
    )
    config = kea.config()
    config["Dhcp6"]["lease-database"]["name"] = ppp.path("kea-leases6.csv")
    ppp.vm.write_file(ppp.path("kea-dhcp6.json"), json.dumps(config), 0o644)
    proc = ppp.spawn(
        ["kea-dhcp6", "-c", ppp.path("kea-dhcp6.json")],
        ppp.path("kea-dhcp6.log"),
        netns=ppp.ac_ns,
        env={"KEA_PIDFILE_DIR": ppp.dir, "KEA_LOCKFILE_DIR": ppp.dir},
    )
    proc.wait_for_log("DHCP6_STARTED", 30)
    return proc


def pppoe_act(
    runtime: Path, serve: ServeProcess, ppp: VMPppoeLab, ac: PppoeServer, kea: VMProcess
) -> None:
    """The AC hangs up; the session redials and the delegated prefix is kept."""

    def res(kind: str, name: str) -> dict[str, Any]:
        body: dict[str, Any] = serve.get(f"resources/{kind}/{name}").json()
        return body

    banner("PPPoE: the access concentrator hangs up (its session pppd killed by PID)")
    head = serve.events(limit=1)["cursor"]
    redials = res("PPPoESession", "isp2")["observed"]["redialCount"]
    prefix = res("DHCPv6PrefixDelegation", "isp2-pd")["observed"]["prefixes"][0]["prefix"]
    ups = len(ac.ip_ups())
    kea_mark = len(kea.log_text())
    t0 = time.monotonic()
    ppp.vm.call("signal", pid=_ac_session_pppd(ppp), sig=int(signal.SIGTERM))

    def redialed() -> bool:
        r = res("PPPoESession", "isp2")
        return bool(r["phase"] == "Up" and r["observed"]["redialCount"] > redials)

    _poll(redialed, 30, "the PPPoE redial")
    up_s = time.monotonic() - t0
    # Kea binds to the interfaces it finds when configured: the new session
    # is a new ppp unit at the AC, so it configures again (SIGHUP).
    ac_if = _poll(lambda: ac.ip_ups()[ups:], 20, "the AC's ip-up")[-1].interface
    _poll(lambda: _ac_ppp_ready(ppp, ac_if), 15, f"a link-local address on the AC's {ac_if}")
    kea.signal(signal.SIGHUP)
    _poll(
        lambda: serve.events(since=head, topic="routerd.dhcpv6.client.prefix.rebound")["items"],
        40,
        "the DHCPv6 Rebind",
    )
    now = res("DHCPv6PrefixDelegation", "isp2-pd")["observed"]["prefixes"][0]["prefix"]
    kea_log = kea.log_text()[kea_mark:]
    seen = [m for m in ("SOLICIT", "REBIND") if f"{m} (type" in kea_log]
    banner(
        f"PPPoE session back up {up_s:.1f} s after the hang-up; the prefix {now} "
        f"{'is kept' if now == prefix else f'CHANGED from {prefix}'}; "
        f"the AC's Kea received: {', '.join(seen) or 'nothing'}"
    )
    routerctl(runtime, "status")
    routerctl(
        runtime,
        "get",
        "events",
        "--since",
        str(head),
        "--topic",
        "routerd.pppoe.client.session.*",
        "--topic",
        "routerd.dhcpv6.client.prefix.*",
    )


# What the router sees (docs/observe.md): the LAN host 192.168.50.2 behind lan0,
# forwarded and masqueraded out of wan0; probes to OBSERVE_PROBE_PORT are
# logged to the FirewallLog's NFLOG group and dropped.
LAN_HOST, LAN_ROUTER = "192.168.50.2", "192.168.50.1"
OBSERVE_GROUP = 5
OBSERVE_PROBE_PORT = 2323
# The action comes first in the prefix (docs/observe.md, "Firewall log action convention").
OBSERVE_PROBE_PREFIX = "drop: lan-probe"
OBSERVE_NFT = f"""
table ip demo_nat {{
  chain post {{
    type nat hook postrouting priority 100;
    oifname "wan0" masquerade
  }}
}}
table inet demo_filter {{
  chain forward {{
    type filter hook forward priority 0;
    iifname "lan0" tcp dport {OBSERVE_PROBE_PORT} log prefix "{OBSERVE_PROBE_PREFIX} " group {OBSERVE_GROUP} drop
  }}
}}
"""
#: The LAN host: fetch the ISP's web server by name (getaddrinfo, through the
#: resolv.conf mounted for it), then probe a port the router drops.
OBSERVE_CLIENT = f"""
import http.client, socket
web = http.client.HTTPConnection("www.lab.test", 8080, timeout=5)
web.request("GET", "/")
server = web.sock.getpeername()[0]
resp = web.getresponse()
print(f"GET http://www.lab.test:8080/ ({{server}}) -> {{resp.status}}, {{len(resp.read())}} bytes")
web.close()
s = socket.socket(); s.settimeout(0.5)
try:
    s.connect((server, {OBSERVE_PROBE_PORT}))
    print("probe to port {OBSERVE_PROBE_PORT} connected: NOT dropped")
except OSError as exc:
    print(f"probe to {{server}}:{OBSERVE_PROBE_PORT}: {{exc or type(exc).__name__}} (dropped by the router)")
"""


def observe_resources() -> list[dict[str, Any]]:
    return [
        resource(
            "FlowLog",
            "lan",
            {"lanNetworks": ["192.168.50.0/24"], "interim": "30s", "receiveBuffer": "4MiB"},
        ),
        resource("FirewallLog", "fw", {"group": OBSERVE_GROUP, "receiveBuffer": "1MiB"}),
        resource("DNSQueryLog", "lan-dns", {"interfaces": ["lan0"], "matchTimeout": "2s"}),
    ]


def observe_lab(router: Netns, lan: Netns) -> None:
    """An IPv4 LAN behind the router, forwarded with NAT, and the logged drop rule."""
    router.addr_add("lan0", f"{LAN_ROUTER}/24")
    lan.addr_add("eth0", f"{LAN_HOST}/24")
    lan.ip("route", "add", "default", "via", LAN_ROUTER)
    router.sysctl({"net.ipv4.ip_forward": "1"})
    router.run(["nft", "-f", "-"], input=OBSERVE_NFT)


def observe_act(runtime: Path, serve: ServeProcess, router: Netns, lan: Netns, base: Path) -> None:
    """The LAN host resolves, fetches and probes; routerctl shows what the router saw."""
    for target in ("FlowLog/lan", "FirewallLog/fw", "DNSQueryLog/lan-dns"):
        wait_for(runtime, target, "Up")
    banner(
        "the LAN host looks up www.lab.test (the DNS server the router learned by DHCP),"
        f" fetches it and probes port {OBSERVE_PROBE_PORT}, which the router logs and drops"
    )
    resolv = base / "lan-resolv.conf"
    resolv.write_text((base / "resolv.conf").read_text())
    script = base / "lan-client.py"
    script.write_text(OBSERVE_CLIENT)
    # /etc/resolv.conf replaced in a private mount namespace of this one command.
    out = lan.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            'mount --bind "$0" /etc/resolv.conf && exec "$@"',
            str(resolv),
            sys.executable,
            str(script),
        ],
        timeout=30,
        check=False,
    )
    print(out.stdout, end="", flush=True)
    if out.returncode != 0:
        raise RuntimeError(f"the LAN host's client failed:\n{out.stderr}")

    def records(path: str, **query: Any) -> list[dict[str, Any]]:
        resp = serve.get(path, **query)
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status} {resp.error_text()}")
        items: list[dict[str, Any]] = resp.json()["items"]
        return items

    _poll(
        lambda: [
            i
            for i in records("dns-queries", client=LAN_HOST, **{"qname-suffix": "lab.test"})
            if i["rcode"] == "NOERROR" and i["answers"]
        ],
        15,
        "the LAN host's answered DNS query",
    )
    _poll(
        lambda: records("firewall-logs", prefix=OBSERVE_PROBE_PREFIX),
        15,
        "the logged drop of the probe",
    )
    _poll(
        lambda: records("connections", address=LAN_HOST, port=8080),
        15,
        "the LAN host's connection to the web server",
    )
    routerctl(runtime, "get", "connections", "--address", LAN_HOST)
    routerctl(runtime, "get", "dns-queries", "--client", LAN_HOST)
    routerctl(runtime, "get", "firewall-logs", "--action", "drop")

    banner(
        "the router deletes the LAN host's conntrack entries (conntrack -D) rather than wait"
        " out TIME_WAIT: each DESTROY event closes its flow record"
    )
    gone = router.run(["conntrack", "-D", "--orig-src", LAN_HOST], check=False)
    print(gone.stderr.strip().splitlines()[-1] if gone.stderr.strip() else gone.stdout.strip())
    _poll(
        lambda: [
            i
            for i in records("traffic-flows", client=LAN_HOST)
            if i["peerPort"] == 8080 and not i["open"] and i["peerName"] == "www.lab.test"
        ],
        15,
        "the LAN host's ended flow to www.lab.test",
    )
    routerctl(runtime, "get", "flows", "--client", LAN_HOST)


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def routerctl(runtime: Path, *args: str) -> None:
    print(f"$ routerctl {' '.join(args)}", flush=True)
    subprocess.run([str(VENV_BIN / "routerctl"), "--runtime-dir", str(runtime), *args], check=False)


def wait_for(runtime: Path, target: str, phase: str, timeout: str = "60s") -> None:
    subprocess.run(
        [
            str(VENV_BIN / "routerctl"),
            "--runtime-dir",
            str(runtime),
            "wait",
            target,
            "--for",
            f"phase={phase}",
            "--timeout",
            timeout,
        ],
        check=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hold", action="store_true", help="keep the lab up until Ctrl-C")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("make demo needs root (network namespaces)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="routerd-demo-") as tmp, Lab() as lab:
        base = Path(tmp)
        banner("building the lab: isp <-> router <-> lan (veth pairs)")
        isp, router, lan = lab.netns("rdt-isp"), lab.netns("rdt-rtr"), lab.netns("rdt-lan")
        lab.veth(router, "wan0", isp, "isp0")
        lab.veth(router, "lan0", lan, "eth0")
        observe_lab(router, lan)
        isp.addr_add("isp0", "192.0.2.1/24")
        isp.addr_add("isp0", "2001:db8:1::1/64")
        isp.wait_for_link_local("isp0")
        router.wait_for_link_local("wan0")
        KeaDhcp4(
            isp, "isp0", base / "kea4", valid_lifetime=600, router="192.0.2.1", dns=("192.0.2.1",)
        ).start()
        KeaDhcp6(
            isp,
            "isp0",
            base / "kea6",
            pd_pool=("2001:db8:100::", 48, 60),
            preferred_lifetime=300,
            valid_lifetime=600,
        ).start()
        Dnsmasq(
            isp,
            "isp0",
            base / "dnsmasq",
            dhcp=False,
            dns_records={"www.lab.test": "192.0.2.1"},
            # Authoritative for lab.test: AAAA is an empty NOERROR, not REFUSED.
            extra_args=("--local=/lab.test/",),
        ).start()
        http = lab.spawn(
            isp,
            [sys.executable, "-u", "-m", "http.server", "8080", "--bind", "::"],
            base / "http.log",
        )
        http.wait_for_log("Serving HTTP", timeout=10)
        print(
            f"isp={isp.name}: Kea DHCPv4 192.0.2.0/24, Kea DHCPv6 PD 2001:db8:100::/48 -> /60, DNS, HTTP"
        )
        print(f"router={router.name} (wan0, lan0), lan={lan.name}")

        extra: list[dict[str, Any]] = []
        ppp: VMPppoeLab | None = None
        ac: PppoeServer | None = None
        problem = vm_prereq_problem(VM_TOOLS_PPPOE)
        if problem is not None:
            print(f"no PPPoE uplink: the test VM cannot run here ({problem})")
        else:
            banner(
                "booting the qemu VM for a PPPoE access concentrator (tap in the router namespace)"
            )
            vm = QemuVM(host_netns=router.name).start()
            lab.add_cleanup(vm.close)
            router.link_set(QemuVM.NIC_TAP, True)
            ppp = VMPppoeLab(vm, host_client=True)
            lab.add_cleanup(ppp.close)
            ac = ppp.start_ac(auth="chap", accounts={PPPOE_USER: PPPOE_PASSWORD}, ac_name="isp2-ac")
            password_file = base / "isp2.password"
            password_file.write_text(PPPOE_PASSWORD + "\n")
            password_file.chmod(0o600)
            extra = pppoe_resources(password_file)
            print(
                f"VM up in {vm.boot_seconds:.1f} s: pppoe-server (CHAP) on its NIC, tap {QemuVM.NIC_TAP}"
            )

        config = write_config(
            base / "router.yaml",
            router_config(
                *resources(base / "resolv.conf"), *observe_resources(), *extra, name="demo"
            ),
        )
        banner(f"routerd serve --config {config} (in the router namespace)")
        serve = ServeProcess(
            config, base / "run", base / "state", base / "serve.log", netns=router.name
        )
        serve.start()
        lab.add_cleanup(serve.stop)
        runtime = serve.runtime_dir
        t0 = time.monotonic()
        wait_for(runtime, "DHCPv4Client/wan", "Applied")
        wait_for(runtime, "DHCPv6PrefixDelegation/wan-pd", "Applied")
        for name in ("isp-ping", "isp-dns", "isp-web"):
            wait_for(runtime, f"HealthCheck/{name}", "Healthy")
        wait_for(runtime, "DerivedEvent/wan-ready", "Asserted")
        kea_ppp: VMProcess | None = None
        if ppp is not None and ac is not None:
            wait_for(runtime, "PPPoESession/isp2", "Up")
            kea_ppp = start_ppp_kea(ppp, ac, router, base)
            wait_for(runtime, "DHCPv6PrefixDelegation/isp2-pd", "Applied")
        banner(f"the router is up after {time.monotonic() - t0:.1f} s")
        routerctl(runtime, "status")
        print(
            f"\n{router.name}: "
            + ", ".join(a["local"] + "/" + str(a["prefixlen"]) for a in router.addresses("wan0", 4))
        )
        print(
            f"{router.name} lan0: "
            + ", ".join(
                a["local"] + "/" + str(a["prefixlen"])
                for a in router.addresses("lan0", 6)
                if a.get("scope") == "global"
            )
        )
        print(f"resolv.conf written by the DHCPv4 client:\n{(base / 'resolv.conf').read_text()}")
        routerctl(runtime, "describe", "DHCPv6PrefixDelegation/wan-pd")

        banner("outage: nftables drops ICMP, DNS and HTTP in the ISP namespace")
        head = serve.events(limit=1)["cursor"]
        isp.nft_block(proto="icmp")
        isp.nft_block(dport=53)
        isp.nft_block(proto="tcp", dport=8080)
        t0 = time.monotonic()
        for name in ("isp-ping", "isp-dns", "isp-web"):
            wait_for(runtime, f"HealthCheck/{name}", "Unhealthy")
        wait_for(runtime, "DerivedEvent/wan-ready", "Retracted")
        banner(
            f"all checks Unhealthy {time.monotonic() - t0:.1f} s later; the leases are untouched,"
            " wan-ready is retracted"
        )
        routerctl(runtime, "status")
        routerctl(
            runtime, "get", "events", "--since", str(head), "--topic", "routerd.healthcheck.state.*"
        )

        banner("outage lifted")
        isp.nft_unblock()
        t0 = time.monotonic()
        for name in ("isp-ping", "isp-dns", "isp-web"):
            wait_for(runtime, f"HealthCheck/{name}", "Healthy")
        wait_for(runtime, "DerivedEvent/wan-ready", "Asserted")
        banner(f"all Healthy again {time.monotonic() - t0:.1f} s later; wan-ready asserted again")
        routerctl(runtime, "status")
        banner("the virtual events: wan-ready asserted, retracted, asserted; isp-down")
        routerctl(
            runtime, "get", "events", "--topic", "routerd.derived.**", "--topic", "routerd.rules.**"
        )
        routerctl(runtime, "describe", "DerivedEvent/wan-ready")
        observe_act(runtime, serve, router, lan, base)
        if ppp is not None and ac is not None and kea_ppp is not None:
            pppoe_act(runtime, serve, ppp, ac, kea_ppp)
        if args.hold:
            banner(f"holding; try: .venv/bin/routerctl --runtime-dir {runtime} events --follow")
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        banner("stopping routerd serve (DHCP release where configured) and removing the lab")
    print("demo finished: every namespace and process was removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
