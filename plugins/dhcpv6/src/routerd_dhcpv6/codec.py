"""DHCPv6 wire format: messages and options as frozen dataclasses.

``decode(data)`` turns a UDP payload into a :class:`Message`; ``encode(msg)``
does the reverse, and ``decode(encode(m)) == m`` for every message this module
can represent. Everything that arrives from the network is untrusted
(DESIGN §9): :func:`decode` and :func:`decode_any` raise :class:`DecodeError`
(a :class:`ValueError`) with a reason for *any* malformed input and never any
other exception. Options this module does not interpret are kept as
:class:`UnknownOption` ``(code, data)`` so that they round-trip unchanged.

Layouts are RFC 9915 §8 (client/server messages), §9 (relay messages) and
§21 (options), plus the RFCs named on each option class.
"""

from __future__ import annotations

from dataclasses import dataclass
import ipaddress
import struct
from typing import ClassVar
from typing import Final
from typing import TypeVar

from routerd_dhcpv6.constants import MsgType
from routerd_dhcpv6.constants import OptionCode
from routerd_dhcpv6.constants import StatusCode as Status
from routerd_dhcpv6.duid import Duid
from routerd_dhcpv6.duid import DuidError
from routerd_dhcpv6.duid import parse_duid

__all__ = [
    "AftrName",
    "ClientId",
    "DecodeError",
    "DnsServers",
    "DomainList",
    "ElapsedTime",
    "EncodeError",
    "IaAddress",
    "IaNa",
    "IaPd",
    "IaPrefix",
    "IaTa",
    "InfMaxRt",
    "InformationRefreshTime",
    "MAX_NESTING",
    "Message",
    "NtpServer",
    "NtpSuboption",
    "Option",
    "OptionRequest",
    "Preference",
    "RapidCommit",
    "ReconfigureAccept",
    "ReconfigureMessage",
    "RelayMessage",
    "RelayMsg",
    "ServerId",
    "SntpServers",
    "SolMaxRt",
    "StatusCodeOption",
    "Unicast",
    "UnknownOption",
    "decode",
    "decode_any",
    "encode",
    "encode_option",
]

#: How deeply options and relayed messages may be encapsulated in one another.
#: A real message needs at most 3 (message > IA_PD > IAPREFIX > Status Code)
#: plus one per relay hop (HOP_COUNT_LIMIT is 8, RFC 9915 §7.6).
MAX_NESTING: Final = 16

_RELAY_TYPES: Final = (MsgType.RELAY_FORW, MsgType.RELAY_REPL)


class DecodeError(ValueError):
    """Malformed DHCPv6 data; the message says what was wrong and where."""


class EncodeError(ValueError):
    """A message or option holds a value that cannot be put on the wire."""


T = TypeVar("T")


class _HasOptions:
    """Lookup helpers for anything that carries a tuple of options."""

    options: tuple[Option, ...]

    def get(self, kind: type[T]) -> T | None:
        """The first option of class ``kind``, or ``None``."""
        for opt in self.options:
            if isinstance(opt, kind):
                return opt
        return None

    def get_all(self, kind: type[T]) -> list[T]:
        """Every option of class ``kind``, in wire order."""
        return [opt for opt in self.options if isinstance(opt, kind)]

    @property
    def status(self) -> StatusCodeOption | None:
        """The first Status Code option directly in here, if any (§21.13)."""
        return self.get(StatusCodeOption)


# ---------------------------------------------------------------- helpers


def _check_uint(value: int, bits: int, what: str) -> int:
    if not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise EncodeError(f"{what} must be an unsigned {bits}-bit integer: {value!r}")
    return value


def _addr_bytes(text: str, what: str) -> bytes:
    try:
        return ipaddress.IPv6Address(text).packed
    except ValueError as exc:
        raise EncodeError(f"{what}: not an IPv6 address: {text!r}") from exc


def _addr_text(data: bytes) -> str:
    return str(ipaddress.IPv6Address(data))


def _addresses(body: bytes, what: str) -> tuple[str, ...]:
    if len(body) % 16:
        raise DecodeError(f"{what}: length {len(body)} is not a multiple of 16")
    return tuple(_addr_text(body[i : i + 16]) for i in range(0, len(body), 16))


def _need(body: bytes, size: int, what: str, exact: bool = False) -> None:
    if exact and len(body) != size:
        raise DecodeError(f"{what}: length must be {size}, got {len(body)}")
    if len(body) < size:
        raise DecodeError(f"{what}: length {len(body)} is shorter than {size}")


def _decode_name(data: bytes, pos: int, what: str) -> tuple[str, int]:
    """One uncompressed RFC 1035 name starting at ``pos`` (RFC 9915 §10)."""
    labels: list[str] = []
    size = 1
    while True:
        if pos >= len(data):
            raise DecodeError(f"{what}: domain name is not terminated")
        n = data[pos]
        pos += 1
        if n == 0:
            return ".".join(labels), pos
        if n & 0xC0 == 0xC0:
            # RFC 9915 §10: names in DHCP MUST NOT be stored in compressed form.
            raise DecodeError(f"{what}: compressed domain name")
        if n > 63:
            raise DecodeError(f"{what}: bad domain label length {n}")
        if pos + n > len(data):
            raise DecodeError(f"{what}: domain label overruns the option")
        label = data[pos : pos + n]
        pos += n
        size += n + 1
        if size > 255:
            raise DecodeError(f"{what}: domain name longer than 255 octets")
        # Printable ASCII without '.', so that the text form round-trips.
        if any(b <= 0x20 or b >= 0x7F or b == 0x2E for b in label):
            raise DecodeError(f"{what}: bad character in domain label {label!r}")
        labels.append(label.decode("ascii"))


def _decode_names(body: bytes, what: str) -> tuple[str, ...]:
    names: list[str] = []
    pos = 0
    while pos < len(body):
        name, pos = _decode_name(body, pos, what)
        names.append(name)
    return tuple(names)


def _encode_name(name: str, what: str) -> bytes:
    """RFC 1035 wire form of ``name`` ("a.example" or "a.example."), no compression."""
    text = name[:-1] if name.endswith(".") else name
    if not text:
        return b"\x00"
    out = bytearray()
    for label in text.split("."):
        try:
            raw = label.encode("ascii")
        except UnicodeEncodeError:
            raise EncodeError(f"{what}: non-ASCII label in {name!r}") from None
        if not 1 <= len(raw) <= 63 or any(b <= 0x20 or b >= 0x7F for b in raw):
            raise EncodeError(f"{what}: bad domain label {label!r} in {name!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    if len(out) > 255:
        raise EncodeError(f"{what}: domain name longer than 255 octets: {name!r}")
    return bytes(out)


def _duid(body: bytes, what: str) -> Duid:
    try:
        return parse_duid(body)
    except DuidError as exc:
        raise DecodeError(f"{what}: {exc}") from None


# ---------------------------------------------------------------- options


@dataclass(frozen=True)
class ClientId:
    """Client Identifier, the client's DUID (RFC 9915 §21.2)."""

    code: ClassVar[int] = OptionCode.CLIENTID
    duid: Duid

    @classmethod
    def from_bytes(cls, duid: bytes) -> ClientId:
        return cls(_duid(duid, "client-id"))

    def encode_body(self) -> bytes:
        return self.duid.to_bytes()


@dataclass(frozen=True)
class ServerId:
    """Server Identifier, the server's DUID (RFC 9915 §21.3)."""

    code: ClassVar[int] = OptionCode.SERVERID
    duid: Duid

    @classmethod
    def from_bytes(cls, duid: bytes) -> ServerId:
        return cls(_duid(duid, "server-id"))

    def encode_body(self) -> bytes:
        return self.duid.to_bytes()


@dataclass(frozen=True)
class IaNa(_HasOptions):
    """Identity Association for Non-temporary Addresses (RFC 9915 §21.4)."""

    code: ClassVar[int] = OptionCode.IA_NA
    iaid: int
    t1: int
    t2: int
    options: tuple[Option, ...] = ()

    def encode_body(self) -> bytes:
        head = struct.pack(
            "!III",
            _check_uint(self.iaid, 32, "IA_NA IAID"),
            _check_uint(self.t1, 32, "IA_NA T1"),
            _check_uint(self.t2, 32, "IA_NA T2"),
        )
        return head + _encode_options(self.options)


@dataclass(frozen=True)
class IaTa(_HasOptions):
    """Identity Association for Temporary Addresses (RFC 9915 §21.5)."""

    code: ClassVar[int] = OptionCode.IA_TA
    iaid: int
    options: tuple[Option, ...] = ()

    def encode_body(self) -> bytes:
        iaid = _check_uint(self.iaid, 32, "IA_TA IAID")
        return struct.pack("!I", iaid) + _encode_options(self.options)


@dataclass(frozen=True)
class IaAddress(_HasOptions):
    """IA Address inside an IA_NA or IA_TA (RFC 9915 §21.6)."""

    code: ClassVar[int] = OptionCode.IAADDR
    address: str
    preferred: int
    valid: int
    options: tuple[Option, ...] = ()

    def encode_body(self) -> bytes:
        return (
            _addr_bytes(self.address, "IAADDR")
            + struct.pack(
                "!II",
                _check_uint(self.preferred, 32, "IAADDR preferred lifetime"),
                _check_uint(self.valid, 32, "IAADDR valid lifetime"),
            )
            + _encode_options(self.options)
        )


@dataclass(frozen=True)
class OptionRequest:
    """Option Request Option, the option codes the client wants (§21.7)."""

    code: ClassVar[int] = OptionCode.ORO
    codes: tuple[int, ...]

    def encode_body(self) -> bytes:
        return b"".join(struct.pack("!H", _check_uint(c, 16, "ORO code")) for c in self.codes)


@dataclass(frozen=True)
class Preference:
    """Server preference, 0..255; 255 means "take me now" (RFC 9915 §21.8)."""

    code: ClassVar[int] = OptionCode.PREFERENCE
    value: int

    def encode_body(self) -> bytes:
        return bytes([_check_uint(self.value, 8, "preference")])


@dataclass(frozen=True)
class ElapsedTime:
    """Elapsed time since the exchange began, in 1/100 s (RFC 9915 §21.9)."""

    code: ClassVar[int] = OptionCode.ELAPSED_TIME
    value: int

    def encode_body(self) -> bytes:
        return struct.pack("!H", _check_uint(self.value, 16, "elapsed time"))


@dataclass(frozen=True)
class RelayMsg:
    """Relay Message option: the relayed message (RFC 9915 §21.10)."""

    code: ClassVar[int] = OptionCode.RELAY_MSG
    message: Message | RelayMessage

    def encode_body(self) -> bytes:
        return encode(self.message)


@dataclass(frozen=True)
class Unicast:
    """Server Unicast (RFC 8415 §21.12; deprecated by RFC 9915, decoded only)."""

    code: ClassVar[int] = OptionCode.UNICAST
    address: str

    def encode_body(self) -> bytes:
        return _addr_bytes(self.address, "server unicast")


@dataclass(frozen=True)
class StatusCodeOption:
    """Status Code (RFC 9915 §21.13).

    :ivar status: the 16-bit status (see :class:`~routerd_dhcpv6.constants.StatusCode`).
    :ivar message: the server's UTF-8 text. Bytes that are not UTF-8 are kept as
        surrogate escapes so that the option round-trips; use :attr:`text` for
        display.
    """

    code: ClassVar[int] = OptionCode.STATUS_CODE
    status: int
    message: str = ""

    @property
    def text(self) -> str:
        """The message with undecodable bytes replaced, safe to log or emit."""
        raw = self.message.encode("utf-8", errors="surrogateescape")
        return raw.decode("utf-8", errors="replace")

    @property
    def name(self) -> str:
        try:
            return Status(self.status).name
        except ValueError:
            return f"STATUS_{self.status}"

    def encode_body(self) -> bytes:
        status = _check_uint(self.status, 16, "status code")
        try:
            raw = self.message.encode("utf-8", errors="surrogateescape")
        except UnicodeEncodeError as exc:
            raise EncodeError(f"status message not encodable: {exc}") from None
        return struct.pack("!H", status) + raw


@dataclass(frozen=True)
class RapidCommit:
    """Rapid Commit, empty (RFC 9915 §21.14)."""

    code: ClassVar[int] = OptionCode.RAPID_COMMIT

    def encode_body(self) -> bytes:
        return b""


@dataclass(frozen=True)
class ReconfigureMessage:
    """Reconfigure Message: which message the client should send (§21.19)."""

    code: ClassVar[int] = OptionCode.RECONF_MSG
    msg_type: int

    def encode_body(self) -> bytes:
        return bytes([_check_uint(self.msg_type, 8, "reconfigure msg-type")])


@dataclass(frozen=True)
class ReconfigureAccept:
    """Reconfigure Accept, empty (RFC 9915 §21.20)."""

    code: ClassVar[int] = OptionCode.RECONF_ACCEPT

    def encode_body(self) -> bytes:
        return b""


@dataclass(frozen=True)
class DnsServers:
    """Recursive DNS servers (RFC 3646 §3)."""

    code: ClassVar[int] = OptionCode.DNS_SERVERS
    addresses: tuple[str, ...]

    def encode_body(self) -> bytes:
        return b"".join(_addr_bytes(a, "DNS server") for a in self.addresses)


@dataclass(frozen=True)
class DomainList:
    """Domain search list, uncompressed RFC 1035 names (RFC 3646 §4).

    Names are written without the trailing dot (``"example.com"``).
    """

    code: ClassVar[int] = OptionCode.DOMAIN_LIST
    domains: tuple[str, ...]

    def encode_body(self) -> bytes:
        return b"".join(_encode_name(d, "domain list") for d in self.domains)


@dataclass(frozen=True)
class IaPd(_HasOptions):
    """Identity Association for Prefix Delegation (RFC 9915 §21.21)."""

    code: ClassVar[int] = OptionCode.IA_PD
    iaid: int
    t1: int
    t2: int
    options: tuple[Option, ...] = ()

    @property
    def prefixes(self) -> list[IaPrefix]:
        return self.get_all(IaPrefix)

    def encode_body(self) -> bytes:
        head = struct.pack(
            "!III",
            _check_uint(self.iaid, 32, "IA_PD IAID"),
            _check_uint(self.t1, 32, "IA_PD T1"),
            _check_uint(self.t2, 32, "IA_PD T2"),
        )
        return head + _encode_options(self.options)


@dataclass(frozen=True)
class IaPrefix(_HasOptions):
    """IA Prefix inside an IA_PD (RFC 9915 §21.22).

    :ivar prefix: ``"2001:db8:1::/48"`` exactly as on the wire (bits past the
        length are kept, not masked, so that the option round-trips).
    """

    code: ClassVar[int] = OptionCode.IAPREFIX
    preferred: int
    valid: int
    prefix: str
    options: tuple[Option, ...] = ()

    @property
    def length(self) -> int:
        return int(self.prefix.rpartition("/")[2])

    @property
    def network(self) -> ipaddress.IPv6Network:
        """The prefix as a network, host bits cleared."""
        return ipaddress.IPv6Network(self.prefix, strict=False)

    def encode_body(self) -> bytes:
        addr, sep, plen = self.prefix.partition("/")
        if not sep or not plen.isdigit() or int(plen) > 128:
            raise EncodeError(f"IAPREFIX: bad prefix {self.prefix!r}")
        return (
            struct.pack(
                "!IIB",
                _check_uint(self.preferred, 32, "IAPREFIX preferred lifetime"),
                _check_uint(self.valid, 32, "IAPREFIX valid lifetime"),
                int(plen),
            )
            + _addr_bytes(addr, "IAPREFIX")
            + _encode_options(self.options)
        )


@dataclass(frozen=True)
class SntpServers:
    """SNTP servers (RFC 4075 §4)."""

    code: ClassVar[int] = OptionCode.SNTP_SERVERS
    addresses: tuple[str, ...]

    def encode_body(self) -> bytes:
        return b"".join(_addr_bytes(a, "SNTP server") for a in self.addresses)


@dataclass(frozen=True)
class InformationRefreshTime:
    """Information Refresh Time in seconds (RFC 9915 §21.23)."""

    code: ClassVar[int] = OptionCode.INFORMATION_REFRESH_TIME
    value: int

    def encode_body(self) -> bytes:
        return struct.pack("!I", _check_uint(self.value, 32, "refresh time"))


#: NTP server suboption codes (RFC 5908 §4).
NTP_SUBOPTION_SRV_ADDR: Final = 1
NTP_SUBOPTION_MC_ADDR: Final = 2
NTP_SUBOPTION_SRV_FQDN: Final = 3


@dataclass(frozen=True)
class NtpSuboption:
    """One NTP server suboption (RFC 5908 §4).

    :ivar code: 1 server address, 2 multicast address, 3 server FQDN, or other.
    :ivar value: an IPv6 address (1, 2), a name (3), or raw bytes (others).
    """

    code: int
    value: str | bytes

    def encode(self) -> bytes:
        code = _check_uint(self.code, 16, "NTP suboption code")
        if code in (NTP_SUBOPTION_SRV_ADDR, NTP_SUBOPTION_MC_ADDR):
            if not isinstance(self.value, str):
                raise EncodeError("NTP address suboption needs an address string")
            body = _addr_bytes(self.value, "NTP server")
        elif code == NTP_SUBOPTION_SRV_FQDN:
            if not isinstance(self.value, str):
                raise EncodeError("NTP FQDN suboption needs a name string")
            body = _encode_name(self.value, "NTP server FQDN")
        else:
            if not isinstance(self.value, bytes):
                raise EncodeError(f"NTP suboption {code} needs bytes")
            body = self.value
        if len(body) > 0xFFFF:
            raise EncodeError("NTP suboption too long")
        return struct.pack("!HH", code, len(body)) + body


@dataclass(frozen=True)
class NtpServer:
    """NTP server option, a list of suboptions (RFC 5908 §4)."""

    code: ClassVar[int] = OptionCode.NTP_SERVER
    suboptions: tuple[NtpSuboption, ...]

    def encode_body(self) -> bytes:
        return b"".join(s.encode() for s in self.suboptions)


@dataclass(frozen=True)
class AftrName:
    """DS-Lite AFTR name, one FQDN without the trailing dot (RFC 6334 §3)."""

    code: ClassVar[int] = OptionCode.AFTR_NAME
    name: str

    def encode_body(self) -> bytes:
        return _encode_name(self.name, "AFTR-Name")


@dataclass(frozen=True)
class SolMaxRt:
    """SOL_MAX_RT override in seconds (RFC 9915 §21.24)."""

    code: ClassVar[int] = OptionCode.SOL_MAX_RT
    value: int

    def encode_body(self) -> bytes:
        return struct.pack("!I", _check_uint(self.value, 32, "SOL_MAX_RT"))


@dataclass(frozen=True)
class InfMaxRt:
    """INF_MAX_RT override in seconds (RFC 9915 §21.25)."""

    code: ClassVar[int] = OptionCode.INF_MAX_RT
    value: int

    def encode_body(self) -> bytes:
        return struct.pack("!I", _check_uint(self.value, 32, "INF_MAX_RT"))


@dataclass(frozen=True)
class UnknownOption:
    """Any option not interpreted here, kept verbatim so it round-trips."""

    code: int
    data: bytes

    def encode_body(self) -> bytes:
        return self.data


Option = (
    ClientId
    | ServerId
    | IaNa
    | IaTa
    | IaAddress
    | OptionRequest
    | Preference
    | ElapsedTime
    | RelayMsg
    | Unicast
    | StatusCodeOption
    | RapidCommit
    | ReconfigureMessage
    | ReconfigureAccept
    | DnsServers
    | DomainList
    | IaPd
    | IaPrefix
    | SntpServers
    | InformationRefreshTime
    | NtpServer
    | AftrName
    | SolMaxRt
    | InfMaxRt
    | UnknownOption
)


# ---------------------------------------------------------------- messages


@dataclass(frozen=True)
class Message(_HasOptions):
    """A client/server message (RFC 9915 §8).

    :ivar msg_type: message type, a :class:`~routerd_dhcpv6.constants.MsgType`
        value (unknown types are kept as plain ints).
    :ivar transaction_id: 24-bit transaction id.
    :ivar options: options in wire order.
    """

    msg_type: int
    transaction_id: int
    options: tuple[Option, ...] = ()

    @property
    def type_name(self) -> str:
        try:
            return MsgType(self.msg_type).name
        except ValueError:
            return f"TYPE_{self.msg_type}"


@dataclass(frozen=True)
class RelayMessage(_HasOptions):
    """A Relay-forward or Relay-reply message (RFC 9915 §9)."""

    msg_type: int
    hop_count: int
    link_address: str
    peer_address: str
    options: tuple[Option, ...] = ()

    @property
    def type_name(self) -> str:
        return MsgType(self.msg_type).name


# ---------------------------------------------------------------- decoding


def _dec_ia_na(body: bytes, depth: int) -> Option:
    _need(body, 12, "IA_NA")
    iaid, t1, t2 = struct.unpack_from("!III", body)
    return IaNa(iaid, t1, t2, _decode_options(body[12:], depth + 1, "IA_NA"))


def _dec_ia_ta(body: bytes, depth: int) -> Option:
    _need(body, 4, "IA_TA")
    (iaid,) = struct.unpack_from("!I", body)
    return IaTa(iaid, _decode_options(body[4:], depth + 1, "IA_TA"))


def _dec_iaaddr(body: bytes, depth: int) -> Option:
    _need(body, 24, "IAADDR")
    pref, valid = struct.unpack_from("!II", body, 16)
    subopts = _decode_options(body[24:], depth + 1, "IAADDR")
    return IaAddress(_addr_text(body[:16]), pref, valid, subopts)


def _dec_ia_pd(body: bytes, depth: int) -> Option:
    _need(body, 12, "IA_PD")
    iaid, t1, t2 = struct.unpack_from("!III", body)
    return IaPd(iaid, t1, t2, _decode_options(body[12:], depth + 1, "IA_PD"))


def _dec_iaprefix(body: bytes, depth: int) -> Option:
    _need(body, 25, "IAPREFIX")
    pref, valid, plen = struct.unpack_from("!IIB", body)
    if plen > 128:
        raise DecodeError(f"IAPREFIX: prefix length {plen} is over 128")
    prefix = f"{_addr_text(body[9:25])}/{plen}"
    return IaPrefix(pref, valid, prefix, _decode_options(body[25:], depth + 1, "IAPREFIX"))


def _dec_oro(body: bytes, depth: int) -> Option:
    if len(body) % 2:
        raise DecodeError(f"ORO: odd length {len(body)}")
    return OptionRequest(tuple(c for (c,) in struct.iter_unpack("!H", body)))


def _dec_preference(body: bytes, depth: int) -> Option:
    _need(body, 1, "preference", exact=True)
    return Preference(body[0])


def _dec_elapsed(body: bytes, depth: int) -> Option:
    _need(body, 2, "elapsed-time", exact=True)
    return ElapsedTime(struct.unpack("!H", body)[0])


def _dec_relay_msg(body: bytes, depth: int) -> Option:
    return RelayMsg(_decode_message(body, depth + 1))


def _dec_unicast(body: bytes, depth: int) -> Option:
    _need(body, 16, "server-unicast", exact=True)
    return Unicast(_addr_text(body))


def _dec_status(body: bytes, depth: int) -> Option:
    _need(body, 2, "status-code")
    (status,) = struct.unpack_from("!H", body)
    return StatusCodeOption(status, body[2:].decode("utf-8", errors="surrogateescape"))


def _dec_rapid_commit(body: bytes, depth: int) -> Option:
    _need(body, 0, "rapid-commit", exact=True)
    return RapidCommit()


def _dec_reconf_msg(body: bytes, depth: int) -> Option:
    _need(body, 1, "reconfigure-message", exact=True)
    return ReconfigureMessage(body[0])


def _dec_reconf_accept(body: bytes, depth: int) -> Option:
    _need(body, 0, "reconfigure-accept", exact=True)
    return ReconfigureAccept()


def _dec_dns(body: bytes, depth: int) -> Option:
    return DnsServers(_addresses(body, "DNS servers"))


def _dec_domains(body: bytes, depth: int) -> Option:
    return DomainList(_decode_names(body, "domain list"))


def _dec_sntp(body: bytes, depth: int) -> Option:
    return SntpServers(_addresses(body, "SNTP servers"))


def _dec_refresh(body: bytes, depth: int) -> Option:
    _need(body, 4, "information-refresh-time", exact=True)
    return InformationRefreshTime(struct.unpack("!I", body)[0])


def _dec_ntp(body: bytes, depth: int) -> Option:
    subs: list[NtpSuboption] = []
    pos = 0
    while pos < len(body):
        if pos + 4 > len(body):
            raise DecodeError("NTP server: truncated suboption header")
        code, size = struct.unpack_from("!HH", body, pos)
        pos += 4
        if pos + size > len(body):
            raise DecodeError(f"NTP server: suboption {code} overruns the option")
        data = body[pos : pos + size]
        pos += size
        value: str | bytes
        if code in (NTP_SUBOPTION_SRV_ADDR, NTP_SUBOPTION_MC_ADDR):
            _need(data, 16, f"NTP server suboption {code}", exact=True)
            value = _addr_text(data)
        elif code == NTP_SUBOPTION_SRV_FQDN:
            value, end = _decode_name(data, 0, "NTP server FQDN")
            if end != len(data):
                raise DecodeError("NTP server FQDN: trailing bytes after the name")
        else:
            value = bytes(data)
        subs.append(NtpSuboption(code, value))
    return NtpServer(tuple(subs))


def _dec_aftr(body: bytes, depth: int) -> Option:
    name, end = _decode_name(body, 0, "AFTR-Name")
    if end != len(body):
        raise DecodeError("AFTR-Name: trailing bytes after the name")
    return AftrName(name)


def _dec_sol_max_rt(body: bytes, depth: int) -> Option:
    _need(body, 4, "SOL_MAX_RT", exact=True)
    return SolMaxRt(struct.unpack("!I", body)[0])


def _dec_inf_max_rt(body: bytes, depth: int) -> Option:
    _need(body, 4, "INF_MAX_RT", exact=True)
    return InfMaxRt(struct.unpack("!I", body)[0])


def _dec_client_id(body: bytes, depth: int) -> Option:
    return ClientId(_duid(body, "client-id"))


def _dec_server_id(body: bytes, depth: int) -> Option:
    return ServerId(_duid(body, "server-id"))


_DECODERS: Final = {
    OptionCode.CLIENTID: _dec_client_id,
    OptionCode.SERVERID: _dec_server_id,
    OptionCode.IA_NA: _dec_ia_na,
    OptionCode.IA_TA: _dec_ia_ta,
    OptionCode.IAADDR: _dec_iaaddr,
    OptionCode.ORO: _dec_oro,
    OptionCode.PREFERENCE: _dec_preference,
    OptionCode.ELAPSED_TIME: _dec_elapsed,
    OptionCode.RELAY_MSG: _dec_relay_msg,
    OptionCode.UNICAST: _dec_unicast,
    OptionCode.STATUS_CODE: _dec_status,
    OptionCode.RAPID_COMMIT: _dec_rapid_commit,
    OptionCode.RECONF_MSG: _dec_reconf_msg,
    OptionCode.RECONF_ACCEPT: _dec_reconf_accept,
    OptionCode.DNS_SERVERS: _dec_dns,
    OptionCode.DOMAIN_LIST: _dec_domains,
    OptionCode.IA_PD: _dec_ia_pd,
    OptionCode.IAPREFIX: _dec_iaprefix,
    OptionCode.SNTP_SERVERS: _dec_sntp,
    OptionCode.INFORMATION_REFRESH_TIME: _dec_refresh,
    OptionCode.NTP_SERVER: _dec_ntp,
    OptionCode.AFTR_NAME: _dec_aftr,
    OptionCode.SOL_MAX_RT: _dec_sol_max_rt,
    OptionCode.INF_MAX_RT: _dec_inf_max_rt,
}


def _decode_options(data: bytes, depth: int, parent: str) -> tuple[Option, ...]:
    """Decode a run of options that must exactly fill ``data`` (RFC 9915 §21.1)."""
    if depth > MAX_NESTING:
        raise DecodeError(f"{parent}: options nested too deeply (over {MAX_NESTING})")
    out: list[Option] = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise DecodeError(f"{parent}: truncated option header at offset {pos}")
        code, size = struct.unpack_from("!HH", data, pos)
        pos += 4
        if pos + size > len(data):
            raise DecodeError(
                f"{parent}: option {code} length {size} overruns its parent "
                f"({len(data) - pos} octets left)"
            )
        body = bytes(data[pos : pos + size])
        pos += size
        decoder = _DECODERS.get(code)
        out.append(decoder(body, depth) if decoder else UnknownOption(code, body))
    return tuple(out)


def _decode_message(data: bytes, depth: int) -> Message | RelayMessage:
    if depth > MAX_NESTING:
        raise DecodeError(f"relayed messages nested too deeply (over {MAX_NESTING})")
    if len(data) < 4:
        raise DecodeError(f"truncated message header ({len(data)} octets)")
    msg_type = data[0]
    if msg_type in _RELAY_TYPES:
        if len(data) < 34:
            raise DecodeError(f"truncated relay message header ({len(data)} octets)")
        relay_type = MsgType(msg_type)
        opts = _decode_options(data[34:], depth + 1, relay_type.name)
        if not any(isinstance(o, RelayMsg) for o in opts):
            # RFC 9915 §9.1/§9.2: a relay message always carries option 9.
            raise DecodeError(f"{relay_type.name} without a Relay Message option")
        return RelayMessage(
            relay_type,
            data[1],
            _addr_text(data[2:18]),
            _addr_text(data[18:34]),
            opts,
        )
    try:
        kind: int = MsgType(msg_type)
    except ValueError:
        kind = msg_type
    xid = int.from_bytes(data[1:4], "big")
    return Message(kind, xid, _decode_options(data[4:], depth + 1, f"message {kind}"))


def decode_any(data: bytes) -> Message | RelayMessage:
    """Decode a DHCPv6 UDP payload, relay messages included.

    :raises DecodeError: for any malformed input, and nothing else.
    """
    return _decode_message(bytes(data), 0)


def decode(data: bytes) -> Message:
    """Decode a client/server DHCPv6 message (what a client receives).

    Relay-forward and Relay-reply (RFC 9915 §9) are rejected: a client never
    receives them (relays strip the encapsulation, RFC 9915 §19.2).

    :raises DecodeError: for any malformed input, and nothing else.
    """
    msg = decode_any(data)
    if isinstance(msg, RelayMessage):
        raise DecodeError(f"{msg.type_name} is a relay message, not for a client")
    return msg


# ---------------------------------------------------------------- encoding


def encode_option(opt: Option) -> bytes:
    """One option in wire form: code, length, body (RFC 9915 §21.1)."""
    code = _check_uint(opt.code, 16, "option code")
    body = opt.encode_body()
    if len(body) > 0xFFFF:
        raise EncodeError(f"option {code} body is {len(body)} octets, over 65535")
    return struct.pack("!HH", code, len(body)) + body


def _encode_options(options: tuple[Option, ...]) -> bytes:
    return b"".join(encode_option(o) for o in options)


def encode(msg: Message | RelayMessage) -> bytes:
    """Encode a message to its UDP payload.

    :raises EncodeError: a field is out of range or not representable.
    """
    if isinstance(msg, RelayMessage):
        if msg.msg_type not in _RELAY_TYPES:
            raise EncodeError(f"relay message type must be 12 or 13: {msg.msg_type}")
        return (
            bytes([msg.msg_type, _check_uint(msg.hop_count, 8, "hop count")])
            + _addr_bytes(msg.link_address, "link-address")
            + _addr_bytes(msg.peer_address, "peer-address")
            + _encode_options(msg.options)
        )
    mtype = _check_uint(msg.msg_type, 8, "message type")
    if mtype in _RELAY_TYPES:
        raise EncodeError("relay message types need a RelayMessage")
    xid = _check_uint(msg.transaction_id, 24, "transaction id")
    return bytes([mtype]) + xid.to_bytes(3, "big") + _encode_options(msg.options)
