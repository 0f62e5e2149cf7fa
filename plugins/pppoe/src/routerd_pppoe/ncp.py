"""Network control protocols: IPCP (RFC 1332, RFC 1877) and IPv6CP (RFC 5072).

IPCP, what we request: IP-Address 0.0.0.0 (the AC Naks it with ours, RFC
1332 §3.3), and with ``want_dns`` Primary- and Secondary-DNS-Address 0.0.0.0
(RFC 1877 §1.1, §1.3). A Nak gives the values; a Reject of a DNS option (the
secondary is often rejected) stops requesting it; a Nak of a DNS option with
0.0.0.0 means the AC has none and is treated as a Reject. What we accept:
the peer's own IP-Address when it is not 0.0.0.0 (we have no address to give
it: 0.0.0.0 is rejected, as pppd does without ``hisaddr``); everything else
(VJ compression, the old IP-Addresses, DNS/NBNS options) is rejected.

IPv6CP: an Interface-Identifier (RFC 5072 §4.1) both ways. Ours starts as
the EUI-64-style identifier of the Ethernet MAC (stable across sessions,
unlike a random one); a Nak with a suggestion is taken. The peer's must not
be zero nor equal to ours: either is Nak'd with a fresh random value.
"""

from __future__ import annotations

import ipaddress

from routerd_pppoe.fsm import OptionPolicy
from routerd_pppoe.fsm import Verdict
from routerd_pppoe.pppcodec import Code
from routerd_pppoe.pppcodec import IpcpOption
from routerd_pppoe.pppcodec import Ipv6cpOption
from routerd_pppoe.pppcodec import Option
from routerd_pppoe.pppcodec import ip_value
from routerd_pppoe.randomness import RandomLike

__all__ = ["IpcpPolicy", "Ipv6cpPolicy", "interface_id_from_mac", "link_local"]

_ZERO4 = bytes(4)
_DNS = (IpcpOption.PRIMARY_DNS, IpcpOption.SECONDARY_DNS)


def _usable_unicast(addr: str) -> bool:
    ip = ipaddress.IPv4Address(addr)
    return not (ip.is_unspecified or ip.is_multicast or ip.is_loopback or addr == "255.255.255.255")


class IpcpPolicy(OptionPolicy):
    """:param want_dns: ask for DNS servers (RFC 1877)."""

    def __init__(self, want_dns: bool) -> None:
        self.want_dns = want_dns
        self.reset()

    def reset(self) -> None:
        self.values: dict[int, bytes] = {IpcpOption.IP_ADDRESS: _ZERO4}
        if self.want_dns:
            for option in _DNS:
                self.values[option] = _ZERO4
        self.rejected_options: set[int] = set()
        self.local: str | None = None
        self.dns: list[str] = []
        self.peer: str | None = None

    def request(self) -> list[Option]:
        return [(k, v) for k, v in self.values.items() if k not in self.rejected_options]

    def check(self, options: list[Option]) -> Verdict:
        rejects: list[Option] = []
        for kind, value in options:
            if kind == IpcpOption.IP_ADDRESS:
                addr = ip_value(value)
                if addr is None or not _usable_unicast(addr):
                    rejects.append((kind, value))
            else:
                rejects.append((kind, value))
        if rejects:
            return Verdict(Code.CONFIGURE_REJECT, tuple(rejects))
        return Verdict(Code.CONFIGURE_ACK, tuple(options))

    def peer_acked(self, options: list[Option]) -> None:
        self.peer = None
        for kind, value in options:
            if kind == IpcpOption.IP_ADDRESS:
                self.peer = ip_value(value)

    def nakked(self, options: list[Option]) -> None:
        for kind, value in options:
            if kind not in self.values or kind in self.rejected_options:
                continue  # RFC 1661 §5.3: hints for options we did not send
            addr = ip_value(value)
            if addr is None:
                continue
            if kind in _DNS and addr == "0.0.0.0":
                self.rejected_options.add(kind)  # "I have none": stop asking
            else:
                self.values[kind] = value

    def rejected(self, options: list[Option]) -> None:
        for kind, _value in options:
            self.rejected_options.add(kind)

    def acked(self, options: list[Option]) -> None:
        self.local = None
        dns: dict[int, str] = {}
        for kind, value in options:
            addr = ip_value(value)
            if addr is None:
                continue
            if kind == IpcpOption.IP_ADDRESS:
                self.local = addr if _usable_unicast(addr) else None
            elif kind in _DNS and _usable_unicast(addr):
                dns[kind] = addr
        self.dns = [dns[k] for k in _DNS if k in dns]


def interface_id_from_mac(mac: bytes) -> bytes:
    """Modified EUI-64 (RFC 4291 appendix A) of a 48-bit MAC."""
    return bytes((mac[0] ^ 0x02,)) + mac[1:3] + b"\xff\xfe" + mac[3:6]


def link_local(interface_id: bytes) -> str:
    return str(ipaddress.IPv6Address(b"\xfe\x80" + bytes(6) + interface_id))


class Ipv6cpPolicy(OptionPolicy):
    def __init__(self, mac: bytes, rng: RandomLike) -> None:
        self.rng = rng
        self.initial = interface_id_from_mac(mac)
        if not any(self.initial):
            self.initial = self._random_id(b"")
        self.reset()

    def _random_id(self, avoid: bytes) -> bytes:
        while True:
            value = self.rng.getrandbits(64).to_bytes(8, "big")
            if any(value) and value != avoid:
                return value

    def reset(self) -> None:
        self.local_id: bytes = self.initial
        self.peer_id: bytes | None = None
        self.id_rejected = False

    def request(self) -> list[Option]:
        if self.id_rejected:
            return []
        return [(Ipv6cpOption.INTERFACE_IDENTIFIER, self.local_id)]

    def check(self, options: list[Option]) -> Verdict:
        naks: list[Option] = []
        rejects: list[Option] = []
        for kind, value in options:
            if kind == Ipv6cpOption.INTERFACE_IDENTIFIER and len(value) == 8:
                if not any(value) or value == self.local_id:
                    # RFC 5072 §4.1: zero, or the same as ours: suggest another.
                    naks.append((kind, self._random_id(self.local_id)))
            else:
                rejects.append((kind, value))
        if rejects:
            return Verdict(Code.CONFIGURE_REJECT, tuple(rejects))
        if naks:
            return Verdict(Code.CONFIGURE_NAK, tuple(naks))
        return Verdict(Code.CONFIGURE_ACK, tuple(options))

    def peer_acked(self, options: list[Option]) -> None:
        for kind, value in options:
            if kind == Ipv6cpOption.INTERFACE_IDENTIFIER:
                self.peer_id = value

    def nakked(self, options: list[Option]) -> None:
        for kind, value in options:
            if kind == Ipv6cpOption.INTERFACE_IDENTIFIER and len(value) == 8 and any(value):
                self.local_id = value

    def rejected(self, options: list[Option]) -> None:
        if any(k == Ipv6cpOption.INTERFACE_IDENTIFIER for k, _ in options):
            self.id_rejected = True
