"""A small netlink / nfnetlink codec, sans-I/O.

Both kernel sources the observers read speak nfnetlink: ctnetlink
(conntrack dumps and events) and NFLOG (``nfnetlink_log``). pyroute2 has no
NFLOG, and its ctnetlink parser costs about 70 µs per entry here (7.0 s for
a dump of 100,000 entries, ``conntrack -L`` takes 0.35 s), so both are read
with this codec: a bounded walk over ``nlmsghdr`` / ``nfgenmsg`` /
``nlattr`` that raises :class:`MalformedMessage` on anything that does not
fit, never another exception (fuzzed in ``tests/test_netlink_fuzz.py``).

Layouts (``linux/netlink.h``, ``linux/netfilter/nfnetlink.h``):
``nlmsghdr`` is 16 bytes in host order (len, type, flags, seq, pid);
``nfgenmsg`` 4 bytes (family, version, res_id in network order); each
``nlattr`` is (len, type) in host order, the payload padded to 4 bytes,
``NLA_F_NESTED`` / ``NLA_F_NET_BYTEORDER`` in the top bits of the type.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
import struct
from typing import Final

NETLINK_NETFILTER: Final = 12
SOL_NETLINK: Final = 270
NETLINK_ADD_MEMBERSHIP: Final = 1
NETLINK_BROADCAST_ERROR: Final = 4
NETLINK_NO_ENOBUFS: Final = 5
NETLINK_EXT_ACK: Final = 11

NLMSG_NOOP: Final = 1
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NLMSG_OVERRUN: Final = 4

NLM_F_REQUEST: Final = 0x1
NLM_F_MULTI: Final = 0x2
NLM_F_ACK: Final = 0x4
NLM_F_ROOT: Final = 0x100
NLM_F_MATCH: Final = 0x200
NLM_F_DUMP: Final = NLM_F_ROOT | NLM_F_MATCH
NLM_F_CREATE: Final = 0x400
NLM_F_EXCL: Final = 0x200

NLA_F_NESTED: Final = 0x8000
NLA_F_NET_BYTEORDER: Final = 0x4000
NLA_TYPE_MASK: Final = ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER) & 0xFFFF

NFNETLINK_V0: Final = 0

NLMSGHDR: Final = struct.Struct("=IHHII")
NFGENMSG: Final = struct.Struct("!BBH")
NLATTR: Final = struct.Struct("=HH")
_NLATTR_UNPACK = NLATTR.unpack_from
#: A netlink message is never larger than this here (the receive buffer).
MAX_MESSAGE: Final = 1 << 20
#: Nesting deeper than this is not a message any kernel sends.
MAX_DEPTH: Final = 8


class MalformedMessage(ValueError):
    """A netlink message or attribute that does not fit its own lengths."""


@dataclass(frozen=True, slots=True)
class Message:
    """One netlink message: header fields and the bytes after ``nlmsghdr``."""

    type: int
    flags: int
    seq: int
    pid: int
    payload: memoryview

    @property
    def subsys(self) -> int:
        return self.type >> 8

    @property
    def nf_type(self) -> int:
        return self.type & 0xFF


def align(n: int) -> int:
    return (n + 3) & ~3


def messages(buf: bytes | bytearray | memoryview) -> Iterator[Message]:
    """The messages of one datagram, in order.

    :raises MalformedMessage: a header that does not fit the datagram.
    """
    view = memoryview(buf)
    off = 0
    end = len(view)
    while off < end:
        if end - off < NLMSGHDR.size:
            raise MalformedMessage(f"{end - off} bytes left, shorter than nlmsghdr")
        length, mtype, flags, seq, pid = NLMSGHDR.unpack_from(view, off)
        if length < NLMSGHDR.size or length > end - off:
            raise MalformedMessage(f"nlmsg_len {length} with {end - off} bytes left")
        yield Message(mtype, flags, seq, pid, view[off + NLMSGHDR.size : off + length])
        off += align(length)


def error_code(msg: Message) -> int:
    """The (positive) errno of an ``NLMSG_ERROR``; 0 is an acknowledgement."""
    if len(msg.payload) < 4:
        raise MalformedMessage("NLMSG_ERROR shorter than its error code")
    (code,) = struct.unpack_from("=i", msg.payload, 0)
    return -int(code)


def nfgen(msg: Message) -> tuple[int, int, int, memoryview]:
    """``(family, version, res_id, attributes)`` of an nfnetlink message."""
    if len(msg.payload) < NFGENMSG.size:
        raise MalformedMessage("nfnetlink message shorter than nfgenmsg")
    family, version, res_id = NFGENMSG.unpack_from(msg.payload, 0)
    return family, version, res_id, msg.payload[NFGENMSG.size :]


def attrs(buf: memoryview) -> dict[int, memoryview]:
    """The attributes of one level, by type (a repeated type: the last wins).

    :raises MalformedMessage: an attribute length outside its buffer.
    """
    # The hot path of every observer (12 calls per conntrack event): locals
    # and inlined alignment, measured 30 % faster than the plain loop.
    out: dict[int, memoryview] = {}
    off = 0
    end = len(buf)
    unpack = _NLATTR_UNPACK
    while end - off >= 4:
        length, atype = unpack(buf, off)
        if length < 4 or length > end - off:
            raise MalformedMessage(f"nla_len {length} with {end - off} bytes left")
        out[atype & 0x3FFF] = buf[off + 4 : off + length]
        off += (length + 3) & ~3
    return out


def u8(value: memoryview) -> int:
    if len(value) < 1:
        raise MalformedMessage("u8 attribute is empty")
    return int(value[0])


def be16(value: memoryview) -> int:
    if len(value) < 2:
        raise MalformedMessage("be16 attribute shorter than 2 bytes")
    return int(struct.unpack_from("!H", value)[0])


def be32(value: memoryview) -> int:
    if len(value) < 4:
        raise MalformedMessage("be32 attribute shorter than 4 bytes")
    return int(struct.unpack_from("!I", value)[0])


def be64(value: memoryview) -> int:
    if len(value) < 8:
        raise MalformedMessage("be64 attribute shorter than 8 bytes")
    return int(struct.unpack_from("!Q", value)[0])


def h32(value: memoryview) -> int:
    if len(value) < 4:
        raise MalformedMessage("u32 attribute shorter than 4 bytes")
    return int(struct.unpack_from("=I", value)[0])


def cstring(value: memoryview, limit: int = 256) -> str:
    """A NUL-terminated string attribute (prefixes, interface names)."""
    raw = bytes(value[:limit])
    nul = raw.find(b"\0")
    if nul >= 0:
        raw = raw[:nul]
    return raw.decode("utf-8", "replace")


# -- building requests --------------------------------------------------------
def attr(atype: int, payload: bytes, *, nested: bool = False) -> bytes:
    """One attribute, padded."""
    length = NLATTR.size + len(payload)
    head = NLATTR.pack(length, atype | (NLA_F_NESTED if nested else 0))
    return head + payload + b"\0" * (align(length) - length)


def nf_request(
    subsys: int, msg: int, flags: int, family: int, res_id: int, body: bytes, seq: int = 1
) -> bytes:
    """An nfnetlink request: ``nlmsghdr`` + ``nfgenmsg`` + attributes."""
    payload = NFGENMSG.pack(family, NFNETLINK_V0, res_id) + body
    return NLMSGHDR.pack(NLMSGHDR.size + len(payload), (subsys << 8) | msg, flags, seq, 0) + payload
