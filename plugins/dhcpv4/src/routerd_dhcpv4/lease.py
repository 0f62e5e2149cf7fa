"""The DHCPv4 lease a client holds, and its JSON form for persistence.

Times inside a :class:`Lease` are in the caller's monotonic clock (the ``now``
the protocol core is driven with).  :meth:`Lease.to_json` and
:meth:`Lease.from_json` convert them to and from wall-clock RFC 3339 strings
so a lease survives a restart (RFC 2131 §3.2 INIT-REBOOT needs it).
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from datetime import datetime
import ipaddress
import math
from typing import Any

from routerd_dhcpv4 import timing
from routerd_dhcpv4.codec import INFINITE_LEASE
from routerd_dhcpv4.codec import DhcpMessage
from routerd_dhcpv4.codec import Option

__all__ = [
    "Lease",
    "RejectedValue",
    "Route",
    "classful_prefixlen",
    "unusable_reason",
]

Route = tuple[str, str]  # (destination prefix "a.b.c.d/n", gateway "a.b.c.d")

_JSON_VERSION = 1


def classful_prefixlen(address: str) -> int:
    """The historic class A/B/C mask length, used when option 1 is absent.

    RFC 2131 does not require the server to send a subnet mask; dhcpcd and
    dhclient fall back to the classful mask, and so do we.
    """
    first = ipaddress.IPv4Address(address).packed[0]
    if first < 128:
        return 8
    if first < 192:
        return 16
    return 24


def unusable_reason(address: str) -> str | None:
    """Why ``address`` cannot be a host's address, gateway or server, or None.

    ``unspecified`` (0.0.0.0), ``loopback`` (127/8), ``multicast`` (224/4),
    ``broadcast`` (255.255.255.255) or ``reserved`` (240/4): no server on
    the link can be reached at such an address, and installing it sends
    traffic to the wrong place (``default dev wan0`` for 0.0.0.0, a route to
    127.0.0.1 out of the WAN).
    """
    ip = ipaddress.IPv4Address(address)
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_multicast:
        return "multicast"
    if int(ip) == 0xFFFFFFFF:
        return "broadcast"
    if ip.is_reserved:
        return "reserved"
    return None


@dataclass(frozen=True)
class RejectedValue:
    """A value of an ACK that was not taken into the lease.

    :ivar option: the option code (RFC 2132).
    :ivar name: the option's name in ``observed`` (``subnetMask``,
        ``routers``, ``classlessRoutes`` ...).
    :ivar value: the value as text (hex for a malformed option).
    :ivar reason: ``malformed``, ``zero_mask``, ``own_address``,
        ``outside_subnet``, or an :func:`unusable_reason`.
    """

    option: int
    name: str
    value: str
    reason: str


#: Options a lease is built from, with their names in ``observed``.
_LEASE_OPTIONS: dict[int, str] = {
    Option.SUBNET_MASK: "subnetMask",
    Option.ROUTER: "routers",
    Option.DNS_SERVERS: "dns",
    Option.HOSTNAME: "hostname",
    Option.DOMAIN_NAME: "domain",
    Option.MTU: "mtu",
    Option.BROADCAST: "broadcast",
    Option.NTP_SERVERS: "ntp",
    Option.RENEWAL_TIME: "t1",
    Option.REBINDING_TIME: "t2",
    Option.DOMAIN_SEARCH: "searchList",
    Option.CLASSLESS_ROUTES: "classlessRoutes",
}


class _Sanitizer:
    """Keeps the usable values of an ACK and records the rest."""

    def __init__(self, ack: DhcpMessage) -> None:
        self.ack = ack
        self.rejected: list[RejectedValue] = []
        for code in dict.fromkeys(ack.malformed_options):
            name = _LEASE_OPTIONS.get(code)
            if name is not None:
                # The codec left a badly encoded option out (a non-contiguous
                # mask, an MTU below 68 ...): the lease goes on without it.
                raw = ack.options.get(code, b"")
                self.reject(code, name, raw[:32].hex(), "malformed")

    def reject(self, option: int, name: str, value: str, reason: str) -> None:
        self.rejected.append(RejectedValue(option, name, value, reason))

    def prefixlen(self) -> int:
        # A mask of 0.0.0.0 would put the address on as a /0: every
        # destination on-link on the WAN. Treated as absent, like a
        # non-contiguous mask: the classful length (RFC 2131 leaves the mask
        # optional; dhcpcd and dhclient fall back the same way).
        prefixlen = self.ack.prefixlen
        if prefixlen == 0:
            self.reject(Option.SUBNET_MASK, "subnetMask", str(self.ack.subnet_mask), "zero_mask")
            prefixlen = None
        return classful_prefixlen(self.ack.yiaddr) if prefixlen is None else prefixlen

    def addresses(self, option: int, values: tuple[str, ...]) -> tuple[str, ...]:
        kept: list[str] = []
        for value in values:
            reason = unusable_reason(value)
            if reason is None and option == Option.ROUTER and value == self.ack.yiaddr:
                reason = "own_address"
            if reason is None:
                kept.append(value)
            else:
                self.reject(option, _LEASE_OPTIONS[option], value, reason)
        return tuple(kept)

    def classless_routes(self) -> tuple[Route, ...]:
        kept: list[Route] = []
        for dst, gw in self.ack.classless_routes:
            net = ipaddress.IPv4Network(dst)
            # RFC 3442: a router of 0.0.0.0 means on-link, not "unspecified".
            reason = None if gw == "0.0.0.0" else unusable_reason(gw)
            if reason is None and gw == self.ack.yiaddr:
                reason = "own_address"
            if reason is None and (net.is_loopback or net.is_multicast or net.is_reserved):
                reason = "destination_" + (unusable_reason(str(net.network_address)) or "reserved")
            if reason is None:
                kept.append((dst, gw))
            else:
                self.reject(Option.CLASSLESS_ROUTES, "classlessRoutes", f"{dst} via {gw}", reason)
        return tuple(kept)

    def broadcast(self, prefixlen: int) -> str | None:
        value = self.ack.broadcast_address
        if value is None or value == "255.255.255.255":
            return value
        network = ipaddress.IPv4Interface(f"{self.ack.yiaddr}/{prefixlen}").network
        if ipaddress.IPv4Address(value) in network and unusable_reason(value) is None:
            return value
        # Computed from the address and mask instead (apply.py).
        self.reject(Option.BROADCAST, "broadcast", value, "outside_subnet")
        return None


@dataclass(frozen=True)
class Lease:
    """A bound DHCPv4 lease.

    :ivar address: the leased address (``yiaddr``).
    :ivar prefixlen: from option 1, else the classful length.
    :ivar server_id: option 54 of the server that granted it.
    :ivar routers: option 3.
    :ivar dns: option 6.
    :ivar domain: option 15.
    :ivar search: option 119.
    :ivar mtu: option 26.
    :ivar ntp: option 42.
    :ivar classless_routes: option 121, ``(prefix, gateway)`` pairs.
    :ivar broadcast: option 28.
    :ivar hostname: option 12 as the server sent it.
    :ivar lease_time: option 51 in seconds; ``INFINITE_LEASE`` is infinite.
    :ivar t1: seconds from ``acquired`` to RENEWING.
    :ivar t2: seconds from ``acquired`` to REBINDING.
    :ivar acquired: when the REQUEST that got the ACK was sent (RFC 2131
        §4.4.5 counts the lease from there), caller's monotonic clock.
    :ivar t1_at: absolute ``acquired + t1`` (``inf`` for an infinite lease).
    :ivar t2_at: absolute ``acquired + t2``.
    :ivar expires_at: absolute ``acquired + lease_time``.
    :ivar rejected: values of the ACK left out of this lease (not saved).
    """

    address: str
    prefixlen: int
    server_id: str
    routers: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    domain: str | None = None
    search: tuple[str, ...] = ()
    mtu: int | None = None
    ntp: tuple[str, ...] = ()
    classless_routes: tuple[Route, ...] = ()
    broadcast: str | None = None
    hostname: str | None = None
    lease_time: int = 0
    t1: float = 0.0
    t2: float = 0.0
    acquired: float = 0.0
    t1_at: float = 0.0
    t2_at: float = 0.0
    expires_at: float = 0.0
    rejected: tuple[RejectedValue, ...] = ()

    @classmethod
    def from_ack(cls, ack: DhcpMessage, acquired: float, server_id: str | None = None) -> Lease:
        """Build a lease from a validated ACK.

        T1/T2 that break "T1 < T2 < lease" (RFC 2131 §4.4.5: "T1 MUST be
        earlier than T2, which, in turn, MUST be earlier than the time at
        which the client's lease will expire") fall back to the defaults.

        This is the one place where what a server sent is checked before
        it reaches the host: a mask of 0.0.0.0 falls back to the classful
        length (as a malformed mask does); routers, DNS and NTP servers
        that are unspecified, loopback, multicast or broadcast are left
        out, so are routers equal to the leased address; classless routes
        with such a gateway or a loopback/multicast/reserved destination;
        a broadcast address outside the leased subnet. When every classless
        route is left out, option 121 counts as absent (option 3 applies).
        Each value left out is listed in :attr:`rejected`.

        :param server_id: used when the ACK has no option 54.
        :raises ValueError: without a lease time or a server identifier.
        """
        if ack.lease_time is None or ack.lease_time == 0:
            raise ValueError("ACK without a usable lease time (option 51)")
        sid = ack.server_id or server_id
        if sid is None:
            raise ValueError("ACK without a server identifier (option 54)")
        lease_time = ack.lease_time
        if lease_time == INFINITE_LEASE:  # RFC 2131 §3.3: never renewed
            t1 = t2 = expires = math.inf
        else:
            t2 = float(ack.rebinding_time or 0)
            if not 0 < t2 < lease_time:
                t2 = timing.T2_FACTOR * lease_time
            t1 = float(ack.renewal_time or 0)
            if not 0 < t1 < t2:
                t1 = timing.T1_FACTOR * lease_time
                if t1 >= t2:
                    t1 = t2 * timing.T1_FACTOR / timing.T2_FACTOR
            expires = float(lease_time)
        clean = _Sanitizer(ack)
        prefixlen = clean.prefixlen()
        return cls(
            address=ack.yiaddr,
            prefixlen=prefixlen,
            server_id=sid,
            routers=clean.addresses(Option.ROUTER, ack.routers),
            dns=clean.addresses(Option.DNS_SERVERS, ack.dns_servers),
            domain=ack.domain_name,
            search=ack.domain_search,
            mtu=ack.mtu,
            ntp=clean.addresses(Option.NTP_SERVERS, ack.ntp_servers),
            classless_routes=clean.classless_routes(),
            broadcast=clean.broadcast(prefixlen),
            hostname=ack.hostname,
            lease_time=lease_time,
            t1=t1,
            t2=t2,
            acquired=acquired,
            t1_at=acquired + t1,
            t2_at=acquired + t2,
            expires_at=acquired + expires,
            rejected=tuple(clean.rejected),
        )

    @property
    def infinite(self) -> bool:
        """True for an infinite lease (RFC 2131 §3.3)."""
        return self.lease_time == INFINITE_LEASE

    @property
    def interface_address(self) -> str:
        """``"192.0.2.10/24"``, what to put on the interface."""
        return f"{self.address}/{self.prefixlen}"

    def effective_routes(self) -> tuple[Route, ...]:
        """The routes to install.

        RFC 3442 ("DHCP Client Behavior"): when option 121 is present the
        client MUST ignore the Router option (3), so a default route comes
        only from option 121 (as ``0.0.0.0/0``).  Otherwise the first router
        is the default gateway; further routers are alternatives (RFC 2132
        §3.5 lists them "in order of preference") and are not installed.
        A gateway of ``0.0.0.0`` means the destination is on-link.
        """
        if self.classless_routes:
            return self.classless_routes
        if self.routers:
            return (("0.0.0.0/0", self.routers[0]),)
        return ()

    def expired(self, now: float) -> bool:
        """True once ``now`` reaches the end of the lease."""
        return now >= self.expires_at

    def remaining(self, now: float) -> float:
        """Seconds left until the lease expires (never negative)."""
        return max(self.expires_at - now, 0.0)

    def to_json(self, mono_to_wall: Callable[[float], float]) -> dict[str, Any]:
        """A JSON-ready dict with wall-clock RFC 3339 times (UTC).

        :param mono_to_wall: maps the core's monotonic time to a POSIX
            timestamp, e.g. ``lambda m: time.time() - (time.monotonic() - m)``.
        """

        def wall(mono: float) -> str | None:
            if math.isinf(mono):
                return None
            stamp = datetime.fromtimestamp(mono_to_wall(mono), tz=UTC)
            return stamp.isoformat().replace("+00:00", "Z")

        return {
            "version": _JSON_VERSION,
            "address": self.address,
            "prefixlen": self.prefixlen,
            "server_id": self.server_id,
            "routers": list(self.routers),
            "dns": list(self.dns),
            "domain": self.domain,
            "search": list(self.search),
            "mtu": self.mtu,
            "ntp": list(self.ntp),
            "classless_routes": [list(r) for r in self.classless_routes],
            "broadcast": self.broadcast,
            "hostname": self.hostname,
            "lease_time": self.lease_time,
            "t1": None if math.isinf(self.t1) else self.t1,
            "t2": None if math.isinf(self.t2) else self.t2,
            "acquired_at": wall(self.acquired),
            "t1_at": wall(self.t1_at),
            "t2_at": wall(self.t2_at),
            "expires_at": wall(self.expires_at),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], wall_to_mono: Callable[[float], float]) -> Lease:
        """Rebuild a lease saved by :meth:`to_json`.

        :param wall_to_mono: maps a POSIX timestamp to the core's clock.
        :raises ValueError: when ``data`` is not a lease this code wrote
            (files on disk are input too).
        """
        try:
            return cls._from_json(data, wall_to_mono)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a saved DHCPv4 lease: {exc!r}") from None

    @classmethod
    def _from_json(cls, data: Mapping[str, Any], wall_to_mono: Callable[[float], float]) -> Lease:
        if data.get("version") != _JSON_VERSION:
            raise ValueError(f"unknown lease format version {data.get('version')!r}")

        def mono(value: Any) -> float:
            if value is None:
                return math.inf
            return wall_to_mono(datetime.fromisoformat(str(value)).timestamp())

        def addrs(key: str) -> tuple[str, ...]:
            return tuple(str(ipaddress.IPv4Address(a)) for a in data[key])

        def opt_str(key: str) -> str | None:
            value = data.get(key)
            return None if value is None else str(value)

        routes = tuple(
            (str(ipaddress.IPv4Network(p)), str(ipaddress.IPv4Address(g)))
            for p, g in data["classless_routes"]
        )
        lease_time = int(data["lease_time"])
        prefixlen = int(data["prefixlen"])
        if not 0 <= prefixlen <= 32 or not 0 < lease_time <= INFINITE_LEASE:
            raise ValueError("prefixlen or lease_time out of range")
        return cls(
            address=str(ipaddress.IPv4Address(data["address"])),
            prefixlen=prefixlen,
            server_id=str(ipaddress.IPv4Address(data["server_id"])),
            routers=addrs("routers"),
            dns=addrs("dns"),
            domain=opt_str("domain"),
            search=tuple(str(s) for s in data["search"]),
            mtu=None if data.get("mtu") is None else int(data["mtu"]),
            ntp=addrs("ntp"),
            classless_routes=routes,
            broadcast=opt_str("broadcast"),
            hostname=opt_str("hostname"),
            lease_time=lease_time,
            t1=math.inf if data["t1"] is None else float(data["t1"]),
            t2=math.inf if data["t2"] is None else float(data["t2"]),
            acquired=mono(data["acquired_at"]),
            t1_at=mono(data["t1_at"]),
            t2_at=mono(data["t2_at"]),
            expires_at=mono(data["expires_at"]),
        )
