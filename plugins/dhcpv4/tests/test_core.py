"""The sans-I/O DHCPv4 state machine, driven with a fake clock and fixed xids."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
import dataclasses
import json
import math
import random
from typing import Any

import pytest
from routerd_dhcpv4 import timing
from routerd_dhcpv4.codec import BOOTREPLY
from routerd_dhcpv4.codec import BOOTREQUEST
from routerd_dhcpv4.codec import INFINITE_LEASE
from routerd_dhcpv4.codec import DecodeError
from routerd_dhcpv4.codec import DhcpMessage
from routerd_dhcpv4.codec import MessageType
from routerd_dhcpv4.codec import client_id_from_mac
from routerd_dhcpv4.codec import decode
from routerd_dhcpv4.codec import encode
from routerd_dhcpv4.codec import parse_frame
from routerd_dhcpv4.core import DEFAULT_PARAMETER_REQUEST_LIST
from routerd_dhcpv4.core import TRANSITIONS
from routerd_dhcpv4.core import ClientConfig
from routerd_dhcpv4.core import DhcpClientCore
from routerd_dhcpv4.core import InvalidTransition
from routerd_dhcpv4.core import Outgoing
from routerd_dhcpv4.core import State
from routerd_dhcpv4.events import CoreEvent
from routerd_dhcpv4.events import Declined
from routerd_dhcpv4.events import LeaseAbandoned
from routerd_dhcpv4.events import LeaseBound
from routerd_dhcpv4.events import LeaseExpired
from routerd_dhcpv4.events import LeaseRebound
from routerd_dhcpv4.events import LeaseRenewed
from routerd_dhcpv4.events import Nak
from routerd_dhcpv4.events import OptionRejected
from routerd_dhcpv4.events import PacketDropped
from routerd_dhcpv4.events import PacketSent
from routerd_dhcpv4.events import Released
from routerd_dhcpv4.events import StateChanged
from routerd_dhcpv4.lease import Lease
from routerd_dhcpv4.lease import RejectedValue

MAC = bytes.fromhex("020000000001")
SERVER = "192.0.2.1"
ADDR = "192.0.2.50"


class FixedRandom:
    """xids from a list (then counting up); jitter at a fixed fraction.

    ``uniform(a, b)`` returns ``a + (b - a) * frac``: the default 0.5 gives
    zero jitter for the ±1 s range.
    """

    def __init__(self, xids: Iterable[int] = (), frac: float = 0.5) -> None:
        self.xids = list(xids)
        self.next = 0x1000
        self.frac = frac

    def getrandbits(self, k: int) -> int:
        if self.xids:
            return self.xids.pop(0)
        self.next += 1
        return self.next

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.frac


def make(xids: Iterable[int] = (0xAAAA0001,), frac: float = 0.5, **cfg: Any) -> DhcpClientCore:
    return DhcpClientCore(ClientConfig(mac=MAC, **cfg), FixedRandom(xids, frac))


def reply(
    to: DhcpMessage,
    mtype: MessageType,
    *,
    yiaddr: str = ADDR,
    server_id: str | None = SERVER,
    lease_time: int | None = 3600,
    **fields: Any,
) -> DhcpMessage:
    """A server reply to ``to`` (same xid and chaddr)."""
    defaults: dict[str, Any] = {
        "subnet_mask": "255.255.255.0",
        "routers": (SERVER,),
        "dns_servers": ("192.0.2.53",),
    }
    if mtype == MessageType.NAK:
        defaults = {}
        yiaddr = "0.0.0.0"
        lease_time = None
    defaults.update(fields)
    return DhcpMessage(
        op=BOOTREPLY,
        xid=to.xid,
        chaddr=to.chaddr,
        yiaddr=yiaddr,
        message_type=mtype,
        server_id=server_id,
        lease_time=lease_time,
        **defaults,
    )


def sent(core: DhcpClientCore) -> list[Outgoing]:
    out = core.packets_to_send()
    for packet in out:  # what goes on the wire is what the message says
        assert decode(packet.payload).without_raw() == packet.message
    return out


def one(core: DhcpClientCore) -> DhcpMessage:
    (packet,) = sent(core)
    return packet.message


def of_type(events: list[CoreEvent], kind: type[CoreEvent]) -> list[Any]:
    return [e for e in events if isinstance(e, kind)]


def bind(core: DhcpClientCore, now: float = 0.0, **ack_fields: Any) -> Lease:
    """DISCOVER → OFFER → REQUEST → ACK at ``now``; returns the lease."""
    core.start(now)
    discover = one(core)
    core.receive(reply(discover, MessageType.OFFER), now)
    request = one(core)
    core.receive(reply(request, MessageType.ACK, **ack_fields), now)
    assert core.state is State.BOUND
    assert core.lease is not None
    core.events()
    return core.lease


# --------------------------------------------------------------- constants


def test_timing_constants_are_the_rfc_values() -> None:
    assert timing.RETRANSMIT_INITIAL == 4.0  # RFC 2131 §4.1
    assert timing.RETRANSMIT_MAX == 64.0
    assert timing.RETRANSMIT_JITTER == 1.0
    assert timing.T1_FACTOR == 0.5  # RFC 2131 §4.4.5
    assert timing.T2_FACTOR == 0.875
    assert timing.RENEW_MIN_RETRANSMIT == 60.0
    assert timing.DECLINE_BACKOFF == 10.0  # RFC 2131 §3.1 step 5
    assert (timing.INIT_DELAY_MIN, timing.INIT_DELAY_MAX) == (1.0, 10.0)
    assert timing.REQUEST_MAX_ATTEMPTS == 4
    assert timing.REBOOT_MAX_ATTEMPTS == 2
    assert [timing.retransmit_base(n) for n in range(1, 8)] == [
        4, 8, 16, 32, 64, 64, 64,
    ]  # fmt: skip
    assert timing.renew_retransmit_delay(1000) == 500
    assert timing.renew_retransmit_delay(100) == 60
    with pytest.raises(ValueError):
        timing.retransmit_base(0)


def test_transition_table() -> None:
    assert set(TRANSITIONS) == set(State)
    # RFC 2131 figure 5 edges
    assert State.SELECTING in TRANSITIONS[State.INIT]
    assert State.REQUESTING in TRANSITIONS[State.SELECTING]
    assert State.BOUND in TRANSITIONS[State.REQUESTING]
    assert State.RENEWING in TRANSITIONS[State.BOUND]
    assert State.REBINDING in TRANSITIONS[State.RENEWING]
    assert State.INIT in TRANSITIONS[State.REBINDING]
    assert State.REBOOTING in TRANSITIONS[State.INIT_REBOOT]
    assert State.BOUND in TRANSITIONS[State.REBOOTING]
    # not edges
    assert State.BOUND not in TRANSITIONS[State.INIT]
    assert State.RENEWING not in TRANSITIONS[State.SELECTING]
    assert State.REQUESTING not in TRANSITIONS[State.BOUND]
    core = make()
    with pytest.raises(InvalidTransition):
        core._transition(State.BOUND, "test")


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        ClientConfig(mac=b"")
    with pytest.raises(ValueError):
        ClientConfig(mac=MAC, max_message_size=500)
    with pytest.raises(ValueError):
        ClientConfig(mac=MAC, parameter_request_list=(0,))
    with pytest.raises(ValueError):
        ClientConfig(mac=MAC, hostname="h\u00e9")
    assert DEFAULT_PARAMETER_REQUEST_LIST == (
        1, 3, 6, 15, 26, 28, 42, 51, 54, 58, 59, 119, 121,
    )  # fmt: skip


# --------------------------------------------------------------- INIT/SELECTING


def test_start_sends_discover() -> None:
    core = make(
        xids=[0x12345678],
        client_id=client_id_from_mac(MAC),
        hostname="edge",
        vendor_class=b"routerd",
        requested_address="192.0.2.77",
    )
    assert core.state is State.STOPPED
    assert core.start(10.0)
    assert core.state is State.SELECTING
    (packet,) = sent(core)
    msg = packet.message
    assert (packet.broadcast, packet.dest, packet.source) == (True, None, "0.0.0.0")
    assert msg.op == BOOTREQUEST
    assert msg.message_type == MessageType.DISCOVER
    assert msg.xid == 0x12345678
    assert msg.chaddr == MAC
    assert msg.secs == 0
    assert not msg.broadcast  # BROADCAST flag off by default
    assert msg.ciaddr == "0.0.0.0"
    assert msg.server_id is None
    assert msg.requested_ip == "192.0.2.77"
    assert msg.client_id == b"\x01" + MAC
    assert msg.hostname == "edge"
    assert msg.vendor_class == b"routerd"
    assert msg.parameter_request_list == DEFAULT_PARAMETER_REQUEST_LIST
    assert msg.max_message_size == 1500
    assert not msg.rapid_commit
    events = core.events()
    assert of_type(events, StateChanged) == [
        StateChanged("STOPPED", "INIT", "start"),
        StateChanged("INIT", "SELECTING", "discover"),
    ]
    assert of_type(events, PacketSent) == [PacketSent("DISCOVER", 0x12345678, 1, True, None)]
    assert core.counters["sent"] == {"DISCOVER": 1}


def test_start_twice_is_ignored_and_counted() -> None:
    core = make()
    assert core.start(0.0)
    assert not core.start(1.0)
    assert core.counters["ignored"] == {"start": 1}


def test_initial_delay_is_random_within_the_bound() -> None:
    core = make(frac=0.25, initial_delay=8.0)
    core.start(100.0)
    assert core.state is State.INIT
    assert sent(core) == []
    assert core.next_deadline() == 102.0  # uniform(0, 8) at 0.25
    core.on_timer(102.0)
    assert core.state is State.SELECTING
    assert one(core).message_type == MessageType.DISCOVER


@pytest.mark.parametrize(
    ("frac", "deadlines"),
    [
        (0.5, [4, 12, 28, 60, 124, 188, 252]),  # no jitter
        (1.0, [5, 14, 31, 64, 129, 194, 259]),  # +1 s each
        (0.0, [3, 10, 25, 56, 119, 182, 245]),  # -1 s each
    ],
)
def test_discover_retransmission_schedule(frac: float, deadlines: list[int]) -> None:
    # RFC 2131 §4.1: 4, 8, 16, 32, 64, 64 ... s, each ±1 s; same xid
    core = make(xids=[0xDEADBEEF], frac=frac)
    core.start(0.0)
    first = one(core)
    seen = []
    secs = []
    for _ in deadlines:
        deadline = core.next_deadline()
        assert deadline is not None
        seen.append(deadline)
        core.on_timer(deadline - 0.001)  # early: nothing happens
        assert sent(core) == []
        core.on_timer(deadline)
        msg = one(core)
        assert msg.xid == first.xid == 0xDEADBEEF
        secs.append(msg.secs)
    assert seen == deadlines
    assert secs == [int(d) for d in deadlines]  # seconds since the first DISCOVER
    assert core.counters["retransmitted"] == {"DISCOVER": len(deadlines)}
    assert of_type(core.events(), PacketSent)[-1].attempt == len(deadlines) + 1


def test_seeded_jitter_stays_within_one_second() -> None:
    core = DhcpClientCore(ClientConfig(mac=MAC), random.Random(1234))
    core.start(0.0)
    sent(core)
    previous = 0.0
    for attempt in range(1, 9):
        deadline = core.next_deadline()
        assert deadline is not None
        base = timing.retransmit_base(attempt)
        assert base - 1 <= deadline - previous <= base + 1
        core.on_timer(deadline)
        sent(core)
        previous = deadline


def test_offer_moves_to_requesting_with_the_selecting_form() -> None:
    core = make(xids=[0x55])
    core.start(0.0)
    one(core)
    core.on_timer(core.next_deadline() or 0)  # a retransmission: secs = 4
    discover = one(core)
    assert discover.secs == 4
    core.receive(reply(discover, MessageType.OFFER, yiaddr="192.0.2.99"), 5.0)
    assert core.state is State.REQUESTING
    (packet,) = sent(core)
    request = packet.message
    # RFC 2131 §4.3.2 SELECTING: server-id and requested-ip, ciaddr zero,
    # the OFFER's xid and the DISCOVER's secs (§4.4.1), broadcast.
    assert request.message_type == MessageType.REQUEST
    assert request.xid == 0x55
    assert request.server_id == SERVER
    assert request.requested_ip == "192.0.2.99"
    assert request.ciaddr == "0.0.0.0"
    assert request.secs == 4
    assert packet.broadcast and packet.dest is None
    # retransmitted with the same xid and secs, 4 s later
    assert core.next_deadline() == 9.0
    core.on_timer(9.0)
    again = one(core)
    assert (again.xid, again.secs, again.server_id) == (0x55, 4, SERVER)


def test_first_valid_offer_wins() -> None:
    core = make()
    core.start(0.0)
    discover = one(core)
    core.receive(reply(discover, MessageType.OFFER, server_id=None), 0.1)
    core.receive(reply(discover, MessageType.OFFER, yiaddr="0.0.0.0"), 0.2)
    core.receive(reply(discover, MessageType.OFFER, yiaddr="224.0.0.1"), 0.25)
    assert core.state is State.SELECTING
    core.receive(reply(discover, MessageType.OFFER, server_id="192.0.2.2"), 0.3)
    core.receive(reply(discover, MessageType.OFFER, server_id="192.0.2.3"), 0.4)
    assert core.state is State.REQUESTING
    assert one(core).server_id == "192.0.2.2"
    assert core.counters["dropped"] == {
        "no_server_id": 1,
        "bad_yiaddr": 2,
        "unexpected_type": 1,
    }


def test_requesting_gives_up_after_the_retransmission_budget() -> None:
    core = make(xids=[0x1, 0x2])
    core.start(0.0)
    core.receive(reply(one(core), MessageType.OFFER), 1.0)
    requests = [one(core)]
    times = [1.0]
    while core.state is State.REQUESTING:
        deadline = core.next_deadline()
        assert deadline is not None
        core.on_timer(deadline)
        times.append(deadline)
        requests += [p.message for p in sent(core)]
    # 4 REQUESTs at 1, 5, 13, 29; gave up at 61; then a new DISCOVER
    assert [r.message_type for r in requests] == [MessageType.REQUEST] * 4 + [MessageType.DISCOVER]
    assert times == [1.0, 5.0, 13.0, 29.0, 61.0]
    assert {r.xid for r in requests[:4]} == {0x1}
    assert requests[4].xid == 0x2
    assert core.state is State.SELECTING
    assert StateChanged("REQUESTING", "INIT", "request_timeout") in core.events()


# --------------------------------------------------------------- BOUND


def test_ack_binds_with_rfc_default_timers() -> None:
    core = make()
    core.start(0.0)
    core.receive(reply(one(core), MessageType.OFFER), 0.5)
    request = one(core)  # sent at 0.5: the lease counts from here (§4.4.5)
    ack = reply(request, MessageType.ACK, mtu=1492, domain_name="example.net")
    core.receive(ack, 0.7)
    lease = core.lease
    assert core.state is State.BOUND
    assert lease is not None
    assert (lease.address, lease.prefixlen, lease.server_id) == (ADDR, 24, SERVER)
    assert (lease.mtu, lease.domain) == (1492, "example.net")
    assert (lease.lease_time, lease.t1, lease.t2) == (3600, 1800.0, 3150.0)
    assert (lease.acquired, lease.t1_at, lease.t2_at, lease.expires_at) == (
        0.5,
        1800.5,
        3150.5,
        3600.5,
    )
    assert core.next_deadline() == 1800.5
    events = core.events()
    assert of_type(events, LeaseBound) == [LeaseBound(lease, None)]
    assert StateChanged("REQUESTING", "BOUND", "ack") in events
    assert lease.interface_address == "192.0.2.50/24"


def test_ack_from_another_server_in_requesting_is_dropped() -> None:
    core = make()
    core.start(0.0)
    core.receive(reply(one(core), MessageType.OFFER), 0.0)
    request = one(core)
    core.receive(reply(request, MessageType.ACK, server_id="192.0.2.9"), 0.1)
    core.receive(reply(request, MessageType.ACK, lease_time=None), 0.1)
    assert core.state is State.REQUESTING
    assert core.counters["dropped"] == {"server_id_mismatch": 1, "bad_ack": 1}
    core.receive(reply(request, MessageType.ACK, server_id=None), 0.2)
    assert core.state is State.BOUND
    assert core.lease is not None and core.lease.server_id == SERVER  # from OFFER


def test_server_t1_t2_are_used_and_sanitised() -> None:
    lease = bind(make(), renewal_time=100, rebinding_time=200, lease_time=300)
    assert (lease.t1, lease.t2) == (100.0, 200.0)
    lease = bind(make(), renewal_time=250, rebinding_time=200, lease_time=300)
    assert (lease.t1, lease.t2) == (150.0, 200.0)  # T1 > T2: default T1
    lease = bind(make(), renewal_time=100, rebinding_time=400, lease_time=300)
    assert (lease.t1, lease.t2) == (100.0, 262.5)  # T2 > lease: default T2
    lease = bind(make(), renewal_time=50, rebinding_time=40, lease_time=300)
    assert lease.t1 < lease.t2 == 40.0


def test_t1_renews_by_unicast_with_ciaddr() -> None:
    core = make(xids=[0x1, 0x2])
    lease = bind(core)
    core.on_timer(lease.t1_at)
    assert core.state is State.RENEWING
    (packet,) = sent(core)
    msg = packet.message
    # RFC 2131 §4.4.5 / §4.3.2 RENEWING: unicast, ciaddr, no server-id,
    # no requested-ip, a new xid
    assert (packet.broadcast, packet.dest, packet.source) == (False, SERVER, ADDR)
    assert msg.message_type == MessageType.REQUEST
    assert msg.ciaddr == ADDR
    assert msg.server_id is None
    assert msg.requested_ip is None
    assert not msg.broadcast
    assert msg.xid == 0x2
    assert msg.secs == 0
    assert StateChanged("BOUND", "RENEWING", "t1") in core.events()


def test_renewing_retransmits_at_half_the_time_to_t2() -> None:
    core = make()
    lease = bind(core)  # T1 1800, T2 3150
    core.on_timer(lease.t1_at)
    sent(core)
    deadlines = []
    while core.state is State.RENEWING:
        deadline = core.next_deadline()
        assert deadline is not None
        deadlines.append(deadline)
        core.on_timer(deadline)
        sent(core)
    # half the remaining time, at least 60 s, and T2 itself
    assert deadlines == [2475.0, 2812.5, 2981.25, 3065.625, 3125.625, 3150.0]
    assert core.state is State.REBINDING


def test_t2_rebinds_by_broadcast_with_ciaddr() -> None:
    core = make(xids=[0x1, 0x2, 0x3])
    lease = bind(core)
    core.on_timer(lease.t1_at)
    sent(core)
    core.on_timer(lease.t2_at)
    assert core.state is State.REBINDING
    (packet,) = sent(core)
    msg = packet.message
    assert (packet.broadcast, packet.dest, packet.source) == (True, None, ADDR)
    assert msg.ciaddr == ADDR
    assert msg.server_id is None and msg.requested_ip is None
    assert msg.xid == 0x3
    assert msg.secs == int(lease.t2_at - lease.t1_at)  # counts from T1
    # RFC 2131 §4.4.5: half the remaining lease, at least 60 s
    assert core.next_deadline() == lease.t2_at + (lease.expires_at - lease.t2_at) / 2


def test_bound_past_t2_goes_straight_to_rebinding() -> None:
    core = make()
    lease = bind(core)
    core.on_timer(lease.t2_at + 5)  # e.g. the host was suspended
    assert core.state is State.REBINDING
    assert sent(core)[0].broadcast


def test_renew_ack_extends_the_lease_even_from_another_server() -> None:
    core = make()
    lease = bind(core)
    core.on_timer(1900.0)  # past T1
    request = one(core)
    ack = reply(request, MessageType.ACK, server_id="192.0.2.2", dns_servers=("9.9.9.9",))
    core.receive(ack, 1900.2)
    assert core.state is State.BOUND
    new = core.lease
    assert new is not None
    assert new.server_id == "192.0.2.2"
    assert new.dns == ("9.9.9.9",)
    assert new.acquired == 1900.0
    assert new.expires_at == 5500.0
    assert of_type(core.events(), LeaseRenewed) == [LeaseRenewed(new, lease)]


def test_rebind_ack_emits_rebound() -> None:
    core = make()
    lease = bind(core)
    core.on_timer(lease.t2_at)
    request = one(core)
    core.receive(reply(request, MessageType.ACK), lease.t2_at + 1)
    assert core.state is State.BOUND
    assert of_type(core.events(), LeaseRebound) == [LeaseRebound(core.lease, lease)]


def test_renew_ack_with_a_new_address_is_a_new_binding() -> None:
    core = make()
    lease = bind(core)
    core.renew(10.0)
    core.receive(reply(one(core), MessageType.ACK, yiaddr="192.0.2.51"), 10.1)
    assert of_type(core.events(), LeaseBound) == [LeaseBound(core.lease, lease)]


def test_lease_expiry_drops_the_lease_and_rediscovers() -> None:
    core = make(xids=[0x1, 0x2, 0x3, 0x4])
    lease = bind(core)
    while core.state is not State.SELECTING:
        deadline = core.next_deadline()
        assert deadline is not None
        core.on_timer(deadline)
        packets = sent(core)
    assert deadline == lease.expires_at
    assert core.lease is None
    events = core.events()
    assert of_type(events, LeaseExpired) == [LeaseExpired(lease)]
    assert StateChanged("REBINDING", "INIT", "expired") in events
    (discover,) = [p.message for p in packets]
    assert discover.message_type == MessageType.DISCOVER
    assert discover.requested_ip == ADDR  # the old address as a hint
    assert discover.xid == 0x4


def test_infinite_lease_never_renews() -> None:
    core = make()
    lease = bind(core, lease_time=INFINITE_LEASE, renewal_time=10)
    assert lease.infinite
    assert math.isinf(lease.t1_at) and math.isinf(lease.expires_at)
    assert core.next_deadline() is None
    data = lease.to_json(lambda m: m)
    assert data["expires_at"] is None and data["t1"] is None
    assert Lease.from_json(data, lambda w: w) == lease


# --------------------------------------------------------------- NAK


def test_nak_in_requesting_restarts_with_backoff() -> None:
    core = make(xids=[0x1, 0x2, 0x3])
    core.start(0.0)
    core.receive(reply(one(core), MessageType.OFFER), 0.0)
    request = one(core)
    # a NAK from a server that was not selected is ignored
    core.receive(reply(request, MessageType.NAK, server_id="192.0.2.9"), 0.1)
    assert core.state is State.REQUESTING
    core.receive(reply(request, MessageType.NAK, message="no"), 0.2)
    assert core.state is State.INIT
    events = core.events()
    assert of_type(events, Nak) == [Nak(None, "no", SERVER)]
    assert core.counters["dropped"] == {"nak_wrong_server": 1}
    assert core.next_deadline() == 1.2  # NAK_BACKOFF_INITIAL
    core.on_timer(1.2)
    discover = one(core)
    assert discover.message_type == MessageType.DISCOVER
    assert discover.xid == 0x2
    assert discover.requested_ip is None  # not the refused address
    core.receive(reply(discover, MessageType.OFFER), 2.0)
    core.receive(reply(one(core), MessageType.NAK), 2.0)
    assert core.next_deadline() == 4.0  # doubled for a second NAK


@pytest.mark.parametrize("at", ["t1", "t2"])
def test_nak_while_renewing_or_rebinding_drops_the_lease(at: str) -> None:
    core = make()
    lease = bind(core)
    core.on_timer(lease.t1_at if at == "t1" else lease.t2_at)
    request = one(core)
    core.receive(reply(request, MessageType.NAK, server_id="192.0.2.7"), 3200.0)
    assert core.state is State.INIT
    assert core.lease is None
    assert of_type(core.events(), Nak) == [Nak(lease, None, "192.0.2.7")]


# --------------------------------------------------------------- INIT-REBOOT


def saved_lease(now: float = 0.0, lease_time: int = 3600) -> Lease:
    ack = DhcpMessage(
        op=BOOTREPLY,
        xid=1,
        yiaddr=ADDR,
        chaddr=MAC,
        message_type=MessageType.ACK,
        server_id=SERVER,
        lease_time=lease_time,
    )
    return Lease.from_ack(ack, now)


def test_init_reboot_from_a_saved_lease() -> None:
    core = make(xids=[0x77])
    old = saved_lease(lease_time=3600)
    core.start(1000.0, old)
    assert core.state is State.REBOOTING
    (packet,) = sent(core)
    msg = packet.message
    # RFC 2131 §4.3.2 INIT-REBOOT: requested-ip, no server-id, ciaddr zero
    assert packet.broadcast and packet.source == "0.0.0.0"
    assert msg.requested_ip == ADDR
    assert msg.server_id is None
    assert msg.ciaddr == "0.0.0.0"
    assert StateChanged("STOPPED", "INIT-REBOOT", "start") in core.events()
    core.receive(reply(msg, MessageType.ACK), 1000.5)
    assert core.state is State.BOUND
    assert of_type(core.events(), LeaseBound) == [LeaseBound(core.lease, old)]


def test_init_reboot_nak_goes_to_init() -> None:
    core = make(xids=[0x77, 0x78])
    old = saved_lease()
    core.start(10.0, old)
    core.receive(reply(one(core), MessageType.NAK), 10.1)
    assert core.state is State.INIT
    assert core.lease is None
    assert of_type(core.events(), Nak) == [Nak(old, None, SERVER)]


def test_expired_saved_lease_is_only_a_hint() -> None:
    core = make()
    core.start(5000.0, saved_lease(lease_time=3600))
    assert core.state is State.SELECTING
    assert core.lease is None
    assert one(core).requested_ip == ADDR


def test_init_reboot_without_answer_abandons_the_lease() -> None:
    core = make(xids=[0x1, 0x2])
    old = saved_lease()
    core.start(0.0, old)
    one(core)
    core.on_timer(4.0)
    assert one(core).xid == 0x1  # second and last attempt
    core.on_timer(12.0)
    assert core.state is State.SELECTING
    assert core.lease is None
    assert of_type(core.events(), LeaseAbandoned) == [LeaseAbandoned(old, "reboot_timeout")]
    assert one(core).message_type == MessageType.DISCOVER


# --------------------------------------------------------------- rapid commit


def test_rapid_commit_two_message_exchange() -> None:
    core = make(rapid_commit=True)
    core.start(0.0)
    discover = one(core)
    assert discover.rapid_commit  # RFC 4039 §4
    core.receive(reply(discover, MessageType.ACK), 0.1)  # no option 80
    assert core.state is State.SELECTING
    core.receive(reply(discover, MessageType.ACK, rapid_commit=True), 0.2)
    assert core.state is State.BOUND
    assert StateChanged("SELECTING", "BOUND", "rapid_commit") in core.events()
    assert core.counters["dropped"] == {"unexpected_type": 1}


def test_rapid_commit_ack_ignored_when_not_asked_for() -> None:
    core = make()
    core.start(0.0)
    discover = one(core)
    core.receive(reply(discover, MessageType.ACK, rapid_commit=True), 0.1)
    assert core.state is State.SELECTING


def test_rapid_commit_falls_back_to_four_messages() -> None:
    core = make(rapid_commit=True)
    core.start(0.0)
    core.receive(reply(one(core), MessageType.OFFER), 0.1)
    assert core.state is State.REQUESTING
    request = one(core)
    assert not request.rapid_commit
    core.receive(reply(request, MessageType.ACK), 0.2)
    assert core.state is State.BOUND


# --------------------------------------------------------------- commands


def test_release_unicasts_and_parks_the_client() -> None:
    core = make(xids=[0x1, 0x2, 0x3], client_id=b"\x01" + MAC)
    lease = bind(core)
    assert core.release(100.0)
    (packet,) = sent(core)
    msg = packet.message
    # RFC 2131 §4.4.6, table 5: ciaddr, server-id, no requested-ip; unicast
    assert msg.message_type == MessageType.RELEASE
    assert (packet.broadcast, packet.dest, packet.source) == (False, SERVER, ADDR)
    assert msg.ciaddr == ADDR
    assert msg.server_id == SERVER
    assert msg.requested_ip is None
    assert msg.client_id == b"\x01" + MAC
    assert msg.xid == 0x2
    assert core.state is State.STOPPED
    assert core.lease is None
    assert core.next_deadline() is None
    assert of_type(core.events(), Released) == [Released(lease)]
    core.on_timer(10_000.0)  # nothing happens in STOPPED
    assert sent(core) == []
    assert not core.release(101.0)
    assert core.start(200.0)
    assert one(core).message_type == MessageType.DISCOVER


def test_stop_without_release_keeps_the_lease_for_init_reboot() -> None:
    core = make()
    lease = bind(core)
    assert core.stop(10.0)
    assert sent(core) == []
    assert core.state is State.STOPPED
    assert core.lease == lease
    core.start(20.0)
    assert core.state is State.REBOOTING
    assert one(core).requested_ip == ADDR


def test_stop_with_release_on_stop() -> None:
    core = make(release_on_stop=True)
    lease = bind(core)
    core.stop(10.0)
    assert one(core).message_type == MessageType.RELEASE
    assert core.lease is None
    assert of_type(core.events(), Released) == [Released(lease)]


def test_forced_renew_and_rebind() -> None:
    core = make()
    bind(core)
    assert core.renew(5.0)
    assert core.state is State.RENEWING
    assert not sent(core)[0].broadcast
    assert core.rebind(6.0)
    assert core.state is State.REBINDING
    assert sent(core)[0].broadcast
    assert core.renew(7.0)  # back to unicast
    assert core.state is State.RENEWING


def test_commands_in_the_wrong_state_are_ignored() -> None:
    core = make()
    assert not core.renew(0.0)
    assert not core.rebind(0.0)
    assert not core.release(0.0)
    assert not core.stop(0.0)
    assert not core.conflict(0.0, ADDR)
    core.start(0.0)
    assert not core.renew(1.0)
    assert core.counters["ignored"] == {
        "renew": 2,
        "rebind": 1,
        "release": 1,
        "stop": 1,
        "conflict": 1,
    }
    assert core.state is State.SELECTING


def test_conflict_declines_and_waits_ten_seconds() -> None:
    core = make(xids=[0x1, 0x2, 0x3])
    lease = bind(core)
    assert not core.conflict(1.0, "192.0.2.99")  # not our address
    assert core.conflict(2.0, ADDR)
    (packet,) = sent(core)
    msg = packet.message
    # RFC 2131 table 5: requested-ip and server-id, ciaddr zero; broadcast
    assert msg.message_type == MessageType.DECLINE
    assert (msg.requested_ip, msg.server_id, msg.ciaddr) == (ADDR, SERVER, "0.0.0.0")
    assert packet.broadcast
    assert core.state is State.INIT
    assert core.lease is None
    assert of_type(core.events(), Declined) == [Declined(ADDR, lease)]
    assert core.counters["dropped"] == {"conflict_other_address": 1}
    # RFC 2131 §3.1 step 5: at least ten seconds before restarting
    assert core.next_deadline() == 12.0
    core.on_timer(12.0)
    discover = one(core)
    assert discover.message_type == MessageType.DISCOVER
    assert discover.requested_ip is None


def test_conflict_without_decline_configured() -> None:
    core = make(decline_on_conflict=False)
    bind(core)
    assert not core.conflict(1.0, ADDR)
    assert core.state is State.BOUND
    assert core.counters["dropped"] == {"conflict_decline_disabled": 1}


def test_link_down_and_up_with_a_lease_reboots() -> None:
    core = make(xids=[0x1, 0x2])
    lease = bind(core)
    core.link_down(100.0)
    assert core.state is State.INIT_REBOOT
    assert core.lease == lease
    assert core.next_deadline() == lease.expires_at  # only expiry is pending
    core.link_up(200.0)
    core.link_up(201.0)  # already up: nothing more
    assert core.state is State.REBOOTING
    (packet,) = sent(core)
    assert packet.message.requested_ip == ADDR
    assert packet.message.server_id is None
    core.receive(reply(packet.message, MessageType.ACK), 200.5)
    assert core.state is State.BOUND


def test_link_down_without_a_lease_waits_for_link_up() -> None:
    core = make()
    core.start(0.0)
    one(core)
    core.link_down(1.0)
    assert core.state is State.INIT
    assert core.next_deadline() is None
    core.on_timer(100.0)
    assert sent(core) == []
    core.link_up(101.0)
    assert core.state is State.SELECTING
    assert one(core).message_type == MessageType.DISCOVER


def test_lease_expires_while_the_link_is_down() -> None:
    core = make()
    lease = bind(core)
    core.link_down(10.0)
    core.on_timer(lease.expires_at)
    assert core.state is State.INIT
    assert of_type(core.events(), LeaseExpired) == [LeaseExpired(lease)]
    assert sent(core) == []
    assert core.next_deadline() is None


def test_start_while_link_down() -> None:
    core = make()
    core.link_down(0.0)
    core.start(1.0, saved_lease(0.0))
    assert core.state is State.INIT_REBOOT
    assert sent(core) == []
    core.link_up(2.0)
    assert core.state is State.REBOOTING


# --------------------------------------------------------------- filtering


def test_mismatched_packets_are_ignored_and_counted() -> None:
    core = make(xids=[0x100], client_id=b"\x01" + MAC)
    core.start(0.0)
    discover = one(core)
    offer = reply(discover, MessageType.OFFER)
    core.receive(dataclasses.replace(offer, xid=0x101), 0.1)
    core.receive(dataclasses.replace(offer, chaddr=b"\x02" * 6), 0.1)
    core.receive(dataclasses.replace(offer, op=BOOTREQUEST), 0.1)
    core.receive(dataclasses.replace(offer, message_type=None), 0.1)
    core.receive(dataclasses.replace(offer, client_id=b"\x01" + b"\x03" * 6), 0.1)
    core.receive(reply(discover, MessageType.NAK), 0.1)
    core.receive_payload(b"\x00" * 10, 0.1)
    assert core.state is State.SELECTING
    assert core.counters["dropped"] == {
        "xid_mismatch": 1,
        "chaddr_mismatch": 1,
        "not_reply": 1,
        "bootp": 1,
        "client_id_mismatch": 1,
        "unexpected_type": 1,
        "decode_error": 1,
    }
    assert core.counters["received"] == {"OFFER": 4, "BOOTP": 1, "NAK": 1}
    drops = of_type(core.events(), PacketDropped)
    assert drops[0] == PacketDropped("xid_mismatch", "OFFER", 0x101)
    assert drops[-1] == PacketDropped("decode_error")
    # the echoed client id is ours: accepted
    core.receive(dataclasses.replace(offer, client_id=b"\x01" + MAC), 0.2)
    assert core.state is State.REQUESTING


def test_replies_when_not_waiting_are_dropped() -> None:
    core = make()
    lease = bind(core)
    core.receive(reply(DhcpMessage(op=1, xid=core.xid, chaddr=MAC), MessageType.ACK), 1)
    core.receive(reply(DhcpMessage(op=1, xid=core.xid, chaddr=MAC), MessageType.NAK), 1)
    assert core.state is State.BOUND
    assert core.lease == lease
    assert core.counters["dropped"] == {"not_waiting": 2}


# --------------------------------------------------------------- lease


def test_lease_json_round_trip_with_wall_clock() -> None:
    core = make()
    lease = bind(
        core,
        domain_search=("example.com",),
        classless_routes=(("10.0.0.0/8", "192.0.2.1"),),
        ntp_servers=("192.0.2.123",),
        mtu=1400,
    )
    offset = 1_700_000_000.0
    data = lease.to_json(lambda mono: mono + offset)
    assert data["expires_at"] == "2023-11-14T23:13:20Z"
    assert data["address"] == ADDR
    text = json.dumps(data)  # plain JSON
    # restored in a process whose monotonic clock is 500 s ahead
    back = Lease.from_json(json.loads(text), lambda wall: wall - offset + 500)
    assert back.address == lease.address
    assert back.classless_routes == lease.classless_routes
    assert back.expires_at == pytest.approx(lease.expires_at + 500)
    assert back.t1_at == pytest.approx(lease.t1_at + 500)
    with pytest.raises(ValueError):
        Lease.from_json({"version": 1, "address": "nope"}, lambda w: w)
    with pytest.raises(ValueError):
        Lease.from_json({"version": 99}, lambda w: w)
    with pytest.raises(ValueError):
        Lease.from_json({**data, "address": "300.1.1.1"}, lambda w: w)


def test_effective_routes_follow_rfc3442() -> None:
    core = make()
    lease = bind(core, routers=("192.0.2.1", "192.0.2.2"))
    assert lease.effective_routes() == (("0.0.0.0/0", "192.0.2.1"),)
    core = make()
    routes = (("0.0.0.0/0", "192.0.2.254"), ("198.51.100.0/24", "0.0.0.0"))
    lease = bind(core, classless_routes=routes)
    # RFC 3442: with option 121 present, option 3 is ignored
    assert lease.routers == (SERVER,)
    assert lease.effective_routes() == routes


def test_missing_subnet_mask_uses_the_classful_length() -> None:
    lease = bind(make(), subnet_mask=None)
    assert lease.prefixlen == 24  # 192.0.2.50 is class C


def test_event_attributes_are_json() -> None:
    core = make()
    bind(core)
    core.renew(1.0)
    core.receive(reply(one(core), MessageType.ACK), 1.0)
    (event,) = of_type(core.events(), LeaseRenewed)
    attrs = event.attributes(lambda m: m + 1_700_000_000)
    assert json.loads(json.dumps(attrs))["lease"]["address"] == ADDR
    assert event.topic == "routerd.dhcpv4.client.lease.renewed"


# --------------------------------------------------------------- pyroute2 replays

PR_MAC = bytes.fromhex("72c1556f7683")  # chaddr in pyroute2's test_unit captures

Frames = Callable[[str], list[bytes]]


def server_replies(frames: Frames, name: str) -> list[bytes]:
    return [
        parse_frame(frame, verify_checksums=False).payload
        for frame in frames(f"pyroute2-dhcp/test_unit__{name}.pcap")
    ]


def pr_core(*xids: int) -> DhcpClientCore:
    return DhcpClientCore(ClientConfig(mac=PR_MAC), FixedRandom(xids))


def test_replay_get_and_renew_lease(frames: Frames) -> None:
    offer, ack, renew_ack = server_replies(frames, "test_get_and_renew_lease")
    core = pr_core(0x12345675, 0x12345677)
    core.start(0.0)
    assert one(core).xid == 0x12345675
    core.receive_payload(offer, 0.1)
    assert core.state is State.REQUESTING
    request = one(core)
    assert (request.server_id, request.requested_ip) == (
        "192.168.186.1",
        "192.168.186.73",
    )
    # pyroute2 changes the xid's low bits per message, so its ACK (xid
    # ...74) does not answer our REQUEST, which keeps the OFFER's xid as
    # RFC 2131 table 5 says: dropped and counted ...
    core.receive_payload(ack, 0.2)
    assert core.state is State.REQUESTING
    assert core.counters["dropped"] == {"xid_mismatch": 1}
    # ... and the same ACK with our xid binds.
    core.receive(dataclasses.replace(decode(ack), xid=0x12345675), 0.2)
    assert core.state is State.BOUND
    lease = core.lease
    assert lease is not None
    assert (lease.address, lease.prefixlen, lease.server_id) == (
        "192.168.186.73",
        24,
        "192.168.186.1",
    )
    assert (lease.lease_time, lease.t1, lease.t2) == (120, 1.0, 105.0)
    assert lease.routers == lease.dns == ("192.168.186.1",)
    # "the ACK in the pcap was modified to set a renewing time of 1s"
    assert core.next_deadline() == pytest.approx(1.1)
    core.on_timer(1.1)
    assert core.state is State.RENEWING
    (renew,) = sent(core)
    assert renew.dest == "192.168.186.1" and not renew.broadcast
    assert renew.message.ciaddr == "192.168.186.73"
    assert renew.message.xid == 0x12345677
    core.receive_payload(renew_ack, 1.2)
    assert core.state is State.BOUND
    assert len(of_type(core.events(), LeaseRenewed)) == 1


def test_replay_offer_wrong_xid(frames: Frames) -> None:
    (offer,) = server_replies(frames, "test_offer_wrong_xid")
    core = pr_core(0x98765432)
    core.start(0.0)
    core.receive_payload(offer, 0.1)
    assert core.state is State.SELECTING
    assert core.counters["dropped"] == {"xid_mismatch": 1}
    assert of_type(core.events(), PacketDropped) == [
        PacketDropped("xid_mismatch", "OFFER", 0xDD435A25)
    ]


def test_replay_init_reboot_nak(frames: Frames) -> None:
    nak, offer, ack = server_replies(frames, "test_init_reboot_nak")
    old = dataclasses.replace(saved_lease(0.0, lease_time=60), address="192.168.186.73")
    core = pr_core(0xDD435A23, 0xDD435A25)
    core.start(1.0, old)
    assert core.state is State.REBOOTING
    assert one(core).requested_ip == "192.168.186.73"
    core.receive_payload(nak, 1.1)
    assert core.state is State.INIT
    assert of_type(core.events(), Nak) == [Nak(old, None, "192.168.186.1")]
    core.on_timer(core.next_deadline() or 0)
    assert core.state is State.SELECTING
    assert one(core).xid == 0xDD435A25
    core.receive_payload(offer, 2.2)
    assert core.state is State.REQUESTING
    core.receive_payload(ack, 2.3)  # xid ...24: not ours (see get_and_renew)
    assert core.state is State.REQUESTING
    core.receive(dataclasses.replace(decode(ack), xid=0xDD435A25), 2.3)
    assert core.state is State.BOUND
    assert core.lease is not None and core.lease.address == "192.168.186.85"
    assert core.lease.lease_time == 1


def test_replay_requesting_timeout(frames: Frames) -> None:
    (offer,) = server_replies(frames, "test_requesting_timeout")
    core = pr_core(0xDD435A25, 0xDD435A26)
    core.start(0.0)
    core.receive_payload(offer, 0.5)
    assert core.state is State.REQUESTING
    while core.state is State.REQUESTING:
        core.on_timer(core.next_deadline() or 0)
    assert core.state is State.SELECTING  # "the client has reset"
    assert core.counters["sent"] == {"DISCOVER": 2, "REQUEST": 4}


def test_replay_unexpected_dhcp_message(frames: Frames) -> None:
    (ack,) = server_replies(frames, "test_unexpected_dhcp_message")
    core = pr_core(0x12345674)  # the ACK's xid: only its type is wrong
    core.start(0.0)
    core.receive_payload(ack, 0.1)
    assert core.state is State.SELECTING
    assert core.counters["dropped"] == {"unexpected_type": 1}


def test_replay_ack_invalid_request_state(frames: Frames) -> None:
    offer, ack = server_replies(frames, "test_ack_invalid_request_state")
    core = pr_core(0x12345675)
    core.start(0.0)
    core.receive_payload(offer, 0.1)
    core.receive_payload(ack, 0.2)
    assert core.state is State.REQUESTING
    assert core.counters["dropped"] == {"xid_mismatch": 1}


def test_replay_unknown_message(frames: Frames) -> None:
    (request,) = server_replies(frames, "test_unknown_message")
    core = DhcpClientCore(
        ClientConfig(mac=bytes.fromhex("68a37820b0d6")), FixedRandom([0x8F506FD0])
    )
    core.start(0.0)
    core.receive_payload(request, 0.1)  # a client's REQUEST, not a reply
    assert core.state is State.SELECTING
    assert core.counters["dropped"] == {"not_reply": 1}


def test_replay_truncated_packet(frames: Frames) -> None:
    (ack,) = server_replies(frames, "test_truncated_packet")
    mac = bytes.fromhex("a0a4c593ac60")
    core = DhcpClientCore(ClientConfig(mac=mac), FixedRandom([0x8057FB09]))
    core.start(0.0, None)
    for end in range(0, len(ack), 7):
        core.receive_payload(ack[:end], 0.1)
    dropped = core.counters["dropped"]
    assert dropped["decode_error"] == len(range(0, 240, 7))
    assert sum(dropped.values()) == len(range(0, len(ack), 7))
    assert core.state is State.SELECTING
    with pytest.raises(DecodeError):
        decode(ack[:100])


def test_encoded_outgoing_matches_message() -> None:
    core = make()
    core.start(0.0)
    (packet,) = core.packets_to_send()
    assert packet.payload == encode(packet.message)


def test_link_down_after_the_lease_ran_out_expires_it() -> None:
    core = make()
    lease = bind(core)
    core.link_down(lease.expires_at + 1)  # on_timer was not called in time
    assert core.state is State.INIT
    assert of_type(core.events(), LeaseExpired) == [LeaseExpired(lease)]
    assert sent(core) == []


def test_ack_with_an_unusable_address_is_dropped() -> None:
    core = make()
    core.start(0.0)
    core.receive(reply(one(core), MessageType.OFFER), 0.0)
    request = one(core)
    core.receive(reply(request, MessageType.ACK, yiaddr="255.255.255.255"), 0.1)
    core.receive(reply(request, MessageType.ACK, yiaddr="127.0.0.1"), 0.1)
    assert core.state is State.REQUESTING
    assert core.counters["dropped"] == {"bad_yiaddr": 2}


def test_hostile_ack_values_are_left_out_counted_and_reported() -> None:
    # A broken or hostile server: a /0 mask, routers that are unspecified,
    # loopback, multicast, broadcast or the client itself, such DNS servers,
    # a broadcast address outside the subnet.
    core = make()
    lease = bind(
        core,
        subnet_mask="0.0.0.0",
        routers=("0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", ADDR, "192.0.2.254"),
        dns_servers=("0.0.0.0", "192.0.2.53", "239.1.1.1"),
        ntp_servers=("127.0.0.53",),
        broadcast_address="198.51.100.255",
    )
    assert lease.prefixlen == 24, "a 0.0.0.0 mask falls back to the classful length"
    assert lease.interface_address == f"{ADDR}/24"
    assert lease.routers == ("192.0.2.254",)
    assert lease.effective_routes() == (("0.0.0.0/0", "192.0.2.254"),)
    assert lease.dns == ("192.0.2.53",) and lease.ntp == () and lease.broadcast is None
    assert core.counters["rejected"] == {
        "subnetMask": 1,
        "routers": 5,
        "dns": 2,
        "ntp": 1,
        "broadcast": 1,
    }
    assert RejectedValue(1, "subnetMask", "0.0.0.0", "zero_mask") in lease.rejected


def test_rejected_values_are_reported_once_per_option_before_the_binding() -> None:
    core = make()
    core.start(0.0)
    core.receive(reply(one(core), MessageType.OFFER), 0.0)
    core.receive(
        reply(one(core), MessageType.ACK, routers=("0.0.0.0", "127.0.0.1"), subnet_mask="0.0.0.0"),
        0.1,
    )
    events = core.events()
    rejected = of_type(events, OptionRejected)
    assert [(e.option, e.name, e.values, e.reasons) for e in rejected] == [
        (1, "subnetMask", ("0.0.0.0",), ("zero_mask",)),
        (3, "routers", ("0.0.0.0", "127.0.0.1"), ("unspecified", "loopback")),
    ]
    assert {(e.server_id, e.address) for e in rejected} == {(SERVER, f"{ADDR}/24")}
    assert events.index(rejected[-1]) < events.index(of_type(events, LeaseBound)[0])
    assert rejected[0].topic == "routerd.dhcpv4.client.option.rejected"
    assert json.loads(json.dumps(rejected[1].attributes()))["values"] == ["0.0.0.0", "127.0.0.1"]
    # Every renewal that carries them again counts them again.
    core.renew(10.0)
    core.receive(reply(one(core), MessageType.ACK, routers=("127.0.0.1", SERVER)), 10.0)
    assert core.counters["rejected"] == {"subnetMask": 1, "routers": 3}
    assert core.lease is not None and core.lease.routers == (SERVER,)


def test_classless_routes_with_unusable_gateways_or_destinations_are_left_out() -> None:
    routes = (
        ("0.0.0.0/0", "127.0.0.1"),
        ("127.0.0.0/8", "192.0.2.1"),
        ("224.0.0.0/4", "192.0.2.1"),
        ("198.51.100.0/24", "0.0.0.0"),  # on-link (RFC 3442): kept
        ("203.0.113.0/24", "192.0.2.1"),
    )
    core = make()
    lease = bind(core, classless_routes=routes)
    assert lease.classless_routes == routes[3:]
    assert lease.effective_routes() == routes[3:]
    assert [(r.value, r.reason) for r in lease.rejected] == [
        ("0.0.0.0/0 via 127.0.0.1", "loopback"),
        ("127.0.0.0/8 via 192.0.2.1", "destination_loopback"),
        ("224.0.0.0/4 via 192.0.2.1", "destination_multicast"),
    ]
    # Nothing of option 121 usable: it counts as absent, option 3 applies.
    lease = bind(make(), classless_routes=routes[:1])
    assert lease.effective_routes() == (("0.0.0.0/0", SERVER),)


def test_malformed_lease_options_are_counted_as_rejected() -> None:
    core = make()
    core.start(0.0)
    core.receive(reply(one(core), MessageType.OFFER), 0.0)
    ack = reply(one(core), MessageType.ACK, subnet_mask=None, options={1: b"\xff\x00\xff\x00"})
    core.receive_payload(encode(ack), 0.1)
    lease = core.lease
    assert lease is not None and lease.prefixlen == 24, "non-contiguous: classful"
    assert core.counters["rejected"] == {"subnetMask": 1}
    (event,) = of_type(core.events(), OptionRejected)
    assert (event.values, event.reasons) == (("ff00ff00",), ("malformed",))


@pytest.mark.parametrize(
    ("address", "prefixlen"),
    [("10.1.2.3", 8), ("172.16.0.9", 16), ("192.168.1.2", 24)],
)
def test_classful_fallback(address: str, prefixlen: int) -> None:
    lease = bind(make(), yiaddr=address, subnet_mask=None)
    assert lease.prefixlen == prefixlen
    assert lease.remaining(lease.acquired + 100) == lease.lease_time - 100
    assert lease.remaining(lease.expires_at + 1) == 0.0
