"""The sans-I/O PD client against a scripted server, fake clock, seeded rng."""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

import pytest
from routerd_dhcpv6 import constants as c
from routerd_dhcpv6.codec import ClientId
from routerd_dhcpv6.codec import DnsServers
from routerd_dhcpv6.codec import DomainList
from routerd_dhcpv6.codec import ElapsedTime
from routerd_dhcpv6.codec import IaPd
from routerd_dhcpv6.codec import IaPrefix
from routerd_dhcpv6.codec import Message
from routerd_dhcpv6.codec import Option
from routerd_dhcpv6.codec import OptionRequest
from routerd_dhcpv6.codec import Preference
from routerd_dhcpv6.codec import RapidCommit
from routerd_dhcpv6.codec import ServerId
from routerd_dhcpv6.codec import SolMaxRt
from routerd_dhcpv6.codec import StatusCodeOption
from routerd_dhcpv6.codec import encode
from routerd_dhcpv6.constants import MsgType
from routerd_dhcpv6.constants import StatusCode
from routerd_dhcpv6.core import TRANSITIONS
from routerd_dhcpv6.core import Binding
from routerd_dhcpv6.core import ClientConfig
from routerd_dhcpv6.core import CoreEvent
from routerd_dhcpv6.core import PdClient
from routerd_dhcpv6.core import PrefixBound
from routerd_dhcpv6.core import PrefixChanged
from routerd_dhcpv6.core import PrefixExpired
from routerd_dhcpv6.core import PrefixRebound
from routerd_dhcpv6.core import PrefixReleased
from routerd_dhcpv6.core import PrefixRenewed
from routerd_dhcpv6.core import ServerChanged
from routerd_dhcpv6.core import State
from routerd_dhcpv6.duid import duid_ll
from routerd_dhcpv6.duid import parse_duid
from routerd_dhcpv6.retransmit import Retransmission
from routerd_dhcpv6.retransmit import RetransmitParams
from routerd_dhcpv6.retransmit import rand_factor

CLIENT = duid_ll("02:00:00:00:00:01")
SERVER_A = duid_ll("02:00:00:00:00:0a")
SERVER_B = duid_ll("02:00:00:00:00:0b")
SERVER_C = duid_ll("02:00:00:00:00:0c")
IAID = 0x11223344
PFX_A = "2001:db8:1::/56"
PFX_B = "2001:db8:2::/56"
EPS = 1e-9

Lease = tuple[str, int, int]  # prefix, preferred, valid


def make(seed: int = 7, **kw: Any) -> PdClient:
    cfg = ClientConfig(duid=CLIENT, iaid=IAID, prefix_length=56, **kw)
    return PdClient(cfg, random.Random(seed))


def server_msg(
    mtype: MsgType,
    xid: int,
    *,
    server: bytes = SERVER_A,
    client: bytes | None = CLIENT,
    prefixes: tuple[Lease, ...] = ((PFX_A, 2000, 3000),),
    t1: int = 1000,
    t2: int = 1600,
    preference: int | None = None,
    status: int | None = None,
    ia_status: int | None = None,
    rapid: bool = False,
    with_ia: bool = True,
    extra: tuple[Option, ...] = (),
) -> Message:
    opts: list[Option] = []
    if client is not None:
        opts.append(ClientId(parse_duid(client)))
    if server:
        opts.append(ServerId(parse_duid(server)))
    if with_ia:
        ia_opts: list[Option] = [IaPrefix(p, v, pfx) for pfx, p, v in prefixes]
        if ia_status is not None:
            ia_opts.append(StatusCodeOption(ia_status, "from test"))
        opts.append(IaPd(IAID, t1, t2, tuple(ia_opts)))
    if preference is not None:
        opts.append(Preference(preference))
    if status is not None:
        opts.append(StatusCodeOption(status, "top level"))
    if rapid:
        opts.append(RapidCommit())
    opts.extend(extra)
    return Message(mtype, xid, tuple(opts))


def sent(client: PdClient) -> list[Message]:
    out = client.packets_to_send()
    for msg in out:
        encode(msg)  # everything the client produces is encodable
    return out


def advance(client: PdClient, until: float) -> list[tuple[float, Message]]:
    """Fire every deadline up to ``until``; return (time, message) sent."""
    out: list[tuple[float, Message]] = []
    while (d := client.next_deadline()) is not None and d <= until:
        client.on_timer(d)
        out.extend((d, m) for m in sent(client))
    return out


def first_solicit(client: PdClient, now: float = 0.0) -> tuple[float, Message]:
    client.start(now)
    assert sent(client) == []
    d = client.next_deadline()
    assert d is not None
    client.on_timer(d)
    (msg,) = sent(client)
    return d, msg


def bound_client(
    seed: int = 7,
    prefixes: tuple[Lease, ...] = ((PFX_A, 2000, 3000),),
    t1: int = 1000,
    t2: int = 1600,
    **kw: Any,
) -> tuple[PdClient, float]:
    """A client bound to SERVER_A; returns it and the bind time."""
    client = make(seed, **kw)
    t, sol = first_solicit(client)
    client.receive(server_msg(MsgType.ADVERTISE, sol.transaction_id, preference=255), t + 0.01)
    (req,) = sent(client)
    now = t + 0.02
    client.receive(
        server_msg(MsgType.REPLY, req.transaction_id, prefixes=prefixes, t1=t1, t2=t2),
        now,
    )
    assert client.state is State.BOUND
    client.events()
    return client, now


def of_type(events: list[CoreEvent], kind: type[Any]) -> list[Any]:
    return [e for e in events if type(e) is kind]


# ---------------------------------------------------------------- RFC §15


def test_rand_factor_bounds() -> None:
    rng = random.Random(1)
    values = [rand_factor(rng) for _ in range(2000)]
    assert min(values) >= -0.1 and max(values) <= 0.1
    assert min(values) < -0.09 and max(values) > 0.09  # the whole range is used
    pos = [rand_factor(rng, positive=True) for _ in range(2000)]
    assert all(0 < v <= 0.1 for v in pos)


class _FixedRandom:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value

    def getrandbits(self, k: int, /) -> int:
        return 0x123456 & ((1 << k) - 1)


@pytest.mark.parametrize("value", [0.0, 0.5, 0.999999999999])
def test_first_solicit_rt_strictly_greater_than_irt(value: float) -> None:
    r = Retransmission(RetransmitParams(1.0, 3600), _FixedRandom(value), first_rand_positive=True)
    deadline = r.transmitted(100.0)
    assert deadline > 101.0
    assert deadline <= 101.1


def test_retransmission_mrc_and_mrd() -> None:
    r = Retransmission(RetransmitParams(1.0, 0, 3, 0), random.Random(2))
    t = 0.0
    for _ in range(3):
        assert not r.failed(t)
        t = r.transmitted(t)
    assert r.count == 3 and r.failed(t)
    r2 = Retransmission(RetransmitParams(1.0, 4, 0, 10), random.Random(2))
    t = 0.0
    deadlines = []
    while not r2.failed(t):
        t = r2.transmitted(t)
        deadlines.append(t)
    # MRD cuts the last RT short: the exchange ends exactly 10 s in.
    assert deadlines[-1] == pytest.approx(10.0)
    assert r2.elapsed_time(10.0) == 1000


# ---------------------------------------------------------------- Solicit


def test_start_delays_first_solicit_and_builds_it() -> None:
    client = make()
    assert client.state is State.INIT and client.next_deadline() is None
    assert client.start(5.0)
    assert client.state is State.INIT
    d = client.next_deadline()
    # RFC 9915 §18.2.1: random delay in [0, SOL_MAX_DELAY].
    assert d is not None and 5.0 <= d <= 5.0 + c.SOL_MAX_DELAY
    assert sent(client) == []
    client.on_timer(d)
    (sol,) = sent(client)
    assert client.state is State.SOLICIT
    assert sol.msg_type == MsgType.SOLICIT
    assert sol.get(ClientId) == ClientId(parse_duid(CLIENT))
    assert sol.get(ServerId) is None
    assert sol.get(ElapsedTime) == ElapsedTime(0)
    oro = sol.get(OptionRequest)
    assert oro is not None and set(oro.codes) >= {23, 24, 31, 64, 82, 83}
    assert sol.get(RapidCommit) is None
    # Prefix-length hint: IAPREFIX ::/56 inside the IA_PD.
    assert sol.get(IaPd) == IaPd(IAID, 0, 0, (IaPrefix(0, 0, "::/56"),))
    assert client.counters.sent == {"solicit": 1}


def test_no_hint_without_prefix_length() -> None:
    client = PdClient(ClientConfig(duid=CLIENT, iaid=IAID), random.Random(1))
    _, sol = first_solicit(client)
    assert sol.get(IaPd) == IaPd(IAID, 0, 0, ())


def test_solicit_retransmission_schedule() -> None:
    client = make(seed=3)
    t0, sol = first_solicit(client)
    out = advance(client, t0 + 30000)
    times = [t0] + [t for t, _ in out]
    assert len(times) > 15
    assert {m.transaction_id for _, m in out} == {sol.transaction_id}
    rts = [b - a for a, b in itertools.pairwise(times)]
    # RFC 9915 §15: first RT = IRT + RAND*IRT with RAND > 0 for Solicit.
    assert c.SOL_TIMEOUT < rts[0] <= c.SOL_TIMEOUT * 1.1 + EPS
    mrt = c.SOL_MAX_RT
    in_cap = [mrt * 0.9 - EPS <= rt <= mrt * 1.1 + EPS for rt in rts]
    for prev, rt, capped in zip(rts, rts[1:], in_cap[1:], strict=False):
        # RT = 2*RTprev + RAND*RTprev, or MRT + RAND*MRT once over MRT.
        doubled = 1.8 * prev - EPS <= rt <= min(2.2 * prev, mrt) + EPS
        assert doubled or capped
        if 1.8 * prev > mrt:
            assert capped
    assert sum(in_cap) >= 5, "RT must settle at SOL_MAX_RT (3600 s, not 120 s)"
    assert max(rts) > 3000


def test_solicit_retransmissions_keep_xid_and_count_elapsed_time() -> None:
    client = make(seed=4)
    t0, sol = first_solicit(client)
    later = advance(client, t0 + 2000)
    assert all(m.transaction_id == sol.transaction_id for _, m in later)
    for t, m in later:
        expected = min(0xFFFF, round((t - t0) * 100))
        assert m.get(ElapsedTime) == ElapsedTime(expected)
    assert later[-1][1].get(ElapsedTime) == ElapsedTime(0xFFFF)  # capped


def test_advertise_selection_by_preference_then_first() -> None:
    client = make()
    t, sol = first_solicit(client)
    xid = sol.transaction_id
    client.receive(server_msg(MsgType.ADVERTISE, xid, server=SERVER_A, preference=5), t + 0.1)
    client.receive(
        server_msg(
            MsgType.ADVERTISE,
            xid,
            server=SERVER_B,
            preference=10,
            prefixes=((PFX_B, 100, 200),),
        ),
        t + 0.2,
    )
    client.receive(server_msg(MsgType.ADVERTISE, xid, server=SERVER_C, preference=10), t + 0.3)
    # Still collecting: nothing is sent until the first RT has elapsed.
    assert sent(client) == [] and client.state is State.SOLICIT
    d = client.next_deadline()
    assert d is not None and d > t + 1.0
    client.on_timer(d)
    (req,) = sent(client)
    assert client.state is State.REQUEST
    assert req.msg_type == MsgType.REQUEST
    assert req.get(ServerId) == ServerId(parse_duid(SERVER_B))
    assert req.transaction_id != xid
    assert req.get(ElapsedTime) == ElapsedTime(0)
    assert req.get(IaPd) == IaPd(IAID, 0, 0, (IaPrefix(0, 0, PFX_B),))


def test_preference_255_is_taken_at_once() -> None:
    client = make()
    t, sol = first_solicit(client)
    client.receive(server_msg(MsgType.ADVERTISE, sol.transaction_id, preference=7), t + 0.1)
    assert sent(client) == []
    client.receive(
        server_msg(MsgType.ADVERTISE, sol.transaction_id, server=SERVER_B, preference=255),
        t + 0.2,
    )
    (req,) = sent(client)
    assert client.state is State.REQUEST
    assert req.get(ServerId) == ServerId(parse_duid(SERVER_B))


def test_advertise_after_first_rt_is_taken_at_once() -> None:
    client = make()
    t, sol = first_solicit(client)
    (retx,) = [m for _, m in advance(client, t + 1.2)]
    assert retx.transaction_id == sol.transaction_id
    client.receive(server_msg(MsgType.ADVERTISE, sol.transaction_id), t + 1.5)
    (req,) = sent(client)
    assert req.msg_type == MsgType.REQUEST


@pytest.mark.parametrize("where", ["top", "ia"])
def test_no_prefix_avail_advertise_is_ignored(where: str) -> None:
    client = make()
    t, sol = first_solicit(client)
    xid = sol.transaction_id
    bad = server_msg(
        MsgType.ADVERTISE,
        xid,
        server=SERVER_B,
        preference=255,
        prefixes=() if where == "ia" else ((PFX_B, 100, 200),),
        status=StatusCode.NO_PREFIX_AVAIL if where == "top" else None,
        ia_status=StatusCode.NO_PREFIX_AVAIL if where == "ia" else None,
    )
    client.receive(bad, t + 0.1)
    assert sent(client) == [] and client.state is State.SOLICIT
    assert client.counters.dropped == {"no_prefix_avail": 1}
    client.receive(server_msg(MsgType.ADVERTISE, xid, preference=1), t + 0.2)
    (req,) = [m for _, m in advance(client, t + 1.2)]
    assert client.state is State.REQUEST
    assert req.get(ServerId) == ServerId(parse_duid(SERVER_A))


def test_advertise_without_prefixes_still_sets_sol_max_rt() -> None:
    client = make(seed=5)
    t, sol = first_solicit(client)
    client.receive(
        server_msg(MsgType.ADVERTISE, sol.transaction_id, prefixes=(), extra=(SolMaxRt(100),)),
        t + 0.1,
    )
    times = [t] + [x for x, _ in advance(client, t + 2000)]
    rts = [b - a for a, b in itertools.pairwise(times)]
    assert max(rts) <= 110 + EPS and max(rts) >= 90 - EPS


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"xid_delta": 1}, "xid_mismatch"),
        ({"client": None}, "client_id_missing"),
        ({"client": SERVER_C}, "client_id_mismatch"),
        ({"server": b""}, "server_id_missing"),
    ],
)
def test_invalid_advertise_is_dropped_and_counted(kw: dict[str, Any], reason: str) -> None:
    client = make()
    t, sol = first_solicit(client)
    delta = kw.pop("xid_delta", 0)
    msg = server_msg(
        MsgType.ADVERTISE, (sol.transaction_id + delta) & 0xFFFFFF, preference=255, **kw
    )
    client.receive(msg, t + 0.1)
    assert client.state is State.SOLICIT and sent(client) == []
    assert client.counters.dropped == {reason: 1}
    assert client.counters.received == {"advertise": 1}


def test_reply_to_solicit_without_rapid_commit_is_dropped() -> None:
    client = make()
    t, sol = first_solicit(client)
    client.receive(server_msg(MsgType.REPLY, sol.transaction_id, rapid=True), t + 0.1)
    assert client.state is State.SOLICIT
    assert client.counters.dropped == {"unexpected_reply": 1}


def test_malformed_datagram_is_counted() -> None:
    client = make()
    first_solicit(client)
    client.receive_datagram(b"\x02\x00", 1.0)
    client.receive_datagram(b"\x02\x00\x00\x01\x00\x01\x00\x09abc", 1.0)
    assert client.counters.dropped == {"malformed": 2}
    assert client.state is State.SOLICIT


def test_reconfigure_is_dropped() -> None:
    client, now = bound_client()
    client.receive(Message(MsgType.RECONFIGURE, 0, ()), now + 1)
    assert client.counters.dropped == {"reconfigure_unsupported": 1}
    assert client.state is State.BOUND


# ---------------------------------------------------------------- Rapid Commit


def test_rapid_commit_binds_from_solicit() -> None:
    client = make(rapid_commit=True)
    t, sol = first_solicit(client)
    assert sol.get(RapidCommit) == RapidCommit()
    client.receive(
        server_msg(
            MsgType.REPLY,
            sol.transaction_id,
            rapid=True,
            extra=(DnsServers(("2001:db8::53",)), DomainList(("example.net",))),
        ),
        t + 0.05,
        source="fe80::1",
    )
    assert client.state is State.BOUND
    assert sent(client) == []
    b = client.binding
    assert b is not None
    assert b.prefix_strings() == (PFX_A,)
    assert b.dns == ("2001:db8::53",) and b.domains == ("example.net",)
    assert b.server_address == "fe80::1" and b.server_duid == SERVER_A
    (bound,) = of_type(client.events(), PrefixBound)
    assert bound.prefixes == (PFX_A,) and bound.valid_lifetime == 3000


# ---------------------------------------------------------------- Request


def _to_request(client: PdClient) -> tuple[float, Message]:
    t, sol = first_solicit(client)
    client.receive(server_msg(MsgType.ADVERTISE, sol.transaction_id, preference=255), t + 0.01)
    (req,) = sent(client)
    return t + 0.01, req


def test_request_retransmission_same_xid_elapsed_and_mrc() -> None:
    client = make(seed=11)
    t0, req = _to_request(client)
    later = advance(client, t0 + 400)
    reqs = [(t0, req)] + [(t, m) for t, m in later if m.msg_type == MsgType.REQUEST]
    # RFC 9915 §18.2.2: REQ_MAX_RC transmissions in all, same xid.
    assert len(reqs) == c.REQ_MAX_RC
    assert {m.transaction_id for _, m in reqs} == {req.transaction_id}
    elapsed = [m.get(ElapsedTime) for _, m in reqs]
    assert elapsed == [ElapsedTime(min(0xFFFF, round((t - t0) * 100))) for t, _ in reqs]
    assert [e.value for e in elapsed if e] == sorted(e.value for e in elapsed if e)
    rts = [b[0] - a[0] for a, b in itertools.pairwise(reqs)]
    assert c.REQ_TIMEOUT * 0.9 - EPS <= rts[0] <= c.REQ_TIMEOUT * 1.1 + EPS
    assert max(rts) <= c.REQ_MAX_RT * 1.1 + EPS
    assert rts[-1] >= c.REQ_MAX_RT * 0.9 - EPS
    # Then (no other server advertised) Solicit again after a back-off.
    solicits = [(t, m) for t, m in later if m.msg_type == MsgType.SOLICIT]
    assert solicits, "discovery restarts after the Request exchange fails"
    assert solicits[0][1].transaction_id != req.transaction_id
    assert client.counters.sent["request"] == c.REQ_MAX_RC


def test_failed_request_tries_the_next_advertised_server() -> None:
    client = make()
    t, sol = first_solicit(client)
    xid = sol.transaction_id
    client.receive(server_msg(MsgType.ADVERTISE, xid, server=SERVER_A, preference=9), t)
    client.receive(server_msg(MsgType.ADVERTISE, xid, server=SERVER_B, preference=3), t)
    msgs = [m for _, m in advance(client, t + 200)]
    servers = [m.get(ServerId) for m in msgs if m.msg_type == MsgType.REQUEST]
    assert servers[0] == ServerId(parse_duid(SERVER_A))
    assert servers[c.REQ_MAX_RC] == ServerId(parse_duid(SERVER_B))


def test_unspec_fail_keeps_retransmitting() -> None:
    client = make()
    t, req = _to_request(client)
    client.receive(
        server_msg(MsgType.REPLY, req.transaction_id, status=StatusCode.UNSPEC_FAIL),
        t + 0.1,
    )
    assert client.state is State.REQUEST
    assert client.counters.dropped == {"status_unspec_fail": 1}
    (retx,) = [m for _, m in advance(client, t + 1.2)]
    assert retx.transaction_id == req.transaction_id


def test_use_multicast_resends_at_once() -> None:
    client = make()
    t, req = _to_request(client)
    client.receive(
        server_msg(MsgType.REPLY, req.transaction_id, status=StatusCode.USE_MULTICAST),
        t + 0.3,
    )
    (again,) = sent(client)
    assert again.transaction_id == req.transaction_id
    assert again.get(ElapsedTime) == ElapsedTime(30)
    assert client.state is State.REQUEST


def test_no_prefix_avail_in_reply_to_request_backs_off_and_solicits() -> None:
    client = make(seed=9)
    t, req = _to_request(client)
    client.receive(
        server_msg(
            MsgType.REPLY,
            req.transaction_id,
            prefixes=(),
            ia_status=StatusCode.NO_PREFIX_AVAIL,
        ),
        t + 0.1,
    )
    assert client.state is State.INIT
    assert client.binding is None
    d1 = client.next_deadline()
    assert d1 is not None and d1 - (t + 0.1) >= 2 * c.SOL_TIMEOUT * 0.9 - EPS
    client.on_timer(d1)
    (sol,) = sent(client)
    assert sol.msg_type == MsgType.SOLICIT and client.state is State.SOLICIT
    # A second failure waits longer.
    client.receive(server_msg(MsgType.ADVERTISE, sol.transaction_id, preference=255), d1 + 0.01)
    (req2,) = sent(client)
    client.receive(
        server_msg(
            MsgType.REPLY,
            req2.transaction_id,
            prefixes=(),
            status=StatusCode.NO_PREFIX_AVAIL,
        ),
        d1 + 0.02,
    )
    d2 = client.next_deadline()
    assert d2 is not None and d2 - (d1 + 0.02) > (d1 - (t + 0.1)) * 1.5


def test_t1_greater_than_t2_discards_the_ia() -> None:
    client = make()
    t, req = _to_request(client)
    client.receive(server_msg(MsgType.REPLY, req.transaction_id, t1=900, t2=800), t)
    assert client.binding is None and client.state is State.INIT
    assert client.counters.dropped == {"no_prefix_avail": 1}


# ---------------------------------------------------------------- bound


def test_bound_binding_fields_and_events() -> None:
    client = make()
    t, req = _to_request(client)
    client.receive(
        server_msg(
            MsgType.REPLY,
            req.transaction_id,
            prefixes=((PFX_A, 2000, 3000), (PFX_B, 1500, 2500)),
        ),
        t + 0.5,
        source="fe80::a",
    )
    b = client.binding
    assert b is not None and client.state is State.BOUND
    assert b.prefix_strings() == (PFX_A, PFX_B)  # several prefixes per IA
    a = b.prefixes[0]
    assert (a.preferred, a.valid, a.acquired) == (2000, 3000, t + 0.5)
    assert (a.preferred_until, a.valid_until) == (t + 2000.5, t + 3000.5)
    assert (b.t1, b.t2, b.renew_at) == (1000, 1600, t + 1000.5)
    assert client.next_deadline() == t + 1000.5
    events = client.events()
    (bound,) = of_type(events, PrefixBound)
    assert bound.prefixes == (PFX_A, PFX_B) and bound.server_duid == SERVER_A.hex()
    assert bound.attributes()["validLifetime"] == 2500
    assert bound.topic == "routerd.dhcpv6.client.prefix.bound"


def test_renew_at_t1_rebind_at_t2_expire_at_valid() -> None:
    client, t = bound_client(seed=12)
    # T1: Renew with the Server Identifier and the held prefix.
    out = advance(client, t + 1000)
    assert client.state is State.RENEW
    (t_renew, renew), *_retx = out
    assert t_renew == pytest.approx(t + 1000)
    assert renew.msg_type == MsgType.RENEW
    assert renew.get(ServerId) == ServerId(parse_duid(SERVER_A))
    assert renew.get(IaPd) == IaPd(IAID, 0, 0, (IaPrefix(0, 0, PFX_A),))
    # Renew retransmits with REN_TIMEOUT/REN_MAX_RT, same xid, until T2.
    out = advance(client, t + 1600 - EPS)
    renews = [(t_renew, renew), *out]
    assert all(m.msg_type == MsgType.RENEW for _, m in out)
    assert {m.transaction_id for _, m in renews} == {renew.transaction_id}
    rts = [b[0] - a[0] for a, b in itertools.pairwise(renews)]
    assert c.REN_TIMEOUT * 0.9 - EPS <= rts[0] <= c.REN_TIMEOUT * 1.1 + EPS
    assert all(rt <= c.REN_MAX_RT * 1.1 + EPS for rt in rts)
    # T2: Rebind without a Server Identifier.
    out = advance(client, t + 1600)
    assert client.state is State.REBIND
    (t_rebind, rebind) = out[-1]
    assert t_rebind == pytest.approx(t + 1600)
    assert rebind.msg_type == MsgType.REBIND and rebind.get(ServerId) is None
    assert rebind.get(IaPd) == IaPd(IAID, 0, 0, (IaPrefix(0, 0, PFX_A),))
    assert rebind.transaction_id != renew.transaction_id
    # Valid lifetime ends: prefix dropped, back to Solicit.
    out = advance(client, t + 3000)
    assert client.state is State.SOLICIT and client.binding is None
    assert out[-1][1].msg_type == MsgType.SOLICIT
    (expired,) = of_type(client.events(), PrefixExpired)
    assert expired.prefix == PFX_A and expired.reason == "ValidLifetime"


def test_renew_reply_renews() -> None:
    client, t = bound_client()
    (_, renew), *_ = advance(client, t + 1000)
    client.receive(
        server_msg(MsgType.REPLY, renew.transaction_id, prefixes=((PFX_A, 4000, 5000),)),
        t + 1001,
    )
    assert client.state is State.BOUND
    b = client.binding
    assert b is not None and b.renew_at == t + 2001
    assert b.prefixes[0].valid_until == t + 6001
    events = client.events()
    assert len(of_type(events, PrefixRenewed)) == 1
    assert of_type(events, PrefixChanged) == []


def test_rebind_reply_from_another_server() -> None:
    client, t = bound_client()
    out = advance(client, t + 1600)
    rebind = out[-1][1]
    client.receive(server_msg(MsgType.REPLY, rebind.transaction_id, server=SERVER_B), t + 1601)
    assert client.state is State.BOUND
    b = client.binding
    assert b is not None and b.server_duid == SERVER_B
    events = client.events()
    assert len(of_type(events, PrefixRebound)) == 1
    (changed,) = of_type(events, ServerChanged)
    assert (changed.old_duid, changed.new_duid) == (SERVER_A.hex(), SERVER_B.hex())


def test_t1_t2_zero_client_picks_half_and_four_fifths_of_preferred() -> None:
    client, t = bound_client(prefixes=((PFX_A, 1000, 3000), (PFX_B, 400, 3000)), t1=0, t2=0)
    b = client.binding
    assert b is not None
    # RFC 9915 §21.21: 0.5 and 0.8 times the shortest preferred lifetime.
    assert b.t1 == pytest.approx(200) and b.t2 == pytest.approx(320)
    out = advance(client, t + 200)
    assert out and out[0][1].msg_type == MsgType.RENEW


def test_infinite_lifetimes_never_renew() -> None:
    client, _t = bound_client(
        prefixes=((PFX_A, c.INFINITY, c.INFINITY),), t1=c.INFINITY, t2=c.INFINITY
    )
    b = client.binding
    assert b is not None and math.isinf(b.renew_at) and math.isinf(b.valid_until)
    assert client.next_deadline() is None


@pytest.mark.parametrize("phase", ["renew", "rebind"])
def test_no_binding_leads_to_request(phase: str) -> None:
    client, t = bound_client()
    out = advance(client, t + (1000 if phase == "renew" else 1600))
    msg = out[-1][1]
    client.receive(
        server_msg(
            MsgType.REPLY,
            msg.transaction_id,
            server=SERVER_B,
            prefixes=(),
            ia_status=StatusCode.NO_BINDING,
        ),
        t + 1700,
    )
    assert client.state is State.REQUEST
    (req,) = sent(client)
    assert req.msg_type == MsgType.REQUEST
    assert req.get(ServerId) == ServerId(parse_duid(SERVER_B))
    assert req.get(IaPd) == IaPd(IAID, 0, 0, (IaPrefix(0, 0, PFX_A),))
    assert client.binding is not None  # leases are kept meanwhile
    client.receive(server_msg(MsgType.REPLY, req.transaction_id, server=SERVER_B), t + 1701)
    assert client.state is State.BOUND
    assert len(of_type(client.events(), PrefixBound)) == 1


def test_prefix_change_keeps_old_until_its_valid_lifetime() -> None:
    client, t = bound_client()
    (_, renew), *_ = advance(client, t + 1000)
    client.receive(
        server_msg(MsgType.REPLY, renew.transaction_id, prefixes=((PFX_B, 3000, 4000),)),
        t + 1000.5,
    )
    assert client.state is State.BOUND
    b = client.binding
    assert b is not None and b.prefix_strings() == (PFX_A, PFX_B)
    old = b.prefixes[0]
    assert old.valid_until == t + 3000  # untouched (RFC 9915 §18.2.10.1)
    events = client.events()
    (changed,) = of_type(events, PrefixChanged)
    assert (changed.old, changed.new) == ((PFX_A,), (PFX_B,))
    advance(client, t + 3000)
    b = client.binding
    assert b is not None and b.prefix_strings() == (PFX_B,)
    (expired,) = of_type(client.events(), PrefixExpired)
    assert expired.prefix == PFX_A


def test_zero_lifetimes_withdraw_a_prefix() -> None:
    client, t = bound_client(prefixes=((PFX_A, 2000, 3000), (PFX_B, 2000, 3000)))
    (_, renew), *_ = advance(client, t + 1000)
    client.receive(
        server_msg(
            MsgType.REPLY,
            renew.transaction_id,
            prefixes=((PFX_A, 0, 0), (PFX_B, 2000, 3000)),
        ),
        t + 1001,
    )
    b = client.binding
    assert b is not None and b.prefix_strings() == (PFX_B,)
    (gone,) = of_type(client.events(), PrefixExpired)
    assert (gone.prefix, gone.reason) == (PFX_A, "Withdrawn")
    # Withdrawing the last one sends the client back to Solicit.
    (_, renew2), *_ = advance(client, t + 2001)
    client.receive(
        server_msg(MsgType.REPLY, renew2.transaction_id, prefixes=((PFX_B, 0, 0),)),
        t + 2002,
    )
    assert client.binding is None and client.state is State.SOLICIT


@pytest.mark.parametrize("phase", ["renew", "rebind"])
def test_withdrawn_old_prefix_and_new_prefix_in_one_reply(phase: str) -> None:
    # The ISP renumbers: the Reply gives the held prefix lifetimes 0 and
    # delegates another one (RFC 9915 §18.2.10.1).
    client, t = bound_client()
    when = t + (1000 if phase == "renew" else 1600)
    msg = advance(client, when)[-1][1]
    client.receive(
        server_msg(
            MsgType.REPLY,
            msg.transaction_id,
            prefixes=((PFX_A, 0, 0), (PFX_B, 2000, 3000)),
        ),
        when + 0.5,
    )
    assert client.state is State.BOUND
    b = client.binding
    assert b is not None and b.prefix_strings() == (PFX_B,)
    events = client.events()
    (gone,) = of_type(events, PrefixExpired)
    assert (gone.prefix, gone.reason) == (PFX_A, "Withdrawn")
    (changed,) = of_type(events, PrefixChanged)
    assert (changed.old, changed.new) == ((PFX_A,), (PFX_B,))
    assert changed.attributes() == {"oldPrefix": PFX_A, "prefix": PFX_B}
    # Nothing held was extended: the new prefix is bound, not renewed.
    (bound,) = of_type(events, PrefixBound)
    assert bound.prefixes == (PFX_B,)
    assert of_type(events, PrefixRenewed) == of_type(events, PrefixRebound) == []
    kinds = [type(e) for e in events if type(e) in (PrefixExpired, PrefixChanged, PrefixBound)]
    assert kinds == [PrefixExpired, PrefixChanged, PrefixBound]


def test_reply_renewing_one_and_adding_another_is_a_renewal() -> None:
    client, t = bound_client()
    (_, renew), *_ = advance(client, t + 1000)
    client.receive(
        server_msg(
            MsgType.REPLY,
            renew.transaction_id,
            prefixes=((PFX_A, 2000, 3000), (PFX_B, 2000, 3000)),
        ),
        t + 1000.5,
    )
    events = client.events()
    (renewed,) = of_type(events, PrefixRenewed)
    assert renewed.prefixes == (PFX_A, PFX_B)
    (changed,) = of_type(events, PrefixChanged)
    assert (changed.old, changed.new) == ((), (PFX_B,))


def test_no_prefix_avail_in_renew_reply_keeps_renewing() -> None:
    client, t = bound_client()
    (_, renew), *_ = advance(client, t + 1000)
    client.receive(
        server_msg(
            MsgType.REPLY,
            renew.transaction_id,
            prefixes=(),
            ia_status=StatusCode.NO_PREFIX_AVAIL,
        ),
        t + 1001,
    )
    assert client.state is State.RENEW
    b = client.binding
    assert b is not None and b.prefix_strings() == (PFX_A,)


# ---------------------------------------------------------------- link, restart


def test_link_down_then_up_with_binding_rebinds() -> None:
    client, t = bound_client(seed=21)
    assert client.link_down(t + 10)
    assert client.state is State.LINK_DOWN
    assert advance(client, t + 1500) == []  # T1 passes silently while down
    assert client.link_up(t + 1500)
    (rebind,) = sent(client)
    # RFC 9915 §18.2.12: Rebind (not Solicit) when leases are held.
    assert client.state is State.REBIND
    assert rebind.msg_type == MsgType.REBIND and rebind.get(ServerId) is None
    assert rebind.get(IaPd) == IaPd(IAID, 0, 0, (IaPrefix(0, 0, PFX_A),))
    client.receive(
        server_msg(MsgType.REPLY, rebind.transaction_id, prefixes=((PFX_B, 2000, 3000),)),
        t + 1500.2,
    )
    assert client.state is State.BOUND
    events = client.events()
    # The Reply extended nothing held: PFX_B is bound (PFX_A runs out).
    assert of_type(events, PrefixRebound) == []
    (bound,) = of_type(events, PrefixBound)
    assert bound.prefixes == (PFX_A, PFX_B)
    (changed,) = of_type(events, PrefixChanged)
    assert (changed.old, changed.new) == ((PFX_A,), (PFX_B,))


def test_link_up_rebind_uses_confirm_timing_then_keeps_leases() -> None:
    client, t = bound_client(seed=22)
    client.link_down(t + 1)
    client.link_up(t + 2)
    (first,) = sent(client)
    out = advance(client, t + 12 - EPS)
    times = [t + 2] + [x for x, _ in out]
    rts = [b - a for a, b in itertools.pairwise(times)]
    assert c.CNF_TIMEOUT * 0.9 - EPS <= rts[0] <= c.CNF_TIMEOUT * 1.1 + EPS
    assert max(rts) <= c.CNF_MAX_RT * 1.1 + EPS
    assert {m.transaction_id for _, m in out} == {first.transaction_id}
    # CNF_MAX_RD after the first transmission, without an answer: keep the
    # leases and go on from BOUND.
    advance(client, t + 12 + EPS)
    assert client.state is State.BOUND
    assert client.binding is not None


def test_link_up_without_binding_solicits_after_delay() -> None:
    client = make()
    t, _ = first_solicit(client)
    client.link_down(t + 1)
    assert client.state is State.LINK_DOWN and client.next_deadline() is None
    client.link_up(t + 10)
    assert client.state is State.INIT and sent(client) == []
    d = client.next_deadline()
    assert d is not None and t + 10 <= d <= t + 11
    client.on_timer(d)
    (sol,) = sent(client)
    assert sol.msg_type == MsgType.SOLICIT


def test_link_up_while_bound_rebinds() -> None:
    # A PPPoE session re-established without a carrier loss being seen.
    client, t = bound_client()
    assert client.link_up(t + 50)
    (msg,) = sent(client)
    assert msg.msg_type == MsgType.REBIND and client.state is State.REBIND


def test_prefix_expires_while_link_down_then_solicit() -> None:
    client, t = bound_client()
    client.link_down(t + 1)
    advance(client, t + 3000)
    assert client.binding is None and client.state is State.LINK_DOWN
    assert len(of_type(client.events(), PrefixExpired)) == 1
    client.link_up(t + 3100)
    assert client.state is State.INIT


def test_restart_with_saved_binding_rebinds() -> None:
    client, t = bound_client()
    b = client.binding
    assert b is not None
    offset = 1_700_000_000.0
    saved = b.to_json(lambda m: m + offset)
    assert saved["prefixes"][0]["validUntil"] == pytest.approx(t + 3000 + offset)
    # New process, new monotonic clock: mono = wall - offset2.
    offset2 = 1_700_000_500.0
    restored = Binding.from_json(saved, lambda w: w - offset2)
    assert restored.prefix_strings() == (PFX_A,)
    assert restored.prefixes[0].valid_until == pytest.approx(t + 3000 - 500)
    fresh = make(seed=99)
    assert fresh.start(10.0, restored)
    (msg,) = sent(fresh)
    assert fresh.state is State.REBIND
    assert msg.msg_type == MsgType.REBIND
    assert fresh.counters.sent == {"rebind": 1}


def test_restart_with_expired_binding_solicits() -> None:
    client, t = bound_client()
    b = client.binding
    assert b is not None
    fresh = make()
    fresh.start(t + 5000, b)
    assert fresh.state is State.INIT and fresh.binding is None
    assert sent(fresh) == []
    assert len(of_type(fresh.events(), PrefixExpired)) == 1


def test_binding_json_round_trip_with_infinity() -> None:
    client, _ = bound_client(prefixes=((PFX_A, c.INFINITY, c.INFINITY),), t1=0, t2=0)
    b = client.binding
    assert b is not None
    data = b.to_json(lambda m: m)
    assert data["prefixes"][0]["validUntil"] is None
    assert Binding.from_json(data, lambda w: w) == b
    with pytest.raises(ValueError, match="invalid saved binding"):
        Binding.from_json({"serverDuid": "zz"}, lambda w: w)


# ---------------------------------------------------------------- release, stop


def test_release_sends_release_and_drops_binding() -> None:
    client, t = bound_client(seed=31)
    assert client.release(t + 5)
    assert client.binding is None and client.state is State.RELEASE
    (released,) = of_type(client.events(), PrefixReleased)
    assert released.prefixes == (PFX_A,)
    (rel,) = sent(client)
    assert rel.msg_type == MsgType.RELEASE
    assert rel.get(ServerId) == ServerId(parse_duid(SERVER_A))
    assert rel.get(IaPd) == IaPd(IAID, 0, 0, (IaPrefix(0, 0, PFX_A),))
    out = advance(client, t + 100)
    # RFC 9915 §18.2.7: REL_MAX_RC transmissions, then give up; idle.
    assert [m.msg_type for _, m in out] == [MsgType.RELEASE] * (c.REL_MAX_RC - 1)
    assert client.state is State.INIT and client.next_deadline() is None
    assert not client.link_up(t + 200)
    assert client.renew(t + 200)
    assert client.state is State.SOLICIT


def test_release_completes_on_reply() -> None:
    client, t = bound_client()
    client.release(t + 5)
    (rel,) = sent(client)
    client.receive(
        server_msg(MsgType.REPLY, rel.transaction_id, prefixes=(), with_ia=False),
        t + 5.1,
    )
    assert client.state is State.INIT and client.next_deadline() is None


def test_stop_with_release_on_stop() -> None:
    client, t = bound_client(release_on_stop=True)
    assert client.stop(t + 1)
    assert client.state is State.RELEASE
    (rel,) = sent(client)
    client.receive(server_msg(MsgType.REPLY, rel.transaction_id, with_ia=False), t + 2)
    assert client.state is State.STOPPED
    assert client.next_deadline() is None


def test_stop_without_release_keeps_binding_for_saving() -> None:
    client, t = bound_client()
    assert client.stop(t + 1)
    assert client.state is State.STOPPED and sent(client) == []
    assert client.binding is not None
    assert client.next_deadline() is None
    client.receive(server_msg(MsgType.REPLY, 1), t + 2)
    assert client.counters.dropped == {"unexpected_state": 1}


def test_commands_in_the_wrong_state_are_rejected() -> None:
    client = make()
    first_solicit(client)
    assert not client.renew(2.0)
    assert not client.rebind(2.0)
    assert not client.release(2.0)
    assert not client.start(2.0)
    assert client.counters.rejected == {
        "renew": 1,
        "rebind": 1,
        "release": 1,
        "start": 1,
    }
    assert client.state is State.SOLICIT


def test_renew_and_rebind_commands() -> None:
    client, t = bound_client()
    assert client.renew(t + 10)
    (renew,) = sent(client)
    assert renew.msg_type == MsgType.RENEW and client.state is State.RENEW
    assert client.rebind(t + 11)
    (rebind,) = sent(client)
    assert rebind.msg_type == MsgType.REBIND and rebind.get(ServerId) is None


def test_transitions_table_is_complete() -> None:
    assert set(TRANSITIONS) == set(State)
    for targets in TRANSITIONS.values():
        assert State.INIT in targets or State.STOPPED in targets


def test_deterministic_with_same_seed() -> None:
    def run(seed: int) -> list[tuple[float, int]]:
        client = make(seed)
        t, sol = first_solicit(client)
        return [(t, sol.transaction_id)] + [(x, m.transaction_id) for x, m in advance(client, 100)]

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_ia_na_requested_and_recorded() -> None:
    from routerd_dhcpv6.codec import IaAddress
    from routerd_dhcpv6.codec import IaNa

    client = make(request_ia_na=True)
    t, sol = first_solicit(client)
    assert sol.get(IaNa) == IaNa(IAID, 0, 0, ())
    client.receive(server_msg(MsgType.ADVERTISE, sol.transaction_id, preference=255), t + 0.01)
    (req,) = sent(client)
    assert req.get(IaNa) == IaNa(IAID, 0, 0, ())
    na = IaNa(IAID, 1000, 1600, (IaAddress("2001:db8::10", 2000, 3000),))
    client.receive(server_msg(MsgType.REPLY, req.transaction_id, extra=(na,)), t + 0.02)
    b = client.binding
    assert b is not None
    assert [a.address for a in b.addresses] == ["2001:db8::10"]
    assert b.addresses[0].valid_until == pytest.approx(t + 3000.02)
    (_, renew), *_ = advance(client, t + 1000.02)
    assert renew.get(IaNa) == IaNa(IAID, 0, 0, (IaAddress("2001:db8::10", 0, 0),))
