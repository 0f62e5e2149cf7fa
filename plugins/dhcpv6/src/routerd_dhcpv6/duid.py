"""DUIDs (RFC 9915 §11) and IAIDs (RFC 9915 §12).

A DUID identifies the client to every server and must stay the same across
restarts: most ISPs hand out a new prefix when it changes. Generate one once
(:func:`duid_ll` from the WAN MAC is what odhcp6c and networkd do by default,
:func:`duid_llt` is what dhcpcd does), store the bytes with the daemon's state
and pass them to :class:`routerd_dhcpv6.core.ClientConfig`.

IAIDs must be stable per interface (RFC 9915 §12): :func:`iaid_from_name`
derives one from the interface name (stable across NIC replacement, changes
on rename); :func:`iaid_from_mac` takes the last four bytes of the MAC as
dhcpcd does (stable across rename, changes with the NIC).
"""

from __future__ import annotations

from dataclasses import dataclass
import datetime
import hashlib
import struct
from typing import Final
import uuid

from routerd_dhcpv6.constants import DuidType

__all__ = [
    "DUID_EPOCH",
    "Duid",
    "DuidEN",
    "DuidError",
    "DuidLL",
    "DuidLLT",
    "DuidUUID",
    "DuidUnknown",
    "HWTYPE_ETHERNET",
    "MAX_DUID_LEN",
    "duid_en",
    "duid_ll",
    "duid_llt",
    "duid_time",
    "duid_uuid",
    "iaid_from_mac",
    "iaid_from_name",
    "parse_duid",
    "parse_mac",
]

#: ARP hardware type for Ethernet (RFC 826 / IANA), used by DUID-LL and DUID-LLT.
HWTYPE_ETHERNET: Final = 1
#: DUID-LLT times count seconds from 2000-01-01T00:00:00Z (RFC 9915 §11.2).
DUID_EPOCH: Final = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
#: A DUID is at most 130 octets including its 2-octet type (RFC 9915 §11.1).
MAX_DUID_LEN: Final = 130


class DuidError(ValueError):
    """A DUID (or a MAC address given to build one) is malformed."""


@dataclass(frozen=True)
class DuidLLT:
    """DUID-LLT: link-layer address plus time (RFC 9915 §11.2).

    :ivar hwtype: IANA hardware type (1 = Ethernet).
    :ivar time: seconds since 2000-01-01 UTC, modulo 2**32.
    :ivar lladdr: the link-layer address bytes.
    """

    hwtype: int
    time: int
    lladdr: bytes

    def to_bytes(self) -> bytes:
        return struct.pack("!HHI", DuidType.LLT, self.hwtype, self.time) + self.lladdr


@dataclass(frozen=True)
class DuidEN:
    """DUID-EN: enterprise number plus identifier (RFC 9915 §11.3).

    :ivar enterprise: IANA private enterprise number.
    :ivar identifier: vendor-assigned identifier bytes.
    """

    enterprise: int
    identifier: bytes

    def to_bytes(self) -> bytes:
        return struct.pack("!HI", DuidType.EN, self.enterprise) + self.identifier


@dataclass(frozen=True)
class DuidLL:
    """DUID-LL: link-layer address (RFC 9915 §11.4).

    :ivar hwtype: IANA hardware type (1 = Ethernet).
    :ivar lladdr: the link-layer address bytes.
    """

    hwtype: int
    lladdr: bytes

    def to_bytes(self) -> bytes:
        return struct.pack("!HH", DuidType.LL, self.hwtype) + self.lladdr


@dataclass(frozen=True)
class DuidUUID:
    """DUID-UUID (RFC 6355 §4).

    :ivar uuid: the 16-octet UUID.
    """

    uuid: uuid.UUID

    def to_bytes(self) -> bytes:
        return struct.pack("!H", DuidType.UUID) + self.uuid.bytes


@dataclass(frozen=True)
class DuidUnknown:
    """A DUID of a type this code does not interpret, kept as raw bytes.

    :ivar duid_type: the 16-bit type code.
    :ivar data: the bytes after the type code.
    """

    duid_type: int
    data: bytes

    def to_bytes(self) -> bytes:
        return struct.pack("!H", self.duid_type) + self.data


Duid = DuidLLT | DuidEN | DuidLL | DuidUUID | DuidUnknown


def parse_duid(data: bytes) -> Duid:
    """Parse DUID bytes into its typed form.

    :raises DuidError: too short, too long (over 130 octets, RFC 9915 §11.1),
        or the wrong length for its type.
    """
    if len(data) < 3:
        # A DUID is a 2-octet type plus at least one octet (RFC 9915 §11.1).
        raise DuidError(f"DUID too short ({len(data)} octets)")
    if len(data) > MAX_DUID_LEN:
        raise DuidError(f"DUID too long ({len(data)} octets, max {MAX_DUID_LEN})")
    (duid_type,) = struct.unpack_from("!H", data)
    body = data[2:]
    if duid_type == DuidType.LLT:
        if len(body) < 7:
            raise DuidError("DUID-LLT needs hardware type, time and an address")
        hwtype, time = struct.unpack_from("!HI", body)
        return DuidLLT(hwtype, time, bytes(body[6:]))
    if duid_type == DuidType.EN:
        if len(body) < 5:
            raise DuidError("DUID-EN needs an enterprise number and an identifier")
        (enterprise,) = struct.unpack_from("!I", body)
        return DuidEN(enterprise, bytes(body[4:]))
    if duid_type == DuidType.LL:
        if len(body) < 3:
            raise DuidError("DUID-LL needs a hardware type and an address")
        (hwtype,) = struct.unpack_from("!H", body)
        return DuidLL(hwtype, bytes(body[2:]))
    if duid_type == DuidType.UUID:
        if len(body) != 16:
            raise DuidError(f"DUID-UUID must carry 16 octets, not {len(body)}")
        return DuidUUID(uuid.UUID(bytes=bytes(body)))
    return DuidUnknown(duid_type, bytes(body))


def parse_mac(mac: bytes | str) -> bytes:
    """Return a 6-octet MAC from bytes or ``"aa:bb:cc:dd:ee:ff"`` text.

    :raises DuidError: not six octets.
    """
    if isinstance(mac, str):
        text = mac.replace(":", "").replace("-", "")
        try:
            raw = bytes.fromhex(text)
        except ValueError as exc:
            raise DuidError(f"bad MAC address {mac!r}") from exc
    else:
        raw = bytes(mac)
    if len(raw) != 6:
        raise DuidError(f"MAC address must be 6 octets, got {len(raw)}")
    return raw


def duid_time(when: datetime.datetime) -> int:
    """Seconds since 2000-01-01 UTC modulo 2**32, for DUID-LLT (RFC 9915 §11.2)."""
    if when.tzinfo is None:
        raise DuidError("DUID-LLT time must be timezone-aware")
    return int((when - DUID_EPOCH).total_seconds()) % (1 << 32)


def duid_ll(mac: bytes | str, hwtype: int = HWTYPE_ETHERNET) -> bytes:
    """DUID-LL bytes for a link-layer address (RFC 9915 §11.4)."""
    return DuidLL(hwtype, parse_mac(mac)).to_bytes()


def duid_llt(mac: bytes | str, when: datetime.datetime, hwtype: int = HWTYPE_ETHERNET) -> bytes:
    """DUID-LLT bytes for a link-layer address and a creation time (§11.2)."""
    return DuidLLT(hwtype, duid_time(when), parse_mac(mac)).to_bytes()


def duid_en(enterprise: int, identifier: bytes) -> bytes:
    """DUID-EN bytes (RFC 9915 §11.3)."""
    if not 0 <= enterprise <= 0xFFFFFFFF:
        raise DuidError("enterprise number must fit in 32 bits")
    if not 1 <= len(identifier) <= MAX_DUID_LEN - 6:
        raise DuidError("DUID-EN identifier must be 1..124 octets")
    return DuidEN(enterprise, identifier).to_bytes()


def duid_uuid(value: uuid.UUID | bytes) -> bytes:
    """DUID-UUID bytes (RFC 6355)."""
    u = value if isinstance(value, uuid.UUID) else uuid.UUID(bytes=bytes(value))
    return DuidUUID(u).to_bytes()


def iaid_from_name(ifname: str) -> int:
    """A stable 32-bit IAID for an interface name (RFC 9915 §12).

    The first four octets of SHA-256 over ``b"routerd-iaid:" + name``: the same
    name always gives the same IAID, on any host and across restarts.
    """
    if not ifname:
        raise ValueError("interface name must not be empty")
    digest = hashlib.sha256(b"routerd-iaid:" + ifname.encode()).digest()
    return int.from_bytes(digest[:4], "big")


def iaid_from_mac(mac: bytes | str) -> int:
    """A 32-bit IAID from the last four octets of a MAC (dhcpcd's choice)."""
    return int.from_bytes(parse_mac(mac)[2:], "big")
