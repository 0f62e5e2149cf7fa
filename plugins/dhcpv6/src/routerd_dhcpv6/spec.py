"""The ``DHCPv6PrefixDelegation`` resource spec (field names are the config contract)."""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import Field
from pydantic import ValidationInfo
from pydantic import field_validator
from pydantic import model_validator
from routerd.config import SpecModel

from routerd_dhcpv6.duid import DuidError
from routerd_dhcpv6.duid import parse_duid

__all__ = ["DHCPv6PrefixDelegationSpec", "DownstreamSpec", "DuidSpec", "parse_hex"]

_IFNAME = re.compile(r"^[^\s/:]{1,15}$")


def _ifname(value: str) -> str:
    if not _IFNAME.match(value) or value in (".", ".."):
        raise ValueError("must be an interface name: 1-15 characters, no spaces, '/' or ':'")
    return value


def parse_hex(text: str) -> bytes:
    """``"00:03:00:01:02:03"``, ``"0003000102 03"`` or ``"0x00030001..."`` to bytes."""
    cleaned = text.strip().lower().removeprefix("0x")
    for sep in (":", "-", " ", "."):
        cleaned = cleaned.replace(sep, "")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError("must be hexadecimal octets, e.g. 00:03:00:01:02:00:5e:00:53:01") from None


class DuidSpec(SpecModel):
    """How the client DUID is made (RFC 9915 §11); generated once, then stored.

    ``ll`` (the default) and ``llt`` are built from the WAN interface's MAC;
    ``raw`` takes ``value`` as the whole DUID in hex (type code included).
    """

    type: Literal["ll", "llt", "raw"] = "ll"
    value: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DuidSpec:
        if self.type == "raw":
            if not self.value:
                raise ValueError("value: a raw DUID needs its hex value")
            try:
                parse_duid(parse_hex(self.value))
            except (DuidError, ValueError) as exc:
                raise ValueError(f"value: not a valid DUID: {exc}") from None
        elif self.value is not None:
            raise ValueError(f"value: only for type raw (type {self.type} uses the WAN MAC)")
        return self

    def raw_bytes(self) -> bytes | None:
        return parse_hex(self.value) if self.type == "raw" and self.value else None


class DownstreamSpec(SpecModel):
    """One LAN interface that gets a subnet of each delegated prefix."""

    interface: str = Field(min_length=1, max_length=15)
    subnet_id: int = Field(default=0, ge=0)
    prefix_length: int = Field(default=64, ge=1, le=128)
    address_suffix: str = "::1"
    assign_address: bool = True

    @field_validator("interface")
    @classmethod
    def _name(cls, value: str) -> str:
        return _ifname(value)

    @field_validator("address_suffix")
    @classmethod
    def _suffix(cls, value: str) -> str:
        try:
            addr = ipaddress.IPv6Address(value)
        except ValueError:
            raise ValueError("must be an IPv6 interface identifier such as ::1") from None
        if int(addr) == 0:
            raise ValueError("::0 is the subnet-router anycast address; use e.g. ::1")
        return str(addr)

    @model_validator(mode="after")
    def _fits(self) -> DownstreamSpec:
        host_bits = 128 - self.prefix_length
        if self.assign_address and int(ipaddress.IPv6Address(self.address_suffix)) >> host_bits:
            raise ValueError(
                f"addressSuffix {self.address_suffix} does not fit in the "
                f"{host_bits} host bits of a /{self.prefix_length}"
            )
        if self.subnet_id >> min(self.prefix_length, 127):
            raise ValueError(f"subnetId {self.subnet_id} does not fit in a /{self.prefix_length}")
        return self

    def suffix_int(self) -> int:
        return int(ipaddress.IPv6Address(self.address_suffix))


class DHCPv6PrefixDelegationSpec(SpecModel):
    """A DHCPv6 prefix-delegation client on ``interface`` (RFC 9915)."""

    interface: str = Field(min_length=1, max_length=15)
    #: Prefix-length hint sent in Solicit (0: no hint).
    prefix_length: int = Field(default=0, ge=0, le=64)
    #: At most 256: the /64s of a /56, more LAN interfaces than a router has.
    downstream: list[DownstreamSpec] = Field(default_factory=list, max_length=256)
    rapid_commit: bool = False
    request_address: bool = False
    release_on_stop: bool = True
    keep_on_stop: bool = False
    duid: DuidSpec | None = None
    apply_prefixes: bool = True
    unreachable_route: bool = True

    @field_validator("interface")
    @classmethod
    def _name(cls, value: str) -> str:
        return _ifname(value)

    @field_validator("downstream")
    @classmethod
    def _downstream(cls, value: list[DownstreamSpec], info: ValidationInfo) -> list[DownstreamSpec]:
        hint = int(info.data.get("prefix_length") or 0)
        wan = info.data.get("interface")
        seen: dict[tuple[str, int, int], int] = {}
        for i, d in enumerate(value):
            where = f"downstream[{i}]"
            if wan is not None and d.interface == wan:
                raise ValueError(f"{where}.interface: {d.interface} is the WAN interface")
            key = (d.interface, d.subnet_id, d.prefix_length)
            if key in seen:
                raise ValueError(
                    f"{where}: same interface, subnetId and prefixLength as downstream[{seen[key]}]"
                )
            seen[key] = i
            if hint:
                if d.prefix_length < hint:
                    raise ValueError(
                        f"{where}.prefixLength: /{d.prefix_length} is shorter than the "
                        f"/{hint} asked for"
                    )
                bits = d.prefix_length - hint
                if d.subnet_id >= 1 << bits:
                    raise ValueError(
                        f"{where}.subnetId: {d.subnet_id} does not fit: a /{hint} has "
                        f"{1 << bits} subnets of /{d.prefix_length} (0..{(1 << bits) - 1})"
                    )
        return value

    def client_duid_type(self) -> str:
        return self.duid.type if self.duid is not None else "ll"
