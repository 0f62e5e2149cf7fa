"""Events the PPPoE client core emits (drained with ``PPPoEClientCore.outputs()``).

One dataclass per event, each with a ``topic`` class attribute (style rule
9). Some are instructions to the glue as much as news:
:class:`SessionEstablished` opens the data-plane backend,
:class:`NetworkUp`/:class:`NetworkDown` apply and remove addresses,
:class:`SessionEnded` closes the backend and removes everything applied.

Exit reasons follow pppd's exit codes (``pppd/pppd.h``), see
:class:`ExitReason`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import enum
from typing import Any
from typing import ClassVar

__all__ = [
    "AuthFailed",
    "AuthSucceeded",
    "CoreEvent",
    "DiscoveryError",
    "EchoReply",
    "EchoTimeout",
    "ExitReason",
    "Ipv6Up",
    "NetworkDown",
    "NetworkUp",
    "OfferIgnored",
    "PacketDropped",
    "RedialScheduled",
    "RedialStopped",
    "SessionEnded",
    "SessionEstablished",
    "SessionFailed",
    "StaleSessionClosed",
    "StateChanged",
]

_PREFIX = "routerd.pppoe.client."


class ExitReason(enum.Enum):
    """Why a session or an attempt ended, in pppd's exit-code names.

    * ``CONNECT_FAILED`` (pppd 8): discovery found no access concentrator,
      or it refused the PADR (Service-Name-Error, AC-System-Error).
    * ``NEGOTIATION_FAILED`` (10): LCP or an NCP did not converge, the peer
      gave no IP address, or rejected IPCP.
    * ``PEER_AUTH_FAILED``: the peer refused our credentials (PAP Nak, CHAP
      Failure, no answer). NOTE: pppd names this case
      ``EXIT_AUTH_TOPEER_FAILED`` (19) and keeps ``EXIT_PEER_AUTH_FAILED``
      (11) for a peer failing to authenticate *itself*, which a PPPoE client
      never asks of an AC; the issue's name is kept for the case users mean.
    * ``PEER_DEAD`` (15): ``lcpEchoFailure`` Echo-Requests in a row got no reply.
    * ``HANGUP`` (16): the AC sent a PADT or a Terminate-Request, or the
      Ethernet lost its carrier.
    * ``LOOPBACK`` (17): the link is looped back (RFC 1661 §6.4).
    * ``USER_REQUEST`` (5): ``stop`` or ``reconnect``.
    """

    CONNECT_FAILED = "CONNECT_FAILED"
    NEGOTIATION_FAILED = "NEGOTIATION_FAILED"
    PEER_AUTH_FAILED = "PEER_AUTH_FAILED"
    PEER_DEAD = "PEER_DEAD"
    HANGUP = "HANGUP"
    LOOPBACK = "LOOPBACK"
    USER_REQUEST = "USER_REQUEST"


@dataclass(frozen=True)
class CoreEvent:
    """Base class of the core's events."""

    topic: ClassVar[str] = _PREFIX + "event"

    def attributes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, bytes):
                value = value.hex()
            elif isinstance(value, tuple):
                value = ",".join(str(v) for v in value)
            out[f.name] = value
        return out


@dataclass(frozen=True)
class StateChanged(CoreEvent):
    """Topic: routerd.pppoe.client.state.changed (debug)

    :ivar old: previous state (``DISCOVERY``, ``ESTABLISH`` ...).
    :ivar new: new state.
    :ivar reason: why.
    """

    topic: ClassVar[str] = _PREFIX + "state.changed"
    old: str
    new: str
    reason: str


@dataclass(frozen=True)
class OfferIgnored(CoreEvent):
    """Topic: routerd.pppoe.client.offer.ignored (debug)

    A PADO that was not taken (AC-Name or Service-Name filter, an error tag).

    :ivar ac_mac: the AC's MAC.
    :ivar ac_name: its AC-Name, if any.
    :ivar why: ``ac_name``, ``service_name``, ``error_tag``, ``late``.
    """

    topic: ClassVar[str] = _PREFIX + "offer.ignored"
    ac_mac: str
    ac_name: str | None
    why: str


@dataclass(frozen=True)
class DiscoveryError(CoreEvent):
    """Topic: routerd.pppoe.client.discovery.error

    A PADO, PADS or PADT carried Service-Name-Error, AC-System-Error or
    Generic-Error (RFC 2516 appendix A).

    :ivar code: the packet (``PADO``, ``PADS``, ``PADT``).
    :ivar tag: the error tag's name.
    :ivar text: its text.
    :ivar ac_mac: the sender.
    """

    topic: ClassVar[str] = _PREFIX + "discovery.error"
    code: str
    tag: str
    text: str
    ac_mac: str


@dataclass(frozen=True)
class StaleSessionClosed(CoreEvent):
    """Topic: routerd.pppoe.client.stale.closed

    A PADT was sent for the session a previous run left open (state file).

    :ivar session_id: its SESSION_ID.
    :ivar ac_mac: its AC.
    """

    topic: ClassVar[str] = _PREFIX + "stale.closed"
    session_id: int
    ac_mac: str


@dataclass(frozen=True)
class SessionEstablished(CoreEvent):
    """Topic: routerd.pppoe.client.session.established

    PADS received: the PPPoE session exists; open the data plane and run PPP.

    :ivar session_id: SESSION_ID.
    :ivar ac_mac: the AC's MAC.
    :ivar ac_name: its AC-Name.
    :ivar service_name: the Service-Name of the session.
    :ivar max_payload: RFC 4638 PPP-Max-Payload in force, or None (1492).
    """

    topic: ClassVar[str] = _PREFIX + "session.established"
    session_id: int
    ac_mac: str
    ac_name: str | None
    service_name: str
    max_payload: int | None


@dataclass(frozen=True)
class AuthSucceeded(CoreEvent):
    """Topic: routerd.pppoe.client.auth.succeeded

    :ivar method: ``pap``, ``chap``, or ``none`` when the AC asked for none.
    :ivar message: the peer's message.
    """

    topic: ClassVar[str] = _PREFIX + "auth.succeeded"
    method: str
    message: str


@dataclass(frozen=True)
class AuthFailed(CoreEvent):
    """Topic: routerd.pppoe.client.auth.failed

    :ivar method: ``pap`` or ``chap``.
    :ivar message: the peer's message (PAP Nak, CHAP Failure), or why.
    """

    topic: ClassVar[str] = _PREFIX + "auth.failed"
    method: str
    message: str


@dataclass(frozen=True)
class NetworkUp(CoreEvent):
    """Topic: routerd.pppoe.client.network.up

    IPCP opened (RFC 1332): apply ``local`` with peer ``peer``.

    :ivar local: our address.
    :ivar peer: the AC's address, or None when it gave none.
    :ivar dns: DNS servers (RFC 1877).
    :ivar mtu: the interface MTU (the peer's MRU, at most the path allows).
    :ivar mru: our MRU in force.
    """

    topic: ClassVar[str] = _PREFIX + "network.up"
    local: str
    peer: str | None
    dns: tuple[str, ...]
    mtu: int
    mru: int


@dataclass(frozen=True)
class Ipv6Up(CoreEvent):
    """Topic: routerd.pppoe.client.ipv6.up

    IPv6CP opened (RFC 5072): link-local addresses from the identifiers.

    :ivar local: our link-local address.
    :ivar peer: the peer's, or None.
    """

    topic: ClassVar[str] = _PREFIX + "ipv6.up"
    local: str
    peer: str | None


@dataclass(frozen=True)
class NetworkDown(CoreEvent):
    """Topic: routerd.pppoe.client.network.down

    An NCP left the Opened state: stop forwarding its packets.

    :ivar protocol: ``IPCP`` or ``IPV6CP``.
    """

    topic: ClassVar[str] = _PREFIX + "network.down"
    protocol: str


@dataclass(frozen=True)
class EchoReply(CoreEvent):
    """Topic: routerd.pppoe.client.echo.reply (debug)

    :ivar rtt: seconds from Echo-Request to Echo-Reply.
    """

    topic: ClassVar[str] = _PREFIX + "echo.reply"
    rtt: float


@dataclass(frozen=True)
class EchoTimeout(CoreEvent):
    """Topic: routerd.pppoe.client.echo.timeout

    :ivar missed: Echo-Requests in a row without a reply.
    :ivar interval: seconds between them.
    """

    topic: ClassVar[str] = _PREFIX + "echo.timeout"
    missed: int
    interval: float


@dataclass(frozen=True)
class SessionFailed(CoreEvent):
    """Topic: routerd.pppoe.client.session.failed

    An attempt ended before the session was up.

    :ivar reason: the exit reason.
    :ivar detail: what happened (``no_pado``, ``pads_error``, ``lcp_timeout`` ...).
    :ivar stage: the state it was in (``DISCOVERY``, ``ESTABLISH`` ...).
    :ivar message: a sentence for people.
    """

    topic: ClassVar[str] = _PREFIX + "session.failed"
    reason: ExitReason
    detail: str
    stage: str
    message: str


@dataclass(frozen=True)
class SessionEnded(CoreEvent):
    """Topic: routerd.pppoe.client.session.ended (an instruction, not published)

    The PPPoE session is gone (PADT sent or received): close the data plane
    and remove what was applied.

    :ivar session_id: its SESSION_ID.
    :ivar ac_mac: its AC.
    :ivar reason: the exit reason.
    :ivar detail: what happened (``padt``, ``echo_timeout``, ``stop`` ...).
    :ivar was_up: IPCP had opened.
    :ivar duration: seconds since the PADS.
    """

    topic: ClassVar[str] = _PREFIX + "session.ended"
    session_id: int
    ac_mac: str
    reason: ExitReason
    detail: str
    was_up: bool
    duration: float


@dataclass(frozen=True)
class RedialScheduled(CoreEvent):
    """Topic: routerd.pppoe.client.redial.scheduled

    :ivar delay: seconds until the next attempt.
    :ivar at: when (the core's clock).
    :ivar failures: failed attempts since the session was last up.
    :ivar reason: the exit reason of the attempt or session that ended.
    """

    topic: ClassVar[str] = _PREFIX + "redial.scheduled"
    delay: float
    at: float
    failures: int
    reason: ExitReason


@dataclass(frozen=True)
class RedialStopped(CoreEvent):
    """Topic: routerd.pppoe.client.redial.stopped

    ``maxfail`` attempts in a row failed: no more redials until a command.

    :ivar failures: the failed attempts.
    :ivar reason: the last exit reason.
    """

    topic: ClassVar[str] = _PREFIX + "redial.stopped"
    failures: int
    reason: ExitReason


@dataclass(frozen=True)
class PacketDropped(CoreEvent):
    """Topic: routerd.pppoe.client.packet.dropped (debug)

    :ivar reason: the counter key under ``counters.dropped``.
    """

    topic: ClassVar[str] = _PREFIX + "packet.dropped"
    reason: str
