"""Fixtures for the dhcpv6-client lab tests: Kea DHCPv6 in the ``dhcp6_pair``.

Kea delegates /60s out of 2001:db8:100::/48 with short lifetimes (preferred
8 s, valid 12 s, T1 3 s, T2 5 s) so that renew, rebind and expiry happen
within seconds, and preference 255 so that the client takes its Advertise at
once (RFC 9915 §18.2.1) instead of collecting for a second.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from routerd.testing.daemon import DaemonFactory
from routerd.testing.daemon import DaemonProcess
from routerd.testing.daemon import resource
from routerd.testing.daemon import router_config
from routerd.testing.lab_fixtures import Dhcp6Pair
from routerd.testing.netns import require_netns_prereqs
from routerd.testing.servers import KeaDhcp6

ENV = {"ROUTERD_PLUGINS": "dhcpv6"}
KIND = "DHCPv6PrefixDelegation"
NAME = "wan-pd"
PD_POOL = ("2001:db8:100::", 48, 60)
LIFETIMES: dict[str, int] = {
    "preferred_lifetime": 8,
    "valid_lifetime": 12,
    "renew_timer": 3,
    "rebind_timer": 5,
}


@dataclass
class PdLab:
    """The namespaces, the running Kea and a way to start the daemon."""

    pair: Dhcp6Pair
    kea: KeaDhcp6
    factory: DaemonFactory
    tmp_path: Path

    def spec(self, **overrides: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "interface": self.pair.client_if,
            "prefixLength": 60,
            "downstream": [{"interface": self.pair.client_lan_if, "subnetId": 1}],
        }
        spec.update(overrides)
        return spec

    def config(self, **overrides: Any) -> dict[str, Any]:
        return router_config(resource(KIND, NAME, self.spec(**overrides)))

    def daemon(self, start: bool = True, **overrides: Any) -> DaemonProcess:
        return self.factory(
            "dhcpv6-client",
            self.config(**overrides),
            NAME,
            netns=self.pair.client.name,
            env=ENV,
            start=start,
        )


def start_kea(pair: Dhcp6Pair, workdir: Path, **settings: Any) -> KeaDhcp6:
    require_netns_prereqs(["kea-dhcp6"])
    options: dict[str, Any] = {
        "pool": None,
        "pd_pool": PD_POOL,
        "preference": 255,
        "domain_search": ("lab.example",),
        **LIFETIMES,
    }
    options.update(settings)
    return KeaDhcp6(pair.server, pair.server_if, workdir, **options).start()


@pytest.fixture
def kea6(dhcp6_pair: Dhcp6Pair, tmp_path: Path) -> KeaDhcp6:
    """Kea DHCPv6 running on the server side of ``dhcp6_pair``."""
    return start_kea(dhcp6_pair, tmp_path / "kea")


@pytest.fixture
def pd_lab(
    dhcp6_pair: Dhcp6Pair, kea6: KeaDhcp6, routerd_daemon: DaemonFactory, tmp_path: Path
) -> PdLab:
    return PdLab(dhcp6_pair, kea6, routerd_daemon, tmp_path)


@pytest.fixture
def conditions() -> Callable[[dict[str, Any]], dict[str, dict[str, Any]]]:
    def by_type(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in res["conditions"]}

    return by_type
