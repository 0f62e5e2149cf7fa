"""Sans-I/O DHCPv6 prefix-delegation client (RFC 9915; RFC 3633 PD is inside it).

:class:`PdClient` owns no socket, clock or randomness. The daemon glue feeds it
and drains it::

    client = PdClient(config, rng=random.SystemRandom())
    client.start(now, saved_binding)
    loop:
        for msg in client.packets_to_send():      # to ff02::1:2 port 547
            sock.sendto(codec.encode(msg), (ALL_DHCP_RELAY_AGENTS_AND_SERVERS, 547))
        for ev in client.events(): ...            # PrefixBound, PrefixRenewed, ...
        wait until client.next_deadline() or a datagram
        client.receive_datagram(data, now, source=addr) / client.on_timer(now)

``now`` is always float seconds on the caller's monotonic clock; every
absolute time in :class:`Binding` is on that clock too (``to_json`` /
``from_json`` convert to wall-clock time for persistence).

States (:class:`State`; RFC 9915 names where the RFC has one):

- ``INIT``: not soliciting yet. Before :meth:`PdClient.start`, while waiting
  out the random first-Solicit delay (§18.2.1) or the back-off after a failed
  attempt (a deadline is set), or idle after :meth:`PdClient.release` (no
  deadline; :meth:`PdClient.renew` or :meth:`PdClient.start` wakes it).
- ``SOLICIT``: Solicit sent, collecting Advertises (§18.2.1, §18.2.9).
- ``REQUEST``: Request sent to the chosen server (§18.2.2).
- ``BOUND``: prefixes held, waiting for T1.
- ``RENEW``: Renew sent, until T2 (§18.2.4).
- ``REBIND``: Rebind sent, until the leases expire (§18.2.5); also the
  verification Rebind after a restart or link change, which uses the Confirm
  retransmission parameters (§18.2.12).
- ``RELEASE``: Release sent (§18.2.7); the prefixes are already dropped.
- ``LINK_DOWN``: carrier lost. Nothing is sent; held prefixes still expire at
  their valid lifetime. :meth:`PdClient.link_up` rebinds or solicits.
- ``STOPPED``: :meth:`PdClient.stop` done; everything is ignored.

The client always sends to All_DHCP_Relay_Agents_and_Servers (RFC 9915 §18.2
removed unicast), so a message needs no destination.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
import enum
import functools
import ipaddress
import math
from typing import Any
from typing import ClassVar
from typing import Final
from typing import TypeVar
from typing import cast

from routerd_dhcpv6 import constants as c
from routerd_dhcpv6 import retransmit as rtx
from routerd_dhcpv6.codec import AftrName
from routerd_dhcpv6.codec import ClientId
from routerd_dhcpv6.codec import DecodeError
from routerd_dhcpv6.codec import DnsServers
from routerd_dhcpv6.codec import DomainList
from routerd_dhcpv6.codec import ElapsedTime
from routerd_dhcpv6.codec import IaAddress
from routerd_dhcpv6.codec import IaNa
from routerd_dhcpv6.codec import IaPd
from routerd_dhcpv6.codec import IaPrefix
from routerd_dhcpv6.codec import Message
from routerd_dhcpv6.codec import NtpServer
from routerd_dhcpv6.codec import Option
from routerd_dhcpv6.codec import OptionRequest
from routerd_dhcpv6.codec import Preference
from routerd_dhcpv6.codec import RapidCommit
from routerd_dhcpv6.codec import ServerId
from routerd_dhcpv6.codec import SntpServers
from routerd_dhcpv6.codec import SolMaxRt
from routerd_dhcpv6.codec import decode
from routerd_dhcpv6.constants import MsgType
from routerd_dhcpv6.constants import StatusCode
from routerd_dhcpv6.duid import DuidError
from routerd_dhcpv6.duid import parse_duid
from routerd_dhcpv6.retransmit import RandomSource
from routerd_dhcpv6.retransmit import Retransmission

__all__ = [
    "Binding",
    "ClientConfig",
    "CoreEvent",
    "Counters",
    "DEFAULT_ORO",
    "DelegatedPrefix",
    "LeasedAddress",
    "MessageDropped",
    "MessageReceived",
    "MessageSent",
    "PdClient",
    "PrefixBound",
    "PrefixChanged",
    "PrefixExpired",
    "PrefixRebound",
    "PrefixReleased",
    "PrefixRenewed",
    "ServerChanged",
    "State",
    "StateChanged",
    "TRANSITIONS",
]

#: Options requested by default: DNS (23), domain list (24), SNTP (31),
#: AFTR-Name (64), SOL_MAX_RT (82), INF_MAX_RT (83).
DEFAULT_ORO: Final = (23, 24, 31, 64, 82, 83)

#: Floor for T1/T2 the client computes itself, so that a prefix with a zero
#: preferred lifetime cannot make the client renew in a busy loop.
_MIN_CLIENT_T: Final = 1.0


class State(enum.Enum):
    """Client states; see the module docstring for what each means."""

    INIT = "INIT"
    SOLICIT = "SOLICIT"
    REQUEST = "REQUEST"
    BOUND = "BOUND"
    RENEW = "RENEW"
    REBIND = "REBIND"
    RELEASE = "RELEASE"
    LINK_DOWN = "LINK_DOWN"
    STOPPED = "STOPPED"


_S = State
_ANY_RUNNING: Final = frozenset({_S.LINK_DOWN, _S.STOPPED})
#: Allowed state changes. Staying in a state is always allowed.
TRANSITIONS: Final[Mapping[State, frozenset[State]]] = {
    _S.INIT: frozenset({_S.SOLICIT, _S.REBIND, _S.RELEASE}) | _ANY_RUNNING,
    _S.SOLICIT: frozenset({_S.INIT, _S.REQUEST, _S.BOUND, _S.REBIND, _S.RELEASE}) | _ANY_RUNNING,
    _S.REQUEST: frozenset({_S.INIT, _S.SOLICIT, _S.BOUND, _S.REBIND, _S.RELEASE}) | _ANY_RUNNING,
    _S.BOUND: frozenset({_S.INIT, _S.SOLICIT, _S.RENEW, _S.REBIND, _S.RELEASE}) | _ANY_RUNNING,
    _S.RENEW: frozenset({_S.INIT, _S.SOLICIT, _S.REQUEST, _S.BOUND, _S.REBIND, _S.RELEASE})
    | _ANY_RUNNING,
    _S.REBIND: frozenset({_S.INIT, _S.SOLICIT, _S.REQUEST, _S.BOUND, _S.RENEW, _S.RELEASE})
    | _ANY_RUNNING,
    _S.RELEASE: frozenset({_S.INIT, _S.STOPPED}),
    _S.LINK_DOWN: frozenset({_S.INIT, _S.REBIND, _S.STOPPED}),
    _S.STOPPED: frozenset({_S.INIT, _S.REBIND}),
}


# ---------------------------------------------------------------- config


@dataclass(frozen=True)
class ClientConfig:
    """What the client asks for.

    :ivar duid: the client's DUID bytes (generate once, persist; see
        :mod:`routerd_dhcpv6.duid`).
    :ivar iaid: the IAID of the IA_PD (and IA_NA), stable per interface.
    :ivar prefix_length: prefix-length hint sent as IAPREFIX ``::/len`` in
        Solicit (RFC 9915 §18.2.1); 0 sends no hint.
    :ivar rapid_commit: send Rapid Commit in Solicit (§18.2.1).
    :ivar request_ia_na: also ask for an address (IA_NA).
    :ivar release_on_stop: :meth:`PdClient.stop` sends a Release first.
    :ivar oro: option codes to request; 82 (SOL_MAX_RT) is always added, as
        RFC 9915 §21.24 requires.
    """

    duid: bytes
    iaid: int
    prefix_length: int = 0
    rapid_commit: bool = False
    request_ia_na: bool = False
    release_on_stop: bool = False
    oro: tuple[int, ...] = DEFAULT_ORO

    def __post_init__(self) -> None:
        try:
            parse_duid(self.duid)
        except DuidError as exc:
            raise ValueError(f"bad client DUID: {exc}") from None
        if not 0 <= self.iaid <= 0xFFFFFFFF:
            raise ValueError(f"IAID must fit in 32 bits: {self.iaid}")
        if not 0 <= self.prefix_length <= 128:
            raise ValueError(f"prefix_length must be 0..128: {self.prefix_length}")
        if any(not 0 < code <= 0xFFFF for code in self.oro):
            raise ValueError(f"bad option code in oro: {self.oro}")


# ---------------------------------------------------------------- binding


def _until(now: float, seconds: int) -> float:
    # RFC 9915 §7.7: 0xffffffff means infinity.
    return math.inf if seconds == c.INFINITY else now + seconds


def _t_seconds(value: int) -> float:
    return math.inf if value == c.INFINITY else float(value)


@dataclass(frozen=True)
class DelegatedPrefix:
    """One delegated prefix (RFC 9915 §21.22).

    :ivar prefix: ``"2001:db8:1::/60"``.
    :ivar preferred: preferred lifetime in seconds as the server gave it.
    :ivar valid: valid lifetime in seconds as the server gave it.
    :ivar acquired: when the Reply carrying it arrived (caller's clock).
    :ivar preferred_until: absolute end of the preferred lifetime (``inf``
        for an infinite lifetime).
    :ivar valid_until: absolute end of the valid lifetime (``inf`` likewise).
    """

    prefix: str
    preferred: int
    valid: int
    acquired: float
    preferred_until: float
    valid_until: float

    @classmethod
    def from_option(cls, opt: IaPrefix, now: float) -> DelegatedPrefix:
        return cls(
            prefix=str(opt.network),
            preferred=opt.preferred,
            valid=opt.valid,
            acquired=now,
            preferred_until=_until(now, opt.preferred),
            valid_until=_until(now, opt.valid),
        )


@dataclass(frozen=True)
class LeasedAddress:
    """One IA_NA address (RFC 9915 §21.6); fields as in :class:`DelegatedPrefix`."""

    address: str
    preferred: int
    valid: int
    acquired: float
    preferred_until: float
    valid_until: float

    @classmethod
    def from_option(cls, opt: IaAddress, now: float) -> LeasedAddress:
        return cls(
            address=opt.address,
            preferred=opt.preferred,
            valid=opt.valid,
            acquired=now,
            preferred_until=_until(now, opt.preferred),
            valid_until=_until(now, opt.valid),
        )


_TimeMap = Callable[[float], float]


def _time_out(value: float, conv: _TimeMap) -> float | None:
    return None if math.isinf(value) else conv(value)


def _time_in(value: object, conv: _TimeMap) -> float:
    if value is None:
        return math.inf
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"bad time value {value!r}")
    return conv(float(value))


def _lease_json(
    lease: DelegatedPrefix | LeasedAddress, key: str, value: str, conv: _TimeMap
) -> dict[str, Any]:
    return {
        key: value,
        "preferred": lease.preferred,
        "valid": lease.valid,
        "acquired": conv(lease.acquired),
        "preferredUntil": _time_out(lease.preferred_until, conv),
        "validUntil": _time_out(lease.valid_until, conv),
    }


def _str_tuple(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"binding field {key!r} must be a list of strings")
    return tuple(value)


@dataclass(frozen=True)
class Binding:
    """What the client holds from its server.

    :ivar server_duid: the server's DUID bytes.
    :ivar iaid: the IA_PD's IAID.
    :ivar t1: seconds after ``acquired`` to Renew (``inf``: never).
    :ivar t2: seconds after ``acquired`` to Rebind (``inf``: never).
    :ivar acquired: time of the last Reply that updated the binding.
    :ivar prefixes: delegated prefixes, including old ones that a server no
        longer mentions, until their own valid lifetime ends.
    :ivar server_address: where the last Reply came from (information only).
    :ivar addresses: IA_NA addresses, when requested.
    :ivar dns: DNS servers (option 23). :ivar domains: search list (24).
    :ivar sntp: SNTP servers (31). :ivar ntp: NTP servers, addresses or names (56).
    :ivar aftr_name: DS-Lite AFTR name (64).
    """

    server_duid: bytes
    iaid: int
    t1: float
    t2: float
    acquired: float
    prefixes: tuple[DelegatedPrefix, ...]
    server_address: str | None = None
    addresses: tuple[LeasedAddress, ...] = ()
    dns: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    sntp: tuple[str, ...] = ()
    ntp: tuple[str, ...] = ()
    aftr_name: str | None = None

    @property
    def renew_at(self) -> float:
        """Absolute T1."""
        return self.acquired + self.t1

    @property
    def rebind_at(self) -> float:
        """Absolute T2."""
        return self.acquired + self.t2

    @property
    def valid_until(self) -> float:
        """When the last prefix expires (``-inf`` if none)."""
        return max((p.valid_until for p in self.prefixes), default=-math.inf)

    def prefix_strings(self) -> tuple[str, ...]:
        return tuple(p.prefix for p in self.prefixes)

    def to_json(self, mono_to_wall: _TimeMap) -> dict[str, Any]:
        """A JSON-ready dict with absolute times as wall-clock epoch seconds.

        :param mono_to_wall: converts a time on the caller's monotonic clock to
            wall-clock seconds since the epoch. Infinite times become ``null``.
        """
        conv = mono_to_wall
        return {
            "serverDuid": self.server_duid.hex(),
            "serverAddress": self.server_address,
            "iaid": self.iaid,
            "t1": None if math.isinf(self.t1) else self.t1,
            "t2": None if math.isinf(self.t2) else self.t2,
            "acquired": conv(self.acquired),
            "prefixes": [_lease_json(p, "prefix", p.prefix, conv) for p in self.prefixes],
            "addresses": [_lease_json(a, "address", a.address, conv) for a in self.addresses],
            "dns": list(self.dns),
            "domains": list(self.domains),
            "sntp": list(self.sntp),
            "ntp": list(self.ntp),
            "aftrName": self.aftr_name,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], wall_to_mono: _TimeMap) -> Binding:
        """The inverse of :meth:`to_json`.

        :raises ValueError: the data is not a valid binding (a corrupt state
            file should be discarded, not crash the daemon).
        """
        try:
            return cls._from_json(data, wall_to_mono)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"invalid saved binding: {exc}") from None

    @classmethod
    def _from_json(cls, data: Mapping[str, Any], conv: _TimeMap) -> Binding:
        server_duid = bytes.fromhex(data["serverDuid"])
        parse_duid(server_duid)
        prefixes = tuple(
            DelegatedPrefix(
                prefix=str(ipaddress.IPv6Network(p["prefix"])),
                preferred=int(p["preferred"]),
                valid=int(p["valid"]),
                acquired=_time_in(p["acquired"], conv),
                preferred_until=_time_in(p["preferredUntil"], conv),
                valid_until=_time_in(p["validUntil"], conv),
            )
            for p in data["prefixes"]
        )
        addresses = tuple(
            LeasedAddress(
                address=str(ipaddress.IPv6Address(a["address"])),
                preferred=int(a["preferred"]),
                valid=int(a["valid"]),
                acquired=_time_in(a["acquired"], conv),
                preferred_until=_time_in(a["preferredUntil"], conv),
                valid_until=_time_in(a["validUntil"], conv),
            )
            for a in data.get("addresses", [])
        )
        t1, t2 = data.get("t1"), data.get("t2")
        aftr = data.get("aftrName")
        server_address = data.get("serverAddress")
        return cls(
            server_duid=server_duid,
            iaid=int(data["iaid"]),
            t1=math.inf if t1 is None else float(t1),
            t2=math.inf if t2 is None else float(t2),
            acquired=_time_in(data["acquired"], conv),
            prefixes=prefixes,
            server_address=None if server_address is None else str(server_address),
            addresses=addresses,
            dns=_str_tuple(data, "dns"),
            domains=_str_tuple(data, "domains"),
            sntp=_str_tuple(data, "sntp"),
            ntp=_str_tuple(data, "ntp"),
            aftr_name=None if aftr is None else str(aftr),
        )


# ---------------------------------------------------------------- events

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class PrefixBound:
    """Topic: routerd.dhcpv6.client.prefix.bound — prefixes obtained by
    Request/Reply (or Solicit/Reply with Rapid Commit).

    :ivar prefixes: every prefix the client now holds.
    :ivar server_duid: hex DUID of the server.
    :ivar valid_lifetime: shortest valid lifetime in seconds.
    """

    topic: ClassVar[str] = "routerd.dhcpv6.client.prefix.bound"
    severity: ClassVar[str] = "info"
    prefixes: tuple[str, ...]
    server_duid: str
    valid_lifetime: int

    def attributes(self) -> dict[str, Scalar]:
        return {
            "prefix": ",".join(self.prefixes),
            "serverDuid": self.server_duid,
            "validLifetime": self.valid_lifetime,
        }


@dataclass(frozen=True)
class PrefixRenewed(PrefixBound):
    """Topic: routerd.dhcpv6.client.prefix.renewed — a Renew was answered.

    Fields as :class:`PrefixBound`.
    """

    topic: ClassVar[str] = "routerd.dhcpv6.client.prefix.renewed"


@dataclass(frozen=True)
class PrefixRebound(PrefixBound):
    """Topic: routerd.dhcpv6.client.prefix.rebound — a Rebind was answered
    (also the verification Rebind after a restart or link change).

    Fields as :class:`PrefixBound`.
    """

    topic: ClassVar[str] = "routerd.dhcpv6.client.prefix.rebound"


@dataclass(frozen=True)
class PrefixChanged:
    """Topic: routerd.dhcpv6.client.prefix.changed — a Reply delegated a
    prefix the client did not hold before, while it held others.

    Old prefixes the server left out stay in the binding until their own
    valid lifetime ends (RFC 9915 §18.2.10.1), so downstream can deprecate
    them gracefully; withdrawn ones (lifetimes 0) are gone at once (a
    :class:`PrefixExpired` with reason ``"Withdrawn"`` precedes this event).

    :ivar old: previously held prefixes that the Reply did not renew:
        withdrawn, or not mentioned.
    :ivar new: prefixes in the Reply that were not held before.
    """

    topic: ClassVar[str] = "routerd.dhcpv6.client.prefix.changed"
    severity: ClassVar[str] = "warning"
    old: tuple[str, ...]
    new: tuple[str, ...]

    def attributes(self) -> dict[str, Scalar]:
        return {"oldPrefix": ",".join(self.old), "prefix": ",".join(self.new)}


@dataclass(frozen=True)
class PrefixExpired:
    """Topic: routerd.dhcpv6.client.prefix.expired — a prefix is gone.

    :ivar prefix: the prefix.
    :ivar reason: ``"ValidLifetime"`` (its valid lifetime ended) or
        ``"Withdrawn"`` (a Reply gave it lifetimes of 0).
    """

    topic: ClassVar[str] = "routerd.dhcpv6.client.prefix.expired"
    severity: ClassVar[str] = "warning"
    prefix: str
    reason: str

    def attributes(self) -> dict[str, Scalar]:
        return {"prefix": self.prefix, "reason": self.reason}


@dataclass(frozen=True)
class PrefixReleased:
    """Topic: routerd.dhcpv6.client.prefix.released — prefixes given back.

    :ivar prefixes: the released prefixes.
    """

    topic: ClassVar[str] = "routerd.dhcpv6.client.prefix.released"
    severity: ClassVar[str] = "info"
    prefixes: tuple[str, ...]

    def attributes(self) -> dict[str, Scalar]:
        return {"prefix": ",".join(self.prefixes)}


@dataclass(frozen=True)
class ServerChanged:
    """Topic: routerd.dhcpv6.client.server.changed — another server answered.

    :ivar old_duid: hex DUID of the previous server.
    :ivar new_duid: hex DUID of the new one.
    """

    topic: ClassVar[str] = "routerd.dhcpv6.client.server.changed"
    severity: ClassVar[str] = "info"
    old_duid: str
    new_duid: str

    def attributes(self) -> dict[str, Scalar]:
        return {"oldServerDuid": self.old_duid, "serverDuid": self.new_duid}


@dataclass(frozen=True)
class StateChanged:
    """Topic: routerd.dhcpv6.client.state.changed — the FSM moved.

    :ivar old: previous state name. :ivar new: new state name.
    :ivar reason: short cause, e.g. ``"T1"``, ``"NoBinding"``, ``"LinkUp"``.
    """

    topic: ClassVar[str] = "routerd.dhcpv6.client.state.changed"
    severity: ClassVar[str] = "debug"
    old: str
    new: str
    reason: str

    def attributes(self) -> dict[str, Scalar]:
        return {"state": self.new, "previousState": self.old, "reason": self.reason}


@dataclass(frozen=True)
class MessageSent:
    """Topic: routerd.dhcpv6.client.message.sent (debug).

    :ivar msg_type: e.g. ``"SOLICIT"``. :ivar xid: transaction id.
    :ivar attempt: 1 for the first transmission.
    :ivar elapsed: Elapsed Time option value (1/100 s).
    """

    topic: ClassVar[str] = "routerd.dhcpv6.client.message.sent"
    severity: ClassVar[str] = "debug"
    msg_type: str
    xid: int
    attempt: int
    elapsed: int

    def attributes(self) -> dict[str, Scalar]:
        return {
            "messageType": self.msg_type,
            "xid": f"{self.xid:06x}",
            "attempt": self.attempt,
            "elapsed": self.elapsed,
        }


@dataclass(frozen=True)
class MessageReceived:
    """Topic: routerd.dhcpv6.client.message.received (debug).

    :ivar msg_type: e.g. ``"REPLY"``. :ivar xid: transaction id.
    :ivar source: sender address when the glue passed it.
    """

    topic: ClassVar[str] = "routerd.dhcpv6.client.message.received"
    severity: ClassVar[str] = "debug"
    msg_type: str
    xid: int
    source: str | None

    def attributes(self) -> dict[str, Scalar]:
        return {
            "messageType": self.msg_type,
            "xid": f"{self.xid:06x}",
            "source": self.source,
        }


@dataclass(frozen=True)
class MessageDropped:
    """Topic: routerd.dhcpv6.client.message.dropped (debug).

    :ivar reason: the drop reason, also counted in :class:`Counters`.
    :ivar msg_type: message type name, ``None`` if it did not decode.
    :ivar detail: e.g. the decode error text or the server's status message.
    """

    topic: ClassVar[str] = "routerd.dhcpv6.client.message.dropped"
    severity: ClassVar[str] = "debug"
    reason: str
    msg_type: str | None
    detail: str = ""

    def attributes(self) -> dict[str, Scalar]:
        return {
            "reason": self.reason,
            "messageType": self.msg_type,
            "detail": self.detail,
        }


CoreEvent = (
    PrefixBound
    | PrefixRenewed
    | PrefixRebound
    | PrefixChanged
    | PrefixExpired
    | PrefixReleased
    | ServerChanged
    | StateChanged
    | MessageSent
    | MessageReceived
    | MessageDropped
)


@dataclass
class Counters:
    """Message statistics, after odhcp6c's ``get_statistics``.

    :ivar sent: transmissions per message type (``"solicit"``, ``"request"``,
        ``"renew"``, ``"rebind"``, ``"release"``), retransmissions included.
    :ivar received: decoded messages per type (``"advertise"``, ``"reply"``, ...).
    :ivar dropped: discarded messages per reason (``"xid_mismatch"``,
        ``"client_id_mismatch"``, ``"server_id_missing"``, ``"malformed"``,
        ``"no_prefix_avail"``, ...).
    :ivar rejected: commands refused in the current state, per command.
    """

    sent: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    dropped: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            "sent": dict(self.sent),
            "received": dict(self.received),
            "dropped": dict(self.dropped),
            "rejected": dict(self.rejected),
        }


def _bump(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


def _status_name(status: int) -> str:
    try:
        return StatusCode(status).name.lower()
    except ValueError:
        return str(status)


def _type_name(msg_type: int) -> str:
    try:
        return MsgType(msg_type).name
    except ValueError:
        return f"TYPE_{msg_type}"


# ---------------------------------------------------------------- the client


class InvalidTransitionError(RuntimeError):
    """A bug: the client tried a state change that TRANSITIONS forbids."""


_F = TypeVar("_F", bound=Callable[..., bool])


def _allowed_in(*states: State) -> Callable[[_F], _F]:
    """Guard a command (style rule 12): outside ``states`` the call is counted
    in ``Counters.rejected``, does nothing and returns False."""

    def deco(fn: _F) -> _F:
        @functools.wraps(fn)
        def wrapper(self: PdClient, now: float) -> bool:
            if self.state not in states:
                _bump(self.counters.rejected, fn.__name__)
                return False
            result: bool = fn(self, now)
            return result

        return cast(_F, wrapper)

    return deco


@dataclass
class _Offer:
    """A valid Advertise collected during Solicit (RFC 9915 §18.2.9)."""

    preference: int
    order: int
    server_duid: bytes
    source: str | None
    prefixes: tuple[str, ...]


class PdClient:
    """The DHCPv6-PD client state machine (sans-I/O).

    :param config: what to ask for.
    :param rng: transaction ids and RAND come from here (inject a seeded
        ``random.Random`` in tests, ``random.SystemRandom()`` in the daemon).
    """

    def __init__(self, config: ClientConfig, rng: RandomSource) -> None:
        self.config = config
        self._rng = rng
        self._duid = config.duid
        self._state = State.INIT
        self._binding: Binding | None = None
        self.counters = Counters()
        self._out: list[Message] = []
        self._events: list[CoreEvent] = []
        # The running exchange.
        self._xid = 0
        self._rtx: Retransmission | None = None
        self._timer: float | None = None
        self._msg_type = MsgType.SOLICIT
        self._head: tuple[Option, ...] = ()
        self._tail: tuple[Option, ...] = ()
        self._verifying = False
        # Solicit bookkeeping.
        self._offers: list[_Offer] = []
        self._collect_until: float | None = None
        self._sol_max_rt = c.SOL_MAX_RT
        self._failures = 0
        self._stopping = False

    # ------------------------------------------------------------ public API

    @property
    def state(self) -> State:
        return self._state

    @property
    def binding(self) -> Binding | None:
        """The current binding, or ``None``; persist it with ``to_json``."""
        return self._binding

    @property
    def transaction_id(self) -> int:
        """Transaction id of the current (or last) exchange."""
        return self._xid

    def packets_to_send(self) -> list[Message]:
        """Drain the messages to send, in order, each to ff02::1:2 port 547."""
        out, self._out = self._out, []
        return out

    def events(self) -> list[CoreEvent]:
        """Drain the events produced since the last call, in order."""
        out, self._events = self._events, []
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` must next be called, or ``None``."""
        if self._state is State.STOPPED:
            return None
        candidates: list[float] = []
        if self._timer is not None:
            candidates.append(self._timer)
        b = self._binding
        if b is not None and b.prefixes:
            candidates.append(min(p.valid_until for p in b.prefixes))
            if self._state is State.BOUND:
                candidates.append(min(b.renew_at, b.rebind_at))
        finite = [t for t in candidates if not math.isinf(t)]
        return min(finite) if finite else None

    def start(self, now: float, saved_binding: Binding | None = None) -> bool:
        """Begin: Rebind a still-valid saved binding, else Solicit.

        Returns False (and does nothing) unless the client is idle in INIT or
        STOPPED.
        """
        if self._state not in (State.INIT, State.STOPPED) or self._timer is not None:
            _bump(self.counters.rejected, "start")
            return False
        self._stopping = False
        if saved_binding is not None:
            self._binding = saved_binding
            self._expire(now)
        if self._binding is not None:
            # RFC 9915 §18.2.12: after a reboot with leases, verify them with
            # Rebind using the Confirm retransmission parameters.
            self._start_rebind(now, verify=True, reason="Restart")
        else:
            self._solicit_after_delay(now, "Start")
        return True

    def receive_datagram(self, data: bytes, now: float, source: str | None = None) -> None:
        """Decode a UDP payload and :meth:`receive` it; malformed ones are
        counted as ``malformed`` and dropped (DESIGN §9)."""
        try:
            msg = decode(data)
        except DecodeError as exc:
            self._drop("malformed", None, str(exc))
            return
        self.receive(msg, now, source)

    def receive(self, msg: Message, now: float, source: str | None = None) -> None:
        """Process a message from a server. Invalid or unexpected ones are
        counted per reason and ignored."""
        name = _type_name(msg.msg_type)
        _bump(self.counters.received, name.lower())
        self._emit(MessageReceived(name, msg.transaction_id, source))
        reason = self._invalid_reason(msg)
        if reason:
            self._drop(reason, msg)
            return
        if msg.msg_type == MsgType.ADVERTISE:
            self._on_advertise(msg, now, source)
        else:
            self._on_reply(msg, now, source)

    def on_timer(self, now: float) -> None:
        """Act on every deadline that has passed by ``now``."""
        for _ in range(32):  # bounded: each pass consumes at least one deadline
            deadline = self.next_deadline()
            if deadline is None or deadline > now:
                return
            self._tick(now)

    @_allowed_in(State.INIT, State.BOUND, State.RENEW)
    def renew(self, now: float) -> bool:
        """Renew now (BOUND/RENEW), or Solicit now when idle in INIT."""
        if self._state is State.INIT:
            self._stopping = False
            self._start_solicit(now, "Command")
        else:
            self._start_renew(now, "Command")
        return True

    @_allowed_in(State.BOUND, State.RENEW)
    def rebind(self, now: float) -> bool:
        """Rebind now (any server may answer)."""
        self._start_rebind(now, verify=False, reason="Command")
        return True

    @_allowed_in(State.BOUND, State.RENEW, State.REBIND)
    def release(self, now: float) -> bool:
        """Release the prefixes and stay idle in INIT afterwards."""
        self._start_release(now)
        return True

    def stop(self, now: float) -> bool:
        """Stop: Release first if configured and a binding is held, then STOPPED.

        With a Release the client passes through RELEASE; keep driving it
        until :attr:`state` is STOPPED. Without, the binding is kept in
        :attr:`binding` so that it can be saved and rebound after a restart.
        """
        if self._state is State.STOPPED:
            return False
        self._stopping = True
        if self._state is State.RELEASE:
            return True
        # A Release cannot go out while the link is down: just stop.
        can_send = self._state is not State.LINK_DOWN
        if self.config.release_on_stop and self._binding is not None and can_send:
            self._start_release(now)
        else:
            self._cancel_exchange()
            self._goto(State.STOPPED, "Stop")
        return True

    def link_down(self, now: float) -> bool:
        """The carrier went away: stop sending, keep the binding (it still expires)."""
        if self._state in (State.STOPPED, State.LINK_DOWN) or self._idle():
            return False
        if self._state is State.RELEASE:
            self._release_done("LinkDown")
            return True
        self._cancel_exchange()
        self._goto(State.LINK_DOWN, "LinkDown")
        return True

    def link_up(self, now: float) -> bool:
        """The carrier (or PPPoE session) is back.

        With prefixes held: Rebind to verify them (RFC 9915 §18.2.12); without:
        Solicit after the random initial delay (§18.2.1). Accepted in any
        running state, so a link change noticed without a preceding
        :meth:`link_down` is handled too.
        """
        if self._state in (State.STOPPED, State.RELEASE) or self._idle():
            return False
        self._expire(now)
        self._cancel_exchange()
        if self._binding is not None:
            self._start_rebind(now, verify=True, reason="LinkUp")
        else:
            self._solicit_after_delay(now, "LinkUp")
        return True

    # ------------------------------------------------------------ plumbing

    def _idle(self) -> bool:
        return self._state is State.INIT and self._timer is None

    def _emit(self, event: CoreEvent) -> None:
        self._events.append(event)

    def _drop(self, reason: str, msg: Message | None, detail: str = "") -> None:
        _bump(self.counters.dropped, reason)
        name = _type_name(msg.msg_type) if msg is not None else None
        self._emit(MessageDropped(reason, name, detail))

    def _goto(self, new: State, reason: str) -> None:
        old = self._state
        if new is old:
            return
        if new not in TRANSITIONS[old]:
            raise InvalidTransitionError(f"{old.name} -> {new.name} ({reason})")
        self._state = new
        self._emit(StateChanged(old.name, new.name, reason))

    def _cancel_exchange(self) -> None:
        self._rtx = None
        self._timer = None
        self._collect_until = None
        self._verifying = False

    def _new_xid(self) -> int:
        # RFC 9915 §16.1: a fresh random transaction id per exchange.
        return self._rng.getrandbits(24)

    def _oro(self) -> OptionRequest:
        codes = list(dict.fromkeys(self.config.oro))
        if c.OptionCode.SOL_MAX_RT not in codes:
            codes.append(c.OptionCode.SOL_MAX_RT)  # RFC 9915 §21.24: MUST request
        return OptionRequest(tuple(codes))

    def _ia_options(self, prefixes: Iterable[str], hint: bool) -> tuple[Option, ...]:
        # RFC 9915 §21.21/§21.22: T1, T2 and lifetimes from a client are 0.
        opts: list[Option] = [IaPrefix(0, 0, p) for p in prefixes]
        if not opts and hint and self.config.prefix_length:
            # RFC 9915 §18.2.1: a prefix-length hint is an IAPREFIX "::/len".
            opts.append(IaPrefix(0, 0, f"::/{self.config.prefix_length}"))
        ias: list[Option] = [IaPd(self.config.iaid, 0, 0, tuple(opts))]
        if self.config.request_ia_na:
            addrs = self._binding.addresses if self._binding else ()
            ia_opts = tuple(IaAddress(a.address, 0, 0) for a in addrs)
            ias.append(IaNa(self.config.iaid, 0, 0, ia_opts))
        return tuple(ias)

    def _begin(
        self,
        msg_type: MsgType,
        state: State,
        params: rtx.RetransmitParams,
        now: float,
        reason: str,
        *,
        server_duid: bytes | None = None,
        tail: tuple[Option, ...] = (),
        first_rand_positive: bool = False,
    ) -> None:
        """Start a new exchange: fresh xid, fresh timing, first transmission."""
        self._cancel_exchange()
        self._goto(state, reason)
        self._xid = self._new_xid()
        self._msg_type = msg_type
        head: list[Option] = [ClientId(parse_duid(self._duid))]
        if server_duid is not None:
            head.append(ServerId(parse_duid(server_duid)))
        self._head = tuple(head)
        self._tail = tail
        self._rtx = Retransmission(params, self._rng, first_rand_positive=first_rand_positive)
        self._transmit(now)

    def _transmit(self, now: float) -> None:
        assert self._rtx is not None
        # RFC 9915 §21.9: Elapsed Time counts from the first transmission of
        # this exchange, in 1/100 s, capped at 0xffff; 0 the first time.
        elapsed = self._rtx.elapsed_time(now)
        opts = (*self._head, ElapsedTime(elapsed), *self._tail)
        self._out.append(Message(self._msg_type, self._xid, opts))
        self._timer = self._rtx.transmitted(now)
        _bump(self.counters.sent, self._msg_type.name.lower())
        self._emit(MessageSent(self._msg_type.name, self._xid, self._rtx.count, elapsed))

    # ------------------------------------------------------------ timers

    def _tick(self, now: float) -> None:
        self._expire(now)
        if self._timer is not None and now >= self._timer:
            self._timer = None
            self._exchange_timeout(now)
            return
        b = self._binding
        if self._state is State.BOUND and b is not None:
            if now >= b.rebind_at:
                # RFC 9915 §18.2.5: at T2, Rebind.
                self._start_rebind(now, verify=False, reason="T2")
            elif now >= b.renew_at:
                # RFC 9915 §18.2.4: at T1, Renew.
                self._start_renew(now, "T1")

    def _expire(self, now: float) -> None:
        """Drop every lease whose valid lifetime has ended (RFC 9915 §18.2.10.1)."""
        b = self._binding
        if b is None:
            return
        keep = tuple(p for p in b.prefixes if p.valid_until > now)
        addrs = tuple(a for a in b.addresses if a.valid_until > now)
        if len(keep) == len(b.prefixes) and len(addrs) == len(b.addresses):
            return
        for p in b.prefixes:
            if p.valid_until <= now:
                self._emit(PrefixExpired(p.prefix, "ValidLifetime"))
        if keep:
            self._binding = replace(b, prefixes=keep, addresses=addrs)
            return
        self._binding = None
        if self._state in (State.BOUND, State.RENEW, State.REBIND):
            # RFC 9915 §18.2.5: every lease has expired, so start over with
            # server discovery.
            self._start_solicit(now, "Expired")

    def _exchange_timeout(self, now: float) -> None:
        state = self._state
        if state is State.INIT:
            self._start_solicit(now, "Delay")
            return
        r = self._rtx
        if r is None:
            return
        if state is State.SOLICIT:
            if self._offers:
                # RFC 9915 §18.2.1: the first RT is over; pick the best offer.
                self._request_best(now)
            else:
                self._transmit(now)  # Solicit has no MRC/MRD: keep going.
            return
        if not r.failed(now):
            self._transmit(now)
            return
        if state is State.REQUEST:
            self._request_failed(now)
        elif state is State.RENEW:
            # RFC 9915 §18.2.4: Renew's MRD ends at T2; Rebind from there.
            self._start_rebind(now, verify=False, reason="T2")
        elif state is State.REBIND:
            self._rebind_failed(now)
        elif state is State.RELEASE:
            self._release_done("NoReply")

    # ------------------------------------------------------------ exchanges

    def _solicit_after_delay(self, now: float, reason: str) -> None:
        self._cancel_exchange()
        self._goto(State.INIT, reason)
        # RFC 9915 §18.2.1: delay the first Solicit by a random amount of time
        # between 0 and SOL_MAX_DELAY.
        self._timer = now + self._rng.random() * c.SOL_MAX_DELAY

    def _solicit_after_backoff(self, now: float, reason: str) -> None:
        """Try again later after a failed attempt (RFC 9915 §18.2.10.1, §14.1).

        The wait doubles with each consecutive failure, from 2*SOL_TIMEOUT up
        to SOL_MAX_RT, with RAND applied.
        """
        self._failures += 1
        base = min(self._sol_max_rt, c.SOL_TIMEOUT * 2.0 ** min(self._failures, 20))
        self._cancel_exchange()
        self._goto(State.INIT, reason)
        self._timer = now + base + rtx.rand_factor(self._rng) * base

    def _start_solicit(self, now: float, reason: str) -> None:
        self._offers = []
        tail: list[Option] = [self._oro()]
        if self.config.rapid_commit:
            tail.append(RapidCommit())  # RFC 9915 §18.2.1
        tail.extend(self._ia_options((), hint=True))
        self._begin(
            MsgType.SOLICIT,
            State.SOLICIT,
            rtx.SOLICIT.with_mrt(self._sol_max_rt),
            now,
            reason,
            tail=tuple(tail),
            # RFC 9915 §15: the first Solicit RT must be greater than IRT.
            first_rand_positive=True,
        )
        self._collect_until = self._timer

    def _start_request(
        self,
        now: float,
        server_duid: bytes,
        prefixes: Iterable[str],
        reason: str,
    ) -> None:
        tail = (self._oro(), *self._ia_options(prefixes, hint=True))
        self._begin(
            MsgType.REQUEST,
            State.REQUEST,
            rtx.REQUEST,
            now,
            reason,
            server_duid=server_duid,
            tail=tail,
        )

    def _request_best(self, now: float) -> None:
        # RFC 9915 §18.2.9: highest preference wins, then the first received.
        best = max(self._offers, key=lambda o: (o.preference, -o.order))
        self._offers.remove(best)
        self._start_request(now, best.server_duid, best.prefixes, "Advertise")

    def _request_failed(self, now: float) -> None:
        # RFC 9915 §18.2.2: on failure, local policy; try the next server that
        # advertised, else start discovery again after a back-off.
        if self._offers:
            self._request_best(now)
        else:
            self._solicit_after_backoff(now, "RequestFailed")

    def _start_renew(self, now: float, reason: str) -> None:
        b = self._binding
        assert b is not None
        mrd = b.rebind_at - now
        if mrd <= 0:
            self._start_rebind(now, verify=False, reason="T2")
            return
        params = rtx.RENEW if math.isinf(mrd) else rtx.RENEW.with_mrd(mrd)
        tail = (self._oro(), *self._ia_options(b.prefix_strings(), hint=False))
        # RFC 9915 §18.2.4: Renew carries the Server Identifier.
        self._begin(
            MsgType.RENEW,
            State.RENEW,
            params,
            now,
            reason,
            server_duid=b.server_duid,
            tail=tail,
        )

    def _start_rebind(self, now: float, *, verify: bool, reason: str) -> None:
        b = self._binding
        assert b is not None
        # RFC 9915 §18.2.5: Rebind's MRD is the time until every lease expires.
        mrd = b.valid_until - now
        if verify:
            # RFC 9915 §18.2.12: after a restart or link change, Rebind with
            # the Confirm message's retransmission parameters.
            params = rtx.CONFIRM.with_mrd(min(c.CNF_MAX_RD, mrd))
        else:
            params = rtx.REBIND if math.isinf(mrd) else rtx.REBIND.with_mrd(mrd)
        tail = (self._oro(), *self._ia_options(b.prefix_strings(), hint=False))
        # No Server Identifier: any server may answer a Rebind (§18.2.5).
        self._begin(MsgType.REBIND, State.REBIND, params, now, reason, tail=tail)
        self._verifying = verify

    def _rebind_failed(self, now: float) -> None:
        if self._verifying and self._binding is not None:
            # No answer to the verification Rebind: keep using the leases with
            # their last known lifetimes, as for Confirm (RFC 9915 §18.2.3),
            # and let T1/T2 drive Renew/Rebind.
            self._cancel_exchange()
            self._goto(State.BOUND, "NoReply")
            return
        # Normal Rebind ran until the leases expired: discovery (§18.2.5).
        self._expire(now)
        if self._state is State.REBIND:
            self._start_solicit(now, "RebindFailed")

    def _start_release(self, now: float) -> None:
        b = self._binding
        assert b is not None
        # RFC 9915 §18.2.7: stop using the leases before sending Release.
        self._binding = None
        self._emit(PrefixReleased(b.prefix_strings()))
        opts: list[Option] = [
            IaPd(
                self.config.iaid,
                0,
                0,
                tuple(IaPrefix(0, 0, p) for p in b.prefix_strings()),
            )
        ]
        if b.addresses:
            ia_opts = tuple(IaAddress(a.address, 0, 0) for a in b.addresses)
            opts.append(IaNa(self.config.iaid, 0, 0, ia_opts))
        self._begin(
            MsgType.RELEASE,
            State.RELEASE,
            rtx.RELEASE,
            now,
            "Release",
            server_duid=b.server_duid,
            tail=tuple(opts),
        )

    def _release_done(self, reason: str) -> None:
        # RFC 9915 §18.2.10.2: the Release is complete on any Reply, or when
        # REL_MAX_RC transmissions went unanswered.
        self._cancel_exchange()
        self._goto(State.STOPPED if self._stopping else State.INIT, reason)

    # ------------------------------------------------------------ receiving

    def _invalid_reason(self, msg: Message) -> str | None:
        if msg.msg_type == MsgType.RECONFIGURE:
            # RFC 9915 §18.2.11 needs Reconfigure Key authentication, which
            # this client does not offer (it never sends Reconfigure Accept).
            return "reconfigure_unsupported"
        if msg.msg_type not in (MsgType.ADVERTISE, MsgType.REPLY):
            return "unexpected_type"
        waiting = (
            State.SOLICIT,
            State.REQUEST,
            State.RENEW,
            State.REBIND,
            State.RELEASE,
        )
        if self._state not in waiting:
            return "unexpected_state"
        if msg.msg_type == MsgType.ADVERTISE and self._state is not State.SOLICIT:
            return "unexpected_advertise"
        # RFC 9915 §16.3 (Advertise) and §16.10 (Reply) validation.
        if msg.transaction_id != self._xid:
            return "xid_mismatch"
        cid = msg.get(ClientId)
        if cid is None:
            return "client_id_missing"
        if cid.duid.to_bytes() != self._duid:
            return "client_id_mismatch"
        if msg.get(ServerId) is None:
            return "server_id_missing"
        if (
            msg.msg_type == MsgType.REPLY
            and self._state is State.SOLICIT
            and not (self.config.rapid_commit and msg.get(RapidCommit) is not None)
        ):
            # RFC 9915 §18.2.1: a Reply answers a Solicit only with Rapid Commit.
            return "unexpected_reply"
        return None

    def _apply_sol_max_rt(self, msg: Message) -> None:
        opt = msg.get(SolMaxRt)
        lo, hi = c.SOL_MAX_RT_RANGE
        # RFC 9915 §21.24: ignore values outside 60..86400.
        if opt is not None and lo <= opt.value <= hi:
            self._sol_max_rt = float(opt.value)
            if self._state is State.SOLICIT and self._rtx is not None:
                self._rtx.set_mrt(self._sol_max_rt)

    def _our_ia_pd(self, msg: Message) -> IaPd | None:
        for ia in msg.get_all(IaPd):
            if ia.iaid != self.config.iaid:
                continue
            if ia.t1 and ia.t2 and ia.t1 > ia.t2:
                # RFC 9915 §21.21: T1 > T2 (both non-zero) -> discard the IA_PD.
                return None
            return ia
        return None

    @staticmethod
    def _pd_status(msg: Message, ia: IaPd | None) -> int:
        if ia is not None and ia.status is not None:
            return ia.status.status
        top = msg.status
        return top.status if top is not None else StatusCode.SUCCESS

    @staticmethod
    def _usable(ia: IaPd | None) -> list[IaPrefix]:
        if ia is None:
            return []
        # RFC 9915 §21.22: discard a prefix whose preferred lifetime exceeds
        # its valid lifetime; valid 0 means withdrawn, not usable.
        return [p for p in ia.prefixes if p.valid and p.preferred <= p.valid]

    def _on_advertise(self, msg: Message, now: float, source: str | None) -> None:
        # RFC 9915 §18.2.9: process SOL_MAX_RT even from an ignored Advertise.
        self._apply_sol_max_rt(msg)
        top = msg.status
        ia = self._our_ia_pd(msg)
        status = self._pd_status(msg, ia)
        if top is not None and top.status != StatusCode.SUCCESS:
            status = top.status
        usable = self._usable(ia)
        if status != StatusCode.SUCCESS or not usable:
            # RFC 9915 §18.2.9 (RFC 3633 §11.1): ignore an Advertise with
            # NoPrefixAvail or without delegated prefixes.
            st = top if top is not None else (ia.status if ia is not None else None)
            reason = "no_prefix_avail"
            if status not in (StatusCode.SUCCESS, StatusCode.NO_PREFIX_AVAIL):
                reason = f"status_{_status_name(status)}"
            self._drop(reason, msg, st.text if st is not None else "")
            return
        pref_opt = msg.get(Preference)
        preference = pref_opt.value if pref_opt is not None else 0  # §18.2.9
        sid = msg.get(ServerId)
        assert sid is not None
        self._offers.append(
            _Offer(
                preference,
                len(self._offers),
                sid.duid.to_bytes(),
                source,
                tuple(str(p.network) for p in usable),
            )
        )
        first_rt_over = self._collect_until is None or now >= self._collect_until
        if preference == 255 or first_rt_over:
            # RFC 9915 §18.2.1/§18.2.9: preference 255 is taken at once, and
            # after the first RT the first valid Advertise ends the Solicit.
            self._request_best(now)

    def _on_reply(self, msg: Message, now: float, source: str | None) -> None:
        if self._state is State.RELEASE:
            self._release_done("Reply")
            return
        top = msg.status
        if top is not None and top.status == StatusCode.UNSPEC_FAIL:
            # RFC 9915 §18.2.10: retry, rate-limited: keep the backed-off
            # retransmission schedule of the current exchange.
            self._drop("status_unspec_fail", msg, top.text)
            return
        if top is not None and top.status == StatusCode.USE_MULTICAST:
            # RFC 8415 §18.2.10: resend the message by multicast. This client
            # only multicasts (RFC 9915), so resend it now, same xid.
            self._drop("status_use_multicast", msg, top.text)
            if self._rtx is not None:
                self._transmit(now)
            return
        self._apply_sol_max_rt(msg)
        ia = self._our_ia_pd(msg)
        status = self._pd_status(msg, ia)
        renewing = self._state in (State.RENEW, State.REBIND)
        if status == StatusCode.NO_BINDING and renewing and self._binding is not None:
            # RFC 9915 §18.2.10.1: NoBinding -> Request to the server that
            # answered, listing the leases we hold.
            sid = msg.get(ServerId)
            assert sid is not None
            self._drop("status_no_binding", msg)
            held = self._binding.prefix_strings()
            self._start_request(now, sid.duid.to_bytes(), held, "NoBinding")
            return
        usable = self._usable(ia) if status == StatusCode.SUCCESS else []
        withdrawn = self._withdrawn(ia) if status == StatusCode.SUCCESS else []
        if not usable and not withdrawn:
            self._no_prefix_in_reply(msg, now, status)
            return
        self._bind(msg, ia, now, source)

    def _withdrawn(self, ia: IaPd | None) -> list[str]:
        held = set(self._binding.prefix_strings()) if self._binding else set()
        if ia is None:
            return []
        return [str(p.network) for p in ia.prefixes if p.valid == 0 and str(p.network) in held]

    def _no_prefix_in_reply(self, msg: Message, now: float, status: int) -> None:
        self._drop("no_prefix_avail", msg, f"status {status}")
        if self._state is State.REQUEST:
            # RFC 9915 §18.2.10.1: NoPrefixAvail (or no IA_PD) in the Reply to
            # a Request: ignore the IA and try again later, from discovery.
            self._solicit_after_backoff(now, "NoPrefixAvail")
        # In SOLICIT (Rapid Commit), RENEW and REBIND the current exchange
        # simply goes on: more Advertises, Renew until T2, Rebind until the
        # leases expire. Leases not mentioned stay as they are (§18.2.10.1).

    def _merge_prefixes(
        self, ia: IaPd, now: float
    ) -> tuple[dict[str, DelegatedPrefix], list[str], list[str]]:
        """RFC 9915 §18.2.10.1: add new leases, update known ones, drop those
        with valid lifetime 0, leave the others unchanged."""
        old = self._binding
        merged = {p.prefix: p for p in old.prefixes} if old else {}
        fresh: list[str] = []
        withdrawn: list[str] = []
        for opt in ia.prefixes:
            if opt.preferred > opt.valid:
                continue  # RFC 9915 §21.22
            key = str(opt.network)
            if opt.valid == 0:
                if merged.pop(key, None) is not None:
                    withdrawn.append(key)
                continue
            if key not in merged:
                fresh.append(key)
            merged[key] = DelegatedPrefix.from_option(opt, now)
        return merged, fresh, withdrawn

    def _client_times(
        self, ia: IaPd, prefixes: Iterable[DelegatedPrefix], now: float
    ) -> tuple[float, float]:
        t1, t2 = _t_seconds(ia.t1), _t_seconds(ia.t2)
        if ia.t1 and ia.t2:
            return t1, t2
        # RFC 9915 §21.21: T1/T2 of 0 leave the times to the client: 0.5 and
        # 0.8 times the shortest preferred lifetime.
        remaining = [p.preferred_until - now for p in prefixes]
        positive = [r for r in remaining if r > 0]
        if not positive:
            positive = [p.valid_until - now for p in prefixes]
        shortest = min(positive, default=math.inf)
        if not ia.t1:
            t1 = max(_MIN_CLIENT_T, 0.5 * shortest)
        if not ia.t2:
            t2 = max(_MIN_CLIENT_T, 0.8 * shortest)
        return min(t1, t2), t2

    def _bind(self, msg: Message, ia: IaPd | None, now: float, source: str | None) -> None:
        assert ia is not None
        sid = msg.get(ServerId)
        assert sid is not None
        old = self._binding
        old_state = self._state
        merged, fresh, withdrawn = self._merge_prefixes(ia, now)
        for key in withdrawn:
            self._emit(PrefixExpired(key, "Withdrawn"))
        if not merged:
            self._binding = None
            self._start_solicit(now, "Withdrawn")
            return
        prefixes = tuple(merged.values())
        t1, t2 = self._client_times(ia, prefixes, now)
        server_duid = sid.duid.to_bytes()
        self._binding = Binding(
            server_duid=server_duid,
            iaid=self.config.iaid,
            t1=t1,
            t2=t2,
            acquired=now,
            prefixes=prefixes,
            server_address=source or (old.server_address if old else None),
            addresses=self._addresses(msg, now),
            **self._info(msg),
        )
        self._failures = 0
        self._offers = []
        self._cancel_exchange()
        self._goto(State.BOUND, _type_name(msg.msg_type).capitalize())
        if old is not None and old.server_duid != server_duid:
            self._emit(ServerChanged(old.server_duid.hex(), server_duid.hex()))
        # What this Reply extended: the held prefixes it gave lifetimes again.
        # Withdrawn (lifetimes 0) and unmentioned ones were not renewed.
        extended = {str(p.network) for p in ia.prefixes if p.valid and p.preferred <= p.valid}
        held_before = old.prefix_strings() if old is not None else ()
        renewed = [p for p in held_before if p in extended]
        if held_before and fresh:
            # The old prefixes are the ones this Reply did not renew: withdrawn
            # with lifetimes 0, or left out (they then run to their own valid
            # lifetime, RFC 9915 §18.2.10.1).
            gone = tuple(p for p in held_before if p not in extended)
            self._emit(PrefixChanged(gone, tuple(fresh)))
        kind: type[PrefixBound] = PrefixBound
        if renewed and old_state is State.RENEW:
            kind = PrefixRenewed
        elif renewed and old_state is State.REBIND:
            kind = PrefixRebound
        # Otherwise nothing held was extended: the Reply delegated a new
        # prefix, which is bound, not renewed.
        valid = min(p.valid for p in prefixes)
        self._emit(kind(tuple(merged), server_duid.hex(), valid))

    def _addresses(self, msg: Message, now: float) -> tuple[LeasedAddress, ...]:
        if not self.config.request_ia_na:
            return ()
        held = {a.address: a for a in self._binding.addresses} if self._binding else {}
        for ia in msg.get_all(IaNa):
            if ia.iaid != self.config.iaid or (ia.t1 and ia.t2 and ia.t1 > ia.t2):
                continue
            for opt in ia.get_all(IaAddress):
                if opt.preferred > opt.valid:
                    continue  # RFC 9915 §21.6
                if opt.valid == 0:
                    held.pop(opt.address, None)
                else:
                    held[opt.address] = LeasedAddress.from_option(opt, now)
        return tuple(held.values())

    @staticmethod
    def _info(msg: Message) -> dict[str, Any]:
        dns = msg.get(DnsServers)
        domains = msg.get(DomainList)
        sntp = msg.get(SntpServers)
        aftr = msg.get(AftrName)
        ntp: list[str] = []
        for opt in msg.get_all(NtpServer):
            ntp.extend(s.value for s in opt.suboptions if isinstance(s.value, str))
        return {
            "dns": dns.addresses if dns else (),
            "domains": domains.domains if domains else (),
            "sntp": sntp.addresses if sntp else (),
            "ntp": tuple(ntp),
            "aftr_name": aftr.name if aftr else None,
        }
