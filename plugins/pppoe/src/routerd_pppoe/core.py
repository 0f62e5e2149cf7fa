"""Sans-I/O PPPoE client: discovery, the PPP link, teardown and redial.

The core owns no socket, clock or randomness (DESIGN §1, style rule 11). The
glue drives it:

.. code-block:: python

    core = PPPoEClientCore(ClientConfig(...), rng=random.SystemRandom())
    core.start(now, stale=(session_id, ac_mac) or None)
    loop:
        for out in core.outputs(): ...   # SendDiscovery, SendPpp, CoreEvent, in order
        wait until core.next_deadline() or a frame arrives
        core.receive_discovery(src, dst, payload, now)  # 0x8863 payloads
        core.receive_ppp(protocol, info, now)           # control frames of the session
        core.on_timer(now)

``outputs()`` is one ordered list, because order matters to the glue: a
:class:`~routerd_pppoe.events.SessionEstablished` (open the data plane)
comes before the first LCP frame, and the last Terminate-Request before the
:class:`~routerd_pppoe.events.SessionEnded` that closes it.

States (pppd's phase names where they exist): STOPPED, DISCOVERY (PADI),
REQUEST (PADR), ESTABLISH, AUTHENTICATE, NETWORK, RUNNING, TERMINATE,
HOLDOFF (waiting to redial), LINK_DOWN (no carrier), FAILED (``maxfail``
reached; a command restarts it).

Redial (pppd ``persist``): after a session or an attempt ends, the next
attempt waits ``timing.redial_delay(failures, holdoff)`` (holdoff, doubling
per failed attempt since the last session that came up, capped), with
jitter; an authentication failure waits ``timing.auth_failure_delay`` (60 s
doubling to an hour) instead. ``maxfail`` failed attempts in a row (0:
never) stop redialing. A session ended by the user (``stop``) does not
redial; ``reconnect`` redials at once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
import enum

from routerd_pppoe import timing
from routerd_pppoe.codec import Code
from routerd_pppoe.codec import DecodeError
from routerd_pppoe.codec import Discovery
from routerd_pppoe.codec import Tag
from routerd_pppoe.codec import decode_discovery
from routerd_pppoe.codec import encode_discovery
from routerd_pppoe.codec import mac_to_str
from routerd_pppoe.discovery import DiscoveryClient
from routerd_pppoe.discovery import DiscoveryConfig
from routerd_pppoe.discovery import Established
from routerd_pppoe.discovery import Failed
from routerd_pppoe.discovery import Ignored
from routerd_pppoe.events import CoreEvent
from routerd_pppoe.events import DiscoveryError
from routerd_pppoe.events import ExitReason
from routerd_pppoe.events import NetworkUp
from routerd_pppoe.events import OfferIgnored
from routerd_pppoe.events import RedialScheduled
from routerd_pppoe.events import RedialStopped
from routerd_pppoe.events import SessionEnded
from routerd_pppoe.events import SessionEstablished
from routerd_pppoe.events import SessionFailed
from routerd_pppoe.events import StaleSessionClosed
from routerd_pppoe.events import StateChanged
from routerd_pppoe.lcp import AUTH_CHAP
from routerd_pppoe.lcp import AUTH_PAP
from routerd_pppoe.link import LinkConfig
from routerd_pppoe.link import Phase
from routerd_pppoe.link import PppLink
from routerd_pppoe.randomness import RandomLike

__all__ = [
    "TRANSITIONS",
    "ClientConfig",
    "InvalidTransition",
    "Output",
    "PPPoEClientCore",
    "SendDiscovery",
    "SendPpp",
    "Session",
    "State",
]


class State(enum.Enum):
    STOPPED = "STOPPED"
    DISCOVERY = "DISCOVERY"
    REQUEST = "REQUEST"
    ESTABLISH = "ESTABLISH"
    AUTHENTICATE = "AUTHENTICATE"
    NETWORK = "NETWORK"
    RUNNING = "RUNNING"
    TERMINATE = "TERMINATE"
    HOLDOFF = "HOLDOFF"
    LINK_DOWN = "LINK_DOWN"
    FAILED = "FAILED"


_S = State
_SESSION = frozenset({_S.ESTABLISH, _S.AUTHENTICATE, _S.NETWORK, _S.RUNNING, _S.TERMINATE})
_DIALING = frozenset({_S.DISCOVERY, _S.REQUEST})
_IDLE = frozenset({_S.STOPPED, _S.HOLDOFF, _S.LINK_DOWN, _S.FAILED})
# Every state change the core makes. Anything else is a bug (InvalidTransition).
TRANSITIONS: Mapping[State, frozenset[State]] = {
    _S.STOPPED: frozenset({_S.DISCOVERY, _S.LINK_DOWN}),
    _S.DISCOVERY: frozenset({_S.REQUEST, *_IDLE}),
    _S.REQUEST: frozenset({_S.ESTABLISH, *_IDLE}),
    _S.ESTABLISH: frozenset({_S.AUTHENTICATE, _S.NETWORK, _S.TERMINATE, *_IDLE}),
    _S.AUTHENTICATE: frozenset({_S.ESTABLISH, _S.NETWORK, _S.TERMINATE, *_IDLE}),
    _S.NETWORK: frozenset({_S.ESTABLISH, _S.RUNNING, _S.TERMINATE, *_IDLE}),
    _S.RUNNING: frozenset({_S.ESTABLISH, _S.NETWORK, _S.TERMINATE, *_IDLE}),
    _S.TERMINATE: _IDLE,
    _S.HOLDOFF: frozenset({_S.DISCOVERY, _S.STOPPED, _S.LINK_DOWN, _S.FAILED}),
    _S.LINK_DOWN: frozenset({_S.DISCOVERY, _S.STOPPED}),
    _S.FAILED: frozenset({_S.DISCOVERY, _S.STOPPED, _S.LINK_DOWN}),
}
_PHASE_STATE = {
    Phase.ESTABLISH: _S.ESTABLISH,
    Phase.AUTHENTICATE: _S.AUTHENTICATE,
    Phase.NETWORK: _S.NETWORK,
    Phase.RUNNING: _S.RUNNING,
    Phase.TERMINATE: _S.TERMINATE,
}


class InvalidTransition(RuntimeError):
    """The core tried a state change not in :data:`TRANSITIONS` (a bug)."""


@dataclass(frozen=True)
class ClientConfig:
    """What the client is and does (from the spec, the link and the password file).

    :ivar max_payload: ask for RFC 4638 PPP-Max-Payload (``mtu`` > 1492), or None.
    :ivar holdoff: the first redial delay (pppd ``holdoff``).
    :ivar maxfail: failed attempts in a row before giving up (0: never).
    """

    mac: bytes
    username: bytes
    password: bytes = field(repr=False)
    auth_methods: frozenset[str] = frozenset({AUTH_PAP, AUTH_CHAP})
    service_name: str = ""
    ac_name: str | None = None
    mtu: int = timing.PPPOE_MRU
    ipv6: bool = False
    want_dns: bool = True
    echo_interval: float = 30.0
    echo_failure: int = 4
    holdoff: float = 5.0
    maxfail: int = 0
    discovery_timeout: float = timing.DISCOVERY_TIMEOUT
    discovery_attempts: int = timing.DISCOVERY_ATTEMPTS
    restart_timer: float = timing.RESTART_TIMER

    @property
    def max_payload(self) -> int | None:
        return self.mtu if self.mtu > timing.PPPOE_MRU else None


@dataclass(frozen=True)
class SendDiscovery:
    """Send a discovery packet (0x8863) to ``dst``."""

    dst: bytes
    packet: bytes
    code: str


@dataclass(frozen=True)
class SendPpp:
    """Send a PPP control frame on the session (through the backend)."""

    protocol: int
    info: bytes


Output = SendDiscovery | SendPpp | CoreEvent


@dataclass
class Session:
    """The PPPoE session in progress."""

    session_id: int
    ac_mac: bytes
    ac_name: str | None
    service_name: str
    max_payload: int | None
    started: float
    dial_started: float
    up_at: float | None = None
    network: NetworkUp | None = None


class PPPoEClientCore:
    """The client of one Ethernet interface."""

    def __init__(self, config: ClientConfig, rng: RandomLike) -> None:
        self.config = config
        self.rng = rng
        self._state = _S.STOPPED
        self._out: list[Output] = []
        self.discovery: DiscoveryClient | None = None
        self.link: PppLink | None = None
        self.session: Session | None = None
        self.redial_at: float | None = None
        self.failures = 0
        self.auth_failures = 0
        self.redials = 0
        self.sessions = 0
        self.last_exit: ExitReason | None = None
        self.last_detail: str | None = None
        self.last_message: str | None = None
        self.link_is_up = True
        self.dial_started: float | None = None
        self.counters: dict[str, Counter[str]] = {
            "sent": Counter(),
            "received": Counter(),
            "dropped": Counter(),
        }

    # -- observation ------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self._state

    def outputs(self) -> list[Output]:
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        times: list[float] = []
        if self.discovery is not None and self.discovery.deadline is not None:
            times.append(self.discovery.deadline)
        if self.link is not None:
            deadline = self.link.next_deadline()
            if deadline is not None:
                times.append(deadline)
        if self.redial_at is not None and self._state is _S.HOLDOFF:
            times.append(self.redial_at)
        return min(times) if times else None

    def all_counters(self) -> dict[str, Counter[str]]:
        out = {k: Counter(v) for k, v in self.counters.items()}
        for part in (self.discovery, self.link):
            if part is None:
                continue
            groups = part.all_counters() if isinstance(part, PppLink) else part.counters
            for group, values in groups.items():
                out.setdefault(group, Counter()).update(values)
        return out

    def _retire_counters(self) -> None:
        """Keep the counts of a discovery or link that is being replaced."""
        for part in (self.discovery, self.link):
            if part is None:
                continue
            groups = part.all_counters() if isinstance(part, PppLink) else part.counters
            for group, values in groups.items():
                self.counters.setdefault(group, Counter()).update(values)

    # -- commands ---------------------------------------------------------------------------
    def start(self, now: float, stale: tuple[int, bytes] | None = None) -> None:
        """Dial. ``stale``: a session a previous run left open, closed with a PADT first."""
        if stale is not None:
            session_id, ac_mac = stale
            self._send_padt(session_id, ac_mac, b"stale session from a previous run")
            self._out.append(StaleSessionClosed(session_id, mac_to_str(ac_mac)))
        self.failures = 0
        self.auth_failures = 0
        if not self.link_is_up:
            self._transition(_S.LINK_DOWN, "start_without_link")
            return
        self._dial(now, "start")

    def stop(self, now: float) -> bool:
        """Begin a graceful stop: Terminate-Request; True when an Ack is worth waiting for."""
        self.redial_at = None
        if self.link is not None and self.session is not None and self.link.finished is None:
            self.link.close(now, ExitReason.USER_REQUEST, "stop", "stopped by the user")
            self._sync_link(now)
            return self.link is not None and self.link.finished is None
        self._end_all(now, ExitReason.USER_REQUEST, "stop", "stopped by the user", redial=False)
        return False

    def finish_stop(self, now: float) -> None:
        """End the stop begun by :meth:`stop`: PADT, session ended, STOPPED."""
        if self.link is not None:
            self.link.force_finish(now)
            self._sync_link(now)
        self._end_all(now, ExitReason.USER_REQUEST, "stop", "stopped by the user", redial=False)

    def reconnect(self, now: float) -> None:
        """End whatever is in progress (PADT) and dial again at once."""
        if self.session is not None or self._state in _DIALING:
            self._end_all(
                now, ExitReason.USER_REQUEST, "reconnect", "reconnect requested", redial=False
            )
        self.failures = 0
        self.auth_failures = 0
        if self.link_is_up:
            self._dial(now, "reconnect")
        elif self._state is not _S.LINK_DOWN:
            self._transition(_S.LINK_DOWN, "reconnect_without_link")

    def dial_now(self, now: float) -> bool:
        """Redial now when idle (HOLDOFF, FAILED); False when a session or dial is in progress."""
        if self._state not in (_S.HOLDOFF, _S.FAILED, _S.STOPPED) or not self.link_is_up:
            return False
        self.failures = 0 if self._state is _S.FAILED else self.failures
        self._dial(now, "command")
        return True

    def echo_now(self, now: float) -> bool:
        return self.link is not None and self.link.echo_now(now)

    def link_down(self, now: float) -> None:
        """The Ethernet lost its carrier: the session is gone (pppd: hangup)."""
        if not self.link_is_up:
            return
        self.link_is_up = False
        if self._state is _S.STOPPED:
            return
        if self.session is not None or self._state in _DIALING:
            self._end_all(
                now,
                ExitReason.HANGUP,
                "carrier_lost",
                "the Ethernet link lost carrier",
                redial=False,
                send_padt=False,
            )
        self.redial_at = None
        if self._state is not _S.LINK_DOWN:
            self._transition(_S.LINK_DOWN, "carrier_lost")

    def link_up(self, now: float) -> None:
        if self.link_is_up:
            return
        self.link_is_up = True
        if self._state is _S.LINK_DOWN:
            self._dial(now, "carrier")

    def backend_failed(self, now: float, message: str) -> None:
        """The glue could not open the data plane for the session just established."""
        if self.session is None:
            return
        if self.link is not None:
            self.link.abort(now, ExitReason.CONNECT_FAILED, "backend", message)
        self._sync_link(now)

    # -- input ---------------------------------------------------------------------------------
    def receive_discovery(self, src: bytes, dst: bytes, payload: bytes, now: float) -> None:
        try:
            packet = decode_discovery(payload)
        except DecodeError:
            self._drop("malformed_discovery")
            return
        if packet.code == Code.PADT:
            self._on_padt(src, packet, now)
            return
        if packet.code in (Code.PADI, Code.PADR):
            self._drop("client_packet")  # another host's discovery on the segment
            return
        discovery = self.discovery
        if discovery is None or self._state not in _DIALING:
            self._drop("no_discovery")
            return
        discovery.receive(src, dst, packet, now)
        self._after_discovery(now)

    def receive_ppp(self, protocol: int, info: bytes, now: float) -> None:
        if self.link is None or self.session is None:
            self._drop("no_session")
            return
        self.link.receive(protocol, info, now)
        self._sync_link(now)

    def on_timer(self, now: float) -> None:
        if self.discovery is not None and self._state in _DIALING:
            self.discovery.on_timer(now)
            self._after_discovery(now)
        if self.link is not None:
            self.link.on_timer(now)
            self._sync_link(now)
        if self._state is _S.HOLDOFF and self.redial_at is not None and now >= self.redial_at:
            self.redial_at = None
            self.redials += 1
            self._dial(now, "holdoff")

    # -- discovery ---------------------------------------------------------------------------
    def _dial(self, now: float, reason: str) -> None:
        self._retire_counters()
        self.link = None
        self.session = None
        self.redial_at = None
        self.dial_started = now
        self.discovery = DiscoveryClient(
            DiscoveryConfig(
                mac=self.config.mac,
                service_name=self.config.service_name,
                ac_name=self.config.ac_name,
                max_payload=self.config.max_payload,
                timeout=self.config.discovery_timeout,
                attempts=self.config.discovery_attempts,
            ),
            self.rng,
        )
        self._transition(_S.DISCOVERY, reason)
        self.discovery.start(now)
        self._after_discovery(now)

    def _after_discovery(self, now: float) -> None:
        discovery = self.discovery
        if discovery is None:
            return
        for note in discovery.take_notes():
            if isinstance(note, Ignored):
                self._out.append(OfferIgnored(note.ac_mac, note.ac_name, note.why))
            else:
                self._out.append(DiscoveryError(note.code, note.tag, note.text, note.ac_mac))
        if discovery.stage == "PADR" and self._state is _S.DISCOVERY:
            # Before the PADR goes out: the glue opens the session socket on
            # this, and the AC answers the PADR with a PADS and at once LCP.
            self._transition(_S.REQUEST, "pado")
        for frame in discovery.packets():
            self._out.append(SendDiscovery(frame.dst, frame.packet, frame.code))
        result = discovery.result
        if isinstance(result, Failed):
            self._attempt_failed(
                now, ExitReason.CONNECT_FAILED, result.detail, result.message, self._state.value
            )
        elif isinstance(result, Established):
            self._established(now, result)

    def _established(self, now: float, result: Established) -> None:
        assert self.dial_started is not None
        self.session = Session(
            result.session_id,
            result.ac_mac,
            result.ac_name,
            result.service_name,
            result.max_payload,
            started=now,
            dial_started=self.dial_started,
        )
        self.sessions += 1
        self._out.append(
            SessionEstablished(
                result.session_id,
                mac_to_str(result.ac_mac),
                result.ac_name,
                result.service_name,
                result.max_payload,
            )
        )
        cfg = self.config
        max_send = result.max_payload or timing.PPPOE_MRU
        self.link = PppLink(
            LinkConfig(
                mac=cfg.mac,
                username=cfg.username,
                password=cfg.password,
                auth_methods=cfg.auth_methods,
                mru=min(cfg.mtu, max_send),
                max_send=min(cfg.mtu, max_send),
                ipv6=cfg.ipv6,
                want_dns=cfg.want_dns,
                echo_interval=cfg.echo_interval,
                echo_failure=cfg.echo_failure,
                restart_timer=cfg.restart_timer,
            ),
            self.rng,
            self._send_ppp,
            self._emit,
        )
        self._transition(_S.ESTABLISH, "pads")
        self.link.start(now)
        self._sync_link(now)

    def _send_ppp(self, protocol: int, info: bytes) -> None:
        self._out.append(SendPpp(protocol, info))

    def _emit(self, event: CoreEvent) -> None:
        self._out.append(event)

    # -- the session -----------------------------------------------------------------------
    def _sync_link(self, now: float) -> None:
        link, session = self.link, self.session
        if link is None or session is None:
            return
        if link.finished is not None:
            end = link.finished
            self._end_all(
                now,
                end.reason,
                end.detail,
                end.message,
                redial=end.reason is not ExitReason.USER_REQUEST,
                stage=end.stage,
            )
            return
        session.network = link.network if link.ipv4_up else None
        if link.ipv4_up and session.up_at is None:
            session.up_at = now
            self.failures = 0
            self.auth_failures = 0
            self.last_exit = None
            self.last_detail = None
            self.last_message = None
        new = _PHASE_STATE.get(link.phase)
        if new is not None and new is not self._state:
            self._transition(new, link.phase.value.lower())

    def _on_padt(self, src: bytes, packet: Discovery, now: float) -> None:
        session = self.session
        if session is None or src != session.ac_mac or packet.session_id != session.session_id:
            self._drop("padt_other_session")
            return
        errors = packet.errors()
        for tag, text in errors:
            self._out.append(DiscoveryError("PADT", tag, text, mac_to_str(src)))
        text = "; ".join(t for _, t in errors)
        message = "the access concentrator ended the session (PADT)" + (f": {text}" if text else "")
        if self.link is not None:
            self.link.abort(now, ExitReason.HANGUP, "padt", message)
        self._sync_link(now)

    def _send_padt(self, session_id: int, ac_mac: bytes, text: bytes) -> None:
        tags = [(Tag.GENERIC_ERROR, text)] if text else []
        self.counters["sent"]["PADT"] += 1
        self._out.append(
            SendDiscovery(ac_mac, encode_discovery(Code.PADT, session_id, tags), "PADT")
        )

    def _end_all(
        self,
        now: float,
        reason: ExitReason,
        detail: str,
        message: str,
        *,
        redial: bool,
        stage: str | None = None,
        send_padt: bool = True,
    ) -> None:
        """End the session or dial in progress and decide what comes next."""
        session = self.session
        stage = stage or self._state.value
        if session is not None:
            if self.link is not None and self.link.finished is None:
                self.link.abort(now, reason, detail, message)
            if send_padt and detail != "padt":
                # RFC 2516 §5.5: either end may send a PADT; closing the kernel
                # socket does not, so the client always does.
                self._send_padt(session.session_id, session.ac_mac, message.encode()[:100])
            self._out.append(
                SessionEnded(
                    session.session_id,
                    mac_to_str(session.ac_mac),
                    reason,
                    detail,
                    session.up_at is not None,
                    now - session.started,
                )
            )
            was_up = session.up_at is not None
            self._retire_counters()
            self.session = None
            self.link = None
            if was_up:
                self.last_exit, self.last_detail, self.last_message = reason, detail, message
                if not redial:
                    self._idle_after(now, reason)
                    return
                self._schedule_redial(now, reason, failed=False)
                return
        elif self.discovery is not None and self._state in _DIALING:
            self._retire_counters()
            self.discovery = None
        if redial:
            self._attempt_failed(now, reason, detail, message, stage)
        else:
            self.last_exit, self.last_detail, self.last_message = reason, detail, message
            self._idle_after(now, reason)

    def _idle_after(self, now: float, reason: ExitReason) -> None:
        self.redial_at = None
        if self._state is not _S.STOPPED:
            self._transition(_S.STOPPED, reason.value.lower())

    def _attempt_failed(
        self, now: float, reason: ExitReason, detail: str, message: str, stage: str
    ) -> None:
        self._retire_counters()
        self.discovery = None
        self.link = None
        self.session = None
        self.last_exit, self.last_detail, self.last_message = reason, detail, message
        self._out.append(SessionFailed(reason, detail, stage, message))
        self._schedule_redial(now, reason, failed=True)

    def _schedule_redial(self, now: float, reason: ExitReason, *, failed: bool) -> None:
        if failed:
            self.failures += 1
        if reason is ExitReason.PEER_AUTH_FAILED:
            self.auth_failures += 1
        maxfail = self.config.maxfail
        if failed and maxfail > 0 and self.failures >= maxfail:
            self._out.append(RedialStopped(self.failures, reason))
            self._transition(_S.FAILED, "maxfail")
            return
        if reason is ExitReason.PEER_AUTH_FAILED:
            delay = timing.auth_failure_delay(self.auth_failures, self.config.holdoff)
        else:
            delay = timing.redial_delay(
                max(self.failures - 1, 0) if failed else 0, self.config.holdoff
            )
        if delay > 0:
            delay *= 1 + self.rng.uniform(-timing.BACKOFF_JITTER, timing.BACKOFF_JITTER)
        self.redial_at = now + delay
        self._out.append(RedialScheduled(round(delay, 3), self.redial_at, self.failures, reason))
        self._transition(_S.HOLDOFF, reason.value.lower())

    # -- helpers ---------------------------------------------------------------------------------
    def _transition(self, new: State, reason: str) -> None:
        old = self._state
        if new is old:
            return
        if new not in TRANSITIONS[old]:
            raise InvalidTransition(f"{old.value} -> {new.value} ({reason})")
        self._state = new
        self._out.append(StateChanged(old.value, new.value, reason))

    def _drop(self, reason: str) -> None:
        self.counters["dropped"][reason] += 1
