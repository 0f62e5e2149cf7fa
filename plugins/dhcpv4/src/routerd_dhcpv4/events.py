"""Events the DHCPv4 protocol core emits (drained with ``DhcpClientCore.events()``).

One dataclass per event, each with a ``topic`` class attribute (style rule 9)
and :meth:`CoreEvent.attributes` for serialisation.  Every event that ends a
lease carries it in ``lease``: the glue removes that address and its routes.

Lease events: :class:`LeaseBound`, :class:`LeaseRenewed`,
:class:`LeaseRebound`, :class:`LeaseExpired`, :class:`Nak`,
:class:`Released`, :class:`Declined`, :class:`LeaseAbandoned`.
Phase event: :class:`StateChanged`.  Warning: :class:`OptionRejected` (a
value of an ACK left out of the lease).  Debug events: :class:`PacketSent`
(``attempt > 1`` is a retransmission), :class:`PacketReceived`,
:class:`PacketDropped`.
"""

from __future__ import annotations

from collections.abc import Callable
import dataclasses
from dataclasses import dataclass
from typing import Any
from typing import ClassVar

from routerd_dhcpv4.lease import Lease

__all__ = [
    "CoreEvent",
    "Declined",
    "LeaseAbandoned",
    "LeaseBound",
    "LeaseExpired",
    "LeaseRebound",
    "LeaseRenewed",
    "Nak",
    "OptionRejected",
    "PacketDropped",
    "PacketReceived",
    "PacketSent",
    "Released",
    "StateChanged",
]

_PREFIX = "routerd.dhcpv4.client."


def _identity(value: float) -> float:
    return value


@dataclass(frozen=True)
class CoreEvent:
    """Base class of the core's events."""

    topic: ClassVar[str] = _PREFIX + "event"

    def attributes(self, mono_to_wall: Callable[[float], float] = _identity) -> dict[str, Any]:
        """JSON-ready attributes; leases use :meth:`Lease.to_json`."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Lease):
                value = value.to_json(mono_to_wall)
            out[f.name] = value
        return out


@dataclass(frozen=True)
class StateChanged(CoreEvent):
    """Topic: routerd.dhcpv4.client.state.changed

    :ivar old: previous state name (RFC 2131 spelling, e.g. ``INIT-REBOOT``).
    :ivar new: new state name.
    :ivar reason: why (``"offer"``, ``"t1"``, ``"nak"``, ``"link_down"`` ...).
    """

    topic: ClassVar[str] = _PREFIX + "state.changed"
    old: str
    new: str
    reason: str


@dataclass(frozen=True)
class LeaseBound(CoreEvent):
    """Topic: routerd.dhcpv4.client.lease.bound

    A lease was acquired (SELECTING/REQUESTING/REBOOTING), or a renewal
    moved the client to another address.  Apply it.

    :ivar lease: the new lease.
    :ivar previous: the lease it replaces (INIT-REBOOT, address change), or None.
    """

    topic: ClassVar[str] = _PREFIX + "lease.bound"
    lease: Lease
    previous: Lease | None = None


@dataclass(frozen=True)
class LeaseRenewed(CoreEvent):
    """Topic: routerd.dhcpv4.client.lease.renewed

    The server that granted the lease extended it (RENEWING, RFC 2131 §4.4.5).
    Options may have changed: re-apply.

    :ivar lease: the extended lease.
    :ivar previous: the lease before the renewal.
    """

    topic: ClassVar[str] = _PREFIX + "lease.renewed"
    lease: Lease
    previous: Lease | None = None


@dataclass(frozen=True)
class LeaseRebound(CoreEvent):
    """Topic: routerd.dhcpv4.client.lease.rebound

    Any server extended the lease in REBINDING (RFC 2131 §4.4.5).

    :ivar lease: the extended lease.
    :ivar previous: the lease before.
    """

    topic: ClassVar[str] = _PREFIX + "lease.rebound"
    lease: Lease
    previous: Lease | None = None


@dataclass(frozen=True)
class LeaseExpired(CoreEvent):
    """Topic: routerd.dhcpv4.client.lease.expired

    The lease ran out (RFC 2131 §4.4.5): remove the address now.

    :ivar lease: the expired lease.
    """

    topic: ClassVar[str] = _PREFIX + "lease.expired"
    lease: Lease


@dataclass(frozen=True)
class Nak(CoreEvent):
    """Topic: routerd.dhcpv4.client.lease.nak

    A server refused (RFC 2131 §3.1 step 5, §3.2 step 3, §4.4.5): remove the
    address if ``lease`` is set; the client restarts discovery.

    :ivar lease: the lease the client held or asked for, or None.
    :ivar message: option 56 text from the server, if any.
    :ivar server_id: option 54 of the NAK, if any.
    """

    topic: ClassVar[str] = _PREFIX + "lease.nak"
    lease: Lease | None
    message: str | None = None
    server_id: str | None = None


@dataclass(frozen=True)
class Released(CoreEvent):
    """Topic: routerd.dhcpv4.client.lease.released

    A DHCPRELEASE was sent (RFC 2131 §4.4.6): remove the address.

    :ivar lease: the released lease.
    """

    topic: ClassVar[str] = _PREFIX + "lease.released"
    lease: Lease


@dataclass(frozen=True)
class Declined(CoreEvent):
    """Topic: routerd.dhcpv4.client.lease.declined

    The address was in use; a DHCPDECLINE was sent (RFC 2131 §3.1 step 5).

    :ivar address: the declined address.
    :ivar lease: the lease that held it.
    """

    topic: ClassVar[str] = _PREFIX + "lease.declined"
    address: str
    lease: Lease | None = None


@dataclass(frozen=True)
class LeaseAbandoned(CoreEvent):
    """Topic: routerd.dhcpv4.client.lease.abandoned

    INIT-REBOOT got no answer (RFC 2131 §3.2 step 3 lets the client keep the
    lease; this client, like dhcpcd and networkd, rediscovers instead).

    :ivar lease: the lease given up.
    :ivar reason: ``"reboot_timeout"``.
    """

    topic: ClassVar[str] = _PREFIX + "lease.abandoned"
    lease: Lease
    reason: str


@dataclass(frozen=True)
class OptionRejected(CoreEvent):
    """Topic: routerd.dhcpv4.client.option.rejected

    An ACK carried values of one option that cannot be used (a subnet mask
    of 0.0.0.0, a loopback router ...); the lease was built without them
    (see :meth:`routerd_dhcpv4.lease.Lease.from_ack`).  One event per option
    per ACK.

    :ivar option: the option code.
    :ivar name: the option's name in ``observed`` (``routers`` ...).
    :ivar values: each value left out, as text.
    :ivar reasons: why, one per value (``loopback``, ``zero_mask`` ...).
    :ivar server_id: the ACK's server.
    :ivar address: the leased address (CIDR).
    """

    topic: ClassVar[str] = _PREFIX + "option.rejected"
    option: int
    name: str
    values: tuple[str, ...]
    reasons: tuple[str, ...]
    server_id: str
    address: str


@dataclass(frozen=True)
class PacketSent(CoreEvent):
    """Topic: routerd.dhcpv4.client.packet.sent (debug)

    :ivar message_type: ``"DISCOVER"``, ``"REQUEST"`` ...
    :ivar xid: transaction id.
    :ivar attempt: 1 for the first transmission, more for retransmissions.
    :ivar broadcast: sent to 255.255.255.255.
    :ivar dest: unicast destination, or None.
    """

    topic: ClassVar[str] = _PREFIX + "packet.sent"
    message_type: str
    xid: int
    attempt: int
    broadcast: bool
    dest: str | None


@dataclass(frozen=True)
class PacketReceived(CoreEvent):
    """Topic: routerd.dhcpv4.client.packet.received (debug)

    :ivar message_type: ``"OFFER"``, ``"ACK"`` ...
    :ivar xid: transaction id.
    :ivar server_id: option 54, if any.
    """

    topic: ClassVar[str] = _PREFIX + "packet.received"
    message_type: str
    xid: int
    server_id: str | None


@dataclass(frozen=True)
class PacketDropped(CoreEvent):
    """Topic: routerd.dhcpv4.client.packet.dropped (debug)

    :ivar reason: the counter key under ``counters["dropped"]``.
    :ivar message_type: when the packet decoded, else None.
    :ivar xid: when the packet decoded, else None.
    """

    topic: ClassVar[str] = _PREFIX + "packet.dropped"
    reason: str
    message_type: str | None = None
    xid: int | None = None
