"""The ``HealthCheck`` resource spec (field names are the config contract)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Annotated
from typing import Literal

from pydantic import Field
from pydantic import field_validator
from pydantic import model_validator
from routerd.config import Duration
from routerd.config import SpecModel
from routerd.secrets import SecretURL
from routerd.secrets import shown

from routerd_healthcheck.probes import ProbeSpec
from routerd_healthcheck.probes import validate_spec

DEFAULT_PORTS = {"http": 80, "https": 443, "dns": 53}
# Sane ranges (docs/configuration.md, "Limits"): a check slower than daily is
# not watching anything, and a probe that needs more than a minute to answer
# has failed.
MIN_INTERVAL = 0.1
MAX_INTERVAL = 86400.0
MAX_TIMEOUT = 60.0


def parse_status_range(value: str | int) -> tuple[int, int]:
    """``200``, ``"200-399"`` or ``"2xx"`` to an inclusive range."""
    text = str(value).strip().lower()
    if text.endswith("xx") and len(text) == 3 and text[0].isdigit():
        low = int(text[0]) * 100
        return low, low + 99
    low_s, sep, high_s = text.partition("-")
    try:
        low = int(low_s)
        high = int(high_s) if sep else low
    except ValueError:
        raise ValueError("expected a status like 200, '200-399' or '2xx'") from None
    if not 100 <= low <= high <= 599:
        raise ValueError("status codes must be 100-599 with low <= high")
    return low, high


class HealthCheckSpec(SpecModel):
    """What to probe, how often, and when to call it healthy or unhealthy."""

    protocol: Literal["icmp", "tcp", "http", "https", "dns"]
    target: str = Field(min_length=1, max_length=253)
    port: int | None = Field(default=None, ge=1, le=65535)
    interval: Duration = 10.0
    timeout: Duration = 2.0
    healthy_threshold: int = Field(default=2, ge=1, le=100)
    unhealthy_threshold: int = Field(default=3, ge=1, le=100)
    source_interface: str | None = Field(default=None, min_length=1, max_length=15)
    source_address: str | None = None
    fwmark: int | None = Field(default=None, ge=0, le=0xFFFFFFFF)
    family: Literal["ipv4", "ipv6"] | None = None
    # Query values are credentials often enough (?token=...): shown as token=***.
    path: Annotated[str, SecretURL()] = "/"
    host_header: str | None = None
    expect_status: str | int = "200-399"
    tls_verify: bool = True
    dns_name: str = "."
    # None: NS for the root (which has no A record), A for any other name.
    dns_type: Literal["A", "AAAA", "NS", "SOA", "TXT", "MX", "CNAME", "PTR"] | None = None

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if not MIN_INTERVAL <= value <= MAX_INTERVAL:
            raise ValueError("interval must be from 100ms to 1d")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if not 0 < value <= MAX_TIMEOUT:
            raise ValueError("timeout must be more than 0 and at most 60s")
        return value

    @field_validator("source_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is not None:
            ipaddress.ip_address(value)
        return value

    @field_validator("expect_status")
    @classmethod
    def _status(cls, value: str | int) -> str | int:
        parse_status_range(value)
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in "\r\n "):
            raise ValueError("must start with '/' and contain no spaces or line breaks")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> HealthCheckSpec:
        if self.protocol == "tcp" and self.port is None:
            raise ValueError("port is required for protocol tcp")
        if self.protocol == "icmp" and self.port is not None:
            raise ValueError("port has no meaning for protocol icmp")
        if self.timeout > self.interval:
            raise ValueError("timeout must not be longer than interval")
        problems = validate_spec(self.to_probe_spec())
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def to_probe_spec(self) -> ProbeSpec:
        """The probe this spec describes (the probe layer knows what is runnable)."""
        family = {"ipv4": socket.AF_INET, "ipv6": socket.AF_INET6, None: None}[self.family]
        return ProbeSpec(
            protocol=self.protocol,
            target=self.target,
            port=self.effective_port,
            timeout=self.timeout,
            path=self.path,
            host_header=self.host_header,
            expect_status=parse_status_range(self.expect_status),
            tls_verify=self.tls_verify,
            dns_name=self.dns_name,
            dns_type=self.effective_dns_type,
            source_interface=self.source_interface,
            source_address=self.source_address,
            fwmark=self.fwmark,
            family=family,
        )

    @property
    def shown_path(self) -> str:
        """``path`` as status, events and logs may show it (query values redacted)."""
        return shown(self, "path")

    @property
    def effective_dns_type(self) -> str:
        if self.dns_type is not None:
            return self.dns_type
        return "NS" if self.dns_name.strip(".") == "" else "A"

    @property
    def effective_port(self) -> int | None:
        return self.port if self.port is not None else DEFAULT_PORTS.get(self.protocol)
