"""DHCPv4 message codec (RFC 2131, RFC 2132, RFC 3396, RFC 3442, RFC 4039, RFC 4361).

Everything that comes off the wire is untrusted (DESIGN §9): :func:`decode` and
:func:`parse_frame` raise :class:`DecodeError` (a :class:`ValueError`) for any
malformed input and never any other exception.

The fixed BOOTP header is packed and unpacked with :mod:`dpkt.dhcp`; the option
area is walked here, because dpkt's own option loop does not check lengths,
the magic cookie, option overload (RFC 2131 §4.1, option 52) or split long
options (RFC 3396).

Decoded addresses are dotted-quad strings.  :class:`DhcpMessage` keeps every
option raw in :attr:`DhcpMessage.options` (after RFC 3396 concatenation) next
to the typed fields for the options a client uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Iterator
from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass
from dataclasses import field
import enum
import ipaddress
import socket
import struct
from typing import Any
from typing import NamedTuple

from routerd.leanimport import bare_package

# Four of dpkt's modules, without the ~70 its __init__ imports (a daemon's cold start).
with bare_package("dpkt"):
    import dpkt.dhcp
    import dpkt.dpkt
    import dpkt.ethernet
    import dpkt.ip
    import dpkt.udp

__all__ = [
    "BOOTREPLY",
    "BOOTREQUEST",
    "BROADCAST_FLAG",
    "BROADCAST_MAC",
    "CLIENT_PORT",
    "INFINITE_LEASE",
    "MAGIC_COOKIE",
    "SERVER_PORT",
    "ClientId",
    "DecodeError",
    "DhcpMessage",
    "Frame",
    "MessageType",
    "Option",
    "RequestKind",
    "build_decline",
    "build_discover",
    "build_frame",
    "build_release",
    "build_request",
    "client_id_from_mac",
    "client_id_rfc4361",
    "decode",
    "decode_classless_routes",
    "decode_domain_search",
    "encode",
    "encode_classless_routes",
    "encode_domain_search",
    "mac_to_str",
    "parse_client_id",
    "parse_frame",
]

BOOTREQUEST = 1
BOOTREPLY = 2
MAGIC_COOKIE = 0x63825363  # RFC 2131 §3, RFC 2132 §2
BROADCAST_FLAG = 0x8000  # RFC 2131 §2, figure 2
CLIENT_PORT = 68
SERVER_PORT = 67
BROADCAST_MAC = b"\xff" * 6
INFINITE_LEASE = 0xFFFFFFFF  # RFC 2131 §3.3
BOOTP_MIN_SIZE = 300  # RFC 951 / RFC 1542 §3.4: some relays drop shorter messages

_HEADER_LEN = 240  # 236 bytes of BOOTP header + 4 bytes of magic cookie
_SNAME_OFF = 44
_FILE_OFF = 108
_ZERO = "0.0.0.0"


class DecodeError(ValueError):
    """A packet could not be decoded; ``str(err)`` says why."""


class MessageType(enum.IntEnum):
    """Option 53 values (RFC 2132 §9.6, RFC 3203, RFC 4388)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8
    FORCERENEW = 9
    LEASEQUERY = 10
    LEASEUNASSIGNED = 11
    LEASEUNKNOWN = 12
    LEASEACTIVE = 13


class Option(enum.IntEnum):
    """Option codes this codec decodes into typed fields (RFC 2132 unless noted)."""

    PAD = 0
    SUBNET_MASK = 1
    ROUTER = 3
    DNS_SERVERS = 6
    HOSTNAME = 12
    DOMAIN_NAME = 15
    MTU = 26
    BROADCAST = 28
    NTP_SERVERS = 42
    REQUESTED_IP = 50
    LEASE_TIME = 51
    OVERLOAD = 52
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAMETER_REQUEST_LIST = 55
    MESSAGE = 56
    MAX_MESSAGE_SIZE = 57
    RENEWAL_TIME = 58
    REBINDING_TIME = 59
    VENDOR_CLASS = 60
    CLIENT_ID = 61
    RAPID_COMMIT = 80  # RFC 4039
    DOMAIN_SEARCH = 119  # RFC 3397
    CLASSLESS_ROUTES = 121  # RFC 3442
    END = 255


class RequestKind(enum.Enum):
    """The four DHCPREQUEST forms of RFC 2131 §4.3.2 / table 5."""

    SELECTING = "selecting"
    INIT_REBOOT = "init-reboot"
    RENEWING = "renewing"
    REBINDING = "rebinding"


@dataclass(frozen=True)
class DhcpMessage:
    """One DHCPv4 message.

    Typed fields hold the decoded value of the options a client uses (``None``
    or empty when absent); :attr:`options` holds every option as raw bytes,
    keyed by code.  When encoding, a typed field wins over the raw entry of
    the same code, and raw entries of other codes are sent as they are.
    """

    op: int
    xid: int
    secs: int = 0
    flags: int = 0
    ciaddr: str = _ZERO
    yiaddr: str = _ZERO
    siaddr: str = _ZERO
    giaddr: str = _ZERO
    chaddr: bytes = b""
    htype: int = 1
    hops: int = 0
    sname: bytes = b""
    file: bytes = b""
    message_type: int | None = None
    subnet_mask: str | None = None
    routers: tuple[str, ...] = ()
    dns_servers: tuple[str, ...] = ()
    hostname: str | None = None
    domain_name: str | None = None
    mtu: int | None = None
    broadcast_address: str | None = None
    ntp_servers: tuple[str, ...] = ()
    requested_ip: str | None = None
    lease_time: int | None = None
    server_id: str | None = None
    parameter_request_list: tuple[int, ...] = ()
    message: str | None = None
    max_message_size: int | None = None
    renewal_time: int | None = None
    rebinding_time: int | None = None
    vendor_class: bytes | None = None
    client_id: bytes | None = None
    rapid_commit: bool = False
    domain_search: tuple[str, ...] = ()
    classless_routes: tuple[tuple[str, str], ...] = ()
    options: dict[int, bytes] = field(default_factory=dict, hash=False)
    malformed_options: tuple[int, ...] = ()

    @property
    def broadcast(self) -> bool:
        """The BROADCAST bit of ``flags`` (RFC 2131 §2)."""
        return bool(self.flags & BROADCAST_FLAG)

    @property
    def prefixlen(self) -> int | None:
        """Prefix length of :attr:`subnet_mask`, ``None`` when absent."""
        if self.subnet_mask is None:
            return None
        return _mask_to_prefixlen(self.subnet_mask)

    @property
    def message_type_name(self) -> str:
        """``"OFFER"`` etc., ``"BOOTP"`` without option 53, or ``"TYPE_<n>"``."""
        if self.message_type is None:
            return "BOOTP"
        try:
            return MessageType(self.message_type).name
        except ValueError:
            return f"TYPE_{self.message_type}"

    def without_raw(self) -> DhcpMessage:
        """Copy with :attr:`options` emptied (compare typed content only)."""
        return dataclasses.replace(self, options={})


class ClientId(NamedTuple):
    """A decoded client identifier (option 61)."""

    type: int
    hwaddr: bytes | None  # types 1..254 with a hardware address
    iaid: int | None  # RFC 4361 form (type 255)
    duid: bytes | None  # RFC 4361 form (type 255)


class Frame(NamedTuple):
    """The UDP/IPv4 fields :func:`parse_frame` extracts from an Ethernet frame."""

    src_ip: str
    dst_ip: str
    udp_sport: int
    udp_dport: int
    payload: bytes


class _OptionError(DecodeError):
    """One option's value is malformed (lenient decode skips the option)."""


# --------------------------------------------------------------------------
# small conversions


def _ip(data: bytes) -> str:
    return socket.inet_ntoa(data)


def _ip_int(value: int) -> str:
    return socket.inet_ntoa(value.to_bytes(4, "big"))


def _ip_to_int(addr: str) -> int:
    return int(ipaddress.IPv4Address(addr))


def _mask_to_prefixlen(mask: str) -> int:
    value = _ip_to_int(mask)
    inverted = value ^ 0xFFFFFFFF
    if inverted & (inverted + 1):
        raise ValueError(f"non-contiguous subnet mask {mask}")
    return 32 - inverted.bit_length()


def mac_to_str(mac: bytes) -> str:
    """``b"\\x00\\x11..."`` → ``"00:11:..."``."""
    return ":".join(f"{b:02x}" for b in mac)


# --------------------------------------------------------------------------
# client identifier helpers (RFC 2132 §9.14, RFC 4361 §6.1)


def client_id_from_mac(mac: bytes, htype: int = 1) -> bytes:
    """The classic client identifier: hardware type + MAC (RFC 2132 §9.14)."""
    if not 1 <= htype <= 254 or not mac:
        raise ValueError("client id needs a hardware type 1..254 and an address")
    return bytes([htype]) + mac


def client_id_rfc4361(iaid: int, duid: bytes) -> bytes:
    """RFC 4361 §6.1 client identifier: type 255, IAID (4 bytes), DUID."""
    if not 0 <= iaid <= 0xFFFFFFFF:
        raise ValueError("IAID must fit in 32 bits")
    if not 2 < len(duid) <= 130:  # RFC 8415 §11.1: DUID is at most 128 + type
        raise ValueError("DUID length must be 3..130 bytes")
    return b"\xff" + iaid.to_bytes(4, "big") + duid


def parse_client_id(data: bytes) -> ClientId:
    """Split a client identifier into its RFC 2132 / RFC 4361 parts."""
    if len(data) < 2:
        raise DecodeError("client identifier shorter than 2 bytes")
    kind = data[0]
    if kind == 255:
        if len(data) < 7:
            raise DecodeError("RFC 4361 client identifier too short")
        return ClientId(255, None, int.from_bytes(data[1:5], "big"), data[5:])
    if kind == 0:
        return ClientId(0, None, None, None)
    return ClientId(kind, data[1:], None, None)


# --------------------------------------------------------------------------
# option value decoders


def _need(data: bytes, size: int, name: str) -> None:
    if len(data) != size:
        raise _OptionError(f"{name}: length {len(data)}, expected {size}")


def _addr(data: bytes, name: str) -> str:
    _need(data, 4, name)
    return _ip(data)


def _addrs(data: bytes, name: str) -> tuple[str, ...]:
    if not data or len(data) % 4:
        raise _OptionError(f"{name}: length {len(data)} is not a multiple of 4")
    return tuple(_ip(data[i : i + 4]) for i in range(0, len(data), 4))


def _u32(data: bytes, name: str) -> int:
    _need(data, 4, name)
    return int.from_bytes(data, "big")


def _u16(data: bytes, name: str, minimum: int) -> int:
    _need(data, 2, name)
    value = int.from_bytes(data, "big")
    if value < minimum:
        raise _OptionError(f"{name}: {value} is below the minimum {minimum}")
    return value


def _text(data: bytes, name: str) -> str:
    """Host and domain names: printable ASCII only (they reach config files)."""
    data = data.rstrip(b"\x00")  # some servers NUL-terminate strings
    if not data:
        raise _OptionError(f"{name}: empty")
    if any((b < 0x21 and b != 0x20) or b > 0x7E for b in data):
        raise _OptionError(f"{name}: not printable ASCII")
    return data.decode("ascii")


def _free_text(data: bytes) -> str:
    return data.rstrip(b"\x00").decode("utf-8", "replace")


def _subnet_mask(data: bytes) -> str:
    mask = _addr(data, "subnet mask")
    try:
        _mask_to_prefixlen(mask)
    except ValueError as exc:
        raise _OptionError(str(exc)) from None
    return mask


def _message_type(data: bytes) -> int:
    _need(data, 1, "message type")
    return data[0]


def _client_id(data: bytes) -> bytes:
    if len(data) < 2:  # RFC 2132 §9.14: minimum length is 2
        raise _OptionError("client identifier: shorter than 2 bytes")
    return data


def _non_empty(data: bytes, name: str) -> bytes:
    if not data:
        raise _OptionError(f"{name}: empty")
    return data


def _rapid_commit(data: bytes) -> bool:
    _need(data, 0, "rapid commit")  # RFC 4039 §4: length 0
    return True


def _prl(data: bytes) -> tuple[int, ...]:
    return tuple(_non_empty(data, "parameter request list"))


def decode_domain_search(data: bytes) -> tuple[str, ...]:
    """Option 119 (RFC 3397 §2): RFC 1035 names, compression pointers allowed.

    Pointers are offsets into the (RFC 3396 concatenated) option data.  A
    pointer must point strictly before the label that holds it, which rules
    out loops (RFC 1035 §4.1.4 pointers refer to a *prior* occurrence).
    """
    names: list[str] = []
    pos = 0
    while pos < len(data):
        name, pos = _read_name(data, pos)
        names.append(name)
    return tuple(names)


def _read_name(data: bytes, pos: int) -> tuple[str, int]:
    labels: list[str] = []
    end: int | None = None  # where the next name starts, fixed by the first pointer
    limit = pos  # pointers must go strictly backwards from here
    total = 0
    while True:
        if pos >= len(data):
            raise _OptionError("domain search: name runs past the option end")
        length = data[pos]
        if length == 0:
            pos += 1
            break
        if length & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                raise _OptionError("domain search: truncated compression pointer")
            target = ((length & 0x3F) << 8) | data[pos + 1]
            if end is None:
                end = pos + 2
            if target >= limit:
                raise _OptionError("domain search: pointer loop or forward pointer")
            pos = limit = target
            continue
        if length & 0xC0:
            raise _OptionError("domain search: reserved label type")
        label = data[pos + 1 : pos + 1 + length]
        if len(label) != length:
            raise _OptionError("domain search: truncated label")
        if any(b <= 0x20 or b > 0x7E or b == 0x2E for b in label):
            raise _OptionError("domain search: label is not printable ASCII")
        total += length + 1
        if total > 255:  # RFC 1035 §3.1: names are at most 255 octets
            raise _OptionError("domain search: name longer than 255 octets")
        labels.append(label.decode("ascii"))
        pos += 1 + length
    if not labels:
        raise _OptionError("domain search: empty name")
    return ".".join(labels), (pos if end is None else end)


def encode_domain_search(names: Iterable[str]) -> bytes:
    """Encode option 119 with RFC 1035 §4.1.4 suffix compression."""
    out = bytearray()
    seen: dict[tuple[str, ...], int] = {}
    for name in names:
        labels = tuple(label for label in name.rstrip(".").split("."))
        if not name.rstrip(".") or any(not label for label in labels):
            raise ValueError(f"bad domain name {name!r}")
        for i in range(len(labels)):
            suffix = labels[i:]
            if suffix in seen:
                out += struct.pack("!H", 0xC000 | seen[suffix])
                break
            if len(out) < 0x3FFF:
                seen[suffix] = len(out)
            raw = labels[i].encode("ascii")
            if len(raw) > 63:
                raise ValueError(f"label too long in {name!r}")
            out += bytes([len(raw)]) + raw
        else:
            out += b"\x00"
    return bytes(out)


def decode_classless_routes(data: bytes) -> tuple[tuple[str, str], ...]:
    """Option 121 (RFC 3442 §3): width, significant octets, router."""
    routes: list[tuple[str, str]] = []
    pos = 0
    if not data:
        raise _OptionError("classless routes: empty")
    while pos < len(data):
        width = data[pos]
        if width > 32:
            raise _OptionError(f"classless routes: prefix width {width} > 32")
        size = (width + 7) // 8
        if pos + 1 + size + 4 > len(data):
            raise _OptionError("classless routes: truncated route")
        dest = data[pos + 1 : pos + 1 + size].ljust(4, b"\x00")
        router = data[pos + 1 + size : pos + 5 + size]
        # Host bits beyond the width are ignored rather than rejected.
        net = ipaddress.IPv4Network((dest, width), strict=False)
        routes.append((str(net), _ip(router)))
        pos += 5 + size
    return tuple(routes)


def encode_classless_routes(routes: Iterable[tuple[str, str]]) -> bytes:
    """Encode option 121 (RFC 3442 §3)."""
    out = bytearray()
    for prefix, router in routes:
        net = ipaddress.IPv4Network(prefix, strict=True)
        size = (net.prefixlen + 7) // 8
        out.append(net.prefixlen)
        out += net.network_address.packed[:size]
        out += ipaddress.IPv4Address(router).packed
    return bytes(out)


# field name -> (option code, decoder)
_DECODERS: dict[int, tuple[str, Any]] = {
    Option.SUBNET_MASK: ("subnet_mask", _subnet_mask),
    Option.ROUTER: ("routers", lambda d: _addrs(d, "routers")),
    Option.DNS_SERVERS: ("dns_servers", lambda d: _addrs(d, "dns servers")),
    Option.HOSTNAME: ("hostname", lambda d: _text(d, "hostname")),
    Option.DOMAIN_NAME: ("domain_name", lambda d: _text(d, "domain name")),
    Option.MTU: ("mtu", lambda d: _u16(d, "mtu", 68)),  # RFC 2132 §5.1
    Option.BROADCAST: ("broadcast_address", lambda d: _addr(d, "broadcast")),
    Option.NTP_SERVERS: ("ntp_servers", lambda d: _addrs(d, "ntp servers")),
    Option.REQUESTED_IP: ("requested_ip", lambda d: _addr(d, "requested ip")),
    Option.LEASE_TIME: ("lease_time", lambda d: _u32(d, "lease time")),
    Option.MESSAGE_TYPE: ("message_type", _message_type),
    Option.SERVER_ID: ("server_id", lambda d: _addr(d, "server id")),
    Option.PARAMETER_REQUEST_LIST: ("parameter_request_list", _prl),
    Option.MESSAGE: ("message", _free_text),
    # RFC 2132 §9.10: the minimum legal value is 576
    Option.MAX_MESSAGE_SIZE: ("max_message_size", lambda d: _u16(d, "msz", 576)),
    Option.RENEWAL_TIME: ("renewal_time", lambda d: _u32(d, "renewal time")),
    Option.REBINDING_TIME: ("rebinding_time", lambda d: _u32(d, "rebinding time")),
    Option.VENDOR_CLASS: ("vendor_class", lambda d: _non_empty(d, "vendor class")),
    Option.CLIENT_ID: ("client_id", _client_id),
    Option.RAPID_COMMIT: ("rapid_commit", _rapid_commit),
    Option.DOMAIN_SEARCH: ("domain_search", decode_domain_search),
    Option.CLASSLESS_ROUTES: ("classless_routes", decode_classless_routes),
}

_FIELD_TO_CODE = {name: code for code, (name, _) in _DECODERS.items()}


# --------------------------------------------------------------------------
# decode


class _BootpHeader(dpkt.dhcp.DHCP):  # type: ignore[misc]
    """dpkt's DHCP header, without dpkt's unchecked option loop."""

    def unpack(self, buf: bytes) -> None:
        dpkt.dpkt.Packet.unpack(self, buf)


def _walk_options(
    area: bytes, where: str, truncated: list[int] | None
) -> Iterator[tuple[int, bytes]]:
    """Yield (code, value) from one option area (RFC 2132 §2).

    An option that runs past the end of the area raises :class:`DecodeError`,
    or, when ``truncated`` is a list (lenient decode), ends the walk and adds
    its code to that list: what came before it is still good.
    """
    pos = 0
    while pos < len(area):
        code = area[pos]
        if code == Option.PAD:
            pos += 1
            continue
        if code == Option.END:
            return
        length = area[pos + 1] if pos + 1 < len(area) else None
        if length is None or pos + 2 + length > len(area):
            if truncated is None:
                raise DecodeError(f"option {code} in {where}: truncated")
            truncated.append(code)
            return
        yield code, area[pos + 2 : pos + 2 + length]
        pos += 2 + length
    # RFC 2131 §4.1 requires an END option; peers omit it in the wild, and
    # the lengths above already proved the area well formed, so accept it.


def _collect_options(
    payload: bytes, truncated: list[int] | None
) -> tuple[dict[int, bytes], bool, bool]:
    """Concatenate options over the option, file and sname areas.

    Returns (options, file_overloaded, sname_overloaded).  Repeated codes are
    concatenated (RFC 3396 §7); option 52 selects the extra areas (RFC 2131
    §4.1, RFC 2132 §9.3), which are read file first, then sname.
    """
    opts: dict[int, bytes] = {}
    for code, value in _walk_options(payload[_HEADER_LEN:], "options", truncated):
        opts[code] = opts.get(code, b"") + value
    overload = opts.get(Option.OVERLOAD)
    if overload is None:
        return opts, False, False
    if len(overload) != 1 or overload[0] not in (1, 2, 3):
        raise DecodeError(f"option overload: bad value {overload.hex()}")
    use_file = bool(overload[0] & 1)
    use_sname = bool(overload[0] & 2)
    areas = []
    if use_file:
        areas.append((payload[_FILE_OFF : _FILE_OFF + 128], "file"))
    if use_sname:
        areas.append((payload[_SNAME_OFF : _SNAME_OFF + 64], "sname"))
    for area, where in areas:
        for code, value in _walk_options(area, where, truncated):
            if code == Option.OVERLOAD:
                raise DecodeError(f"option overload repeated inside {where}")
            opts[code] = opts.get(code, b"") + value
    return opts, use_file, use_sname


def decode(payload: bytes, *, strict: bool = True) -> DhcpMessage:
    """Decode a BOOTP/DHCP message (the UDP payload).

    :param payload: the bytes after the UDP header.
    :param strict: when true (default), a malformed option raises
        :class:`DecodeError`.  When false, a typed option with a bad value
        (wrong length, bad encoding) is left out of the typed fields (its raw
        bytes stay in :attr:`DhcpMessage.options`), an option that runs past
        the end of its area ends the option walk (the options before it are
        kept, as pyroute2 and dhcpcd do), and both are listed in
        :attr:`DhcpMessage.malformed_options`.  A short header, a wrong magic
        cookie, a bad op or a bad overload option always raise.
    :raises DecodeError: for every malformed input, with the reason.
    """
    try:
        return _decode(bytes(payload), strict)
    except DecodeError:
        raise
    except (dpkt.dpkt.Error, struct.error, ValueError, IndexError) as exc:
        # Defence in depth: nothing else may escape (DESIGN §9).
        raise DecodeError(f"malformed message: {exc}") from None


def _decode(payload: bytes, strict: bool) -> DhcpMessage:
    if len(payload) < _HEADER_LEN:
        raise DecodeError(f"truncated: {len(payload)} bytes, a DHCP message needs {_HEADER_LEN}")
    hdr = _BootpHeader(payload)
    if hdr.magic != MAGIC_COOKIE:
        raise DecodeError(f"wrong magic cookie {hdr.magic:#010x}")
    if hdr.op not in (BOOTREQUEST, BOOTREPLY):
        raise DecodeError(f"bad op {hdr.op}")
    malformed: list[int] = []
    opts, file_overloaded, sname_overloaded = _collect_options(
        payload, None if strict else malformed
    )
    typed: dict[str, Any] = {}
    for code, value in opts.items():
        decoder = _DECODERS.get(code)
        if decoder is None:
            continue
        name, func = decoder
        try:
            typed[name] = func(value)
        except _OptionError as exc:
            if strict:
                raise DecodeError(f"option {code}: {exc}") from None
            malformed.append(code)
    return DhcpMessage(
        op=hdr.op,
        xid=hdr.xid,
        secs=hdr.secs,
        flags=hdr.flags,
        ciaddr=_ip_int(hdr.ciaddr),
        yiaddr=_ip_int(hdr.yiaddr),
        siaddr=_ip_int(hdr.siaddr),
        giaddr=_ip_int(hdr.giaddr),
        # hlen > 16 is bogus: keep the 16 bytes there are
        chaddr=bytes(hdr.chaddr[: min(hdr.hln, 16)]),
        htype=hdr.hrd,
        hops=hdr.hops,
        sname=b"" if sname_overloaded else bytes(hdr.sname).rstrip(b"\x00"),
        file=b"" if file_overloaded else bytes(hdr.file).rstrip(b"\x00"),
        options=opts,
        malformed_options=tuple(malformed),
        **typed,
    )


# --------------------------------------------------------------------------
# encode


def _pack_addr(addr: str) -> bytes:
    return ipaddress.IPv4Address(addr).packed


def _encode_typed(name: str, value: Any) -> bytes | None:
    """Encode one typed field; ``None`` when the field is unset."""
    if value is None or value == () or value is False:
        return None
    if name in ("subnet_mask", "broadcast_address", "requested_ip", "server_id"):
        return _pack_addr(value)
    if name in ("routers", "dns_servers", "ntp_servers"):
        return b"".join(_pack_addr(a) for a in value)
    if name in ("lease_time", "renewal_time", "rebinding_time"):
        return struct.pack("!I", value)
    if name in ("mtu", "max_message_size"):
        return struct.pack("!H", value)
    if name == "message_type":
        return bytes([value])
    if name in ("hostname", "domain_name"):
        return str(value).encode("ascii")
    if name == "message":
        return str(value).encode("utf-8")
    if name == "parameter_request_list":
        return bytes(value)
    if name == "rapid_commit":
        return b""
    if name == "domain_search":
        return encode_domain_search(value)
    if name == "classless_routes":
        return encode_classless_routes(value)
    return bytes(value)  # vendor_class, client_id


def _option_list(msg: DhcpMessage) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    typed_codes: set[int] = set()
    for code, (name, _) in _DECODERS.items():
        value = _encode_typed(name, getattr(msg, name))
        if value is not None:
            out.append((code, value))
            typed_codes.add(code)
    for code, value in msg.options.items():
        if code in typed_codes or code in (Option.PAD, Option.END, Option.OVERLOAD):
            continue
        if not 0 < code < 255:
            raise ValueError(f"bad option code {code}")
        out.append((code, value))
    # Option 53 first: servers and sniffers expect it (RFC 2131 §3 examples).
    out.sort(key=lambda item: item[0] != Option.MESSAGE_TYPE)
    # RFC 3396 §5: a value longer than 255 bytes is split into instances.
    split: list[tuple[int, bytes]] = []
    for code, value in out:
        if not value:
            split.append((code, value))
        for i in range(0, len(value), 255):
            split.append((code, value[i : i + 255]))
    return split


def encode(msg: DhcpMessage, *, pad_to: int = BOOTP_MIN_SIZE) -> bytes:
    """Encode a message; pad with zeros to ``pad_to`` bytes (RFC 1542 §3.4).

    :raises ValueError: when a field cannot be encoded (programming error).
    """
    if len(msg.chaddr) > 16 or len(msg.sname) > 64 or len(msg.file) > 128:
        raise ValueError("chaddr, sname or file too long")
    pkt = dpkt.dhcp.DHCP(
        op=msg.op,
        hrd=msg.htype,
        hln=len(msg.chaddr),
        hops=msg.hops,
        xid=msg.xid,
        secs=msg.secs,
        flags=msg.flags,
        ciaddr=_ip_to_int(msg.ciaddr),
        yiaddr=_ip_to_int(msg.yiaddr),
        siaddr=_ip_to_int(msg.siaddr),
        giaddr=_ip_to_int(msg.giaddr),
        chaddr=msg.chaddr.ljust(16, b"\x00"),
        sname=msg.sname.ljust(64, b"\x00"),
        file=msg.file.ljust(128, b"\x00"),
        magic=MAGIC_COOKIE,
        opts=_option_list(msg),
        data=b"",
    )
    raw = bytes(pkt)
    if not pkt.opts:
        raw += b"\xff"  # dpkt leaves END out when there are no options
    return raw.ljust(pad_to, b"\x00")


# --------------------------------------------------------------------------
# client message builders (RFC 2131 §4.4.1, table 5)


def _flags(broadcast: bool) -> int:
    return BROADCAST_FLAG if broadcast else 0


def build_discover(
    *,
    xid: int,
    chaddr: bytes,
    secs: int = 0,
    broadcast: bool = False,
    client_id: bytes | None = None,
    hostname: str | None = None,
    vendor_class: bytes | None = None,
    parameter_request_list: Sequence[int] = (),
    requested_ip: str | None = None,
    rapid_commit: bool = False,
    max_message_size: int | None = None,
) -> DhcpMessage:
    """DHCPDISCOVER: requested-ip is only a hint (RFC 2131 §4.4.1)."""
    return DhcpMessage(
        op=BOOTREQUEST,
        xid=xid,
        secs=min(secs, 0xFFFF),
        flags=_flags(broadcast),
        chaddr=chaddr,
        message_type=MessageType.DISCOVER,
        client_id=client_id,
        hostname=hostname,
        vendor_class=vendor_class,
        parameter_request_list=tuple(parameter_request_list),
        requested_ip=requested_ip,
        rapid_commit=rapid_commit,  # RFC 4039 §4
        max_message_size=max_message_size,
    )


def build_request(
    kind: RequestKind,
    *,
    xid: int,
    chaddr: bytes,
    secs: int = 0,
    broadcast: bool = False,
    ciaddr: str | None = None,
    requested_ip: str | None = None,
    server_id: str | None = None,
    client_id: bytes | None = None,
    hostname: str | None = None,
    vendor_class: bytes | None = None,
    parameter_request_list: Sequence[int] = (),
    max_message_size: int | None = None,
) -> DhcpMessage:
    """DHCPREQUEST in one of the four forms of RFC 2131 §4.3.2.

    ============  ==========  ============  =========
    kind          server-id   requested-ip  ciaddr
    ============  ==========  ============  =========
    SELECTING     MUST        MUST          zero
    INIT_REBOOT   MUST NOT    MUST          zero
    RENEWING      MUST NOT    MUST NOT      MUST
    REBINDING     MUST NOT    MUST NOT      MUST
    ============  ==========  ============  =========

    :raises ValueError: when the arguments do not fit the form.
    """
    if kind is RequestKind.SELECTING:
        if server_id is None or requested_ip is None or ciaddr is not None:
            raise ValueError("SELECTING needs server_id and requested_ip, no ciaddr")
    elif kind is RequestKind.INIT_REBOOT:
        if server_id is not None or requested_ip is None or ciaddr is not None:
            raise ValueError("INIT-REBOOT needs requested_ip only")
    elif server_id is not None or requested_ip is not None or ciaddr is None:
        raise ValueError(f"{kind.value} needs ciaddr, no server_id/requested_ip")
    return DhcpMessage(
        op=BOOTREQUEST,
        xid=xid,
        secs=min(secs, 0xFFFF),
        flags=_flags(broadcast),
        ciaddr=ciaddr or _ZERO,
        chaddr=chaddr,
        message_type=MessageType.REQUEST,
        requested_ip=requested_ip,
        server_id=server_id,
        client_id=client_id,
        hostname=hostname,
        vendor_class=vendor_class,
        parameter_request_list=tuple(parameter_request_list),
        max_message_size=max_message_size,
    )


def build_decline(
    *,
    xid: int,
    chaddr: bytes,
    requested_ip: str,
    server_id: str,
    client_id: bytes | None = None,
    message: str | None = None,
) -> DhcpMessage:
    """DHCPDECLINE: requested-ip and server-id MUST, ciaddr zero (table 5)."""
    return DhcpMessage(
        op=BOOTREQUEST,
        xid=xid,
        chaddr=chaddr,
        message_type=MessageType.DECLINE,
        requested_ip=requested_ip,
        server_id=server_id,
        client_id=client_id,
        message=message,
    )


def build_release(
    *,
    xid: int,
    chaddr: bytes,
    ciaddr: str,
    server_id: str,
    client_id: bytes | None = None,
    message: str | None = None,
) -> DhcpMessage:
    """DHCPRELEASE: ciaddr and server-id set, no requested-ip (table 5)."""
    return DhcpMessage(
        op=BOOTREQUEST,
        xid=xid,
        ciaddr=ciaddr,
        chaddr=chaddr,
        message_type=MessageType.RELEASE,
        server_id=server_id,
        client_id=client_id,
        message=message,
    )


# --------------------------------------------------------------------------
# Ethernet / IPv4 / UDP framing for the raw (AF_PACKET) transport

_ETH_IP = 0x0800
_ETH_VLAN = 0x8100


def build_frame(
    payload: bytes,
    *,
    src_mac: bytes,
    dst_mac: bytes = BROADCAST_MAC,
    src_ip: str = _ZERO,
    dst_ip: str = "255.255.255.255",
    sport: int = CLIENT_PORT,
    dport: int = SERVER_PORT,
    ttl: int = 64,
) -> bytes:
    """Wrap a DHCP payload in UDP, IPv4 and Ethernet (checksums filled in)."""
    udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(
        src=_pack_addr(src_ip),
        dst=_pack_addr(dst_ip),
        p=dpkt.ip.IP_PROTO_UDP,
        ttl=ttl,
        tos=0x10,  # low delay, as dhclient and dhcpcd send
        data=udp,
    )
    ip.len = len(ip)
    eth = dpkt.ethernet.Ethernet(src=src_mac, dst=dst_mac, type=_ETH_IP, data=ip)
    return bytes(eth)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(int(w) for w in struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def parse_frame(frame: bytes, *, verify_checksums: bool = True) -> Frame:
    """Extract the UDP payload of an Ethernet/IPv4/UDP frame.

    One 802.1Q tag is skipped.  Fragments are rejected (never reassembled).

    :param verify_checksums: check the IPv4 header and (non-zero) UDP
        checksums; pass false for frames the kernel marked "checksum not
        ready" (PACKET_AUXDATA TP_STATUS_CSUMNOTREADY on veth and offload).
    :raises DecodeError: for anything that is not a well-formed frame.
    """
    try:
        return _parse_frame(bytes(frame), verify_checksums)
    except DecodeError:
        raise
    except (struct.error, ValueError, IndexError) as exc:
        raise DecodeError(f"malformed frame: {exc}") from None


def _parse_frame(frame: bytes, verify: bool) -> Frame:
    if len(frame) < 14:
        raise DecodeError("truncated Ethernet header")
    (ethertype,) = struct.unpack_from("!H", frame, 12)
    off = 14
    if ethertype == _ETH_VLAN:
        if len(frame) < 18:
            raise DecodeError("truncated 802.1Q tag")
        (ethertype,) = struct.unpack_from("!H", frame, 16)
        off = 18
    if ethertype != _ETH_IP:
        raise DecodeError(f"not IPv4 (ethertype {ethertype:#06x})")
    ip = frame[off:]
    if len(ip) < 20:
        raise DecodeError("truncated IPv4 header")
    version, ihl = ip[0] >> 4, (ip[0] & 0x0F) * 4
    if version != 4 or ihl < 20:
        raise DecodeError(f"bad IPv4 version/header length {ip[0]:#04x}")
    (total, frag, proto) = struct.unpack_from("!2xH2xH1xB", ip)
    if total < ihl + 8 or total > len(ip) or len(ip) < ihl:
        raise DecodeError(f"truncated or bad IPv4 total length {total}")
    if frag & 0x3FFF:  # MF flag or a fragment offset
        raise DecodeError("IPv4 fragment")
    if proto != 17:
        raise DecodeError(f"not UDP (protocol {proto})")
    if verify and _checksum(ip[:ihl]) != 0xFFFF:
        raise DecodeError("bad IPv4 header checksum")
    udp = ip[ihl:total]
    sport, dport, ulen, usum = struct.unpack_from("!HHHH", udp)
    if ulen < 8 or ulen > len(udp):
        raise DecodeError(f"bad UDP length {ulen}")
    udp = udp[:ulen]
    if verify and usum:
        pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, ulen)
        if _checksum(pseudo + udp) != 0xFFFF:
            raise DecodeError("bad UDP checksum")
    return Frame(_ip(ip[12:16]), _ip(ip[16:20]), sport, dport, udp[8:])
