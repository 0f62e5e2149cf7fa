"""Host state through netlink (pyroute2), shared by protocol plugins.

Everything here must be created and used on one thread (pyroute2 0.9's sync
API wraps an asyncio core; a socket made in one thread and read in another
receives nothing — python-stack.md §5): engines create these on the engine
thread in ``start``.

Routes routerd installs carry ``proto dhcp`` (16), so ``ip route show proto
dhcp`` lists exactly them.
"""

from __future__ import annotations

from dataclasses import dataclass
import errno
import ipaddress
import socket
import struct
from typing import Any

RTPROT_DHCP = 16
IFF_UP = 0x1
IFF_LOWER_UP = 0x10000
#: RFC 8200 §5: every link carrying IPv6 has an MTU of at least 1280. Linux
#: removes IPv6 from an interface whose MTU is set below it (addrconf on
#: NETDEV_CHANGEMTU): its link-local address and routes disappear.
IPV6_MIN_MTU = 1280
# Address flags (linux/if_addr.h).
IFA_F_OPTIMISTIC = 0x04
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40
_PROC_IPV6_DEFAULT = "/proc/sys/net/ipv6/conf/default/disable_ipv6"


class ApplyError(OSError):
    """A netlink operation failed; the message names what and where."""


@dataclass(frozen=True)
class LinkState:
    """What the kernel says of an interface."""

    name: str
    index: int | None
    exists: bool
    admin_up: bool = False
    carrier: bool = False
    operstate: str = "ABSENT"
    mtu: int | None = None
    mac: str | None = None

    @property
    def ready(self) -> bool:
        """Up with carrier: packets can flow."""
        return self.exists and self.admin_up and self.carrier


@dataclass(frozen=True)
class LinkLocal:
    """Whether an interface can send IPv6 from a link-local address.

    :ivar name: the interface.
    :ivar ipv6: IPv6 is on: the interface has an IPv6 device and
        ``disable_ipv6`` is 0 (Linux drops the device below an MTU of 1280).
    :ivar address: a link-local address the kernel will send from (not
        tentative unless optimistic, not DAD-failed), or None.
    :ivar tentative: a link-local address is still in duplicate address
        detection (RFC 4862 §5.4); it becomes usable in about a second.
    :ivar dad_failed: duplicate address detection failed for it.
    :ivar mtu: the interface's MTU.
    """

    name: str
    ipv6: bool
    address: str | None = None
    tentative: bool = False
    dad_failed: bool = False
    mtu: int | None = None

    @property
    def usable(self) -> bool:
        return self.address is not None

    @property
    def reason(self) -> str:
        """``Available``, ``IPv6Disabled``, ``DadFailed``, ``Tentative`` or ``NoLinkLocal``."""
        if self.address is not None:
            return "Available"
        if not self.ipv6:
            return "IPv6Disabled"
        if self.dad_failed:
            return "DadFailed"
        if self.tentative:
            return "Tentative"
        return "NoLinkLocal"

    @property
    def message(self) -> str:
        name = self.name
        if self.address is not None:
            return f"{self.address} on {name}"
        if not self.ipv6:
            if self.mtu is not None and self.mtu < IPV6_MIN_MTU:
                return (
                    f"IPv6 is off on {name}: its MTU {self.mtu} is below {IPV6_MIN_MTU}, "
                    "the IPv6 minimum"
                )
            return f"IPv6 is disabled on {name} (disable_ipv6)"
        if self.dad_failed:
            return f"the link-local address of {name} is a duplicate (DAD failed)"
        if self.tentative:
            return f"the link-local address of {name} is tentative (DAD in progress)"
        return f"{name} has no IPv6 link-local address"


@dataclass(frozen=True)
class LinkChange:
    """A link event seen by :class:`LinkWatcher`."""

    name: str
    state: LinkState


def _code(exc: BaseException) -> int:
    return int(getattr(exc, "code", 0) or 0)


def _state_from_msg(msg: Any) -> LinkState:
    flags = int(msg["flags"])
    return LinkState(
        name=str(msg.get("IFLA_IFNAME")),
        index=int(msg["index"]),
        exists=msg["event"] != "RTM_DELLINK",
        admin_up=bool(flags & IFF_UP),
        carrier=bool(flags & IFF_LOWER_UP) and msg.get("IFLA_CARRIER", 1) != 0,
        operstate=str(msg.get("IFLA_OPERSTATE") or "UNKNOWN"),
        mtu=msg.get("IFLA_MTU"),
        mac=msg.get("IFLA_ADDRESS"),
    )


class NetApplier:
    """Add and remove addresses and routes; every call is idempotent."""

    def __init__(self, netns: str | None = None) -> None:
        from routerd.leanimport import iproute_class  # not the whole pyroute2 package

        IPRoute = iproute_class()
        self._ipr = IPRoute(netns=netns) if netns else IPRoute()

    def close(self) -> None:
        self._ipr.close()

    def _index(self, ifname: str) -> int:
        found = self._ipr.link_lookup(ifname=ifname)
        if not found:
            raise ApplyError(errno.ENODEV, f"interface {ifname} does not exist")
        return int(found[0])

    def link(self, ifname: str) -> LinkState:
        found = self._ipr.link_lookup(ifname=ifname)
        if not found:
            return LinkState(ifname, None, False)
        msgs = self._ipr.get_links(found[0])
        return _state_from_msg(msgs[0]) if msgs else LinkState(ifname, None, False)

    def add_address(
        self,
        ifname: str,
        cidr: str,
        *,
        valid: float | None = None,
        preferred: float | None = None,
        broadcast: str | None = None,
        peer: str | None = None,
    ) -> None:
        """Add or refresh ``cidr`` on ``ifname`` with lifetimes in seconds.

        ``peer`` makes it a point-to-point address (``ip addr add LOCAL peer
        PEER``, as on a PPP link): ``cidr`` is then the local address and
        its prefix length applies to the peer.
        """
        iface = ipaddress.ip_interface(cidr)
        kwargs: dict[str, Any] = {
            "index": self._index(ifname),
            "address": str(iface.ip),
            "prefixlen": iface.network.prefixlen,
        }
        if peer is not None:
            kwargs.update(local=str(iface.ip), address=peer)
        if valid is not None:
            kwargs["valid_lft"] = max(0, int(valid))
            kwargs["preferred_lft"] = max(
                0, min(int(preferred if preferred is not None else valid), int(valid))
            )
        if broadcast and iface.version == 4:
            kwargs["broadcast"] = broadcast
        self._call(f"add address {cidr} on {ifname}", self._ipr.addr, "replace", **kwargs)

    def remove_address(self, ifname: str, cidr: str, *, peer: str | None = None) -> bool:
        """Remove ``cidr`` (with its ``peer``, if it was added with one);
        False when it (or the interface) was already gone."""
        found = self._ipr.link_lookup(ifname=ifname)
        if not found:
            return False
        iface = ipaddress.ip_interface(cidr)
        extra = {"local": str(iface.ip), "address": peer} if peer is not None else {}
        try:
            self._ipr.addr(
                "del",
                index=found[0],
                **{"address": str(iface.ip), "prefixlen": iface.network.prefixlen, **extra},
            )
        except Exception as exc:
            if _code(exc) in (errno.EADDRNOTAVAIL, errno.ENOENT, errno.ENODEV):
                return False
            raise ApplyError(
                _code(exc) or errno.EIO, f"remove address {cidr} from {ifname}: {exc}"
            ) from None
        return True

    def addresses(self, ifname: str, family: int = socket.AF_INET) -> list[str]:
        found = self._ipr.link_lookup(ifname=ifname)
        if not found:
            return []
        return [
            f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in self._ipr.get_addr(index=found[0], family=family)
        ]

    def _route_args(
        self,
        dst: str,
        gateway: str | None,
        ifname: str | None,
        metric: int | None,
        type_: str,
        table: int | None,
    ) -> dict[str, Any]:
        net = ipaddress.ip_network(dst, strict=False)
        kwargs: dict[str, Any] = {
            "dst": str(net),
            "family": socket.AF_INET if net.version == 4 else socket.AF_INET6,
        }
        if type_ != "unicast":
            kwargs["type"] = type_
        if gateway:
            kwargs["gateway"] = gateway
        if ifname:
            kwargs["oif"] = self._index(ifname)
        if metric is not None:
            kwargs["priority"] = metric
        if table is not None:
            kwargs["table"] = table
        return kwargs

    def replace_route(
        self,
        dst: str,
        *,
        gateway: str | None = None,
        ifname: str | None = None,
        metric: int | None = None,
        type_: str = "unicast",
        table: int | None = None,
        proto: int = RTPROT_DHCP,
    ) -> None:
        """Install or update a route (``ip route replace``)."""
        kwargs = self._route_args(dst, gateway, ifname, metric, type_, table)
        via = f" via {gateway}" if gateway else ""
        self._call(f"install route {dst}{via}", self._ipr.route, "replace", proto=proto, **kwargs)

    def remove_route(
        self,
        dst: str,
        *,
        gateway: str | None = None,
        ifname: str | None = None,
        metric: int | None = None,
        type_: str = "unicast",
        table: int | None = None,
    ) -> bool:
        """Remove a route; False when it was already gone."""
        try:
            kwargs = self._route_args(dst, gateway, ifname, metric, type_, table)
        except ApplyError:
            return False  # the interface is gone, and its routes with it
        try:
            self._ipr.route("del", **kwargs)
        except Exception as exc:
            if _code(exc) in (errno.ESRCH, errno.ENOENT, errno.ENODEV):
                return False
            raise ApplyError(_code(exc) or errno.EIO, f"remove route {dst}: {exc}") from None
        return True

    def routes(
        self, family: int = socket.AF_INET, proto: int | None = RTPROT_DHCP
    ) -> list[dict[str, Any]]:
        """Routes of the main table (only ``proto`` ones unless None)."""
        out = []
        for r in self._ipr.get_routes(family=family, table=254):
            if proto is not None and r["proto"] != proto:
                continue
            dst = r.get("RTA_DST")
            out.append(
                {
                    "dst": f"{dst}/{r['dst_len']}"
                    if dst
                    else ("default" if r["dst_len"] == 0 else ""),
                    "gateway": r.get("RTA_GATEWAY"),
                    "metric": r.get("RTA_PRIORITY"),
                    "type": r["type"],
                }
            )
        return out

    def ipv6_enabled(self, ifname: str) -> bool:
        """True when IPv6 is on for ``ifname`` (or would be, see below).

        Read from the link's ``IFLA_AF_SPEC`` (``disable_ipv6`` of its IPv6
        device), so it is right for the namespace of this applier. An
        interface without an IPv6 device (its MTU is already below 1280)
        gets IPv6 back when the MTU is raised if the namespace default
        (``conf/default/disable_ipv6``, read from the calling process's
        namespace) says so.
        """
        index = self._index(ifname)
        msgs = self._ipr.get_links(index)
        conf = msgs[0].get(("IFLA_AF_SPEC", "AF_INET6", "IFLA_INET6_CONF")) if msgs else None
        if isinstance(conf, dict) and "disable_ipv6" in conf:
            return int(conf["disable_ipv6"]) == 0
        try:
            with open(_PROC_IPV6_DEFAULT) as f:
                return f.read().strip() == "0"
        except OSError:
            return False  # no IPv6 in this kernel

    def link_local(self, ifname: str) -> LinkLocal:
        """The interface's link-local address state (:class:`LinkLocal`)."""
        found = self._ipr.link_lookup(ifname=ifname)
        if not found:
            return LinkLocal(ifname, ipv6=False)
        msgs = self._ipr.get_links(found[0])
        mtu = msgs[0].get("IFLA_MTU") if msgs else None
        conf = msgs[0].get(("IFLA_AF_SPEC", "AF_INET6", "IFLA_INET6_CONF")) if msgs else None
        if not isinstance(conf, dict) or int(conf.get("disable_ipv6", 1)) != 0:
            return LinkLocal(ifname, ipv6=False, mtu=mtu)
        tentative = dad_failed = False
        for addr in self._ipr.get_addr(index=found[0], family=socket.AF_INET6):
            ip = ipaddress.IPv6Address(str(addr.get("IFA_ADDRESS")))
            if not ip.is_link_local:
                continue
            flags = int(addr.get("IFA_FLAGS") or addr["flags"])
            if flags & IFA_F_DADFAILED:
                dad_failed = True
            elif flags & IFA_F_TENTATIVE and not flags & IFA_F_OPTIMISTIC:
                tentative = True
            else:
                # An optimistic address may be used as a source (RFC 4429 §3.1).
                return LinkLocal(ifname, ipv6=True, address=str(ip), mtu=mtu)
        return LinkLocal(ifname, ipv6=True, tentative=tentative, dad_failed=dad_failed, mtu=mtu)

    def set_mtu(self, ifname: str, mtu: int, *, ipv6_floor: bool = True) -> int:
        """Set the MTU of ``ifname``; returns the MTU set.

        With ``ipv6_floor`` (the default), an MTU below 1280 on an interface
        with IPv6 enabled is raised to 1280: Linux would otherwise remove
        IPv6 from the interface, and with it the link-local address every
        IPv6 client on it (DHCPv6, RA) needs. systemd-networkd does the same.
        """
        if ipv6_floor and mtu < IPV6_MIN_MTU and self.ipv6_enabled(ifname):
            mtu = IPV6_MIN_MTU
        self._call(
            f"set mtu {mtu} on {ifname}", self._ipr.link, "set", index=self._index(ifname), mtu=mtu
        )
        return mtu

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except ApplyError:
            raise
        except Exception as exc:
            code = _code(exc) or errno.EIO
            raise ApplyError(code, f"{what}: {getattr(exc, 'args', [None, exc])[-1]}") from None


RTMGRP_LINK = 0x1
RTMGRP_IPV6_IFADDR = 0x100
RTM_NEWLINK, RTM_DELLINK = 16, 17
RTM_NEWADDR, RTM_DELADDR = 20, 21
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_OPERSTATE, IFLA_CARRIER = 1, 3, 4, 16, 33
_OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")


def count_address_messages(data: bytes) -> int:
    """How many RTM_NEWADDR/RTM_DELADDR messages one netlink datagram holds."""
    count = 0
    off = 0
    while off + 16 <= len(data):
        length, mtype = struct.unpack_from("=IH", data, off)
        if length < 16 or off + length > len(data):
            break
        if mtype in (RTM_NEWADDR, RTM_DELADDR):
            count += 1
        off += (length + 3) & ~3
    return count


def parse_link_messages(data: bytes) -> list[LinkState]:
    """Decode RTM_NEWLINK/RTM_DELLINK messages of one netlink datagram.

    Malformed parts end the parse; nothing raises.
    """
    out: list[LinkState] = []
    off = 0
    while off + 16 <= len(data):
        length, mtype = struct.unpack_from("=IH", data, off)
        if length < 16 or off + length > len(data):
            break
        if mtype in (RTM_NEWLINK, RTM_DELLINK) and length >= 32:
            _fam, _pad, _type, index, flags, _change = struct.unpack_from("=BBHiII", data, off + 16)
            attrs: dict[int, bytes] = {}
            pos, end = off + 32, off + length
            while pos + 4 <= end:
                alen, atype = struct.unpack_from("=HH", data, pos)
                if alen < 4 or pos + alen > end:
                    break
                attrs[atype & 0x3FFF] = data[pos + 4 : pos + alen]
                pos += (alen + 3) & ~3
            name = attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode("utf-8", "replace")
            oper = attrs.get(IFLA_OPERSTATE, b"")
            carrier = attrs.get(IFLA_CARRIER)
            mtu = attrs.get(IFLA_MTU)
            mac = attrs.get(IFLA_ADDRESS)
            out.append(
                LinkState(
                    name=name,
                    index=index,
                    exists=mtype == RTM_NEWLINK,
                    admin_up=bool(flags & IFF_UP),
                    carrier=bool(flags & IFF_LOWER_UP)
                    and (carrier is None or carrier[:1] != b"\0"),
                    operstate=_OPERSTATES[oper[0]]
                    if oper and oper[0] < len(_OPERSTATES)
                    else "UNKNOWN",
                    mtu=struct.unpack("=I", mtu)[0] if mtu and len(mtu) == 4 else None,
                    mac=":".join(f"{b:02x}" for b in mac) if mac else None,
                )
            )
        off += (length + 3) & ~3
    return out


class LinkWatcher:
    """Link events (carrier, admin state, removal) for some interfaces.

    A plain ``NETLINK_ROUTE`` socket bound to ``RTMGRP_LINK``: pyroute2
    0.9.7's monitor did not deliver the RTM_NEWLINK of a carrier loss caused
    by the far end of a veth going down (measured), which is exactly the
    event a WAN client must see. ``fileno()`` goes to ``loop.add_reader``;
    on readable, :meth:`drain` returns the changes of watched links. Watches
    the network namespace of the calling process.

    With ``ipv6_addresses``, IPv6 address changes (a link-local address
    added, done with DAD, removed) are counted in :attr:`address_events`
    (any interface; callers re-read what they need, e.g.
    :meth:`NetApplier.link_local`).
    """

    def __init__(self, ifnames: set[str], *, ipv6_addresses: bool = False) -> None:
        self.ifnames = set(ifnames)
        self._sock = socket.socket(
            socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
        )
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        groups = RTMGRP_LINK | (RTMGRP_IPV6_IFADDR if ipv6_addresses else 0)
        self._sock.bind((0, groups))
        self._sock.setblocking(False)
        self.overruns = 0
        self.address_events = 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def drain(self) -> list[LinkChange]:
        changes: list[LinkChange] = []
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except BlockingIOError:
                return changes
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.overruns += 1  # events lost: callers re-read link state
                    continue
                return changes
            self.address_events += count_address_messages(data)
            for state in parse_link_messages(data):
                if state.name in self.ifnames:
                    changes.append(LinkChange(state.name, state))

    def close(self) -> None:
        self._sock.close()
