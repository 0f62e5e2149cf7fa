"""The dhcpv4-client daemon against the routerd daemon conformance suite.

The daemon runs in the client namespace of ``dhcp4_pair`` with Kea serving
the other end, so the suite exercises a daemon that really holds a lease
(restarts go through INIT-REBOOT, stops remove what was applied).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from routerd.testing.conformance import ConformanceTarget
from routerd.testing.conformance import DaemonConformance
from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.lab_fixtures import Dhcp4Pair
from routerd.testing.netns import require_netns_prereqs
from routerd.testing.servers import KeaDhcp4

pytestmark = pytest.mark.netns


@pytest.fixture
def kea_server(dhcp4_pair: Dhcp4Pair, tmp_path: Path) -> Iterator[KeaDhcp4]:
    require_netns_prereqs(["kea-dhcp4"])
    kea = KeaDhcp4(dhcp4_pair.server, dhcp4_pair.server_if, tmp_path / "kea").start()
    yield kea
    kea.stop()


class TestDhcpv4Conformance(DaemonConformance):
    @pytest.fixture
    def conformance_target(
        self, dhcp4_pair: Dhcp4Pair, kea_server: KeaDhcp4, tmp_path: Path
    ) -> ConformanceTarget:
        spec = {"interface": dhcp4_pair.client_if, "dnsFile": str(tmp_path / "resolv.conf")}
        return ConformanceTarget(
            "dhcpv4-client",
            router_config(resource("DHCPv4Client", "wan", spec)),
            "wan",
            netns=dhcp4_pair.client.name,
            env={"ROUTERD_PLUGINS": "dhcpv4"},
        )

    def test_reaches_applied(self, daemon: DaemonProcess) -> None:
        res = daemon.wait_for_phase("Applied", timeout=15)
        assert res["observed"]["state"] == "BOUND"
        assert res["observed"]["address"].startswith("192.0.2.")
