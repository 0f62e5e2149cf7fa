"""What of a lease is put on the host, and the record of what was.

:class:`HostConfig` is both the *desired* configuration computed from a lease
and the spec (:func:`desired_config`) and the *applied* record kept in
``state.json``, so a restarted daemon knows what it put there and can remove
it later without ever having to remove it first.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
import ipaddress
from typing import Any

from routerd_dhcpv4.lease import Lease
from routerd_dhcpv4.spec import DHCPv4ClientSpec

__all__ = ["HostConfig", "RouteSpec", "desired_config", "dns_file_text"]

#: ``(destination, gateway or None for on-link, metric)``
RouteSpec = tuple[str, str | None, int]


@dataclass(frozen=True)
class HostConfig:
    """Address, routes, MTU and DNS file for one interface."""

    address: str | None = None  # "192.0.2.100/24"
    broadcast: str | None = None
    routes: tuple[RouteSpec, ...] = ()
    mtu: int | None = None  # the lease's MTU (option 26)
    original_mtu: int | None = None  # to restore when the lease's MTU is removed
    # What the interface got: ``mtu``, or 1280 when ``mtu`` is below the
    # IPv6 minimum and the interface has IPv6 on (netapply.set_mtu).
    effective_mtu: int | None = None
    dns_file: str | None = None
    dns_text: str | None = None

    @property
    def empty(self) -> bool:
        return (
            self.address is None and not self.routes and self.mtu is None and self.dns_file is None
        )

    @property
    def mtu_clamped(self) -> bool:
        """The interface got another MTU than the lease's (the IPv6 floor)."""
        return self.mtu is not None and self.effective_mtu not in (None, self.mtu)

    def same_as(self, other: HostConfig) -> bool:
        """Equal in what is applied (the MTU's original and effective values aside)."""
        return replace(self, original_mtu=None, effective_mtu=None) == replace(
            other, original_mtu=None, effective_mtu=None
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "broadcast": self.broadcast,
            "routes": [list(r) for r in self.routes],
            "mtu": self.mtu,
            "originalMtu": self.original_mtu,
            "effectiveMtu": self.effective_mtu,
            "dnsFile": self.dns_file,
            "dnsText": self.dns_text,
        }

    @classmethod
    def from_json(cls, data: Any) -> HostConfig:
        """Rebuild a record; anything malformed gives an empty record (never raises)."""
        if not isinstance(data, dict):
            return cls()
        try:
            address = data.get("address")
            if address is not None:
                address = str(ipaddress.IPv4Interface(address))
            routes: list[RouteSpec] = []
            for dst, gw, metric in data.get("routes") or []:
                routes.append(
                    (
                        str(ipaddress.IPv4Network(dst)),
                        None if gw is None else str(ipaddress.IPv4Address(gw)),
                        int(metric),
                    )
                )
            mtu = data.get("mtu")
            orig = data.get("originalMtu")
            effective = data.get("effectiveMtu")
            dns_file = data.get("dnsFile")
            dns_text = data.get("dnsText")
            broadcast = data.get("broadcast")
            return cls(
                address=address,
                broadcast=None if broadcast is None else str(ipaddress.IPv4Address(broadcast)),
                routes=tuple(routes),
                mtu=None if mtu is None else int(mtu),
                original_mtu=None if orig is None else int(orig),
                effective_mtu=None if effective is None else int(effective),
                dns_file=None if dns_file is None else str(dns_file),
                dns_text=None if dns_text is None else str(dns_text),
            )
        except (TypeError, ValueError):
            return cls()


def dns_file_text(lease: Lease, interface: str) -> str:
    """resolv.conf-style lines: ``search`` (option 119, else 15) and ``nameserver``s."""
    lines = [f"# written by routerd dhcpv4-client for {interface} (server {lease.server_id})"]
    search = list(lease.search) or ([lease.domain] if lease.domain else [])
    if search:
        lines.append("search " + " ".join(search))
    lines += [f"nameserver {ns}" for ns in lease.dns]
    return "\n".join(lines) + "\n"


def _broadcast(lease: Lease) -> str | None:
    if lease.broadcast:
        return lease.broadcast
    net = ipaddress.IPv4Interface(lease.interface_address).network
    if net.prefixlen >= 31:
        return None
    return str(net.broadcast_address)


def desired_config(
    lease: Lease | None, spec: DHCPv4ClientSpec, original_mtu: int | None = None
) -> HostConfig:
    """What the host should carry for ``lease`` under ``spec`` (empty without a lease)."""
    if lease is None:
        return HostConfig()
    metric = spec.route_metric
    network = ipaddress.IPv4Interface(lease.interface_address).network
    routes: list[RouteSpec] = []
    if spec.apply_routes:
        on_link: set[str] = set()
        for dst, gw in lease.effective_routes():
            if gw == "0.0.0.0":  # RFC 3442: on-link destination
                routes.append((dst, None, metric))
                on_link.add(dst)
                continue
            gw_ip = ipaddress.IPv4Address(gw)
            reachable = spec.apply_address and gw_ip in network
            reachable = reachable or any(gw_ip in ipaddress.IPv4Network(n) for n in on_link)
            host = f"{gw}/32"
            if not reachable and host not in on_link:
                # A gateway outside the leased subnet (e.g. a /32 lease) needs an
                # on-link host route first, as dhcpcd and networkd add.
                routes.append((host, None, metric))
                on_link.add(host)
            routes.append((dst, gw, metric))
    mtu = lease.mtu if spec.apply_mtu and lease.mtu is not None and lease.mtu >= 68 else None
    return HostConfig(
        address=lease.interface_address if spec.apply_address else None,
        broadcast=_broadcast(lease) if spec.apply_address else None,
        routes=tuple(routes),
        mtu=mtu,
        original_mtu=original_mtu if mtu is not None else None,
        dns_file=spec.dns_file,
        dns_text=dns_file_text(lease, spec.interface) if spec.dns_file else None,
    )


@dataclass
class ApplyErrors:
    """The last failure of each part (None when it worked)."""

    address: str | None = None
    routes: str | None = None
    mtu: str | None = None
    dns: str | None = None
    messages: list[str] = field(default_factory=list)

    def any(self) -> str | None:
        for value in (self.address, self.routes, self.mtu, self.dns):
            if value:
                return value
        return None
