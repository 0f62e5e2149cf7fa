"""PPP packets (RFC 1661, RFC 1332, RFC 1877, RFC 5072, RFC 1334, RFC 1994).

- :func:`split_protocol` / :func:`join_protocol`: the Protocol field of a
  PPP frame as PPPoE carries it (RFC 2516 §7: no Address and Control field).
- :class:`ControlPacket`: the Code/Identifier/Length shape shared by LCP,
  IPCP, IPv6CP, PAP and CHAP (RFC 1661 §5).
- Configuration options (RFC 1661 §6): a list of ``(type, value)``.
- PAP (RFC 1334 §2.2) and CHAP (RFC 1994 §4) packet bodies.

Every decoder raises :class:`routerd_pppoe.codec.DecodeError` and nothing
else on malformed input. Octets after a control packet's Length are padding
and ignored (RFC 1661 §5: "Octets outside the range of the Length field
should be treated as Data Link Layer padding").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
import enum
import hashlib
import ipaddress
import struct

from routerd_pppoe.codec import DecodeError

__all__ = [
    "CHAP_MD5",
    "ChapCode",
    "ChapPacket",
    "Code",
    "ControlPacket",
    "IpcpOption",
    "Ipv6cpOption",
    "LcpOption",
    "Option",
    "PapCode",
    "Protocol",
    "chap_md5_response",
    "decode_chap",
    "decode_control",
    "decode_options",
    "decode_pap_reply",
    "encode_chap_response",
    "encode_control",
    "encode_options",
    "encode_pap_request",
    "ip_value",
    "join_protocol",
    "protocol_name",
    "split_protocol",
    "u16",
    "u32",
]


class Protocol(enum.IntEnum):
    """PPP Protocol field values (RFC 1661 §2, IANA ppp-numbers)."""

    IPV4 = 0x0021
    IPV6 = 0x0057
    IPCP = 0x8021
    IPV6CP = 0x8057
    CCP = 0x80FD
    LCP = 0xC021
    PAP = 0xC023
    LQR = 0xC025
    CHAP = 0xC223
    EAP = 0xC227


def protocol_name(protocol: int) -> str:
    try:
        return Protocol(protocol).name
    except ValueError:
        return f"0x{protocol:04x}"


class Code(enum.IntEnum):
    """LCP codes (RFC 1661 §5, RFC 1570 §2); codes 1-7 also serve IPCP and IPv6CP."""

    CONFIGURE_REQUEST = 1
    CONFIGURE_ACK = 2
    CONFIGURE_NAK = 3
    CONFIGURE_REJECT = 4
    TERMINATE_REQUEST = 5
    TERMINATE_ACK = 6
    CODE_REJECT = 7
    PROTOCOL_REJECT = 8
    ECHO_REQUEST = 9
    ECHO_REPLY = 10
    DISCARD_REQUEST = 11
    IDENTIFICATION = 12
    TIME_REMAINING = 13


class LcpOption(enum.IntEnum):
    """LCP configuration options (RFC 1661 §6, RFC 1570, RFC 1990)."""

    MRU = 1
    ACCM = 2
    AUTH_PROTOCOL = 3
    QUALITY_PROTOCOL = 4
    MAGIC_NUMBER = 5
    PFC = 7
    ACFC = 8
    CALLBACK = 13
    MRRU = 17
    SHORT_SEQUENCE = 18
    ENDPOINT_DISCRIMINATOR = 19


class IpcpOption(enum.IntEnum):
    """IPCP options (RFC 1332 §3, RFC 1877 §1)."""

    IP_ADDRESSES = 1
    IP_COMPRESSION = 2
    IP_ADDRESS = 3
    PRIMARY_DNS = 129
    PRIMARY_NBNS = 130
    SECONDARY_DNS = 131
    SECONDARY_NBNS = 132


class Ipv6cpOption(enum.IntEnum):
    """IPv6CP options (RFC 5072 §4)."""

    INTERFACE_IDENTIFIER = 1
    IPV6_COMPRESSION = 2


class PapCode(enum.IntEnum):
    """RFC 1334 §2.2."""

    AUTHENTICATE_REQUEST = 1
    AUTHENTICATE_ACK = 2
    AUTHENTICATE_NAK = 3


class ChapCode(enum.IntEnum):
    """RFC 1994 §4."""

    CHALLENGE = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


#: CHAP algorithm 5: MD5 (RFC 1994 §3: the Authentication-Protocol option's data).
CHAP_MD5 = 5

#: ``(type, value)`` of one configuration option.
Option = tuple[int, bytes]


def split_protocol(frame: bytes) -> tuple[int, bytes]:
    """``(protocol, information)`` of a PPP frame from a PPPoE session.

    RFC 2516 §7 leaves out Address and Control, but a peer that sends
    ``FF 03`` anyway is understood. A one-byte (compressed, RFC 1661 §6.5)
    Protocol field is recognised by its odd first octet: compression is never
    negotiated here, but RFC 1661 §6.5 says such frames should still be taken.
    """
    if frame[:2] == b"\xff\x03":
        frame = frame[2:]
    if not frame:
        raise DecodeError("empty PPP frame")
    if frame[0] & 1:
        return frame[0], bytes(frame[1:])
    if len(frame) < 2:
        raise DecodeError("truncated PPP Protocol field")
    protocol = (frame[0] << 8) | frame[1]
    if not protocol & 1:
        # RFC 1661 §2: "all Protocols MUST be odd; the least significant bit
        # of the least significant octet MUST equal 1".
        raise DecodeError(f"invalid PPP protocol 0x{protocol:04x}")
    return protocol, bytes(frame[2:])


def join_protocol(protocol: int, info: bytes) -> bytes:
    return struct.pack("!H", protocol) + info


@dataclass(frozen=True)
class ControlPacket:
    """Code, Identifier and Data of one control packet."""

    code: int
    identifier: int
    data: bytes = b""


def decode_control(info: bytes) -> ControlPacket:
    if len(info) < 4:
        raise DecodeError("control packet shorter than 4 octets")
    code, identifier, length = struct.unpack_from("!BBH", info)
    if length < 4:
        raise DecodeError(f"control packet Length {length} < 4")
    if length > len(info):
        raise DecodeError(f"control packet Length {length} runs past the frame ({len(info)})")
    return ControlPacket(code, identifier, bytes(info[4:length]))


def encode_control(code: int, identifier: int, data: bytes = b"") -> bytes:
    return struct.pack("!BBH", code, identifier & 0xFF, 4 + len(data)) + data


def decode_options(data: bytes) -> list[Option]:
    """Configuration options (RFC 1661 §6); a malformed list is an error as a whole."""
    options: list[Option] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise DecodeError("truncated option header")
        kind, length = data[pos], data[pos + 1]
        if length < 2:
            raise DecodeError(f"option {kind} Length {length} < 2")
        if pos + length > len(data):
            raise DecodeError(f"option {kind} Length {length} runs past the packet")
        options.append((kind, bytes(data[pos + 2 : pos + length])))
        pos += length
    return options


def encode_options(options: Iterable[Option]) -> bytes:
    out = bytearray()
    for kind, value in options:
        if len(value) > 253:
            raise ValueError(f"option {kind} value too long")
        out += bytes((kind, len(value) + 2)) + value
    return bytes(out)


def u16(value: bytes) -> int | None:
    return int.from_bytes(value, "big") if len(value) == 2 else None


def u32(value: bytes) -> int | None:
    return int.from_bytes(value, "big") if len(value) == 4 else None


def ip_value(value: bytes) -> str | None:
    """An IPv4 address option value (RFC 1332 §3.3), or None when it is not 4 octets."""
    return str(ipaddress.IPv4Address(value)) if len(value) == 4 else None


# -- PAP (RFC 1334 §2.2) --------------------------------------------------------


def encode_pap_request(identifier: int, peer_id: bytes, password: bytes) -> bytes:
    if len(peer_id) > 255 or len(password) > 255:
        raise ValueError("PAP Peer-ID and Password are at most 255 octets")
    data = bytes((len(peer_id),)) + peer_id + bytes((len(password),)) + password
    return encode_control(PapCode.AUTHENTICATE_REQUEST, identifier, data)


def decode_pap_reply(packet: ControlPacket) -> str:
    """The Message of an Authenticate-Ack/Nak (printable text; may be empty).

    Never raises: the Code decides, the text is only shown.
    """
    if not packet.data:
        return ""  # some servers leave out even the Msg-Length octet
    # The Code decides; a Msg-Length running past the packet only cuts the text.
    return _printable(packet.data[1 : 1 + packet.data[0]])


# -- CHAP (RFC 1994 §4) -----------------------------------------------------------


@dataclass(frozen=True)
class ChapPacket:
    """A Challenge (value, name) or a Success/Failure (message)."""

    code: int
    identifier: int
    value: bytes = b""
    name: bytes = b""
    message: str = ""


def decode_chap(packet: ControlPacket) -> ChapPacket:
    if packet.code in (ChapCode.CHALLENGE, ChapCode.RESPONSE):
        if not packet.data:
            raise DecodeError("CHAP packet without Value-Size")
        size = packet.data[0]
        if size == 0 or 1 + size > len(packet.data):
            raise DecodeError(f"CHAP Value-Size {size} does not fit the packet")
        return ChapPacket(
            packet.code,
            packet.identifier,
            value=bytes(packet.data[1 : 1 + size]),
            name=bytes(packet.data[1 + size :]),
        )
    if packet.code in (ChapCode.SUCCESS, ChapCode.FAILURE):
        return ChapPacket(packet.code, packet.identifier, message=_printable(packet.data))
    raise DecodeError(f"unknown CHAP code {packet.code}")


def chap_md5_response(identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """RFC 1994 §4.1: MD5 over Identifier, secret and Challenge Value."""
    return hashlib.md5(bytes((identifier & 0xFF,)) + secret + challenge).digest()


def encode_chap_response(identifier: int, value: bytes, name: bytes) -> bytes:
    return encode_control(ChapCode.RESPONSE, identifier, bytes((len(value),)) + value + name)


def _printable(data: bytes) -> str:
    text = data.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)[:200]
