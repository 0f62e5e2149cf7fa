"""netapply's IPv6 guards against a real kernel, in namespaces the test creates:
the MTU floor of 1280 and the link-local address state."""

from __future__ import annotations

import pytest
from routerd.netapply import IPV6_MIN_MTU
from routerd.netapply import NetApplier
from routerd.testing.daemon import poll
from routerd.testing.netns import Lab
from routerd.testing.netns import Netns

pytestmark = pytest.mark.netns


def pair(lab: Lab, *, dad: bool = False) -> tuple[Netns, Netns]:
    a, b = lab.netns("rdt-a", dad=dad), lab.netns("rdt-b", dad=dad)
    lab.veth(a, "wan0", b, "peer0")
    return a, b


def test_mtu_never_below_1280_while_ipv6_is_on(lab: Lab) -> None:
    ns, _peer = pair(lab)
    net = NetApplier(ns.name)
    try:
        before = net.link_local("wan0")
        assert before.usable and before.reason == "Available"
        assert net.set_mtu("wan0", 576) == IPV6_MIN_MTU
        assert ns.link("wan0")["mtu"] == IPV6_MIN_MTU
        assert net.link_local("wan0").address == before.address, "IPv6 stays on"
        assert net.set_mtu("wan0", 1400) == 1400, "above the floor: as asked"

        # Without the floor Linux takes IPv6 off the interface.
        assert net.set_mtu("wan0", 576, ipv6_floor=False) == 576
        gone = net.link_local("wan0")
        assert (gone.ipv6, gone.usable, gone.reason) == (False, False, "IPv6Disabled")
        assert "576" in gone.message and "1280" in gone.message
        assert net.set_mtu("wan0", 1500) == 1500
        poll(lambda: net.link_local("wan0").usable, 5, "the link-local address back")

        # IPv6 disabled on the interface: nothing to protect, 576 as asked.
        ns.sysctl({"net.ipv6.conf.wan0.disable_ipv6": "1"})
        assert net.ipv6_enabled("wan0") is False
        assert "disable_ipv6" in net.link_local("wan0").message
        assert net.set_mtu("wan0", 576) == 576
    finally:
        net.close()


def test_link_local_tentative_then_dad_failed_or_available(lab: Lab) -> None:
    ns, peer = pair(lab, dad=True)
    # Only the addresses the test adds: no automatic link-local.
    ns.ip("link", "set", "dev", "wan0", "addrgenmode", "none")
    ns.ip("-6", "addr", "flush", "dev", "wan0", "scope", "link")
    peer.addr_add("peer0", "fe80::1/64", "nodad")
    net = NetApplier(ns.name)
    try:
        assert net.link_local("wan0").reason == "NoLinkLocal"
        ns.addr_add("wan0", "fe80::1/64")  # the peer has it: DAD fails
        state = net.link_local("wan0")
        assert (state.reason, state.usable) == ("Tentative", False)
        failed = poll(
            lambda: (s := net.link_local("wan0")).reason == "DadFailed" and s,
            5,
            "DAD to fail",
        )
        assert "duplicate" in failed.message and not failed.usable
        ns.addr_del("wan0", "fe80::1/64")
        ns.addr_add("wan0", "fe80::2/64")
        ok = poll(lambda: (s := net.link_local("wan0")).usable and s, 5, "DAD to pass")
        assert ok.address == "fe80::2" and ok.reason == "Available"
    finally:
        net.close()
