"""netapply against a real kernel, inside a namespace the test creates."""

from __future__ import annotations

from pathlib import Path
import socket
import struct
import sys

import pytest
from routerd.netapply import ApplyError
from routerd.netapply import NetApplier
from routerd.netapply import parse_link_messages
from routerd.testing.netns import Lab


@pytest.fixture
def ns(lab: Lab) -> str:
    a, b = lab.netns("rdt-a"), lab.netns("rdt-b")
    lab.veth(a, "wan0", b, "peer0")
    return a.name


@pytest.mark.netns
def test_addresses_with_lifetimes_are_idempotent(ns: str, lab: Lab) -> None:
    net = NetApplier(ns)
    net.add_address("wan0", "192.0.2.10/24", valid=120, preferred=60)
    net.add_address("wan0", "192.0.2.10/24", valid=300, preferred=300)  # a renew refreshes
    assert net.addresses("wan0") == ["192.0.2.10/24"]
    info = lab.namespaces[0].addresses("wan0", 4)[0]
    assert 290 <= info["valid_life_time"] <= 300
    assert net.remove_address("wan0", "192.0.2.10/24") is True
    assert net.remove_address("wan0", "192.0.2.10/24") is False
    assert net.remove_address("nope0", "192.0.2.10/24") is False
    net.close()


@pytest.mark.netns
def test_routes_replace_remove_and_unreachable(ns: str) -> None:
    net = NetApplier(ns)
    net.add_address("wan0", "192.0.2.10/24")
    net.replace_route("0.0.0.0/0", gateway="192.0.2.1", ifname="wan0", metric=100)
    net.replace_route("198.51.100.0/24", gateway="192.0.2.1", ifname="wan0", metric=100)
    net.replace_route("198.51.100.0/24", gateway="192.0.2.1", ifname="wan0", metric=100)
    routes = net.routes()
    assert {"dst": "default", "gateway": "192.0.2.1", "metric": 100, "type": 1} in routes
    assert [r["dst"] for r in routes].count("198.51.100.0/24") == 1
    assert (
        net.remove_route("198.51.100.0/24", gateway="192.0.2.1", ifname="wan0", metric=100) is True
    )
    assert (
        net.remove_route("198.51.100.0/24", gateway="192.0.2.1", ifname="wan0", metric=100) is False
    )
    net.replace_route("2001:db8:100::/48", type_="unreachable")
    assert any(r["dst"] == "2001:db8:100::/48" for r in net.routes(socket.AF_INET6))
    with pytest.raises(ApplyError) as info:
        net.replace_route("203.0.113.0/24", gateway="10.9.9.9", ifname="wan0")
    assert "203.0.113.0/24" in str(info.value)
    net.close()


WATCH = """
import select, sys
from routerd.netapply import LinkWatcher
w = LinkWatcher({"wan0"})
print("watching", flush=True)
while True:
    select.select([w.fileno()], [], [], 5)
    for c in w.drain():
        print(c.name, c.state.exists, c.state.admin_up, c.state.carrier, c.state.operstate, flush=True)
"""


@pytest.mark.netns
def test_link_state_and_watcher(ns: str, lab: Lab, tmp_path: Path) -> None:
    net = NetApplier(ns)
    assert net.link("wan0").ready
    assert not net.link("missing0").exists
    client, peer = lab.namespaces
    proc = lab.spawn(client, [sys.executable, "-u", "-c", WATCH], tmp_path / "watch.log")
    proc.wait_for_log("watching")
    peer.link_set("peer0", False)  # the far end goes down: wan0 loses carrier
    proc.wait_for_log("wan0 True True False ")
    assert not net.link("wan0").ready
    peer.link_set("peer0", True)
    proc.wait_for_log("wan0 True True True UP")
    client.ip("link", "del", "wan0")
    proc.wait_for_log("wan0 False")
    net.close()


def test_parse_link_messages_never_raises_on_garbage() -> None:
    import os

    for size in range(0, 200, 7):
        parse_link_messages(os.urandom(size))
    hdr = struct.pack("=IHHII", 32, 16, 0, 0, 0) + struct.pack("=BBHiII", 0, 0, 1, 5, 0x10003, 0)
    (state,) = parse_link_messages(hdr)
    assert state.index == 5 and state.carrier and state.admin_up and state.name == ""
