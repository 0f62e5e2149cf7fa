"""PPPoE framing (RFC 2516): Ethernet frames, discovery packets and their
tags, session frames.

Decoding is lenient where the RFC allows it and strict where a wrong value
would mislead the client: every malformed input raises :class:`DecodeError`
(a ``ValueError``) and nothing else, so a caller counts it and drops the
frame. ``tests/test_fuzz.py`` holds the decoders to that.

- The PPPoE ``LENGTH`` field bounds the payload; bytes after it are Ethernet
  padding (a PADT is 20 bytes, the minimum frame 60) and are ignored.
- A tag running past ``LENGTH`` is an error (the packet is dropped); the
  End-Of-List tag (RFC 2516 appendix A, 0x0000) ends the list early.
- Unknown tags are kept (their value as bytes): a client "MUST ignore" them
  (RFC 2516 appendix A) but a test or an event may want to see them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
import enum
import struct

__all__ = [
    "BROADCAST_MAC",
    "ETH_HEADER",
    "ETH_P_PPPOE_DISC",
    "ETH_P_PPPOE_SESS",
    "MAX_TAG_VALUE",
    "PPPOE_HEADER",
    "Code",
    "DecodeError",
    "Discovery",
    "EthernetFrame",
    "Tag",
    "decode_discovery",
    "decode_session",
    "encode_discovery",
    "encode_session",
    "ethernet_frame",
    "mac_to_str",
    "parse_ethernet",
    "parse_mac",
]

ETH_P_PPPOE_DISC = 0x8863
ETH_P_PPPOE_SESS = 0x8864
BROADCAST_MAC = b"\xff" * 6
ETH_HEADER = 14
PPPOE_HEADER = 6
#: RFC 2516 §4: VER and TYPE "MUST be set to 0x1" each.
VER_TYPE = 0x11
#: A tag value is at most what fits in one PPPoE payload of a 1500-byte frame.
MAX_TAG_VALUE = 1500 - PPPOE_HEADER - 4
_HDR = struct.Struct("!BBHH")


class DecodeError(ValueError):
    """A frame or packet that cannot be decoded (dropped and counted)."""


class Code(enum.IntEnum):
    """PPPoE CODE field (RFC 2516 §5)."""

    SESSION = 0x00
    PADO = 0x07
    PADI = 0x09
    PADR = 0x19
    PADS = 0x65
    PADT = 0xA7


DISCOVERY_CODES = frozenset({Code.PADI, Code.PADO, Code.PADR, Code.PADS, Code.PADT})


class Tag(enum.IntEnum):
    """Discovery tags (RFC 2516 appendix A, RFC 4638 §4, RFC 5578 §4)."""

    END_OF_LIST = 0x0000
    SERVICE_NAME = 0x0101
    AC_NAME = 0x0102
    HOST_UNIQ = 0x0103
    AC_COOKIE = 0x0104
    VENDOR_SPECIFIC = 0x0105
    CREDITS = 0x0106
    METRICS = 0x0107
    SEQUENCE_NUMBER = 0x0108
    RELAY_SESSION_ID = 0x0110
    HURL = 0x0111
    MOTM = 0x0112
    PPP_MAX_PAYLOAD = 0x0120
    IP_ROUTE_ADD = 0x0121
    SERVICE_NAME_ERROR = 0x0201
    AC_SYSTEM_ERROR = 0x0202
    GENERIC_ERROR = 0x0203


#: The error tags, in the order they are reported.
ERROR_TAGS = (Tag.SERVICE_NAME_ERROR, Tag.AC_SYSTEM_ERROR, Tag.GENERIC_ERROR)


def mac_to_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def parse_mac(text: str) -> bytes | None:
    """``"02:00:00:00:00:01"`` to 6 bytes; None when it is not a MAC."""
    try:
        mac = bytes.fromhex(text.replace(":", "").replace("-", ""))
    except ValueError:
        return None
    return mac if len(mac) == 6 else None


def _text(value: bytes) -> str:
    """A tag's UTF-8 text (RFC 2516 appendix A) as printable text; bad bytes replaced."""
    text = value.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "?" for c in text)


@dataclass(frozen=True)
class EthernetFrame:
    """One Ethernet II frame (no VLAN tag: the packet socket sits on the VLAN device)."""

    dst: bytes
    src: bytes
    ethertype: int
    payload: bytes


def parse_ethernet(frame: bytes) -> EthernetFrame:
    if len(frame) < ETH_HEADER:
        raise DecodeError("frame shorter than an Ethernet header")
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    return EthernetFrame(bytes(frame[0:6]), bytes(frame[6:12]), ethertype, bytes(frame[14:]))


def ethernet_frame(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


@dataclass(frozen=True)
class Discovery:
    """A discovery packet: CODE, SESSION_ID and the tags in wire order."""

    code: int
    session_id: int
    tags: tuple[tuple[int, bytes], ...] = ()

    @property
    def code_name(self) -> str:
        try:
            return Code(self.code).name
        except ValueError:
            return f"0x{self.code:02x}"

    def first(self, tag: int) -> bytes | None:
        for t, value in self.tags:
            if t == tag:
                return value
        return None

    def all(self, tag: int) -> list[bytes]:
        return [value for t, value in self.tags if t == tag]

    def has(self, tag: int) -> bool:
        return any(t == tag for t, _ in self.tags)

    @property
    def ac_name(self) -> str | None:
        value = self.first(Tag.AC_NAME)
        return None if value is None else _text(value)

    @property
    def service_names(self) -> list[str]:
        return [_text(v) for v in self.all(Tag.SERVICE_NAME)]

    @property
    def host_uniq(self) -> bytes | None:
        return self.first(Tag.HOST_UNIQ)

    @property
    def ppp_max_payload(self) -> int | None:
        """RFC 4638 §4: a 2-byte value; anything else counts as absent."""
        value = self.first(Tag.PPP_MAX_PAYLOAD)
        if value is None or len(value) != 2:
            return None
        return int.from_bytes(value, "big")

    def errors(self) -> list[tuple[str, str]]:
        """``(tag name, text)`` of every error tag (RFC 2516 appendix A)."""
        out: list[tuple[str, str]] = []
        for tag in ERROR_TAGS:
            for value in self.all(tag):
                out.append((tag.name, _text(value)))
        return out


def _header(data: bytes) -> tuple[int, int, bytes]:
    """``(code, session_id, payload)`` after checking VER/TYPE and LENGTH."""
    if len(data) < PPPOE_HEADER:
        raise DecodeError("shorter than a PPPoE header")
    ver_type, code, session_id, length = _HDR.unpack_from(data)
    if ver_type != VER_TYPE:
        raise DecodeError(f"VER/TYPE 0x{ver_type:02x} is not 0x11")
    if PPPOE_HEADER + length > len(data):
        raise DecodeError(f"LENGTH {length} runs past the frame ({len(data) - PPPOE_HEADER})")
    return code, session_id, bytes(data[PPPOE_HEADER : PPPOE_HEADER + length])


def decode_discovery(data: bytes) -> Discovery:
    """Decode the payload of an 0x8863 frame."""
    code, session_id, payload = _header(data)
    if code not in DISCOVERY_CODES:
        raise DecodeError(f"CODE 0x{code:02x} is not a discovery code")
    tags: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(payload):
        if pos + 4 > len(payload):
            raise DecodeError("truncated tag header")
        tag, length = struct.unpack_from("!HH", payload, pos)
        pos += 4
        if pos + length > len(payload):
            raise DecodeError(f"tag 0x{tag:04x} length {length} runs past the packet")
        if tag == Tag.END_OF_LIST:
            break
        tags.append((tag, bytes(payload[pos : pos + length])))
        pos += length
    return Discovery(code, session_id, tuple(tags))


def encode_discovery(code: int, session_id: int, tags: Iterable[tuple[int, bytes]] = ()) -> bytes:
    body = bytearray()
    for tag, value in tags:
        if len(value) > 0xFFFF:
            raise ValueError(f"tag 0x{tag:04x} value too long")
        body += struct.pack("!HH", tag, len(value)) + value
    return _HDR.pack(VER_TYPE, code, session_id, len(body)) + bytes(body)


def decode_session(data: bytes) -> tuple[int, bytes]:
    """``(session_id, ppp)`` of an 0x8864 frame's payload (RFC 2516 §6)."""
    code, session_id, payload = _header(data)
    if code != Code.SESSION:
        raise DecodeError(f"CODE 0x{code:02x} in a session frame")
    return session_id, payload


def encode_session(session_id: int, ppp: bytes) -> bytes:
    return _HDR.pack(VER_TYPE, Code.SESSION, session_id, len(ppp)) + ppp
