"""The healthcheck daemon against real targets in network namespaces.

The router namespace runs the daemons; the upstream namespace runs dnsmasq
(DNS), an HTTP server and answers ICMP. An outage is an nftables drop rule
in the upstream namespace.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
import sys
from typing import Any

import pytest
from routerd.testing.daemon import DaemonFactory
from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.netns import Lab
from routerd.testing.netns import Netns
from routerd.testing.netns import require_netns_prereqs
from routerd.testing.servers import Dnsmasq

UP4, UP6 = "192.0.2.1", "2001:db8:f::1"
ENV = {"ROUTERD_PLUGINS": "healthcheck"}
FAST = {"interval": "300ms", "timeout": "250ms", "healthyThreshold": 2, "unhealthyThreshold": 3}


@dataclass
class Upstream:
    router: Netns
    upstream: Netns


@pytest.fixture
def upstream(lab: Lab, tmp_path: Path) -> Iterator[Upstream]:
    require_netns_prereqs(["dnsmasq", "nft"])
    router, up = lab.netns("rdt-r"), lab.netns("rdt-u")
    lab.veth(router, "wan0", up, "up0")
    router.addr_add("wan0", "192.0.2.2/24")
    router.addr_add("wan0", "2001:db8:f::2/64")
    up.addr_add("up0", f"{UP4}/24")
    up.addr_add("up0", f"{UP6}/64")
    Dnsmasq(up, "up0", tmp_path / "dnsmasq", dhcp=False, dns_records={"www.lab.test": UP4}).start()
    http = lab.spawn(
        up,
        [sys.executable, "-u", "-m", "http.server", "8080", "--bind", "::"],
        tmp_path / "http.log",
    )
    http.wait_for_log("Serving HTTP", timeout=10)
    yield Upstream(router, up)


def check(name: str, **spec: Any) -> dict[str, Any]:
    return resource("HealthCheck", name, {**FAST, **spec})


def start(
    routerd_daemon: DaemonFactory, up: Upstream, *checks: dict[str, Any]
) -> list[DaemonProcess]:
    config = router_config(*checks)
    return [
        routerd_daemon("healthcheck", config, c["metadata"]["name"], netns=up.router.name, env=ENV)
        for c in checks
    ]


ALL_PROBES = [
    check("icmp4", protocol="icmp", target=UP4, sourceInterface="wan0"),
    check("icmp6", protocol="icmp", target=UP6),
    check("tcp", protocol="tcp", target=UP4, port=8080, sourceAddress="192.0.2.2"),
    check("http", protocol="http", target=UP4, port=8080, path="/", expectStatus="2xx", fwmark=7),
    check("dns", protocol="dns", target=UP4, dnsName="www.lab.test"),
    check("dns6", protocol="dns", target=UP6, dnsName="www.lab.test", dnsType="A"),
]


@pytest.mark.netns
def test_every_probe_kind_goes_healthy_then_unhealthy_under_outage_then_back(
    upstream: Upstream, routerd_daemon: DaemonFactory
) -> None:
    daemons = start(routerd_daemon, upstream, *ALL_PROBES)
    for d in daemons:
        res = d.wait_for_phase("Healthy", timeout=15)
        assert res["observed"]["consecutiveSuccesses"] >= 2
        assert res["observed"]["lastResult"]["ok"] is True
        assert res["observed"]["lastResult"]["latencyMs"] > 0
    heads = [d.head() for d in daemons]

    upstream.upstream.nft_block()  # drop everything to and from the upstream
    for d, head in zip(daemons, heads, strict=True):
        res = d.wait_for_phase("Unhealthy", timeout=15)
        cond = {c["type"]: c for c in res["conditions"]}["TargetReachable"]
        assert cond["status"] == "False"
        event = d.wait_for_event("routerd.healthcheck.state.unhealthy", since=head)
        assert event["attributes"]["consecutiveFailures"] == 3, "exactly at the threshold"
        assert event["severity"] == "warning"
        assert res["observed"]["firstFailureAt"] is not None

    heads = [d.head() for d in daemons]
    upstream.upstream.nft_unblock()
    for d, head in zip(daemons, heads, strict=True):
        d.wait_for_phase("Healthy", timeout=15)
        event = d.wait_for_event("routerd.healthcheck.state.healthy", since=head)
        assert event["attributes"]["previous"] == "Unhealthy"
        assert event["attributes"]["consecutiveSuccesses"] == 2


@pytest.mark.netns
def test_probe_that_cannot_run_is_error_naming_why(
    upstream: Upstream, routerd_daemon: DaemonFactory
) -> None:
    (d,) = start(
        routerd_daemon,
        upstream,
        check("noif", protocol="tcp", target=UP4, port=8080, sourceInterface="missing0"),
    )
    res = d.wait_for_phase("Error", timeout=10)
    cond = {c["type"]: c for c in res["conditions"]}["ProbeReady"]
    assert cond["status"] == "False"
    assert "missing0" in cond["message"]


@pytest.mark.netns
def test_renew_probes_now_and_state_survives_restart(
    upstream: Upstream, routerd_daemon: DaemonFactory
) -> None:
    (d,) = start(
        routerd_daemon,
        upstream,
        check("tcp", protocol="tcp", target=UP4, port=8080, interval="1h", timeout="1s"),
    )
    first = d.wait_for_event("routerd.healthcheck.probe.succeeded")
    assert first["severity"] == "debug"
    resp = d.command("renew")
    body = resp.json()
    assert resp.status == 200 and body["result"]["probe"]["ok"] is True
    assert body["result"]["probe"]["address"] == UP4
    d.wait_for_phase("Healthy")  # two probes: the first and the renew
    total = d.resource_status()["observed"]["totalProbes"]
    assert total == 2, "interval is 1h: only the start probe and the renew ran"
    d.stop()
    d.start()
    res = d.wait_for_phase("Healthy", timeout=10)
    cond = {c["type"]: c for c in res["conditions"]}["TargetReachable"]
    assert cond["reason"] == "Restored", "a fresh verdict is restored, not re-earned"
    observed = d.resource_status()["observed"]
    assert observed["totalProbes"] >= total + 1, "counters restored, then the start probe"
    assert len(observed["history"]) >= 3
