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
