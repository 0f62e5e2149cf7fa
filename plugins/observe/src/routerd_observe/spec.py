"""Resource specs of the observers: ``FlowLog``, ``FirewallLog``, ``DNSQueryLog``."""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field
from pydantic import field_validator
from routerd.config import Duration
from routerd.config import SpecModel

from routerd_observe.store import Retention

_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB)?\s*$")
_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
MIN_SIZE = 1024**2
MAX_SIZE = 64 * 1024**3


def parse_size(value: str | int) -> int:
    """Bytes from ``1048576``, ``"64MiB"`` or ``"2GiB"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str):
        m = _SIZE.match(value) if len(value) <= 32 else None
        if m is None:
            raise ValueError("expected a size such as 64MiB, 1GiB or a number of bytes")
        n = int(m.group(1)) * _UNITS[m.group(2)]
    else:
        raise ValueError("expected a size such as 64MiB, 1GiB or a number of bytes")
    if not MIN_SIZE <= n <= MAX_SIZE:
        raise ValueError("size must be from 1MiB to 64GiB")
    return n


class RetentionSpec(SpecModel):
    """How much history an observer keeps: the first limit reached prunes."""

    max_age: Duration = 7 * 86400.0
    max_records: int = Field(default=1_000_000, ge=1000, le=100_000_000)
    max_size: str | int = "512MiB"

    @field_validator("max_age")
    @classmethod
    def _age(cls, value: float) -> float:
        if value < 60:
            raise ValueError("maxAge must be at least 1m")
        return value

    @field_validator("max_size")
    @classmethod
    def _size(cls, value: str | int) -> str | int:
        parse_size(value)
        return value

    def retention(self) -> Retention:
        return Retention(self.max_age, self.max_records, parse_size(self.max_size))


class FlowLogSpec(SpecModel):
    """Flow records from conntrack events in the daemon's namespace."""

    #: Addresses on the LAN side: decides which end of a flow is the client.
    lan_networks: list[str] = Field(default_factory=list, max_length=64)
    #: Seconds between interim records of a long flow (and table dumps).
    interim: Duration = 300.0
    #: Turn on nf_conntrack_acct and nf_conntrack_timestamp in the namespace.
    accounting: bool = True
    #: Receive buffer of the event socket, bytes (forced past rmem_max).
    receive_buffer: str | int = "16MiB"
    max_tracked_flows: int = Field(default=262_144, ge=1024, le=4_000_000)
    retention: RetentionSpec = Field(default_factory=RetentionSpec)

    @field_validator("lan_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)
        return value

    @field_validator("interim")
    @classmethod
    def _interim(cls, value: float) -> float:
        if not 1.0 <= value <= 86400.0:
            raise ValueError("interim must be from 1s to 1d")
        return value

    @field_validator("receive_buffer")
    @classmethod
    def _rcvbuf(cls, value: str | int) -> str | int:
        parse_size(value)
        return value


class FirewallLogSpec(SpecModel):
    """Packets nftables rules log to an NFLOG group (``log group N``)."""

    group: int = Field(ge=0, le=65535)
    #: Bytes of each packet copied to the observer (headers are enough).
    copy_range: int = Field(default=128, ge=40, le=65535)
    receive_buffer: str | int = "4MiB"
    retention: RetentionSpec = Field(default_factory=RetentionSpec)

    @field_validator("receive_buffer")
    @classmethod
    def _rcvbuf(cls, value: str | int) -> str | int:
        parse_size(value)
        return value


class DNSQueryLogSpec(SpecModel):
    """DNS seen on interfaces by passive capture (port 53, UDP and TCP)."""

    interfaces: list[str] = Field(min_length=1, max_length=16)
    #: Seconds a query waits for its response before it is recorded unanswered.
    match_timeout: Duration = 5.0
    max_pending: int = Field(default=65_536, ge=64, le=1_000_000)
    receive_buffer: str | int = "8MiB"
    retention: RetentionSpec = Field(default_factory=RetentionSpec)

    @field_validator("interfaces")
    @classmethod
    def _ifnames(cls, value: list[str]) -> list[str]:
        for name in value:
            if not 1 <= len(name) <= 15 or "/" in name or name in (".", ".."):
                raise ValueError(f"{name!r} is not an interface name")
        return value

    @field_validator("match_timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0.1 <= value <= 60.0:
            raise ValueError("matchTimeout must be from 100ms to 60s")
        return value

    @field_validator("receive_buffer")
    @classmethod
    def _rcvbuf(cls, value: str | int) -> str | int:
        parse_size(value)
        return value
