"""pytest fixtures for network-namespace labs.

Import them into a conftest or plugin with::

    from routerd.testing.lab_fixtures import *  # noqa: F403

- ``lab``: a function-scoped :class:`~routerd.testing.netns.Lab`, closed at
  teardown whatever the test did.
- ``dhcp4_pair``: client ``wan0`` ↔ server ``srv0`` (``192.0.2.1/24``).
- ``dhcp6_pair``: the same with ``2001:db8:1::1/64`` on ``srv0``, plus a
  ``lan`` namespace joined to the client by ``lan0`` ↔ ``eth0`` for
  downstream (prefix-delegation) assignment.

Every fixture first calls :func:`~routerd.testing.netns.require_netns_prereqs`,
so tests skip (or fail under ``CI=true``) when namespaces are unavailable.
Tests needing a server or client binary call it themselves with the names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from routerd.testing.netns import Lab
from routerd.testing.netns import Netns
from routerd.testing.netns import require_netns_prereqs

__all__ = ["Dhcp4Pair", "Dhcp6Pair", "dhcp4_pair", "dhcp6_pair", "lab"]


@dataclass(frozen=True)
class Dhcp4Pair:
    """A DHCPv4 client namespace and server namespace joined by veth.

    :ivar lab: the lab owning both namespaces.
    :ivar client: the client's namespace.
    :ivar server: the server's namespace.
    :ivar client_if: the client's interface (``wan0``, no address).
    :ivar server_if: the server's interface (``srv0``).
    :ivar server_addr: the server's address on *server_if*, no prefix length.
    :ivar server_cidr: the same with its prefix length.
    """

    lab: Lab
    client: Netns
    server: Netns
    client_if: str = "wan0"
    server_if: str = "srv0"
    server_addr: str = "192.0.2.1"
    server_cidr: str = "192.0.2.1/24"


@dataclass(frozen=True)
class Dhcp6Pair:
    """A DHCPv6 client, its server, and a LAN behind the client.

    :ivar lab: the lab owning the namespaces.
    :ivar client: the client's (router's) namespace.
    :ivar server: the server's namespace.
    :ivar lan: a host namespace downstream of the client.
    :ivar client_if: the client's upstream interface (``wan0``).
    :ivar server_if: the server's interface (``srv0``).
    :ivar client_lan_if: the client's downstream interface (``lan0``).
    :ivar lan_if: the LAN host's interface (``eth0``).
    :ivar server_addr: the server's global address on *server_if*.
    :ivar server_cidr: the same with its prefix length.
    """

    lab: Lab
    client: Netns
    server: Netns
    lan: Netns
    client_if: str = "wan0"
    server_if: str = "srv0"
    client_lan_if: str = "lan0"
    lan_if: str = "eth0"
    server_addr: str = "2001:db8:1::1"
    server_cidr: str = "2001:db8:1::1/64"


@pytest.fixture
def lab() -> Iterator[Lab]:
    """Yield a :class:`Lab`; every namespace and process in it ends at teardown."""
    require_netns_prereqs(["ip", "sysctl"])
    with Lab() as the_lab:
        yield the_lab


@pytest.fixture
def dhcp4_pair(lab: Lab) -> Dhcp4Pair:
    """Return client ``wan0`` ↔ server ``srv0`` with ``192.0.2.1/24`` on ``srv0``."""
    require_netns_prereqs(["ip"])
    pair = Dhcp4Pair(lab=lab, client=lab.netns(), server=lab.netns())
    lab.veth(pair.client, pair.client_if, pair.server, pair.server_if)
    pair.server.addr_add(pair.server_if, pair.server_cidr)
    return pair


@pytest.fixture
def dhcp6_pair(lab: Lab) -> Dhcp6Pair:
    """Return client ↔ server (``2001:db8:1::1/64``) and client ↔ lan veths.

    DAD is off in these namespaces, so link-local addresses are usable as
    soon as both ends are up.
    """
    require_netns_prereqs(["ip", "sysctl"])
    pair = Dhcp6Pair(lab=lab, client=lab.netns(), server=lab.netns(), lan=lab.netns())
    lab.veth(pair.client, pair.client_if, pair.server, pair.server_if)
    lab.veth(pair.client, pair.client_lan_if, pair.lan, pair.lan_if)
    pair.server.addr_add(pair.server_if, pair.server_cidr)
    return pair
