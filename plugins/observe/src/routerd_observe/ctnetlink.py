"""ctnetlink: conntrack entries from dumps and events, decoded with :mod:`netlink`.

Attribute numbers are ``linux/netfilter/nfnetlink_conntrack.h``; state and
status names are the ones ``conntrack -L`` prints, so our output and the
tool's can be compared entry for entry.
"""

from __future__ import annotations

from dataclasses import dataclass
import ipaddress
import socket
import struct
from typing import Any
from typing import Final

from routerd_observe import netlink as nl
from routerd_observe.netlink import MalformedMessage

NFNL_SUBSYS_CTNETLINK: Final = 1
IPCTNL_MSG_CT_NEW: Final = 0
IPCTNL_MSG_CT_GET: Final = 1
IPCTNL_MSG_CT_DELETE: Final = 2

#: Multicast groups (``enum nfnetlink_groups``).
NFNLGRP_CONNTRACK_NEW: Final = 1
NFNLGRP_CONNTRACK_UPDATE: Final = 2
NFNLGRP_CONNTRACK_DESTROY: Final = 3

CTA_TUPLE_ORIG: Final = 1
CTA_TUPLE_REPLY: Final = 2
CTA_STATUS: Final = 3
CTA_PROTOINFO: Final = 4
CTA_TIMEOUT: Final = 7
CTA_MARK: Final = 8
CTA_COUNTERS_ORIG: Final = 9
CTA_COUNTERS_REPLY: Final = 10
CTA_USE: Final = 11
CTA_ID: Final = 12
CTA_ZONE: Final = 18
CTA_TIMESTAMP: Final = 20
CTA_MARK_MASK: Final = 21
CTA_FILTER: Final = 25

CTA_TUPLE_IP: Final = 1
CTA_TUPLE_PROTO: Final = 2
CTA_TUPLE_ZONE: Final = 3
CTA_IP_V4_SRC: Final = 1
CTA_IP_V4_DST: Final = 2
CTA_IP_V6_SRC: Final = 3
CTA_IP_V6_DST: Final = 4
CTA_PROTO_NUM: Final = 1
CTA_PROTO_SRC_PORT: Final = 2
CTA_PROTO_DST_PORT: Final = 3
CTA_PROTO_ICMP_ID: Final = 4
CTA_PROTO_ICMP_TYPE: Final = 5
CTA_PROTO_ICMP_CODE: Final = 6
CTA_PROTO_ICMPV6_ID: Final = 7
CTA_PROTO_ICMPV6_TYPE: Final = 8
CTA_PROTO_ICMPV6_CODE: Final = 9
CTA_PROTOINFO_TCP: Final = 1
CTA_PROTOINFO_TCP_STATE: Final = 1
CTA_COUNTERS_PACKETS: Final = 1
CTA_COUNTERS_BYTES: Final = 2
CTA_COUNTERS32_PACKETS: Final = 3
CTA_COUNTERS32_BYTES: Final = 4
CTA_TIMESTAMP_START: Final = 1
CTA_TIMESTAMP_STOP: Final = 2
CTA_FILTER_ORIG_FLAGS: Final = 1
CTA_FILTER_FLAG_PROTO_NUM: Final = 1 << 3

IPS_SEEN_REPLY: Final = 1 << 1
IPS_ASSURED: Final = 1 << 2
IPS_SRC_NAT: Final = 1 << 4
IPS_DST_NAT: Final = 1 << 5

#: ``tcp_conntrack_names`` as conntrack(8) prints them.
TCP_STATES: Final = (
    "NONE",
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
    "CLOSE",
    "SYN_SENT2",
)
PROTOCOLS: Final = {
    1: "icmp",
    6: "tcp",
    17: "udp",
    58: "icmpv6",
    132: "sctp",
    33: "dccp",
    136: "udplite",
    47: "gre",
}
PROTOCOL_NUMBERS: Final = {name: num for num, name in PROTOCOLS.items()}
FAMILIES: Final = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6"}


@dataclass(slots=True)
class Tuple:
    src: str
    dst: str
    proto: int
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"src": self.src, "dst": self.dst}
        if self.sport is not None:
            out["sport"] = self.sport
            out["dport"] = self.dport
        if self.icmp_type is not None:
            out["type"] = self.icmp_type
            out["code"] = self.icmp_code
            out["id"] = self.icmp_id
        return out


@dataclass(slots=True)
class CtEntry:
    """One conntrack entry (a dump line or an event)."""

    event: str  # "dump", "new", "update", "destroy"
    family: int
    orig: Tuple
    reply: Tuple | None
    status: int
    id: int | None
    mark: int
    zone: int
    timeout: int | None
    tcp_state: str | None
    orig_packets: int | None
    orig_bytes: int | None
    reply_packets: int | None
    reply_bytes: int | None
    start_ns: int | None
    stop_ns: int | None
    use: int | None

    @property
    def protocol(self) -> str:
        return PROTOCOLS.get(self.orig.proto, str(self.orig.proto))

    @property
    def nat(self) -> dict[str, Any] | None:
        """What NAT changed: the translated source and/or destination."""
        if self.reply is None or not self.status & (IPS_SRC_NAT | IPS_DST_NAT):
            return None
        out: dict[str, Any] = {}
        if self.status & IPS_SRC_NAT:
            out["src"] = self.reply.dst
            if self.reply.dport is not None:
                out["sport"] = self.reply.dport
        if self.status & IPS_DST_NAT:
            out["dst"] = self.reply.src
            if self.reply.sport is not None:
                out["dport"] = self.reply.sport
        return out

    def to_json(self) -> dict[str, Any]:
        counters = self.orig_packets is not None
        return {
            "id": self.id,
            "family": FAMILIES.get(socket.AddressFamily(self.family), str(self.family))
            if self.family in (socket.AF_INET, socket.AF_INET6)
            else str(self.family),
            "protocol": self.protocol,
            "state": self.tcp_state,
            "original": self.orig.to_json(),
            "reply": self.reply.to_json() if self.reply else None,
            "nat": self.nat,
            "packets": {"original": self.orig_packets, "reply": self.reply_packets}
            if counters
            else None,
            "bytes": {"original": self.orig_bytes, "reply": self.reply_bytes} if counters else None,
            "mark": self.mark,
            "zone": self.zone,
            "timeout": self.timeout,
            "assured": bool(self.status & IPS_ASSURED),
            "seenReply": bool(self.status & IPS_SEEN_REPLY),
        }


def _ip(value: memoryview, size: int) -> str:
    if len(value) < size:
        raise MalformedMessage(f"address attribute shorter than {size} bytes")
    raw = bytes(value[:size])
    if size == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    return str(ipaddress.IPv6Address(raw))


def decode_tuple(buf: memoryview) -> Tuple:
    top = nl.attrs(buf)
    ip = nl.attrs(top[CTA_TUPLE_IP]) if CTA_TUPLE_IP in top else {}
    if CTA_IP_V4_SRC in ip and CTA_IP_V4_DST in ip:
        src, dst = _ip(ip[CTA_IP_V4_SRC], 4), _ip(ip[CTA_IP_V4_DST], 4)
    elif CTA_IP_V6_SRC in ip and CTA_IP_V6_DST in ip:
        src, dst = _ip(ip[CTA_IP_V6_SRC], 16), _ip(ip[CTA_IP_V6_DST], 16)
    else:
        raise MalformedMessage("tuple without source and destination address")
    proto_attrs = nl.attrs(top[CTA_TUPLE_PROTO]) if CTA_TUPLE_PROTO in top else {}
    if CTA_PROTO_NUM not in proto_attrs:
        raise MalformedMessage("tuple without a protocol number")
    proto = nl.u8(proto_attrs[CTA_PROTO_NUM])
    sport = dport = itype = icode = iid = None
    if CTA_PROTO_SRC_PORT in proto_attrs:
        sport = nl.be16(proto_attrs[CTA_PROTO_SRC_PORT])
        dport = nl.be16(proto_attrs[CTA_PROTO_DST_PORT]) if CTA_PROTO_DST_PORT in proto_attrs else 0
    elif CTA_PROTO_ICMP_TYPE in proto_attrs:
        itype = nl.u8(proto_attrs[CTA_PROTO_ICMP_TYPE])
        icode = nl.u8(proto_attrs.get(CTA_PROTO_ICMP_CODE, memoryview(b"\0")))
        iid = nl.be16(proto_attrs.get(CTA_PROTO_ICMP_ID, memoryview(b"\0\0")))
    elif CTA_PROTO_ICMPV6_TYPE in proto_attrs:
        itype = nl.u8(proto_attrs[CTA_PROTO_ICMPV6_TYPE])
        icode = nl.u8(proto_attrs.get(CTA_PROTO_ICMPV6_CODE, memoryview(b"\0")))
        iid = nl.be16(proto_attrs.get(CTA_PROTO_ICMPV6_ID, memoryview(b"\0\0")))
    return Tuple(src, dst, proto, sport, dport, itype, icode, iid)


def _counters(buf: memoryview | None) -> tuple[int | None, int | None]:
    if buf is None:
        return None, None
    c = nl.attrs(buf)
    if CTA_COUNTERS_PACKETS in c:
        packets = nl.be64(c[CTA_COUNTERS_PACKETS])
    elif CTA_COUNTERS32_PACKETS in c:
        packets = nl.be32(c[CTA_COUNTERS32_PACKETS])
    else:
        return None, None
    if CTA_COUNTERS_BYTES in c:
        nbytes = nl.be64(c[CTA_COUNTERS_BYTES])
    elif CTA_COUNTERS32_BYTES in c:
        nbytes = nl.be32(c[CTA_COUNTERS32_BYTES])
    else:
        return None, None
    return packets, nbytes


def event_name(msg: nl.Message) -> str | None:
    """``new`` / ``update`` / ``destroy`` for a ctnetlink event, else None."""
    if msg.subsys != NFNL_SUBSYS_CTNETLINK:
        return None
    if msg.nf_type == IPCTNL_MSG_CT_DELETE:
        return "destroy"
    if msg.nf_type == IPCTNL_MSG_CT_NEW:
        return "new" if msg.flags & (nl.NLM_F_CREATE | nl.NLM_F_EXCL) else "update"
    return None


def decode_entry(msg: nl.Message, event: str = "dump") -> CtEntry:
    """A ctnetlink ``IPCTNL_MSG_CT_NEW``/``DELETE`` message as an entry.

    :raises MalformedMessage: anything that does not decode.
    """
    family, _version, _res, body = nl.nfgen(msg)
    data = bytes(body)
    fast = _LAYOUTS.decode(family, data, event)
    if fast is not None:
        return fast
    entry = decode_generic(family, memoryview(data), event)
    _LAYOUTS.learn(family, data)
    return entry


def decode_generic(family: int, body: memoryview, event: str) -> CtEntry:
    """The attribute-by-attribute decoder (the reference for the fast path)."""
    a = nl.attrs(body)
    if CTA_TUPLE_ORIG not in a:
        raise MalformedMessage("conntrack message without an original tuple")
    orig = decode_tuple(a[CTA_TUPLE_ORIG])
    reply = decode_tuple(a[CTA_TUPLE_REPLY]) if CTA_TUPLE_REPLY in a else None
    tcp_state = None
    if CTA_PROTOINFO in a:
        info = nl.attrs(a[CTA_PROTOINFO])
        if CTA_PROTOINFO_TCP in info:
            tcp = nl.attrs(info[CTA_PROTOINFO_TCP])
            if CTA_PROTOINFO_TCP_STATE in tcp:
                n = nl.u8(tcp[CTA_PROTOINFO_TCP_STATE])
                tcp_state = TCP_STATES[n] if n < len(TCP_STATES) else str(n)
    op, ob = _counters(a.get(CTA_COUNTERS_ORIG))
    rp, rb = _counters(a.get(CTA_COUNTERS_REPLY))
    start = stop = None
    if CTA_TIMESTAMP in a:
        ts = nl.attrs(a[CTA_TIMESTAMP])
        if CTA_TIMESTAMP_START in ts:
            start = nl.be64(ts[CTA_TIMESTAMP_START])
        if CTA_TIMESTAMP_STOP in ts:
            stop = nl.be64(ts[CTA_TIMESTAMP_STOP])
    return CtEntry(
        event=event,
        family=family,
        orig=orig,
        reply=reply,
        status=nl.be32(a[CTA_STATUS]) if CTA_STATUS in a else 0,
        id=nl.be32(a[CTA_ID]) if CTA_ID in a else None,
        mark=nl.be32(a[CTA_MARK]) if CTA_MARK in a else 0,
        zone=nl.be16(a[CTA_ZONE]) if CTA_ZONE in a else 0,
        timeout=nl.be32(a[CTA_TIMEOUT]) if CTA_TIMEOUT in a else None,
        tcp_state=tcp_state,
        orig_packets=op,
        orig_bytes=ob,
        reply_packets=rp,
        reply_bytes=rb,
        start_ns=start,
        stop_ns=stop,
        use=nl.be32(a[CTA_USE]) if CTA_USE in a else None,
    )


def dump_request(
    family: int = socket.AF_UNSPEC,
    *,
    mark: int | None = None,
    protocol: int | None = None,
    seq: int = 1,
) -> bytes:
    """A dump request filtered in the kernel where ctnetlink allows it.

    ``family`` (nfgenmsg), ``mark`` (``CTA_MARK``/``CTA_MARK_MASK``, every
    kernel) and ``protocol`` (``CTA_FILTER`` with an original-tuple protocol,
    Linux >= 5.8, which needs a family).
    """
    body = b""
    if mark is not None:
        body += nl.attr(CTA_MARK, struct.pack("!I", mark))
        body += nl.attr(CTA_MARK_MASK, struct.pack("!I", 0xFFFFFFFF))
    if protocol is not None:
        proto = nl.attr(CTA_PROTO_NUM, bytes([protocol]))
        body += nl.attr(CTA_TUPLE_ORIG, nl.attr(CTA_TUPLE_PROTO, proto, nested=True), nested=True)
        body += nl.attr(
            CTA_FILTER,
            nl.attr(CTA_FILTER_ORIG_FLAGS, struct.pack("=I", CTA_FILTER_FLAG_PROTO_NUM)),
            nested=True,
        )
    return nl.nf_request(
        NFNL_SUBSYS_CTNETLINK,
        IPCTNL_MSG_CT_GET,
        nl.NLM_F_REQUEST | nl.NLM_F_DUMP,
        family,
        0,
        body,
        seq,
    )


def prefilter(
    *, address: str | None = None, port: int | None = None, state: str | None = None
) -> list[tuple[bytes, ...]]:
    """Byte patterns an entry's message must contain to possibly match.

    One tuple per filter, any of its patterns will do (source or destination
    attribute). Scanning the raw message for them costs a fraction of a
    decode, so a dump that matches little decodes little; the decoded entry
    is still checked exactly.
    """
    groups: list[tuple[bytes, ...]] = []
    if address is not None:
        ip = ipaddress.ip_address(address)
        size = 4 + len(ip.packed)
        src, dst = (
            (CTA_IP_V4_SRC, CTA_IP_V4_DST) if ip.version == 4 else (CTA_IP_V6_SRC, CTA_IP_V6_DST)
        )
        groups.append(tuple(struct.pack("=HH", size, t) + ip.packed for t in (src, dst)))
    if port is not None:
        groups.append(
            tuple(
                struct.pack("=HH", 6, t) + struct.pack("!H", port)
                for t in (CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT)
            )
        )
    if state is not None and state in TCP_STATES:
        groups.append((struct.pack("=HHB", 5, CTA_PROTOINFO_TCP_STATE, TCP_STATES.index(state)),))
    return groups


# -- the fast path ----------------------------------------------------------------
#: Leaf attributes the entry is built from: path of attribute types -> (field, format).
_LEAVES: dict[tuple[int, ...], tuple[str, str]] = {}
for _side, _top in (("o", CTA_TUPLE_ORIG), ("r", CTA_TUPLE_REPLY)):
    _LEAVES[(_top, CTA_TUPLE_IP, CTA_IP_V4_SRC)] = (f"{_side}.src4", "4s")
    _LEAVES[(_top, CTA_TUPLE_IP, CTA_IP_V4_DST)] = (f"{_side}.dst4", "4s")
    _LEAVES[(_top, CTA_TUPLE_IP, CTA_IP_V6_SRC)] = (f"{_side}.src6", "16s")
    _LEAVES[(_top, CTA_TUPLE_IP, CTA_IP_V6_DST)] = (f"{_side}.dst6", "16s")
    _LEAVES[(_top, CTA_TUPLE_PROTO, CTA_PROTO_NUM)] = (f"{_side}.proto", "B")
    _LEAVES[(_top, CTA_TUPLE_PROTO, CTA_PROTO_SRC_PORT)] = (f"{_side}.sport", "H")
    _LEAVES[(_top, CTA_TUPLE_PROTO, CTA_PROTO_DST_PORT)] = (f"{_side}.dport", "H")
for _leaf, _fmt in (
    ((CTA_STATUS,), ("status", "I")),
    ((CTA_ID,), ("id", "I")),
    ((CTA_MARK,), ("mark", "I")),
    ((CTA_ZONE,), ("zone", "H")),
    ((CTA_TIMEOUT,), ("timeout", "I")),
    ((CTA_USE,), ("use", "I")),
    ((CTA_PROTOINFO, CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE), ("tcp_state", "B")),
    ((CTA_COUNTERS_ORIG, CTA_COUNTERS_PACKETS), ("op", "Q")),
    ((CTA_COUNTERS_ORIG, CTA_COUNTERS_BYTES), ("ob", "Q")),
    ((CTA_COUNTERS_REPLY, CTA_COUNTERS_PACKETS), ("rp", "Q")),
    ((CTA_COUNTERS_REPLY, CTA_COUNTERS_BYTES), ("rb", "Q")),
    ((CTA_TIMESTAMP, CTA_TIMESTAMP_START), ("start", "Q")),
    ((CTA_TIMESTAMP, CTA_TIMESTAMP_STOP), ("stop", "Q")),
):
    _LEAVES[_leaf] = _fmt
#: Nested attributes the walk descends into.
_NESTED = {
    (CTA_TUPLE_ORIG,), (CTA_TUPLE_REPLY,), (CTA_PROTOINFO,), (CTA_PROTOINFO, CTA_PROTOINFO_TCP),
    (CTA_COUNTERS_ORIG,), (CTA_COUNTERS_REPLY,), (CTA_TIMESTAMP,),
    (CTA_TUPLE_ORIG, CTA_TUPLE_IP), (CTA_TUPLE_ORIG, CTA_TUPLE_PROTO),
    (CTA_TUPLE_REPLY, CTA_TUPLE_IP), (CTA_TUPLE_REPLY, CTA_TUPLE_PROTO),
}  # fmt: skip
_SIZES = {"B": 1, "H": 2, "I": 4, "Q": 8, "4s": 4, "16s": 16}


class _Layout:
    """Where every attribute header and known value sits in one message shape.

    Messages of one kind (an IPv4 UDP flow's DESTROY) have identical
    attribute layouts: once learned, checking all headers is one
    ``unpack_from`` and a tuple comparison, and reading every value another.
    Any difference (a header elsewhere, another length or type) falls back
    to the generic decoder, so the fast path decodes exactly what it would.
    """

    def __init__(
        self, headers: list[int], values: list[tuple[int, str, str]], expected: tuple[int, ...]
    ) -> None:
        self.headers = struct.Struct("=" + _fmt_at(headers, "HH", 4))
        self.expected = expected
        self.fields = [name for _off, name, _fmt in values]
        self.values = struct.Struct(
            "!" + _fmt_at([off for off, _n, _f in values], [f for _o, _n, f in values], None)
        )


def _fmt_at(offsets: list[int], fmts: str | list[str], size: int | None) -> str:
    out = []
    pos = 0
    for i, off in enumerate(offsets):
        fmt = fmts if isinstance(fmts, str) else fmts[i]
        width = size if size is not None else _SIZES[fmt]
        out.append(f"{off - pos}x{fmt}" if off > pos else fmt)
        pos = off + width
    return "".join(out)


def _walk(
    data: bytes,
    start: int,
    stop: int,
    path: tuple[int, ...],
    headers: list[int],
    expected: list[int],
    values: list[tuple[int, str, str]],
) -> None:
    off = start
    while stop - off >= 4:
        length, atype = struct.unpack_from("=HH", data, off)
        if length < 4 or length > stop - off:
            raise MalformedMessage("bad attribute length")
        headers.append(off)
        expected.extend((length, atype))
        here = (*path, atype & nl.NLA_TYPE_MASK)
        leaf = _LEAVES.get(here)
        if here in _NESTED:
            _walk(data, off + 4, off + length, here, headers, expected, values)
        elif leaf is not None and length - 4 >= _SIZES[leaf[1]]:
            values.append((off + 4, leaf[0], leaf[1]))
        off += (length + 3) & ~3


class _Layouts:
    MAX = 64

    def __init__(self) -> None:
        self.by_key: dict[tuple[int, int], list[_Layout]] = {}
        self.count = 0

    def learn(self, family: int, data: bytes) -> None:
        if self.count >= self.MAX:
            return
        headers: list[int] = []
        expected: list[int] = []
        values: list[tuple[int, str, str]] = []
        try:
            _walk(data, 0, len(data), (), headers, expected, values)
        except (MalformedMessage, struct.error):
            return
        if not headers or len(headers) > 200 or not any(n == "o.sport" for _o, n, _f in values):
            return  # ICMP and odd shapes stay with the generic decoder
        self.by_key.setdefault((family, len(data)), []).append(
            _Layout(headers, values, tuple(expected))
        )
        self.count += 1

    def decode(self, family: int, data: bytes, event: str) -> CtEntry | None:
        for layout in self.by_key.get((family, len(data)), ()):
            if layout.headers.unpack_from(data) == layout.expected:
                return _build(
                    family,
                    dict(zip(layout.fields, layout.values.unpack_from(data), strict=True)),
                    event,
                )
        return None


def _tuple_of(v: dict[str, Any], side: str) -> Tuple | None:
    if f"{side}.src4" in v and f"{side}.dst4" in v:
        src = socket.inet_ntop(socket.AF_INET, v[f"{side}.src4"])
        dst = socket.inet_ntop(socket.AF_INET, v[f"{side}.dst4"])
    elif f"{side}.src6" in v and f"{side}.dst6" in v:
        src = str(ipaddress.IPv6Address(v[f"{side}.src6"]))
        dst = str(ipaddress.IPv6Address(v[f"{side}.dst6"]))
    else:
        return None
    proto = v.get(f"{side}.proto")
    if proto is None:
        return None
    sport = v.get(f"{side}.sport")
    return Tuple(src, dst, proto, sport, v.get(f"{side}.dport", 0) if sport is not None else None)


def _build(family: int, v: dict[str, Any], event: str) -> CtEntry | None:
    orig = _tuple_of(v, "o")
    if orig is None or orig.sport is None:
        return None  # ICMP and other shapes: the generic decoder
    n = v.get("tcp_state")
    counters = "op" in v and "ob" in v
    rcounters = "rp" in v and "rb" in v
    return CtEntry(
        event=event,
        family=family,
        orig=orig,
        reply=_tuple_of(v, "r"),
        status=v.get("status", 0),
        id=v.get("id"),
        mark=v.get("mark", 0),
        zone=v.get("zone", 0),
        timeout=v.get("timeout"),
        tcp_state=None if n is None else TCP_STATES[n] if n < len(TCP_STATES) else str(n),
        orig_packets=v["op"] if counters else None,
        orig_bytes=v["ob"] if counters else None,
        reply_packets=v["rp"] if rcounters else None,
        reply_bytes=v["rb"] if rcounters else None,
        start_ns=v.get("start"),
        stop_ns=v.get("stop"),
        use=v.get("use"),
    )


_LAYOUTS = _Layouts()
