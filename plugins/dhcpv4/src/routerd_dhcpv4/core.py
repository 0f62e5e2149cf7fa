"""Sans-I/O DHCPv4 client state machine (RFC 2131, RFC 4039, RFC 6842).

The core owns no socket, clock or randomness (DESIGN §1, style rule 11).  The
glue drives it:

.. code-block:: python

    core = DhcpClientCore(ClientConfig(mac=mac), rng=random.SystemRandom())
    core.start(now, saved_lease)
    loop:
        for out in core.packets_to_send(): transmit(out)
        for event in core.events(): handle(event)
        wait until core.next_deadline() or a packet arrives
        core.receive_payload(payload, now)  # or core.on_timer(now)

``now`` is float seconds of one monotonic clock, chosen by the caller.

Choices where RFC 2131 leaves room (peers named):

* SELECTING takes the first valid OFFER (RFC 2131 §4.4.1 allows waiting).
* REQUESTING gives up after ``timing.REQUEST_MAX_ATTEMPTS`` transmissions
  and goes back to INIT, which rediscovers at once.
* REBOOTING with no answer after ``timing.REBOOT_MAX_ATTEMPTS``: the lease is
  abandoned (:class:`LeaseAbandoned`) and discovery starts, as dhcpcd and
  networkd do (§3.2 step 3 would allow keeping it).
* ``release()`` sends DHCPRELEASE and parks the client in STOPPED: it stays
  idle until ``start()`` is called again (dhcpcd ``-k`` semantics).  ``stop()``
  also ends in STOPPED; it releases only with ``release_on_stop`` and
  otherwise keeps :attr:`DhcpClientCore.lease` for the glue to persist.
* ``link_down()`` cancels any exchange; a held lease is kept (still subject
  to expiry) in INIT-REBOOT, which ``link_up()`` turns into a REBOOTING
  exchange (RFC 2131 §3.2).  Without a lease, ``link_up()`` rediscovers.
  ``link_up()`` while the link is already up does nothing.
* A NAK sends the client back to INIT; discovery restarts after 1, 2, 4 ...
  64 s for consecutive NAKs (``timing.NAK_BACKOFF_*``).
* An ACK without a lease time (RFC 2131 table 3 makes it a MUST) is dropped.
* FORCERENEW (RFC 3203) is not supported (it needs RFC 6704 auth): dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass
import enum
import ipaddress
import logging
from typing import Concatenate
from typing import ParamSpec
from typing import Protocol
from typing import TypedDict

from routerd_dhcpv4 import timing
from routerd_dhcpv4.codec import BOOTREPLY
from routerd_dhcpv4.codec import DecodeError
from routerd_dhcpv4.codec import DhcpMessage
from routerd_dhcpv4.codec import MessageType
from routerd_dhcpv4.codec import RequestKind
from routerd_dhcpv4.codec import build_decline
from routerd_dhcpv4.codec import build_discover
from routerd_dhcpv4.codec import build_release
from routerd_dhcpv4.codec import build_request
from routerd_dhcpv4.codec import decode
from routerd_dhcpv4.codec import encode
from routerd_dhcpv4.events import CoreEvent
from routerd_dhcpv4.events import Declined
from routerd_dhcpv4.events import LeaseAbandoned
from routerd_dhcpv4.events import LeaseBound
from routerd_dhcpv4.events import LeaseExpired
from routerd_dhcpv4.events import LeaseRebound
from routerd_dhcpv4.events import LeaseRenewed
from routerd_dhcpv4.events import Nak
from routerd_dhcpv4.events import OptionRejected
from routerd_dhcpv4.events import PacketDropped
from routerd_dhcpv4.events import PacketReceived
from routerd_dhcpv4.events import PacketSent
from routerd_dhcpv4.events import Released
from routerd_dhcpv4.events import StateChanged
from routerd_dhcpv4.lease import Lease
from routerd_dhcpv4.lease import unusable_reason

__all__ = [
    "DEFAULT_PARAMETER_REQUEST_LIST",
    "TRANSITIONS",
    "ClientConfig",
    "DhcpClientCore",
    "InvalidTransition",
    "Outgoing",
    "RandomLike",
    "State",
]

log = logging.getLogger(__name__)

# 1 mask, 3 routers, 6 DNS, 15 domain, 26 MTU, 28 broadcast, 42 NTP,
# 51/58/59 lease/T1/T2, 54 server id, 119 search, 121 classless routes.
DEFAULT_PARAMETER_REQUEST_LIST: tuple[int, ...] = (
    1,
    3,
    6,
    15,
    26,
    28,
    42,
    51,
    54,
    58,
    59,
    119,
    121,
)


class State(enum.Enum):
    """Client states, RFC 2131 §4.4 figure 5 names (plus STOPPED)."""

    STOPPED = "STOPPED"
    INIT = "INIT"
    SELECTING = "SELECTING"
    REQUESTING = "REQUESTING"
    BOUND = "BOUND"
    RENEWING = "RENEWING"
    REBINDING = "REBINDING"
    INIT_REBOOT = "INIT-REBOOT"
    REBOOTING = "REBOOTING"


_S = State
# Every state change the core makes (RFC 2131 figure 5, plus STOPPED and the
# link/command edges).  A self-transition restarts an exchange and is always
# allowed.  Anything else is a bug and raises InvalidTransition.
TRANSITIONS: Mapping[State, frozenset[State]] = {
    _S.STOPPED: frozenset({_S.INIT, _S.INIT_REBOOT}),
    _S.INIT: frozenset({_S.SELECTING, _S.STOPPED}),
    _S.SELECTING: frozenset({_S.REQUESTING, _S.BOUND, _S.INIT, _S.STOPPED}),
    _S.REQUESTING: frozenset({_S.BOUND, _S.INIT, _S.STOPPED}),
    _S.BOUND: frozenset({_S.RENEWING, _S.REBINDING, _S.INIT, _S.INIT_REBOOT, _S.STOPPED}),
    _S.RENEWING: frozenset({_S.BOUND, _S.REBINDING, _S.INIT, _S.INIT_REBOOT, _S.STOPPED}),
    _S.REBINDING: frozenset({_S.BOUND, _S.RENEWING, _S.INIT, _S.INIT_REBOOT, _S.STOPPED}),
    _S.INIT_REBOOT: frozenset({_S.REBOOTING, _S.INIT, _S.STOPPED}),
    _S.REBOOTING: frozenset({_S.BOUND, _S.INIT, _S.INIT_REBOOT, _S.STOPPED}),
}

# States in which the client holds a lease that can expire.
_HOLDING = frozenset({_S.BOUND, _S.RENEWING, _S.REBINDING, _S.INIT_REBOOT, _S.REBOOTING})
_CONFIGURED = frozenset({_S.BOUND, _S.RENEWING, _S.REBINDING})
_WAITING_ACK = frozenset({_S.REQUESTING, _S.REBOOTING, _S.RENEWING, _S.REBINDING})


class InvalidTransition(RuntimeError):
    """The core tried a state change not in :data:`TRANSITIONS` (a bug)."""


class RandomLike(Protocol):
    """The slice of :class:`random.Random` the core uses (inject it)."""

    def getrandbits(self, k: int, /) -> int:
        """Return ``k`` random bits (xids)."""
        ...

    def uniform(self, a: float, b: float, /) -> float:
        """Return a float in ``[a, b]`` (jitter)."""
        ...


@dataclass(frozen=True)
class ClientConfig:
    """What the client says about itself.

    :ivar mac: hardware address, sent as chaddr.
    :ivar client_id: option 61 as bytes (see ``codec.client_id_rfc4361`` and
        ``codec.client_id_from_mac``), or None to send none.
    :ivar hostname: option 12.
    :ivar vendor_class: option 60.
    :ivar parameter_request_list: option 55.
    :ivar requested_address: hint sent as option 50 in DISCOVER.
    :ivar rapid_commit: send option 80 (RFC 4039) and accept a 2-message ACK.
    :ivar release_on_stop: ``stop()`` sends DHCPRELEASE.
    :ivar decline_on_conflict: ``conflict()`` sends DHCPDECLINE.
    :ivar initial_delay: upper bound of the random wait before the first
        DISCOVER after ``start()`` (RFC 2131 §4.4.1 suggests 1 to 10 s).
    :ivar request_broadcast: set the BROADCAST flag (RFC 2131 §4.1) in
        messages sent without an address; only for odd networks that need it.
    :ivar max_message_size: option 57 (>= 576, RFC 2132 §9.10), or None.
    :ivar htype: hardware type (1 = Ethernet).
    """

    mac: bytes
    client_id: bytes | None = None
    hostname: str | None = None
    vendor_class: bytes | None = None
    parameter_request_list: tuple[int, ...] = DEFAULT_PARAMETER_REQUEST_LIST
    requested_address: str | None = None
    rapid_commit: bool = False
    release_on_stop: bool = False
    decline_on_conflict: bool = True
    initial_delay: float = 0.0
    request_broadcast: bool = False
    max_message_size: int | None = 1500
    htype: int = 1

    def __post_init__(self) -> None:
        if not 1 <= len(self.mac) <= 16:
            raise ValueError("mac must be 1..16 bytes")
        if self.initial_delay < 0:
            raise ValueError("initial_delay must be >= 0")
        if any(not 1 <= code <= 254 for code in self.parameter_request_list):
            raise ValueError("parameter request list codes must be 1..254")
        if self.max_message_size is not None and self.max_message_size < 576:
            raise ValueError("max_message_size must be >= 576 (RFC 2132 §9.10)")
        if self.client_id is not None and len(self.client_id) < 2:
            raise ValueError("client_id must be at least 2 bytes (RFC 2132 §9.14)")
        if self.hostname is not None:
            self.hostname.encode("ascii")  # raises UnicodeEncodeError (ValueError)
        if self.requested_address is not None:
            ipaddress.IPv4Address(self.requested_address)


@dataclass(frozen=True)
class Outgoing:
    """A packet for the glue to send.

    :ivar message: what is sent.
    :ivar payload: ``encode(message)``, the UDP payload (port 68 → 67).
    :ivar broadcast: send to 255.255.255.255 (Ethernet broadcast).
    :ivar dest: unicast IP destination (the server) when not broadcast.
    :ivar source: IP source address: "0.0.0.0" until the client has an
        address, the leased address in RENEWING/REBINDING/RELEASE.
    """

    message: DhcpMessage
    payload: bytes
    broadcast: bool
    dest: str | None
    source: str


_P = ParamSpec("_P")
_Cmd = Callable[Concatenate["DhcpClientCore", _P], bool]


def _guard(*allowed: State) -> Callable[[_Cmd[_P]], _Cmd[_P]]:
    """Run a command only in ``allowed`` states; else log, count, return False."""

    def wrap(func: _Cmd[_P]) -> _Cmd[_P]:
        def inner(self: DhcpClientCore, /, *args: _P.args, **kwargs: _P.kwargs) -> bool:
            if self._state not in allowed:
                log.debug("ignoring %s() in %s", func.__name__, self._state.value)
                self._count("ignored", func.__name__)
                return False
            return func(self, *args, **kwargs)

        inner.__name__ = func.__name__
        inner.__qualname__ = func.__qualname__
        inner.__doc__ = func.__doc__
        return inner

    return wrap


class _CommonArgs(TypedDict):
    """Arguments every DISCOVER/REQUEST builder call shares."""

    xid: int
    chaddr: bytes
    client_id: bytes | None
    hostname: str | None
    vendor_class: bytes | None
    parameter_request_list: tuple[int, ...]
    max_message_size: int | None


def _usable_address(addr: str) -> bool:
    return unusable_reason(addr) is None


class DhcpClientCore:
    """The DHCPv4 client protocol state machine (sans-I/O).

    :param config: the client's identity and options.
    :param rng: ``random.Random``-like source for xids and jitter.
    """

    def __init__(self, config: ClientConfig, rng: RandomLike) -> None:
        self._config = config
        self._rng = rng
        self._state = State.STOPPED
        self._lease: Lease | None = None
        self._offer: DhcpMessage | None = None
        self._link_up = True
        self._xid = 0
        self._attempts = 0
        self._started = 0.0  # start of the current process, for ``secs``
        self._last_sent = 0.0
        self._fixed_secs: int | None = None
        self._retx_at: float | None = None
        self._nak_count = 0
        self._hint = config.requested_address
        self._last_transaction: float | None = None
        self._outgoing: list[Outgoing] = []
        self._events: list[CoreEvent] = []
        self._counters: dict[str, Counter[str]] = {
            "sent": Counter(),
            "received": Counter(),
            "dropped": Counter(),
            "retransmitted": Counter(),
            "ignored": Counter(),
            "rejected": Counter(),
        }

    # ------------------------------------------------------------ inspection

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def lease(self) -> Lease | None:
        """The lease held (bound, being renewed, or saved for INIT-REBOOT)."""
        return self._lease

    @property
    def xid(self) -> int:
        """The transaction id of the current exchange."""
        return self._xid

    @property
    def link_is_up(self) -> bool:
        """What the last ``link_up``/``link_down`` said (initially up)."""
        return self._link_up

    @property
    def last_transaction(self) -> float | None:
        """When a packet was last sent or accepted (caller's clock)."""
        return self._last_transaction

    @property
    def counters(self) -> dict[str, dict[str, int]]:
        """Copies of the counters: ``sent``/``received``/``retransmitted`` per
        message type, ``dropped`` per reason, ``ignored`` per command,
        ``rejected`` (values of ACKs left out of the lease) per option name."""
        return {group: dict(c) for group, c in self._counters.items()}

    def next_deadline(self) -> float | None:
        """When :meth:`on_timer` must next be called, or None."""
        times: list[float] = []
        if self._retx_at is not None:
            times.append(self._retx_at)
        lease = self._lease
        if lease is not None and self._state in _HOLDING:
            times.append(lease.expires_at)
            if self._state is State.BOUND:
                times += (lease.t1_at, lease.t2_at)
            elif self._state is State.RENEWING:
                times.append(lease.t2_at)
        finite = [t for t in times if t != float("inf")]
        return min(finite) if finite else None

    def packets_to_send(self) -> list[Outgoing]:
        """Drain the packets queued since the last call."""
        out, self._outgoing = self._outgoing, []
        return out

    def events(self) -> list[CoreEvent]:
        """Drain the events queued since the last call."""
        out, self._events = self._events, []
        return out

    # ------------------------------------------------------------ commands

    @_guard(State.STOPPED)
    def start(self, now: float, saved_lease: Lease | None = None) -> bool:
        """Start; with an unexpired lease, INIT-REBOOT (RFC 2131 §3.2).

        :param saved_lease: a lease from a previous run; defaults to the lease
            still held after ``stop()``.
        """
        lease = saved_lease if saved_lease is not None else self._lease
        self._nak_count = 0
        if lease is not None and not lease.expired(now):
            self._lease = lease
            self._transition(State.INIT_REBOOT, "start")
            if self._link_up:
                self._begin_reboot(now)
            return True
        if lease is not None:
            self._hint = lease.address  # expired: still a good hint
        self._lease = None
        delay = self._config.initial_delay
        # RFC 2131 §4.4.1: a random wait desynchronises clients at startup.
        self._enter_init(now, self._rng.uniform(0.0, delay) if delay else 0.0, "start")
        return True

    @_guard(*(set(State) - {State.STOPPED}))
    def stop(self, now: float) -> bool:
        """Stop; send DHCPRELEASE first when ``release_on_stop`` is set."""
        if self._config.release_on_stop and self._state in _CONFIGURED:
            return self._release(now)
        self._cancel()
        self._transition(State.STOPPED, "stop")
        return True

    @_guard(*_CONFIGURED)
    def release(self, now: float) -> bool:
        """Send DHCPRELEASE, drop the lease, park in STOPPED (see module doc)."""
        return self._release(now)

    @_guard(*_CONFIGURED)
    def renew(self, now: float) -> bool:
        """Renew now (as at T1): unicast REQUEST to the server."""
        self._enter_renewing(now, "renew")
        return True

    @_guard(*_CONFIGURED)
    def rebind(self, now: float) -> bool:
        """Rebind now (as at T2): broadcast REQUEST to any server."""
        self._enter_rebinding(now, "rebind")
        return True

    @_guard(*_CONFIGURED)
    def conflict(self, now: float, address: str) -> bool:
        """The glue found ``address`` in use (ARP, RFC 5227): DECLINE it.

        RFC 2131 §3.1 step 5 / §4.4.1: send DHCPDECLINE, restart configuration
        no sooner than 10 s later.  Returns False (and counts) when the address
        is not the lease's or ``decline_on_conflict`` is off.
        """
        lease = self._lease
        if lease is None or lease.address != address:
            self._count("dropped", "conflict_other_address")
            return False
        if not self._config.decline_on_conflict:
            self._count("dropped", "conflict_decline_disabled")
            return False
        self._xid = self._new_xid()
        msg = build_decline(
            xid=self._xid,
            chaddr=self._config.mac,
            requested_ip=address,
            server_id=lease.server_id,
            client_id=self._config.client_id,
        )
        # RFC 2131 §4.4.1: the client has no usable address: broadcast it.
        self._queue(msg, now, broadcast=True, dest=None, source="0.0.0.0")
        self._lease = None
        self._hint = None
        self._events.append(Declined(address, lease))
        self._enter_init(now, timing.DECLINE_BACKOFF, "decline")
        return True

    def link_down(self, now: float) -> None:
        """The link went down: cancel the exchange, keep an unexpired lease."""
        self._link_up = False
        if self._state is State.STOPPED:
            return
        self._cancel()
        if self._lease is None:
            self._transition(State.INIT, "link_down")
        elif self._lease.expired(now):
            self._expire(now)  # INIT, and no discovery while the link is down
        else:
            self._transition(State.INIT_REBOOT, "link_down")

    def link_up(self, now: float) -> None:
        """The link came up: INIT-REBOOT with a lease (RFC 2131 §3.2), else
        discover.  Does nothing when the link was already up."""
        if self._link_up:
            return
        self._link_up = True
        if self._state is State.INIT_REBOOT:
            if self._lease is not None and not self._lease.expired(now):
                self._begin_reboot(now)
            else:
                self._expire(now)
        elif self._state is State.INIT:
            self._begin_discover(now)

    # ------------------------------------------------------------ input

    def receive_payload(self, payload: bytes, now: float) -> None:
        """Decode (leniently) and :meth:`receive`; undecodable → dropped."""
        try:
            msg = decode(payload, strict=False)
        except DecodeError as exc:
            log.debug("dropping undecodable packet: %s", exc)
            self._drop("decode_error", None)
            return
        self._received(msg, now)

    def receive(self, msg: DhcpMessage, now: float) -> None:
        """Handle a decoded message from the network.

        Anything not addressed to the current exchange is dropped and counted
        under ``counters["dropped"]`` (never an exception).
        """
        self._received(msg, now)

    def _received(self, msg: DhcpMessage, now: float) -> None:
        name = msg.message_type_name
        self._count("received", name)
        self._events.append(PacketReceived(name, msg.xid, msg.server_id))
        reason = self._mismatch(msg)
        if reason is not None:
            self._drop(reason, msg)
            return
        mtype = msg.message_type
        if self._state is State.SELECTING and mtype == MessageType.OFFER:
            self._on_offer(msg, now)
        elif self._state is State.SELECTING and mtype == MessageType.ACK:
            # RFC 4039 §4: an ACK in SELECTING is only valid as a rapid commit
            # answer to a DISCOVER that asked for it.
            if self._config.rapid_commit and msg.rapid_commit:
                self._on_ack(msg, now)
            else:
                self._drop("unexpected_type", msg)
        elif self._state in _WAITING_ACK and mtype == MessageType.ACK:
            self._on_ack(msg, now)
        elif self._state in _WAITING_ACK and mtype == MessageType.NAK:
            self._on_nak(msg, now)
        else:
            self._drop("unexpected_type", msg)

    def _mismatch(self, msg: DhcpMessage) -> str | None:
        """Why ``msg`` is not for the current exchange, or None."""
        if self._state not in _WAITING_ACK and self._state is not State.SELECTING:
            return "not_waiting"
        if msg.op != BOOTREPLY:
            return "not_reply"
        if msg.message_type is None:
            return "bootp"
        # RFC 2131 §4.1: the xid matches replies to the pending request.
        if msg.xid != self._xid:
            return "xid_mismatch"
        if msg.chaddr != self._config.mac:
            return "chaddr_mismatch"
        # RFC 6842 §3: a client-id in a reply must be ours.
        cid = self._config.client_id
        if cid is not None and msg.client_id is not None and msg.client_id != cid:
            return "client_id_mismatch"
        return None

    def on_timer(self, now: float) -> None:
        """Handle whatever deadline has passed (call at ``next_deadline()``)."""
        lease = self._lease
        if lease is not None and self._state in _HOLDING and lease.expired(now):
            self._expire(now)
        elif self._state is State.BOUND and lease is not None and now >= lease.t2_at:
            # T1 and T2 both passed (e.g. suspended host): straight to REBINDING.
            self._enter_rebinding(now, "t2")
        elif self._state is State.BOUND and lease is not None and now >= lease.t1_at:
            self._enter_renewing(now, "t1")
        elif self._state is State.RENEWING and lease is not None and now >= lease.t2_at:
            # RFC 2131 §4.4.5: no ACK before T2 → REBINDING.
            self._enter_rebinding(now, "t2")
        elif self._retx_at is not None and now >= self._retx_at:
            self._retransmit_due(now)

    # ------------------------------------------------------------ handlers

    def _on_offer(self, msg: DhcpMessage, now: float) -> None:
        if not _usable_address(msg.yiaddr):
            self._drop("bad_yiaddr", msg)
            return
        # RFC 2131 table 3: an OFFER MUST carry the server identifier, and
        # the REQUEST must echo it (§4.3.2).
        if msg.server_id is None:
            self._drop("no_server_id", msg)
            return
        # RFC 2131 §4.4.1: take this offer; the REQUEST keeps the xid, and
        # "MUST use the same value in the DHCP message header's 'secs' field".
        self._offer = msg
        self._fixed_secs = self._secs(self._last_sent)
        self._attempts = 0
        self._last_transaction = now
        self._transition(State.REQUESTING, "offer")
        self._send(now)

    def _on_ack(self, msg: DhcpMessage, now: float) -> None:
        offer = self._offer
        old = self._lease
        if (
            self._state is State.REQUESTING
            and offer is not None
            and msg.server_id is not None
            and msg.server_id != offer.server_id
        ):
            # RFC 2131 §4.3.2: only the selected server answers this REQUEST.
            # (In RENEWING another server's ACK is accepted, §4.4.5 allows it.)
            self._drop("server_id_mismatch", msg)
            return
        if not _usable_address(msg.yiaddr):
            self._drop("bad_yiaddr", msg)
            return
        fallback = offer.server_id if offer is not None else None
        if fallback is None and old is not None:
            fallback = old.server_id
        try:
            # RFC 2131 §4.4.5: the lease counts from when the REQUEST was sent.
            lease = Lease.from_ack(msg, self._last_sent, fallback)
        except ValueError:
            self._drop("bad_ack", msg)
            return
        self._count_rejected(lease)
        previous_state = self._state
        self._lease = lease
        self._offer = None
        self._retx_at = None
        self._nak_count = 0
        self._hint = lease.address
        self._last_transaction = now
        reason = "rapid_commit" if previous_state is State.SELECTING else "ack"
        self._transition(State.BOUND, reason)
        same = old is not None and old.interface_address == lease.interface_address
        if previous_state is State.RENEWING and same:
            self._events.append(LeaseRenewed(lease, old))
        elif previous_state is State.REBINDING and same:
            self._events.append(LeaseRebound(lease, old))
        else:
            self._events.append(LeaseBound(lease, old))

    def _count_rejected(self, lease: Lease) -> None:
        by_option: dict[int, list[tuple[str, str, str]]] = {}
        for item in lease.rejected:
            self._count("rejected", item.name)
            by_option.setdefault(item.option, []).append((item.name, item.value, item.reason))
        for code, items in by_option.items():
            self._events.append(
                OptionRejected(
                    code,
                    items[0][0],
                    tuple(v for _, v, _ in items),
                    tuple(r for _, _, r in items),
                    lease.server_id,
                    lease.interface_address,
                )
            )

    def _on_nak(self, msg: DhcpMessage, now: float) -> None:
        offer = self._offer
        if (
            self._state is State.REQUESTING
            and offer is not None
            and msg.server_id is not None
            and msg.server_id != offer.server_id
        ):
            self._drop("nak_wrong_server", msg)
            return
        # RFC 2131 figure 5, §3.1 step 5, §3.2 step 3: DHCPNAK → stop using
        # the address, back to INIT and restart configuration.
        lease = self._lease
        self._lease = None
        self._offer = None
        self._hint = None
        self._last_transaction = now
        self._events.append(Nak(lease, msg.message, msg.server_id))
        self._nak_count += 1
        delay = min(
            timing.NAK_BACKOFF_INITIAL * 2 ** min(self._nak_count - 1, 16),
            timing.NAK_BACKOFF_MAX,
        )
        self._enter_init(now, delay, "nak")

    def _expire(self, now: float) -> None:
        # RFC 2131 §4.4.5: "If the lease expires before the client receives a
        # DHCPACK, the client moves to INIT state, MUST immediately stop any
        # other network processing and requests network initialization
        # parameters as if the client were uninitialized."
        lease = self._lease
        self._lease = None
        if lease is not None:
            self._hint = lease.address
            self._events.append(LeaseExpired(lease))
        self._cancel()
        self._enter_init(now, 0.0, "expired")

    def _retransmit_due(self, now: float) -> None:
        state = self._state
        if state is State.INIT:
            self._begin_discover(now)
        elif state is State.REQUESTING and (self._attempts >= timing.REQUEST_MAX_ATTEMPTS):
            # RFC 2131 §3.1 step 5: neither ACK nor NAK → back to INIT.
            self._offer = None
            self._enter_init(now, 0.0, "request_timeout")
        elif state is State.REBOOTING and (self._attempts >= timing.REBOOT_MAX_ATTEMPTS):
            lease = self._lease
            self._lease = None
            if lease is not None:
                self._hint = lease.address
                self._events.append(LeaseAbandoned(lease, "reboot_timeout"))
            self._enter_init(now, 0.0, "reboot_timeout")
        else:
            self._send(now)

    # ------------------------------------------------------------ transitions

    def _transition(self, new: State, reason: str) -> None:
        old = self._state
        if new is old:
            return
        if new not in TRANSITIONS[old]:
            raise InvalidTransition(f"{old.value} -> {new.value} ({reason})")
        log.debug("%s -> %s (%s)", old.value, new.value, reason)
        self._state = new
        self._events.append(StateChanged(old.value, new.value, reason))

    def _enter_init(self, now: float, delay: float, reason: str) -> None:
        self._cancel()
        self._transition(State.INIT, reason)
        if not self._link_up:
            return
        if delay <= 0:
            self._begin_discover(now)
        else:
            self._retx_at = now + delay

    def _begin_discover(self, now: float) -> None:
        self._xid = self._new_xid()
        self._started = now
        self._attempts = 0
        self._transition(State.SELECTING, "discover")
        self._send(now)

    def _begin_reboot(self, now: float) -> None:
        self._xid = self._new_xid()
        self._started = now
        self._attempts = 0
        self._transition(State.REBOOTING, "init_reboot")
        self._send(now)

    def _enter_renewing(self, now: float, reason: str) -> None:
        self._xid = self._new_xid()
        self._started = now
        self._attempts = 0
        self._transition(State.RENEWING, reason)
        self._send(now)

    def _enter_rebinding(self, now: float, reason: str) -> None:
        self._xid = self._new_xid()
        if self._state is not State.RENEWING:
            self._started = now  # else ``secs`` keeps counting from T1
        self._attempts = 0
        self._transition(State.REBINDING, reason)
        self._send(now)

    def _release(self, now: float) -> bool:
        lease = self._lease
        if lease is None:  # pragma: no cover - _CONFIGURED states hold a lease
            return False
        self._xid = self._new_xid()
        msg = build_release(
            xid=self._xid,
            chaddr=self._config.mac,
            ciaddr=lease.address,
            server_id=lease.server_id,
            client_id=self._config.client_id,
        )
        # RFC 2131 §4.4.6: DHCPRELEASE is unicast to the server; it is not
        # acknowledged, so it is sent once.
        self._queue(msg, now, broadcast=False, dest=lease.server_id, source=lease.address)
        self._lease = None
        self._events.append(Released(lease))
        self._cancel()
        self._transition(State.STOPPED, "release")
        return True

    def _cancel(self) -> None:
        self._retx_at = None
        self._offer = None

    # ------------------------------------------------------------ sending

    def _new_xid(self) -> int:
        return self._rng.getrandbits(32) & 0xFFFFFFFF

    def _secs(self, now: float) -> int:
        # RFC 2131 §2: seconds since the client began acquisition or renewal.
        return max(0, min(int(now - self._started), 0xFFFF))

    def _build(self, now: float) -> tuple[DhcpMessage, bool, str | None, str]:
        """The message for the current state: (message, broadcast, dest, src)."""
        cfg = self._config
        common = _CommonArgs(
            xid=self._xid,
            chaddr=cfg.mac,
            client_id=cfg.client_id,
            hostname=cfg.hostname,
            vendor_class=cfg.vendor_class,
            parameter_request_list=cfg.parameter_request_list,
            max_message_size=cfg.max_message_size,
        )
        state, lease, offer = self._state, self._lease, self._offer
        if state is State.SELECTING:
            msg = build_discover(
                secs=self._secs(now),
                broadcast=cfg.request_broadcast,
                requested_ip=self._hint,  # RFC 2131 §4.4.1: MAY suggest
                rapid_commit=cfg.rapid_commit,  # RFC 4039 §4
                **common,
            )
            return msg, True, None, "0.0.0.0"
        if state is State.REQUESTING and offer is not None:
            # RFC 2131 §4.3.2 SELECTING: server-id and requested-ip, no ciaddr.
            msg = build_request(
                RequestKind.SELECTING,
                secs=self._fixed_secs or 0,
                broadcast=cfg.request_broadcast,
                server_id=offer.server_id,
                requested_ip=offer.yiaddr,
                **common,
            )
            return msg, True, None, "0.0.0.0"
        if lease is None:  # pragma: no cover - guarded by the callers
            raise InvalidTransition(f"no lease to build a message in {state.value}")
        if state is State.REBOOTING:
            # RFC 2131 §4.3.2 INIT-REBOOT: requested-ip, no server-id, no ciaddr.
            msg = build_request(
                RequestKind.INIT_REBOOT,
                secs=self._secs(now),
                broadcast=cfg.request_broadcast,
                requested_ip=lease.address,
                **common,
            )
            return msg, True, None, "0.0.0.0"
        kind = RequestKind.RENEWING if state is State.RENEWING else RequestKind.REBINDING
        # RFC 2131 §4.4.5: ciaddr set, no server-id, no requested-ip;
        # RENEWING is unicast to the server, REBINDING is broadcast.
        msg = build_request(kind, secs=self._secs(now), ciaddr=lease.address, **common)
        if kind is RequestKind.RENEWING:
            return msg, False, lease.server_id, lease.address
        return msg, True, None, lease.address

    def _send(self, now: float) -> None:
        msg, broadcast, dest, source = self._build(now)
        self._attempts += 1
        self._last_sent = now
        self._last_transaction = now
        self._queue(msg, now, broadcast=broadcast, dest=dest, source=source)
        self._retx_at = now + self._retransmit_delay(now)

    def _retransmit_delay(self, now: float) -> float:
        lease = self._lease
        if self._state is State.RENEWING and lease is not None:
            return timing.renew_retransmit_delay(lease.t2_at - now)
        if self._state is State.REBINDING and lease is not None:
            return timing.renew_retransmit_delay(lease.expires_at - now)
        # RFC 2131 §4.1: 4, 8, 16, 32, 64 s, each randomised by ±1 s.
        jitter = timing.RETRANSMIT_JITTER
        return timing.retransmit_base(self._attempts) + self._rng.uniform(-jitter, jitter)

    def _queue(
        self,
        msg: DhcpMessage,
        now: float,
        *,
        broadcast: bool,
        dest: str | None,
        source: str,
    ) -> None:
        name = msg.message_type_name
        attempt = self._attempts if name in ("DISCOVER", "REQUEST") else 1
        self._outgoing.append(Outgoing(msg, encode(msg), broadcast, dest, source))
        self._count("sent", name)
        if attempt > 1:
            self._count("retransmitted", name)
        self._events.append(PacketSent(name, msg.xid, attempt, broadcast, dest))

    # ------------------------------------------------------------ accounting

    def _count(self, group: str, key: str) -> None:
        self._counters[group][key] += 1

    def _drop(self, reason: str, msg: DhcpMessage | None) -> None:
        self._count("dropped", reason)
        if msg is None:
            self._events.append(PacketDropped(reason))
        else:
            log.debug(
                "dropping %s xid %#x in %s: %s",
                msg.message_type_name,
                msg.xid,
                self._state.value,
                reason,
            )
            self._events.append(PacketDropped(reason, msg.message_type_name, msg.xid))
