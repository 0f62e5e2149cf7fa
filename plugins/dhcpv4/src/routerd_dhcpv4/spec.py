"""The ``DHCPv4Client`` resource spec (field names are the config contract)."""

from __future__ import annotations

import ipaddress
from pathlib import PurePosixPath
import re

from pydantic import Field
from pydantic import field_validator
from routerd.config import Duration
from routerd.config import SpecModel

from routerd_dhcpv4.codec import client_id_from_mac
from routerd_dhcpv4.codec import client_id_rfc4361
from routerd_dhcpv4.core import DEFAULT_PARAMETER_REQUEST_LIST

_IFNAME = re.compile(r"^[^/\s:]{1,15}$")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_HEX = re.compile(r"^(0x)?([0-9a-fA-F]{2}([:-]?))+$")


def parse_hex(text: str) -> bytes:
    """``"01:aa:bb"``, ``"01aabb"``, ``"0x01aabb"`` or ``"01-aa-bb"`` to bytes."""
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "").replace("-", "")
    if not cleaned or len(cleaned) % 2 or any(c not in "0123456789abcdef" for c in cleaned):
        raise ValueError("expected hex bytes such as 01:02:03:04:05:06")
    return bytes.fromhex(cleaned)


def duid_ll(mac: bytes) -> bytes:
    """DUID-LL (RFC 8415 §11.4): type 3, hardware type 1, the MAC."""
    return b"\x00\x03\x00\x01" + mac


def rfc4361_client_id(mac: bytes) -> bytes:
    """RFC 4361 client identifier from the MAC: IAID = last 4 bytes of the MAC
    (as dhcpcd does), DUID-LL of the MAC (stable without any stored state)."""
    iaid = int.from_bytes(mac[-4:].rjust(4, b"\0"), "big")
    return client_id_rfc4361(iaid, duid_ll(mac))


class DHCPv4ClientSpec(SpecModel):
    """A DHCPv4 client on one interface, and what of its lease to apply."""

    interface: str = Field(min_length=1, max_length=15)
    hostname: str | None = Field(default=None, max_length=253)
    #: ``mac`` (type 1 + MAC, RFC 2132 §9.14), ``rfc4361`` (type 255 + IAID +
    #: DUID-LL), or raw hex bytes (at least 2).
    client_id: str = "mac"
    vendor_class: str | None = Field(default=None, min_length=1, max_length=255)
    parameter_request_list: list[int] = Field(
        default_factory=lambda: list(DEFAULT_PARAMETER_REQUEST_LIST), min_length=1, max_length=64
    )
    requested_address: str | None = None
    rapid_commit: bool = False
    release_on_stop: bool = False
    decline_on_conflict: bool = False
    initial_delay: Duration = 0.0
    apply_address: bool = True
    apply_routes: bool = True
    route_metric: int = Field(default=100, ge=0, le=0xFFFFFFFF)
    apply_mtu: bool = True
    dns_file: str | None = None
    keep_on_stop: bool = False

    @field_validator("interface")
    @classmethod
    def _ifname(cls, value: str) -> str:
        if not _IFNAME.match(value) or value in (".", ".."):
            raise ValueError("not an interface name (1-15 characters, no '/', ':' or spaces)")
        return value

    @field_validator("hostname")
    @classmethod
    def _hostname(cls, value: str | None) -> str | None:
        if value is not None and not _HOSTNAME.match(value):
            raise ValueError("not a host name (letters, digits, '-' and '.', labels of 1-63)")
        return value

    @field_validator("client_id")
    @classmethod
    def _client_id(cls, value: str) -> str:
        if value.lower() in ("mac", "rfc4361"):
            return value.lower()
        if not _HEX.match(value):
            raise ValueError("expected 'mac', 'rfc4361' or hex bytes such as 01:02:03:04:05:06")
        if len(parse_hex(value)) < 2:
            raise ValueError("a raw client identifier needs at least 2 bytes (RFC 2132 §9.14)")
        return value

    @field_validator("vendor_class")
    @classmethod
    def _vendor(cls, value: str | None) -> str | None:
        if value is not None and not value.isascii():
            raise ValueError("vendor class must be ASCII")
        return value

    @field_validator("parameter_request_list")
    @classmethod
    def _prl(cls, value: list[int]) -> list[int]:
        bad = [c for c in value if not 1 <= c <= 254]
        if bad:
            raise ValueError(f"option codes must be 1-254, got {bad}")
        return value

    @field_validator("requested_address")
    @classmethod
    def _requested(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.IPv4Address(value))
        except ValueError:
            raise ValueError("expected an IPv4 address") from None

    @field_validator("initial_delay")
    @classmethod
    def _delay(cls, value: float) -> float:
        if value > 60:
            raise ValueError("initialDelay must be at most 60s (RFC 2131 §4.4.1 suggests 1-10 s)")
        return value

    @field_validator("dns_file")
    @classmethod
    def _dns_file(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = PurePosixPath(value)
        if not path.is_absolute() or path.name in ("", ".", ".."):
            raise ValueError("expected an absolute file path")
        return str(path)

    def client_id_bytes(self, mac: bytes) -> bytes:
        """Option 61 for this interface's MAC."""
        if self.client_id == "mac":
            return client_id_from_mac(mac)
        if self.client_id == "rfc4361":
            return rfc4361_client_id(mac)
        return parse_hex(self.client_id)
