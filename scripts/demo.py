"""`make demo`: a namespace lab with real servers and routerd health checks.

Builds two network namespaces joined by a veth pair: `router` (where the
routerd daemons run) and `upstream` (dnsmasq answering DNS, an HTTP server,
ICMP). Starts one healthcheck daemon per probe kind, shows them going
Healthy through routerctl, makes an outage with an nftables drop rule in the
upstream namespace, shows them Unhealthy, lifts it, shows them Healthy
again, then tears everything down. `--hold` keeps the lab up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import subprocess
import sys
import tempfile
import time

from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.netns import Lab
from routerd.testing.servers import Dnsmasq

VENV_BIN = Path(sys.executable).parent
CHECKS = [
    resource(
        "HealthCheck",
        "upstream-icmp",
        {"protocol": "icmp", "target": "192.0.2.1", "sourceInterface": "wan0"},
    ),
    resource("HealthCheck", "upstream-icmp6", {"protocol": "icmp", "target": "2001:db8:f::1"}),
    resource(
        "HealthCheck", "upstream-tcp", {"protocol": "tcp", "target": "192.0.2.1", "port": 8080}
    ),
    resource(
        "HealthCheck",
        "upstream-http",
        {"protocol": "http", "target": "192.0.2.1", "port": 8080, "expectStatus": "2xx"},
    ),
    resource(
        "HealthCheck",
        "upstream-dns",
        {"protocol": "dns", "target": "192.0.2.1", "dnsName": "www.lab.test"},
    ),
]
for check in CHECKS:
    check["spec"].update(
        {"interval": "1s", "timeout": "500ms", "healthyThreshold": 2, "unhealthyThreshold": 3}
    )


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def routerctl(runtime: Path, *args: str) -> None:
    print(f"$ routerctl {' '.join(args)}", flush=True)
    subprocess.run([str(VENV_BIN / "routerctl"), "--runtime-dir", str(runtime), *args], check=False)


def wait_all(daemons: list[DaemonProcess], phase: str) -> float:
    t0 = time.monotonic()
    for d in daemons:
        d.wait_for_phase(phase, timeout=30)
    return time.monotonic() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hold", action="store_true", help="keep the lab up until Ctrl-C")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("make demo needs root (network namespaces)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="routerd-demo-") as tmp, Lab() as lab:
        base = Path(tmp)
        runtime, state = base / "run", base / "state"
        banner("building the lab: namespaces router <-> upstream (veth wan0/up0)")
        router, upstream = lab.netns("rdt-r"), lab.netns("rdt-u")
        lab.veth(router, "wan0", upstream, "up0")
        router.addr_add("wan0", "192.0.2.2/24")
        router.addr_add("wan0", "2001:db8:f::2/64")
        upstream.addr_add("up0", "192.0.2.1/24")
        upstream.addr_add("up0", "2001:db8:f::1/64")
        Dnsmasq(
            upstream, "up0", base / "dnsmasq", dhcp=False, dns_records={"www.lab.test": "192.0.2.1"}
        ).start()
        http = lab.spawn(
            upstream,
            [sys.executable, "-u", "-m", "http.server", "8080", "--bind", "::"],
            base / "http.log",
        )
        http.wait_for_log("Serving HTTP", timeout=10)
        print(
            f"router={router.name} upstream={upstream.name}; dnsmasq and an HTTP server run upstream"
        )

        config = write_config(base / "router.yaml", router_config(*CHECKS, name="demo"))
        banner(f"starting {len(CHECKS)} healthcheck daemons in the router namespace ({config})")
        daemons = []
        for check in CHECKS:
            d = DaemonProcess(
                daemon_kind="healthcheck",
                resource=check["metadata"]["name"],
                config_path=config,
                runtime_dir=runtime,
                state_dir=state,
                log_path=base / f"{check['metadata']['name']}.log",
                netns=router.name,
            )
            daemons.append(d.start())
        lab.add_cleanup(lambda: [d.stop() for d in daemons])
        took = wait_all(daemons, "Healthy")
        banner(f"all Healthy after {took:.1f} s")
        routerctl(runtime, "daemons")
        routerctl(runtime, "status", "healthcheck/upstream-http")

        banner("outage: nftables drops everything in the upstream namespace")
        heads = {d.resource: d.head() for d in daemons}
        upstream.nft_block()
        took = wait_all(daemons, "Unhealthy")
        banner(f"all Unhealthy {took:.1f} s later (3 failed probes at 1 s intervals)")
        routerctl(runtime, "daemons")
        routerctl(
            runtime,
            "events",
            "healthcheck/upstream-dns",
            "--topic",
            "routerd.healthcheck.state.*",
            "--since",
            str(heads["upstream-dns"]),
        )

        banner("outage lifted")
        upstream.nft_unblock()
        took = wait_all(daemons, "Healthy")
        banner(f"all Healthy again {took:.1f} s later")
        routerctl(runtime, "daemons")
        if args.hold:
            banner(
                f"holding; try: .venv/bin/routerctl --runtime-dir {runtime} events healthcheck/upstream-tcp --follow"
            )
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        banner("stopping the daemons and removing the lab")
    print("demo finished: every namespace and process was removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
