"""The sans-I/O parts: netlink/ctnetlink/NFLOG codecs (fuzzed), DNS matching, flows."""

from __future__ import annotations

import socket
import struct

import dpkt
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple
from pyroute2.netlink.nfnetlink.nfctsocket import nfct_msg
import pytest
from routerd_observe import ctnetlink as ct
from routerd_observe import netlink as nl
from routerd_observe import nflog
from routerd_observe.dns import DnsMatcher
from routerd_observe.flows import FlowTracker
from routerd_observe.query import parse_query

# -- ctnetlink, checked against pyroute2's encoder ------------------------------------


def _pyroute2_entry(
    *, sport: int, dport: int, orig_bytes: int, reply_bytes: int, status: int, mark: int
) -> bytes:
    msg = nfct_msg()
    msg["nfgen_family"] = socket.AF_INET
    msg["attrs"] = [
        [
            "CTA_TUPLE_ORIG",
            {
                "attrs": NFCTAttrTuple(
                    saddr="192.168.50.2", daddr="198.51.100.2", proto=6, sport=sport, dport=dport
                ).attrs()
            },
        ],
        [
            "CTA_TUPLE_REPLY",
            {
                "attrs": NFCTAttrTuple(
                    saddr="198.51.100.2", daddr="198.51.100.1", proto=6, sport=dport, dport=sport
                ).attrs()
            },
        ],
        ["CTA_STATUS", status],
        ["CTA_MARK", mark],
        ["CTA_ID", 1234],
        [
            "CTA_PROTOINFO",
            {"attrs": [["CTA_PROTOINFO_TCP", {"attrs": [["CTA_PROTOINFO_TCP_STATE", 3]]}]]},
        ],
        [
            "CTA_COUNTERS_ORIG",
            {"attrs": [["CTA_COUNTERS_PACKETS", 3], ["CTA_COUNTERS_BYTES", orig_bytes]]},
        ],
        [
            "CTA_COUNTERS_REPLY",
            {"attrs": [["CTA_COUNTERS_PACKETS", 2], ["CTA_COUNTERS_BYTES", reply_bytes]]},
        ],
        ["CTA_TIMESTAMP", {"attrs": [["CTA_TIMESTAMP_START", 1_700_000_000_000_000_000]]}],
    ]
    msg["header"]["type"] = (ct.NFNL_SUBSYS_CTNETLINK << 8) | ct.IPCTNL_MSG_CT_NEW
    msg["header"]["flags"] = nl.NLM_F_CREATE
    msg.encode()
    return bytes(msg.data)


@given(
    sport=st.integers(1, 65535),
    dport=st.integers(1, 65535),
    orig_bytes=st.integers(0, 2**64 - 1),
    reply_bytes=st.integers(0, 2**64 - 1),
    mark=st.integers(0, 2**32 - 1),
)
@settings(max_examples=150, deadline=None)
def test_ctnetlink_decodes_what_pyroute2_encodes(
    sport: int, dport: int, orig_bytes: int, reply_bytes: int, mark: int
) -> None:
    status = ct.IPS_SRC_NAT | ct.IPS_ASSURED | ct.IPS_SEEN_REPLY
    raw = _pyroute2_entry(
        sport=sport,
        dport=dport,
        orig_bytes=orig_bytes,
        reply_bytes=reply_bytes,
        status=status,
        mark=mark,
    )
    (msg,) = nl.messages(raw)
    assert ct.event_name(msg) == "new"
    e = ct.decode_entry(msg, "new")
    assert (e.orig.src, e.orig.dst, e.orig.sport, e.orig.dport) == (
        "192.168.50.2",
        "198.51.100.2",
        sport,
        dport,
    )
    assert e.reply is not None and e.reply.dst == "198.51.100.1"
    assert (e.orig_bytes, e.reply_bytes, e.orig_packets, e.reply_packets) == (
        orig_bytes,
        reply_bytes,
        3,
        2,
    )
    assert (e.mark, e.id, e.tcp_state, e.start_ns) == (
        mark,
        1234,
        "ESTABLISHED",
        1_700_000_000_000_000_000,
    )
    assert e.nat == {"src": "198.51.100.1", "sport": sport}
    assert e.to_json()["assured"] is True


@given(st.binary(max_size=600))
@settings(max_examples=500, deadline=None)
def test_netlink_codecs_raise_only_malformed_on_any_bytes(data: bytes) -> None:
    try:
        for msg in nl.messages(data):
            for decode in (lambda m: ct.decode_entry(m), nflog.decode_packet):
                try:
                    decode(msg)
                except nl.MalformedMessage:
                    pass
    except nl.MalformedMessage:
        pass


@given(st.binary(min_size=16, max_size=400), st.integers(0, 400))
@settings(max_examples=300, deadline=None)
def test_mutated_real_messages_never_escape(tail: bytes, cut: int) -> None:
    raw = _pyroute2_entry(sport=1, dport=2, orig_bytes=3, reply_bytes=4, status=0, mark=0)
    # Corrupt a real message: lengths still claim the original sizes.
    data = raw[: 20 + cut % (len(raw) - 20)] + tail
    data = struct.pack("=I", len(data)) + data[4:]
    try:
        for msg in nl.messages(data):
            ct.decode_entry(msg)
    except nl.MalformedMessage:
        pass


def test_dump_request_filters() -> None:
    raw = ct.dump_request(socket.AF_INET, mark=7, protocol=6)
    (msg,) = nl.messages(raw)
    assert msg.flags & nl.NLM_F_DUMP == nl.NLM_F_DUMP
    family, _v, _r, body = nl.nfgen(msg)
    a = nl.attrs(body)
    assert family == socket.AF_INET
    assert nl.be32(a[ct.CTA_MARK]) == 7 and nl.be32(a[ct.CTA_MARK_MASK]) == 0xFFFFFFFF
    assert ct.CTA_FILTER in a and ct.CTA_TUPLE_ORIG in a


# -- NFLOG ----------------------------------------------------------------------------------
def _nflog_packet(prefix: bytes, payload: bytes, seq: int = 1) -> bytes:
    body = (
        nl.attr(nflog.NFULA_PACKET_HDR, struct.pack("!HBx", 0x0800, 2))
        + nl.attr(nflog.NFULA_PREFIX, prefix + b"\0")
        + nl.attr(nflog.NFULA_IFINDEX_INDEV, struct.pack("!I", 3))
        + nl.attr(nflog.NFULA_TIMESTAMP, struct.pack("!QQ", 1_700_000_000, 250_000))
        + nl.attr(nflog.NFULA_SEQ, struct.pack("!I", seq))
        + nl.attr(nflog.NFULA_PAYLOAD, payload)
    )
    return nl.nf_request(
        nflog.NFNL_SUBSYS_ULOG, nflog.NFULNL_MSG_PACKET, 0, socket.AF_INET, 5, body
    )


def _syn() -> bytes:
    tcp = dpkt.tcp.TCP(sport=40000, dport=2323, flags=dpkt.tcp.TH_SYN)
    ip = dpkt.ip.IP(
        src=socket.inet_aton("192.168.50.2"), dst=socket.inet_aton("198.51.100.2"), p=6, data=tcp
    )
    return bytes(ip)


def test_nflog_packet_decodes() -> None:
    (msg,) = nl.messages(_nflog_packet(b"drop: wan-in ", _syn()))
    pkt = nflog.decode_packet(msg)
    assert (pkt.group, pkt.hook, pkt.prefix, pkt.indev, pkt.seq) == (
        5,
        "forward",
        "drop: wan-in ",
        3,
        1,
    )
    assert pkt.timestamp == pytest.approx(1_700_000_000.25)
    d = nflog.decode_payload(pkt.family, pkt.payload)
    assert d == {
        "family": "ipv4",
        "truncated": False,
        "src": "192.168.50.2",
        "dst": "198.51.100.2",
        "length": 40,
        "protocol": "tcp",
        "sport": 40000,
        "dport": 2323,
        "tcpFlags": "SYN",
    }


@pytest.mark.parametrize(
    ("prefix", "action"),
    [
        ("drop: x", "drop"),
        ("REJECT wan", "reject"),
        ("accept-ssh", "accept"),
        ("dropped", "log"),
        ("", "log"),
    ],
)
def test_action_from_prefix(prefix: str, action: str) -> None:
    assert nflog.action_of(prefix) == action


@given(st.binary(max_size=120))
@settings(max_examples=300, deadline=None)
def test_nflog_payload_never_raises(payload: bytes) -> None:
    for family in (socket.AF_INET, socket.AF_INET6):
        out = nflog.decode_payload(family, payload)
        assert out["family"] in ("ipv4", "ipv6")


def test_bind_requests_ask_for_acks() -> None:
    reqs = nflog.bind_requests(5, 128)
    assert len(reqs) == 4
    for raw in reqs:
        (msg,) = nl.messages(raw)
        assert msg.flags & nl.NLM_F_ACK
        assert msg.subsys == nflog.NFNL_SUBSYS_ULOG


# -- DNS ----------------------------------------------------------------------------------------
def _frame(src: str, dst: str, sport: int, dport: int, dns: bytes, *, tcp: bool = False) -> bytes:
    l4: dpkt.Packet
    if tcp:
        l4 = dpkt.tcp.TCP(
            sport=sport,
            dport=dport,
            flags=dpkt.tcp.TH_ACK | dpkt.tcp.TH_PUSH,
            data=struct.pack("!H", len(dns)) + dns,
        )
        proto = 6
    else:
        l4 = dpkt.udp.UDP(sport=sport, dport=dport, data=dns)
        l4.ulen = 8 + len(dns)
        proto = 17
    if ":" in src:
        ip6 = dpkt.ip6.IP6(
            src=socket.inet_pton(socket.AF_INET6, src),
            dst=socket.inet_pton(socket.AF_INET6, dst),
            nxt=proto,
            hlim=64,
            data=l4,
        )
        ip6.plen = len(bytes(l4))
        return bytes(dpkt.ethernet.Ethernet(type=0x86DD, data=ip6))
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, data=l4)
    return bytes(dpkt.ethernet.Ethernet(type=0x0800, data=ip))


def _query(name: str, qid: int, qtype: int = dpkt.dns.DNS_A) -> bytes:
    q = dpkt.dns.DNS(id=qid, qd=[dpkt.dns.DNS.Q(name=name, type=qtype)])
    return bytes(q)


def _answer(name: str, qid: int, address: str | None, rcode: int = 0) -> bytes:
    r = dpkt.dns.DNS(
        id=qid, qr=dpkt.dns.DNS_R, rcode=rcode, qd=[dpkt.dns.DNS.Q(name=name, type=dpkt.dns.DNS_A)]
    )
    if address:
        r.an = [
            dpkt.dns.DNS.RR(name=name, type=dpkt.dns.DNS_A, ttl=60, rdata=socket.inet_aton(address))
        ]
    return bytes(r)


@pytest.mark.parametrize(
    ("client", "server", "tcp"),
    [
        ("192.168.50.2", "192.168.50.1", False),
        ("fd00::2", "fd00::1", False),
        ("192.168.50.2", "192.168.50.1", True),
        ("fd00::2", "fd00::1", True),
    ],
)
def test_dns_query_and_response_match_with_latency(client: str, server: str, tcp: bool) -> None:
    m = DnsMatcher()
    assert (
        m.feed(
            _frame(client, server, 40000, 53, _query("WWW.Example.test", 7), tcp=tcp), 10.0, "lan0"
        )
        == []
    )
    (rec,) = m.feed(
        _frame(server, client, 53, 40000, _answer("WWW.Example.test", 7, "198.51.100.2"), tcp=tcp),
        10.004,
    )
    assert (rec.client, rec.server, rec.qname, rec.qtype, rec.rcode) == (
        client,
        server,
        "www.example.test",
        "A",
        "NOERROR",
    )
    assert rec.latency == pytest.approx(0.004)
    assert rec.addresses() == ["198.51.100.2"] and rec.transport == ("tcp" if tcp else "udp")


def test_unanswered_queries_expire_and_a_flood_is_bounded() -> None:
    m = DnsMatcher(timeout=1.0, max_pending=100)
    for i in range(150):
        m.feed(_frame("192.168.50.2", "192.168.50.1", 1000 + i, 53, _query("flood.test", i)), 1.0)
    assert len(m.pending) == 100 and m.dropped["pending-full"] == 50
    recs = m.expire(2.5)
    assert len(recs) == 100 and all(r.rcode is None and r.latency is None for r in recs)
    assert (
        m.feed(
            _frame("192.168.50.1", "192.168.50.2", 53, 1000, _answer("flood.test", 0, None, 3)), 3.0
        )
        == []
    )
    assert m.dropped["unmatched-response"] == 1


@given(st.binary(max_size=300))
@settings(max_examples=500, deadline=None)
def test_dns_matcher_counts_any_frame_never_raises(data: bytes) -> None:
    m = DnsMatcher()
    m.feed(data, 1.0)
    m.feed(_frame("10.0.0.2", "10.0.0.1", 5000, 53, data), 1.0)
    m.feed(_frame("10.0.0.1", "10.0.0.2", 53, 5000, data, tcp=True), 1.1)
    assert m.frames == 3


def test_truncated_frames_are_counted() -> None:
    m = DnsMatcher()
    frame = _frame("192.168.50.2", "192.168.50.1", 40000, 53, _query("a.test", 1))
    for cut in (5, 20, 40, len(frame) - 3):
        m.feed(frame[:cut], 1.0)
    assert sum(m.dropped.values()) == 4 and not m.pending


# -- flows ----------------------------------------------------------------------------------------
def _entry(
    event: str,
    *,
    id_: int = 1,
    ob: int = 100,
    rb: int = 200,
    start: int | None = None,
    stop: int | None = None,
    status: int = ct.IPS_SRC_NAT,
) -> ct.CtEntry:
    o = ct.Tuple("192.168.50.2", "198.51.100.2", 6, 40000, 443)
    r = ct.Tuple("198.51.100.2", "198.51.100.1", 6, 443, 40000)
    return ct.CtEntry(
        event,
        socket.AF_INET,
        o,
        r,
        status,
        id_,
        0,
        0,
        10,
        "ESTABLISHED",
        2,
        ob,
        3,
        rb,
        start,
        stop,
        1,
    )


def test_a_flow_is_recorded_at_destroy_with_kernel_times() -> None:
    t = FlowTracker()
    assert t.on_event(_entry("new", start=10_000_000_000), 10.5) == []
    (rec,) = t.on_event(
        _entry("destroy", ob=1000, rb=5000, start=10_000_000_000, stop=13_000_000_000), 13.2
    )
    assert (rec.start, rec.end, rec.duration) == (10.0, 13.0, 3.0)
    assert (rec.client, rec.client_port, rec.peer, rec.peer_port) == (
        "192.168.50.2",
        40000,
        "198.51.100.2",
        443,
    )
    assert (rec.bytes_out, rec.bytes_in, rec.nat_address, rec.end_reason) == (
        1000,
        5000,
        "198.51.100.1",
        "destroy",
    )
    assert not t.flows


def test_interim_records_and_a_missed_destroy() -> None:
    t = FlowTracker(interim=5.0)
    t.on_event(_entry("new"), 0.0)
    assert t.on_dump([_entry("dump", ob=500)], 3.0, complete=True, started=3.0) == []
    (interim,) = t.on_dump([_entry("dump", ob=900)], 6.0, complete=True, started=6.0)
    assert interim.end is None and interim.bytes_out == 900
    # The destroy was lost (ENOBUFS): the next full dump no longer has it.
    (closed,) = t.on_dump([], 7.0, complete=True, started=7.0)
    assert closed.end == 7.0 and closed.end_reason == "missed-destroy" and closed.bytes_out == 900
    assert t.missed_destroys == 1


def test_a_dump_racing_events_neither_revives_nor_closes() -> None:
    t = FlowTracker()
    t.on_event(_entry("new", id_=1), 0.0)
    t.mark_dump(1.0)
    # While the dump runs: flow 1 ends, flow 2 starts.
    t.on_event(_entry("destroy", id_=1), 1.1)
    t.on_event(_entry("new", id_=2), 1.2)
    out = t.on_dump([_entry("dump", id_=1)], 1.5, complete=True, started=1.0)
    assert out == [] and set(k[0] for k in t.flows) == {2}


def test_counter_resets_are_added_and_counted() -> None:
    t = FlowTracker()
    t.on_event(_entry("new"), 0.0)
    t.on_dump([_entry("dump", ob=1000, rb=1000)], 1.0, complete=False)
    (rec,) = t.on_event(_entry("destroy", ob=50, rb=60), 2.0)  # zeroed meanwhile
    assert (rec.bytes_out, rec.bytes_in, rec.counter_resets) == (1050, 1060, 1)
    assert t.counter_resets == 1


def test_port_forward_makes_the_lan_server_the_client() -> None:
    t = FlowTracker(lan_networks=["192.168.50.0/24"])
    o = ct.Tuple("203.0.113.9", "198.51.100.1", 6, 5555, 80)
    r = ct.Tuple("192.168.50.10", "203.0.113.9", 6, 80, 5555)
    e = ct.CtEntry(
        "destroy",
        socket.AF_INET,
        o,
        r,
        ct.IPS_DST_NAT,
        9,
        0,
        0,
        None,
        None,
        4,
        400,
        5,
        5000,
        None,
        None,
        None,
    )
    (rec,) = t.on_event(e, 1.0)
    assert (rec.client, rec.client_port, rec.peer, rec.bytes_out, rec.bytes_in) == (
        "192.168.50.10",
        80,
        "203.0.113.9",
        5000,
        400,
    )
    assert (rec.nat_address, rec.nat_port) == ("198.51.100.1", 80)


def test_the_tracker_is_bounded() -> None:
    t = FlowTracker(max_flows=1024)
    for i in range(1100):
        t.on_event(_entry("new", id_=i), 0.0)
    assert len(t.flows) == 1024 and t.dropped["tracker-full"] == 76


# -- query parameters -------------------------------------------------------------------------------
def test_query_parameters() -> None:
    q = parse_query(
        "traffic-flows",
        {
            "client": "192.168.50.2",
            "peer-suffix": "Example.TEST.",
            "limit": "99999",
            "since": "10m",
        },
        now=1000.0,
    )
    assert (q.client, q.peer_suffix, q.limit, q.since) == (
        "192.168.50.2",
        "example.test",
        5000,
        400.0,
    )
    assert parse_query("connections", {"mark": "0x10", "state": "established"}).mark == 16
    assert parse_query("dns-queries", {"from": "2026-01-01T00:00:00Z"}).since == 1767225600.0


def test_a_new_read_after_its_destroy_does_not_reopen_the_flow() -> None:
    t = FlowTracker()
    # The DESTROY socket was read first: the flow is recorded from it alone.
    (rec,) = t.on_event(_entry("destroy", start=5_000_000_000, stop=6_000_000_000), 6.1)
    assert (rec.start, rec.end) == (5.0, 6.0) and t.unknown_destroys == 1
    assert t.on_event(_entry("new"), 6.2) == []
    assert not t.flows and t.late_news == 1
    assert t.on_dump([_entry("dump")], 7.0, complete=True, started=6.5) == []


def test_the_raw_prefilter_keeps_every_possible_match() -> None:
    raw = _pyroute2_entry(sport=40000, dport=443, orig_bytes=1, reply_bytes=2, status=0, mark=0)
    (msg,) = nl.messages(raw)
    payload = bytes(msg.payload)

    def passes(**f: object) -> bool:
        return all(any(p in payload for p in g) for g in ct.prefilter(**f))  # type: ignore[arg-type]

    assert passes(address="198.51.100.1") and passes(address="192.168.50.2")
    assert passes(port=443) and passes(port=40000) and passes(state="ESTABLISHED")
    assert not passes(address="198.51.100.9")
    assert not passes(port=444) and not passes(state="TIME_WAIT")
    assert not passes(address="192.168.50.2", port=80)


@given(
    sport=st.integers(1, 65535),
    dport=st.integers(1, 65535),
    counters=st.integers(0, 2**64 - 1),
    status=st.integers(0, 2**32 - 1),
    mark=st.integers(0, 2**32 - 1),
    cut=st.integers(0, 300),
    junk=st.binary(max_size=40),
)
@settings(max_examples=400, deadline=None)
def test_the_fast_path_decodes_exactly_what_the_generic_decoder_does(
    sport: int, dport: int, counters: int, status: int, mark: int, cut: int, junk: bytes
) -> None:
    raw = _pyroute2_entry(
        sport=sport,
        dport=dport,
        orig_bytes=counters,
        reply_bytes=counters,
        status=status,
        mark=mark,
    )
    for data in (raw, raw[: 20 + cut % (len(raw) - 20)] + junk):
        data = struct.pack("=I", len(data)) + data[4:]
        try:
            (msg,) = nl.messages(data)
        except (nl.MalformedMessage, ValueError):
            continue
        for _ in range(2):  # the second decode takes the learned layout
            try:
                fam, _v, _r, body = nl.nfgen(msg)
                reference: ct.CtEntry | None = ct.decode_generic(fam, body, "new")
            except nl.MalformedMessage:
                reference = None
            try:
                got: ct.CtEntry | None = ct.decode_entry(msg, "new")
            except nl.MalformedMessage:
                got = None
            assert got == reference
