"""The dhcpv6-client daemon against the routerd daemon conformance suite.

The daemon runs in the client namespace of a ``dhcp6_pair`` with Kea DHCPv6
serving prefixes, so every conformance test exercises a daemon that really
acquires (and on stop releases) a delegated prefix.
"""

from __future__ import annotations

import pytest
from routerd.testing.conformance import ConformanceTarget
from routerd.testing.conformance import DaemonConformance
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.lab_fixtures import Dhcp6Pair
from routerd.testing.servers import KeaDhcp6

pytestmark = pytest.mark.netns


class TestDhcpv6Conformance(DaemonConformance):
    @pytest.fixture
    def conformance_target(self, dhcp6_pair: Dhcp6Pair, kea6: KeaDhcp6) -> ConformanceTarget:
        assert kea6.alive()
        spec = {
            "interface": dhcp6_pair.client_if,
            "prefixLength": 60,
            "downstream": [{"interface": dhcp6_pair.client_lan_if, "subnetId": 1}],
        }
        return ConformanceTarget(
            "dhcpv6-client",
            router_config(resource("DHCPv6PrefixDelegation", "wan-pd", spec)),
            "wan-pd",
            netns=dhcp6_pair.client.name,
            env={"ROUTERD_PLUGINS": "dhcpv6"},
        )
