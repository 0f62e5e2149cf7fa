"""What a PPP session puts on the host, and the record of it.

When IPCP opens (:func:`desired_config`): the MTU of ``ppp-<name>``, the link
up, our address with the peer's as a /32 point-to-point address (``ip addr
add LOCAL peer PEER/32``, as pppd does), with ``defaultRoute`` a default
route through the interface (no gateway: the link is point-to-point) with
``routeMetric``, and with ``dnsFile`` the peer's DNS servers as
``nameserver`` lines. With IPv6CP, the link-local address made of our
interface identifier (fe80::/64).

When the session ends the interface is removed with its backend, and the
kernel takes its addresses and routes with it; only the DNS file needs
removing, and the record in ``state.json`` says which file was written, so
a restart after SIGKILL removes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace
import errno
import ipaddress
import os
from pathlib import Path
from typing import Any

from routerd.daemon.statefile import atomic_write
from routerd.netapply import ApplyError
from routerd.netapply import NetApplier

from routerd_pppoe.events import NetworkUp
from routerd_pppoe.spec import PPPoESessionSpec

__all__ = ["HostConfig", "PppApplier", "desired_config", "dns_file_text", "remove_dns_file"]

DEFAULT_V4 = "0.0.0.0/0"


@dataclass(frozen=True)
class HostConfig:
    """The session's host state: applied, or wanted."""

    ifname: str | None = None
    address: str | None = None  # "198.51.100.7/32"
    peer: str | None = None
    mtu: int | None = None
    default_route: int | None = None  # the metric, when a default route is installed
    ipv6_address: str | None = None  # "fe80::.../64"
    dns_file: str | None = None
    dns_text: str | None = None

    @property
    def empty(self) -> bool:
        return self == HostConfig()

    def to_json(self) -> dict[str, Any]:
        """What ``state.json`` keeps: only the DNS file outlives the interface."""
        return {"ifname": self.ifname, "dnsFile": self.dns_file}

    @classmethod
    def from_json(cls, data: Any) -> HostConfig:
        if not isinstance(data, dict):
            return cls()
        dns_file = data.get("dnsFile")
        ifname = data.get("ifname")
        return cls(
            ifname=ifname if isinstance(ifname, str) else None,
            dns_file=dns_file if isinstance(dns_file, str) and dns_file.startswith("/") else None,
        )


def dns_file_text(servers: tuple[str, ...], ifname: str) -> str:
    lines = [f"# written by routerd pppoe-client for {ifname}"]
    lines += [f"nameserver {ns}" for ns in servers]
    return "\n".join(lines) + "\n"


def desired_config(
    spec: PPPoESessionSpec, ifname: str, network: NetworkUp | None, ipv6_local: str | None
) -> HostConfig:
    if network is None:
        return HostConfig()
    peer = network.peer
    if peer is not None and ipaddress.IPv4Address(peer) == ipaddress.IPv4Address(network.local):
        peer = None  # a peer claiming our own address is no peer to route to
    dns_file = spec.dns_file if spec.use_peer_dns else None
    return HostConfig(
        ifname=ifname,
        address=f"{network.local}/32",
        peer=peer,
        mtu=network.mtu,
        default_route=spec.route_metric if spec.default_route else None,
        ipv6_address=f"{ipv6_local}/64" if ipv6_local else None,
        dns_file=dns_file,
        dns_text=dns_file_text(network.dns, ifname) if dns_file else None,
    )


def remove_dns_file(path: str) -> str | None:
    """Remove a DNS file we wrote; the error text, or None."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        return f"remove {path}: {exc.strerror}"
    return None


class PppApplier(NetApplier):
    """:class:`routerd.netapply.NetApplier` plus what a point-to-point link needs."""

    def set_up(self, ifname: str) -> None:
        """``ip link set IFNAME up``."""
        self._call(f"set {ifname} up", self._ipr.link, "set", index=self._index(ifname), state="up")

    def apply(self, have: HostConfig, want: HostConfig) -> tuple[HostConfig, list[str]]:
        """Bring the host from ``have`` to ``want``; returns what is applied and the errors."""
        errors: list[str] = []
        ifname = want.ifname
        if ifname is None:
            return have, errors
        if have.ifname != ifname:
            have = HostConfig(ifname=ifname, dns_file=have.dns_file, dns_text=have.dns_text)
        try:
            if want.mtu is not None and have.mtu != want.mtu:
                self.set_mtu(ifname, want.mtu)
                have = replace(have, mtu=want.mtu)
            self.set_up(ifname)
            if want.address is not None:
                self.add_address(ifname, want.address, peer=want.peer)
                have = replace(have, address=want.address, peer=want.peer)
            if want.default_route is not None:
                self.replace_route(DEFAULT_V4, ifname=ifname, metric=want.default_route)
                have = replace(have, default_route=want.default_route)
            elif have.default_route is not None:
                self.remove_route(DEFAULT_V4, ifname=ifname, metric=have.default_route)
                have = replace(have, default_route=None)
            if want.ipv6_address is not None and have.ipv6_address != want.ipv6_address:
                self.add_address(ifname, want.ipv6_address)
                have = replace(have, ipv6_address=want.ipv6_address)
        except ApplyError as exc:
            errors.append(str(exc))
        if have.dns_file is not None and have.dns_file != want.dns_file:
            problem = remove_dns_file(have.dns_file)
            if problem:
                errors.append(problem)
            else:
                have = replace(have, dns_file=None, dns_text=None)
        if want.dns_file is not None and want.dns_text is not None:
            try:
                path = Path(want.dns_file)
                current = path.read_text() if path.exists() else None
                if current != want.dns_text:
                    atomic_write(path, want.dns_text.encode(), mode=0o644)
                have = replace(have, dns_file=want.dns_file, dns_text=want.dns_text)
            except OSError as exc:
                errors.append(f"write {want.dns_file}: {exc.strerror or exc}")
        return have, errors

    def withdraw(self, have: HostConfig) -> tuple[HostConfig, list[str]]:
        """Remove what the session applied (the interface itself goes with its backend)."""
        errors: list[str] = []
        ifname = have.ifname
        if ifname is not None and self.link(ifname).exists:
            try:
                if have.default_route is not None:
                    self.remove_route(DEFAULT_V4, ifname=ifname, metric=have.default_route)
                if have.address is not None:
                    self.remove_address(ifname, have.address, peer=have.peer)
            except ApplyError as exc:
                if exc.errno != errno.ENODEV:
                    errors.append(str(exc))
        dns_file = have.dns_file
        if dns_file is not None:
            problem = remove_dns_file(dns_file)
            if problem:
                errors.append(problem)
                return HostConfig(dns_file=dns_file, dns_text=have.dns_text), errors
        return HostConfig(), errors
