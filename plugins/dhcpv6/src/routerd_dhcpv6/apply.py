"""What a delegated prefix puts on the host, as data: addresses and routes.

:func:`desired_items` turns a binding and the spec into the set of
:class:`Item` that should exist; the engine adds what is missing (refreshing
lifetimes) and removes what is no longer desired. The items applied are kept
in ``state.json`` so that a daemon restarted after a crash can remove what an
earlier run left behind.

Per delegated prefix ``P`` (as systemd-networkd does):

- for each downstream ``D``: the subnet number ``D.subnetId`` of length
  ``D.prefixLength`` inside ``P``, and the address ``subnet + addressSuffix``
  on ``D.interface`` with the prefix's remaining preferred/valid lifetimes
  (``assignAddress: false``: a route for the subnet on the interface instead);
- an ``unreachable`` route for ``P`` itself, so traffic to the unassigned
  rest of the prefix is answered with ICMPv6 unreachable instead of being
  sent back upstream (a routing loop with the ISP's route to us).
"""

from __future__ import annotations

from dataclasses import dataclass
import ipaddress
import math
from typing import Any
from typing import Literal

from routerd_dhcpv6.core import Binding
from routerd_dhcpv6.spec import DHCPv6PrefixDelegationSpec
from routerd_dhcpv6.spec import DownstreamSpec

__all__ = ["Assignment", "Item", "desired_items", "subnet_of"]

ItemKind = Literal["address", "route", "unreachable"]


@dataclass(frozen=True)
class Item:
    """One thing on the host: an address on an interface, or a route.

    :ivar kind: ``address`` (``cidr`` on ``interface``), ``route`` (``cidr``
        routed to ``interface``) or ``unreachable`` (route type unreachable).
    :ivar prefix: the delegated prefix this item comes from.
    """

    kind: ItemKind
    interface: str | None
    cidr: str
    prefix: str

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.kind, self.interface, self.cidr)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "interface": self.interface,
            "cidr": self.cidr,
            "prefix": self.prefix,
        }

    @classmethod
    def from_json(cls, data: Any) -> Item | None:
        """Parse a saved item; None when it is not one (a hand-edited file)."""
        if not isinstance(data, dict):
            return None
        kind, iface, cidr, prefix = (
            data.get("kind"),
            data.get("interface"),
            data.get("cidr"),
            data.get("prefix"),
        )
        if kind not in ("address", "route", "unreachable") or not isinstance(cidr, str):
            return None
        if iface is not None and not isinstance(iface, str):
            return None
        try:
            ipaddress.IPv6Interface(cidr)
        except ValueError:
            return None
        return cls(kind, iface, cidr, str(prefix or ""))

    def describe(self) -> str:
        if self.kind == "address":
            return f"address {self.cidr} on {self.interface}"
        if self.kind == "route":
            return f"route {self.cidr} dev {self.interface}"
        return f"unreachable route {self.cidr}"


@dataclass(frozen=True)
class Assignment:
    """One downstream subnet of one delegated prefix (for ``observed``)."""

    interface: str
    prefix: str
    subnet: str | None
    address: str | None
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "interface": self.interface,
            "prefix": self.prefix,
            "subnet": self.subnet,
            "address": self.address,
        }


@dataclass(frozen=True)
class Lifetimes:
    """Remaining lifetimes in seconds (None: infinite)."""

    valid: float | None
    preferred: float | None


def subnet_of(prefix: str, d: DownstreamSpec) -> ipaddress.IPv6Network:
    """Subnet number ``d.subnet_id`` of length ``d.prefix_length`` inside ``prefix``.

    :raises ValueError: it does not fit (the message says why).
    """
    net = ipaddress.IPv6Network(prefix)
    if d.prefix_length < net.prefixlen:
        raise ValueError(
            f"a /{d.prefix_length} subnet cannot be cut from the delegated /{net.prefixlen}"
        )
    bits = d.prefix_length - net.prefixlen
    if d.subnet_id >= 1 << bits:
        raise ValueError(
            f"subnetId {d.subnet_id} does not fit: {prefix} has {1 << bits} "
            f"subnets of /{d.prefix_length}"
        )
    base = int(net.network_address) + (d.subnet_id << (128 - d.prefix_length))
    return ipaddress.IPv6Network((base, d.prefix_length))


def _remaining(until: float, now: float) -> float | None:
    return None if math.isinf(until) else max(0.0, until - now)


def desired_items(
    binding: Binding | None, spec: DHCPv6PrefixDelegationSpec, now: float
) -> tuple[dict[tuple[str, str | None, str], tuple[Item, Lifetimes]], list[Assignment]]:
    """What should be on the host for ``binding`` (times on the binding's clock).

    Returns the items (with remaining lifetimes) and one :class:`Assignment`
    per downstream and prefix; an assignment that cannot be made carries its
    ``problem`` and contributes no item.
    """
    items: dict[tuple[str, str | None, str], tuple[Item, Lifetimes]] = {}
    assignments: list[Assignment] = []
    if binding is None or not spec.apply_prefixes:
        return items, assignments
    for p in binding.prefixes:
        if p.valid_until <= now:
            continue
        life = Lifetimes(_remaining(p.valid_until, now), _remaining(p.preferred_until, now))
        if life.valid is not None and life.valid < 1.0:
            continue  # about to expire: do not add what the kernel drops at once
        if spec.unreachable_route:
            item = Item("unreachable", None, p.prefix, p.prefix)
            items[item.key] = (item, life)
        for d in spec.downstream:
            try:
                subnet = subnet_of(p.prefix, d)
            except ValueError as exc:
                assignments.append(Assignment(d.interface, p.prefix, None, None, str(exc)))
                continue
            if d.assign_address:
                addr = subnet.network_address + d.suffix_int()
                item = Item("address", d.interface, f"{addr}/{d.prefix_length}", p.prefix)
                address: str | None = str(addr)
            else:
                item = Item("route", d.interface, str(subnet), p.prefix)
                address = None
            items[item.key] = (item, life)
            assignments.append(Assignment(d.interface, p.prefix, str(subnet), address))
    return items, assignments
