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
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time
from typing import Any

from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.netns import Lab
from routerd.testing.serve import ServeProcess
from routerd.testing.servers import Dnsmasq
from routerd.testing.servers import KeaDhcp4
from routerd.testing.servers import KeaDhcp6

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
            isp, "isp0", base / "dnsmasq", dhcp=False, dns_records={"www.lab.test": "192.0.2.1"}
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

        config = write_config(
            base / "router.yaml", router_config(*resources(base / "resolv.conf"), name="demo")
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
