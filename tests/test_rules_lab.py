"""Virtual events from real DHCP and health-check daemons in namespaces, through routerd serve:
an ``absence`` rule on a DHCPv4 lease that is not renewed (Kea stopped), and a DerivedEvent
``wan-ready`` over the lease and an ICMP health check, retracted by an nftables outage."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
import tempfile
from typing import Any

import pytest
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.netns import Lab
from routerd.testing.netns import Netns
from routerd.testing.netns import require_netns_prereqs
from routerd.testing.serve import ServeProcess
from routerd.testing.servers import KeaDhcp4
from routerd.timefmt import parse_rfc3339

RULES = "rules.routerd.net/v1alpha1"
LEASE = "routerd.dhcpv4.client.lease"
NOT_RENEWED = "routerd.rules.lease.not-renewed"
WITHIN = 6.0  # T1 is 3 s: a renewal every 3 s cancels the timer


@dataclass
class Router:
    serve: ServeProcess
    isp: Netns
    kea: KeaDhcp4


def rule(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": RULES, "kind": kind, "metadata": {"name": name}, "spec": spec}


@pytest.fixture
def router(lab: Lab, tmp_path: Path) -> Iterator[Router]:
    require_netns_prereqs(["kea-dhcp4", "nft"])
    isp, rtr = lab.netns("rdr-isp"), lab.netns("rdr-rtr")
    lab.veth(rtr, "wan0", isp, "isp0")
    isp.addr_add("isp0", "192.0.2.1/24")
    kea = KeaDhcp4(
        isp, "isp0", tmp_path / "kea4", valid_lifetime=30, renew_timer=3, rebind_timer=25
    ).start()
    config = router_config(
        resource("DHCPv4Client", "wan", {"interface": "wan0"}),
        resource(
            "HealthCheck",
            "isp-ping",
            {
                "protocol": "icmp",
                "target": "192.0.2.1",
                "interval": "300ms",
                "timeout": "200ms",
                "healthyThreshold": 1,
                "unhealthyThreshold": 2,
            },
        ),
        rule(
            "EventRule",
            "lease-watch",
            {
                "pattern": {
                    "absence": {
                        "trigger": {"topic": [f"{LEASE}.bound", f"{LEASE}.renewed"]},
                        "expected": f"{LEASE}.renewed",
                        "within": WITHIN,
                    }
                },
                "correlateBy": ["resource.name"],
                "emit": {
                    "topic": NOT_RENEWED,
                    "severity": "warning",
                    "attributes": {"address": "${attributes.address}"},
                },
            },
        ),
        rule(
            "DerivedEvent",
            "wan-ready",
            {
                "topic": "routerd.derived.wan.ready",
                "inputs": [
                    {"value": "${DHCPv4Client/wan.status.phase}", "equals": "Applied"},
                    {"value": "${HealthCheck/isp-ping.status.phase}", "equals": "Healthy"},
                ],
            },
        ),
    )
    with tempfile.TemporaryDirectory(prefix="rdq-") as short:
        base = Path(short)
        sp = ServeProcess(
            write_config(tmp_path / "router.yaml", config),
            base / "run",
            base / "state",
            tmp_path / "serve.log",
            netns=rtr.name,
            env={"ROUTERD_PLUGINS": "healthcheck,dhcpv4"},
        )
        sp.start()
        lab.add_cleanup(sp.stop)
        yield Router(sp, isp, kea)
        sp.stop()


def topics(sp: ServeProcess, glob: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = sp.events(topic=glob, since=0, limit=1000)["items"]
    return items


@pytest.mark.netns
def test_wan_ready_under_an_outage_and_a_lease_not_renewed(router: Router) -> None:
    sp = router.serve
    sp.wait_for_phase("DerivedEvent", "wan-ready", "Asserted", timeout=30)

    # An outage upstream: the ISP drops pings. wan-ready retracts, and comes back.
    router.isp.run(["nft", "add", "table", "inet", "outage"])
    router.isp.run(
        ["nft", "add", "chain", "inet", "outage", "input", "{ type filter hook input priority 0; }"]
    )
    router.isp.run(
        ["nft", "add", "rule", "inet", "outage", "input", "icmp", "type", "echo-request", "drop"]
    )
    sp.wait_for_phase("DerivedEvent", "wan-ready", "Retracted", timeout=15)
    router.isp.run(["nft", "delete", "table", "inet", "outage"])
    sp.wait_for_phase("DerivedEvent", "wan-ready", "Asserted", timeout=15)
    derived = [e["topic"].rsplit(".", 1)[1] for e in topics(sp, "routerd.derived.wan.ready.*")]
    assert derived == ["asserted", "retracted", "asserted"]

    # Renewals every T1 (3 s) cancel the absence timer: nothing fires while Kea answers.
    poll(lambda: len(topics(sp, f"{LEASE}.renewed")) >= 2, 20, "two renewals")
    assert topics(sp, NOT_RENEWED) == []

    # Kea stops: the next renewal gets no answer, the rule fires WITHIN after the last one.
    router.kea.stop()
    poll(lambda: topics(sp, NOT_RENEWED), 20, "the absence rule firing")
    (fired,) = topics(sp, NOT_RENEWED)
    last = max(
        (e for e in topics(sp, f"{LEASE}.*") if e["topic"].endswith((".bound", ".renewed"))),
        key=lambda e: parse_rfc3339(e["time"]),
    )
    assert parse_rfc3339(fired["time"]) == pytest.approx(parse_rfc3339(last["time"]) + WITHIN)
    assert fired["attributes"]["address"] == last["attributes"]["address"]
    assert fired["attributes"]["correlation"] == "wan"
    assert fired["severity"] == "warning"
