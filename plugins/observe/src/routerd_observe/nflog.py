"""NFLOG (``nfnetlink_log``) codec, sans-I/O: bind requests out, logged packets in.

pyroute2 has no NFLOG; this is the part of ``libnetfilter_log`` routerd needs
(``linux/netfilter/nfnetlink_log.h``). A logged packet's payload starts at
its network header and is decoded with dpkt. Every decode failure is a
:class:`~routerd_observe.netlink.MalformedMessage` (fuzzed).

Action convention (docs/observe.md): a rule's log prefix starts with its
verdict, ``drop``, ``reject``, ``accept`` or ``log`` (any case), followed
by a space, ``:`` or ``-`` and the rule's name, e.g.
``log prefix "drop: wan-in " group 5 drop``. A prefix that does not start
with one of them has action ``log``.
"""

from __future__ import annotations

from dataclasses import dataclass
import re
import socket
import struct
from typing import Any
from typing import Final

import dpkt

from routerd_observe import netlink as nl
from routerd_observe.netlink import MalformedMessage

NFNL_SUBSYS_ULOG: Final = 4
NFULNL_MSG_PACKET: Final = 0
NFULNL_MSG_CONFIG: Final = 1

NFULA_CFG_CMD: Final = 1
NFULA_CFG_MODE: Final = 2
NFULA_CFG_NLBUFSIZ: Final = 3
NFULA_CFG_TIMEOUT: Final = 4
NFULA_CFG_QTHRESH: Final = 5
NFULA_CFG_FLAGS: Final = 6
NFULNL_CFG_CMD_BIND: Final = 1
NFULNL_CFG_CMD_UNBIND: Final = 2
NFULNL_CFG_CMD_PF_BIND: Final = 3
NFULNL_COPY_PACKET: Final = 2
#: Per-group sequence numbers: a gap is a packet the kernel could not queue.
NFULNL_CFG_F_SEQ: Final = 0x0001

NFULA_PACKET_HDR: Final = 1
NFULA_MARK: Final = 2
NFULA_TIMESTAMP: Final = 3
NFULA_IFINDEX_INDEV: Final = 4
NFULA_IFINDEX_OUTDEV: Final = 5
NFULA_PAYLOAD: Final = 9
NFULA_PREFIX: Final = 10
NFULA_SEQ: Final = 12

HOOKS: Final = ("prerouting", "input", "forward", "output", "postrouting")
ACTIONS: Final = ("drop", "reject", "accept", "log")
_ACTION = re.compile(r"^\s*(drop|reject|accept|log)(?:[\s:\-]|$)", re.IGNORECASE)
TCP_FLAG_NAMES: Final = (
    (0x01, "FIN"),
    (0x02, "SYN"),
    (0x04, "RST"),
    (0x08, "PSH"),
    (0x10, "ACK"),
    (0x20, "URG"),
    (0x40, "ECE"),
    (0x80, "CWR"),
)


def action_of(prefix: str) -> str:
    m = _ACTION.match(prefix)
    return m.group(1).lower() if m else "log"


def config_request(
    group: int, command: int | None = None, *, family: int = 0, body: bytes = b"", seq: int = 1
) -> bytes:
    """An ``NFULNL_MSG_CONFIG`` for ``group`` (``res_id``), with an ack asked."""
    if command is not None:
        body = nl.attr(NFULA_CFG_CMD, bytes([command])) + body
    return nl.nf_request(
        NFNL_SUBSYS_ULOG,
        NFULNL_MSG_CONFIG,
        nl.NLM_F_REQUEST | nl.NLM_F_ACK,
        family,
        group,
        body,
        seq,
    )


def bind_requests(
    group: int, copy_range: int, timeout_cs: int = 10, qthresh: int = 64
) -> list[bytes]:
    """What binds a socket to ``group`` and asks for packet copies.

    PF_BIND per family is a no-op on Linux >= 3.17 and needed before it.
    """
    mode = struct.pack("!IBx", copy_range, NFULNL_COPY_PACKET)
    return [
        config_request(0, NFULNL_CFG_CMD_PF_BIND, family=socket.AF_INET, seq=1),
        config_request(0, NFULNL_CFG_CMD_PF_BIND, family=socket.AF_INET6, seq=2),
        config_request(group, NFULNL_CFG_CMD_BIND, seq=3),
        config_request(
            group,
            None,
            body=nl.attr(NFULA_CFG_MODE, mode)
            + nl.attr(NFULA_CFG_TIMEOUT, struct.pack("!I", timeout_cs))
            + nl.attr(NFULA_CFG_QTHRESH, struct.pack("!I", qthresh))
            + nl.attr(NFULA_CFG_FLAGS, struct.pack("!H", NFULNL_CFG_F_SEQ)),
            seq=4,
        ),
    ]


@dataclass(frozen=True, slots=True)
class LoggedPacket:
    """One packet a rule logged to the group."""

    group: int
    family: int
    hook: str | None
    prefix: str
    mark: int
    timestamp: float | None
    indev: int | None
    outdev: int | None
    seq: int | None
    payload: bytes


def decode_packet(msg: nl.Message) -> LoggedPacket:
    """An ``NFULNL_MSG_PACKET`` message.

    :raises MalformedMessage: it does not decode.
    """
    if msg.subsys != NFNL_SUBSYS_ULOG or msg.nf_type != NFULNL_MSG_PACKET:
        raise MalformedMessage(f"not an NFLOG packet (type {msg.type:#x})")
    family, _version, group, body = nl.nfgen(msg)
    a = nl.attrs(body)
    hook = None
    if NFULA_PACKET_HDR in a:
        hdr = a[NFULA_PACKET_HDR]
        if len(hdr) < 4:
            raise MalformedMessage("packet header shorter than 4 bytes")
        n = hdr[2]
        hook = HOOKS[n] if n < len(HOOKS) else str(n)
    ts = None
    if NFULA_TIMESTAMP in a:
        raw = a[NFULA_TIMESTAMP]
        if len(raw) < 16:
            raise MalformedMessage("timestamp shorter than 16 bytes")
        sec, usec = struct.unpack_from("!QQ", raw)
        ts = sec + usec / 1e6
    return LoggedPacket(
        group=group,
        family=family,
        hook=hook,
        prefix=nl.cstring(a[NFULA_PREFIX]) if NFULA_PREFIX in a else "",
        mark=nl.be32(a[NFULA_MARK]) if NFULA_MARK in a else 0,
        timestamp=ts,
        indev=nl.be32(a[NFULA_IFINDEX_INDEV]) if NFULA_IFINDEX_INDEV in a else None,
        outdev=nl.be32(a[NFULA_IFINDEX_OUTDEV]) if NFULA_IFINDEX_OUTDEV in a else None,
        seq=nl.be32(a[NFULA_SEQ]) if NFULA_SEQ in a else None,
        payload=bytes(a.get(NFULA_PAYLOAD, b"")),
    )


def tcp_flags(flags: int) -> str:
    return ",".join(name for bit, name in TCP_FLAG_NAMES if flags & bit)


def decode_payload(family: int, payload: bytes) -> dict[str, Any]:
    """Addresses, protocol, ports, TCP flags and length of a logged packet.

    A payload that is cut short (the group's copy range) or malformed gives
    what could be read, with ``truncated: true``; never an exception.
    """
    out: dict[str, Any] = {
        "family": "ipv6" if family == socket.AF_INET6 else "ipv4",
        "truncated": False,
    }
    try:
        if family == socket.AF_INET6:
            ip: Any = dpkt.ip6.IP6(payload)
            out["src"] = socket.inet_ntop(socket.AF_INET6, ip.src)
            out["dst"] = socket.inet_ntop(socket.AF_INET6, ip.dst)
            out["length"] = int(ip.plen) + 40
            proto = int(ip.nxt)
        else:
            ip = dpkt.ip.IP(payload)
            out["src"] = socket.inet_ntop(socket.AF_INET, ip.src)
            out["dst"] = socket.inet_ntop(socket.AF_INET, ip.dst)
            out["length"] = int(ip.len)
            proto = int(ip.p)
            if ip.offset:
                out["protocol"] = _proto(proto)
                return out  # a later fragment has no transport header
        out["protocol"] = _proto(proto)
        l4 = ip.data
        if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
            out["sport"], out["dport"] = int(l4.sport), int(l4.dport)
            if isinstance(l4, dpkt.tcp.TCP):
                out["tcpFlags"] = tcp_flags(int(l4.flags))
        elif isinstance(l4, (dpkt.icmp.ICMP, dpkt.icmp6.ICMP6)):
            out["icmpType"], out["icmpCode"] = int(l4.type), int(l4.code)
    except Exception:
        # dpkt raises several types on short or hostile bytes (NeedData,
        # UnpackError, struct.error...): keep the fields read so far.
        out["truncated"] = True
        if len(payload) >= 20 and family != socket.AF_INET6 and "src" not in out:
            out["src"] = socket.inet_ntop(socket.AF_INET, payload[12:16])
            out["dst"] = socket.inet_ntop(socket.AF_INET, payload[16:20])
            out["protocol"] = _proto(payload[9])
    return out


def _proto(p: int) -> str:
    return {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}.get(p, str(p))
