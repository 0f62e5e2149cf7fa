"""routerd serve with real DHCP daemons against Kea, health checks, in namespaces."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
import os
from pathlib import Path
import signal
import sqlite3
import tempfile

import pytest
from routerd.client import UnixClient
from routerd.testing.daemon import poll
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.daemon import write_config
from routerd.testing.netns import Lab
from routerd.testing.netns import Netns
from routerd.testing.netns import require_netns_prereqs
from routerd.testing.serve import ServeProcess
from routerd.testing.servers import KeaDhcp4
from routerd.testing.servers import KeaDhcp6

WAN = ("DHCPv4Client", "wan")
PD = ("DHCPv6PrefixDelegation", "wan-pd")
PING = ("HealthCheck", "isp-ping")


@dataclass
class Router:
    serve: ServeProcess
    router: Netns
    isp: Netns


@pytest.fixture
def router(lab: Lab, tmp_path: Path) -> Iterator[Router]:
    require_netns_prereqs(["kea-dhcp4", "kea-dhcp6"])
    isp, rtr, lan = lab.netns("rdt-isp"), lab.netns("rdt-rtr"), lab.netns("rdt-lan")
    lab.veth(rtr, "wan0", isp, "isp0")
    lab.veth(rtr, "lan0", lan, "eth0")
    isp.addr_add("isp0", "192.0.2.1/24")
    isp.addr_add("isp0", "2001:db8:1::1/64")
    isp.wait_for_link_local("isp0")
    rtr.wait_for_link_local("wan0")
    KeaDhcp4(isp, "isp0", tmp_path / "kea4", valid_lifetime=600).start()
    KeaDhcp6(
        isp, "isp0", tmp_path / "kea6", preference=255, preferred_lifetime=300, valid_lifetime=600
    ).start()
    config = router_config(
        resource(*WAN, {"interface": "wan0"}),
        resource(
            *PD,
            {
                "interface": "wan0",
                "prefixLength": 60,
                "downstream": [{"interface": "lan0", "subnetId": 1}],
            },
        ),
        resource(
            *PING,
            {"protocol": "icmp", "target": "192.0.2.1", "interval": "500ms", "timeout": "300ms"},
        ),
    )
    with tempfile.TemporaryDirectory(prefix="rdl-") as short:
        base = Path(short)
        sp = ServeProcess(
            write_config(tmp_path / "router.yaml", config),
            base / "run",
            base / "state",
            tmp_path / "serve.log",
            netns=rtr.name,
            env={"ROUTERD_PLUGINS": "healthcheck,dhcpv4,dhcpv6"},
        )
        sp.start()
        lab.add_cleanup(sp.stop)
        sp.wait_for_phase(*WAN, "Applied", timeout=30)
        sp.wait_for_phase(*PD, "Applied", timeout=30)
        sp.wait_for_phase(*PING, "Healthy", timeout=30)
        yield Router(sp, rtr, isp)
        sp.stop()


def stored_cursors(sp: ServeProcess, source: str) -> list[int]:
    db = sqlite3.connect(sp.state_dir / "routerd.db")
    try:
        rows = db.execute(
            "SELECT cursor FROM events WHERE source = ? AND cursor > 0 ORDER BY id", (source,)
        )
        return [r[0] for r in rows.fetchall()]
    finally:
        db.close()


def assert_contiguous(sp: ServeProcess, source: str) -> None:
    """Every event in the daemon's log is stored once, in order (cursors skip after a crash)."""
    daemon_kind, name = source.split("/")
    body = UnixClient(str(sp.runtime_dir / daemon_kind / f"{name}.sock")).get(
        "/v1/events", since="0", limit=1000
    )
    logged = [int(e["cursor"]) for e in body.json()["events"]]
    poll(lambda: len(stored_cursors(sp, source)) >= len(logged), 10, f"{source} ingested")
    seen = stored_cursors(sp, source)
    assert seen[: len(logged)] == logged, f"{source}: stored {seen}, logged {logged}"
    assert seen == sorted(set(seen)), f"{source}: duplicates: {seen}"


@pytest.mark.netns
def test_every_daemon_reports_through_routerd(router: Router) -> None:
    sp = router.serve
    items = {i["resource"]["name"]: i for i in sp.get("resources").json()["items"]}
    assert items["wan"]["observed"]["address"].startswith("192.0.2.")
    assert items["wan-pd"]["observed"]["prefixes"][0]["prefix"].startswith("2001:db8:100:")
    assert items["isp-ping"]["phase"] == "Healthy"
    bound = sp.events(topic="routerd.dhcpv4.client.lease.*", resource="DHCPv4Client/wan")["items"]
    assert [e["topic"] for e in bound] == ["routerd.dhcpv4.client.lease.bound"]
    pd = sp.events(topic="routerd.dhcpv6.client.prefix.bound")["items"]
    assert len(pd) == 1 and pd[0]["attributes"]["resource.name"] == "wan-pd"
    both = sp.events(topic=["routerd.dhcpv4.**", "routerd.dhcpv6.**"], limit=1000)["items"]
    assert {e["attributes"]["daemon.kind"] for e in both} == {"dhcpv4-client", "dhcpv6-client"}
    for source in ("dhcpv4-client/wan", "dhcpv6-client/wan-pd", "healthcheck/isp-ping"):
        assert_contiguous(sp, source)


@pytest.mark.netns
def test_sigkill_dhcpv4_daemon_restarts_and_keeps_the_lease(router: Router) -> None:
    sp = router.serve
    address = sp.get("resources/DHCPv4Client/wan").json()["observed"]["address"]
    old = sp.daemon(*WAN)
    os.kill(old["pid"], signal.SIGKILL)
    poll(
        lambda: (d := sp.daemon(*WAN))["restarts"] == 1 and d["state"] == "Running",
        15,
        "the restart",
    )
    poll(
        lambda: any(
            e["attributes"].get("pid") not in (None, old["pid"])
            for e in sp.events(
                topic="routerd.daemon.lifecycle.started", resource="DHCPv4Client/wan"
            )["items"]
        ),
        15,
        "the new daemon's started event in the store",
    )
    sp.wait_for_phase(*WAN, "Applied", timeout=20)
    assert sp.get("resources/DHCPv4Client/wan").json()["observed"]["address"] == address
    assert any(a["local"] + "/24" == address for a in router.router.addresses("wan0", 4))
    assert_contiguous(sp, "dhcpv4-client/wan")


@pytest.mark.netns
def test_sigkill_routerd_resumes_ingestion_without_duplicates(router: Router) -> None:
    sp = router.serve
    pids = {d["resource"]["name"]: d["pid"] for d in sp.status()["daemons"]}
    sp.kill()
    sp.start()  # adopts the daemons that kept running
    status = sp.status()
    assert {d["resource"]["name"]: d["pid"] for d in status["daemons"]} == pids
    assert all(d["adopted"] for d in status["daemons"])
    resp = sp.post("resources/DHCPv4Client/wan/commands/renew")
    assert resp.status == 200, resp.error_text()
    poll(
        lambda: sp.events(topic="routerd.dhcpv4.client.lease.renewed", resource="DHCPv4Client/wan")[
            "items"
        ],
        15,
        "the renewal in the store",
    )
    for source in ("dhcpv4-client/wan", "dhcpv6-client/wan-pd", "healthcheck/isp-ping"):
        assert_contiguous(sp, source)
    assert sp.status()["store"]["duplicatesDropped"] == 0
