"""DNS queries matched to their responses, from captured frames; sans-I/O.

:class:`DnsMatcher` takes Ethernet frames (as an ``AF_PACKET`` socket reads
them) with their capture time and returns finished query records. Frames
are parsed with dpkt; every frame that is not a DNS message we can read is
counted by reason and skipped, whatever dpkt raises (the wire is untrusted,
DESIGN.md §9).

- Queries and responses are matched on (client, client port, server, server
  port, transport, DNS id); the response's question must be the query's.
- A query with no response within ``timeout`` becomes a record with
  ``rcode: null`` (unanswered).
- TCP: a segment carrying whole length-prefixed messages is read; a message
  split across segments is not reassembled (counted ``tcp-partial``).
- At most ``max_pending`` queries wait for an answer; past it the oldest is
  given up (``pending-full``), so a flood cannot grow memory.
"""

from __future__ import annotations

from collections import Counter
from collections import OrderedDict
from dataclasses import dataclass
import socket
import struct
from typing import Any
from typing import Final

import dpkt

ETH_P_IP: Final = 0x0800
ETH_P_IPV6: Final = 0x86DD
ETH_P_8021Q: Final = 0x8100
DNS_PORT: Final = 53
RCODES: Final = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
}
QTYPES: Final = {
    1: "A",
    2: "NS",
    5: "CNAME",
    6: "SOA",
    12: "PTR",
    15: "MX",
    16: "TXT",
    28: "AAAA",
    33: "SRV",
    35: "NAPTR",
    43: "DS",
    46: "RRSIG",
    48: "DNSKEY",
    64: "SVCB",
    65: "HTTPS",
    255: "ANY",
}
MAX_ANSWERS: Final = 32


def type_name(t: int) -> str:
    return QTYPES.get(t, f"TYPE{t}")


def rcode_name(r: int) -> str:
    return RCODES.get(r, f"RCODE{r}")


@dataclass(frozen=True, slots=True)
class Segment:
    """A DNS-carrying UDP datagram or TCP segment, addresses as text."""

    src: str
    dst: str
    sport: int
    dport: int
    transport: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class DnsRecord:
    """One query and its response (or none)."""

    time: float
    client: str
    client_port: int
    server: str
    server_port: int
    transport: str
    dns_id: int
    qname: str
    qtype: str
    rcode: str | None
    answers: tuple[dict[str, Any], ...]
    latency: float | None
    truncated: bool
    interface: str

    def addresses(self) -> list[str]:
        return [a["data"] for a in self.answers if a["type"] in ("A", "AAAA")]


@dataclass
class _Pending:
    time: float
    qname: str
    qtype: str
    interface: str


def parse_frame(frame: bytes) -> Segment:
    """Ethernet (an 802.1Q tag allowed) → IPv4/IPv6 → UDP/TCP with port 53.

    :raises ValueError: anything else; the message says why (a drop reason).
    """
    if len(frame) < 14:
        raise ValueError("truncated")
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    off = 14
    if ethertype == ETH_P_8021Q:
        if len(frame) < 18:
            raise ValueError("truncated")
        (ethertype,) = struct.unpack_from("!H", frame, 16)
        off = 18
    try:
        if ethertype == ETH_P_IP:
            ip: Any = dpkt.ip.IP(frame[off:])
            if ip.mf or ip.offset:  # a fragment
                raise ValueError("fragment")
            src = socket.inet_ntop(socket.AF_INET, ip.src)
            dst = socket.inet_ntop(socket.AF_INET, ip.dst)
        elif ethertype == ETH_P_IPV6:
            ip = dpkt.ip6.IP6(frame[off:])
            src = socket.inet_ntop(socket.AF_INET6, ip.src)
            dst = socket.inet_ntop(socket.AF_INET6, ip.dst)
        else:
            raise ValueError("not-ip")
        l4 = ip.data
    except (dpkt.UnpackError, struct.error, IndexError, OSError):
        raise ValueError("truncated") from None
    if isinstance(l4, dpkt.udp.UDP):
        transport = "udp"
    elif isinstance(l4, dpkt.tcp.TCP):
        transport = "tcp"
    else:
        raise ValueError("not-udp-tcp")
    if DNS_PORT not in (l4.sport, l4.dport):
        raise ValueError("not-dns")
    payload = bytes(l4.data)
    if transport == "udp" and len(payload) + 8 != l4.ulen:
        raise ValueError("truncated")
    return Segment(src, dst, l4.sport, l4.dport, transport, payload)


def _messages(seg: Segment) -> tuple[list[bytes], str | None]:
    """The DNS messages a segment carries (TCP: length-prefixed)."""
    if seg.transport == "udp":
        return [seg.payload], None
    out: list[bytes] = []
    off = 0
    data = seg.payload
    while off < len(data):
        if len(data) - off < 2:
            return out, "tcp-partial"
        (n,) = struct.unpack_from("!H", data, off)
        if len(data) - off - 2 < n:
            return out, "tcp-partial"
        out.append(data[off + 2 : off + 2 + n])
        off += 2 + n
    return out, None


def _answer(rr: Any) -> dict[str, Any] | None:
    t = rr.type
    data: str
    if t == dpkt.dns.DNS_A and len(rr.rdata) == 4:
        data = socket.inet_ntop(socket.AF_INET, rr.rdata)
    elif t == dpkt.dns.DNS_AAAA and len(rr.rdata) == 16:
        data = socket.inet_ntop(socket.AF_INET6, rr.rdata)
    elif t in (dpkt.dns.DNS_CNAME, dpkt.dns.DNS_NS, dpkt.dns.DNS_PTR):
        data = str(
            getattr(rr, "cname", None) or getattr(rr, "nsname", None) or getattr(rr, "ptrname", "")
        )
    elif t == dpkt.dns.DNS_MX:
        data = f"{getattr(rr, 'preference', 0)} {getattr(rr, 'mxname', '')}"
    elif t == dpkt.dns.DNS_TXT:
        data = " ".join(x.decode("utf-8", "replace") for x in getattr(rr, "text", []))
    else:
        data = bytes(rr.rdata).hex()
    return {"name": _name(rr.name), "type": type_name(t), "ttl": int(rr.ttl), "data": _name(data)}


def _name(name: str) -> str:
    return name.rstrip(".").lower() if isinstance(name, str) else str(name)


class DnsMatcher:
    """Pending queries and the records their responses finish.

    :param timeout: seconds a query waits for its response.
    :param max_pending: queries waiting at most.
    """

    def __init__(self, timeout: float = 5.0, max_pending: int = 65_536) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self.pending: OrderedDict[tuple[Any, ...], _Pending] = OrderedDict()
        self.dropped: Counter[str] = Counter()
        self.frames = 0
        self.queries = 0
        self.responses = 0
        self.matched = 0
        self.unanswered = 0

    def feed(self, frame: bytes, now: float, interface: str = "") -> list[DnsRecord]:
        """One captured frame; returns records it finished."""
        self.frames += 1
        try:
            seg = parse_frame(frame)
        except ValueError as exc:
            self.dropped[str(exc)] += 1
            return []
        messages, problem = _messages(seg)
        if problem:
            self.dropped[problem] += 1
        out: list[DnsRecord] = []
        for raw in messages:
            rec = self._message(seg, raw, now, interface)
            if rec is not None:
                out.append(rec)
        return out

    def _message(self, seg: Segment, raw: bytes, now: float, interface: str) -> DnsRecord | None:
        try:
            msg = dpkt.dns.DNS(raw)
            if len(msg.qd) != 1:
                self.dropped["no-single-question"] += 1
                return None
            q = msg.qd[0]
            qname, qtype = _name(q.name), type_name(q.type)
            answers = [_answer(rr) for rr in msg.an[:MAX_ANSWERS]] if msg.qr else []
        except Exception:
            # dpkt raises UnpackError, NeedData, struct.error, IndexError,
            # UnicodeDecodeError... on hostile input: all are a malformed frame.
            self.dropped["malformed"] += 1
            return None
        if not msg.qr:  # a query: the client is its source
            if seg.dport != DNS_PORT:
                self.dropped["not-dns"] += 1
                return None
            self.queries += 1
            key = (seg.src, seg.sport, seg.dst, seg.dport, seg.transport, msg.id)
            if key in self.pending:
                self.dropped["retransmitted-query"] += 1
                return None
            if len(self.pending) >= self.max_pending:
                self.pending.popitem(last=False)
                self.dropped["pending-full"] += 1
            self.pending[key] = _Pending(now, qname, qtype, interface)
            return None
        self.responses += 1
        key = (seg.dst, seg.dport, seg.src, seg.sport, seg.transport, msg.id)
        p = self.pending.get(key)
        if p is None or p.qname != qname or p.qtype != qtype:
            self.dropped["unmatched-response"] += 1
            return None
        del self.pending[key]
        self.matched += 1
        return DnsRecord(
            time=p.time,
            client=seg.dst,
            client_port=seg.dport,
            server=seg.src,
            server_port=seg.sport,
            transport=seg.transport,
            dns_id=msg.id,
            qname=qname,
            qtype=qtype,
            rcode=rcode_name(msg.rcode),
            answers=tuple(a for a in answers if a is not None),
            latency=max(0.0, now - p.time),
            truncated=bool(msg.op & dpkt.dns.DNS_TC),
            interface=p.interface,
        )

    def expire(self, now: float) -> list[DnsRecord]:
        """Records of queries that waited longer than ``timeout``."""
        out: list[DnsRecord] = []
        while self.pending:
            key, p = next(iter(self.pending.items()))
            if now - p.time < self.timeout:
                break
            del self.pending[key]
            self.unanswered += 1
            client, cport, server, sport, transport, dns_id = key
            out.append(
                DnsRecord(
                    p.time,
                    client,
                    cport,
                    server,
                    sport,
                    transport,
                    dns_id,
                    p.qname,
                    p.qtype,
                    None,
                    (),
                    None,
                    False,
                    p.interface,
                )
            )
        return out
